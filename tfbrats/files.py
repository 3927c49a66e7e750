"""Atomic writes: every file and folder tfbrats writes appears complete or not at all.

A file is written under a hidden temporary name beside its target (same folder, so the final
rename is atomic on every POSIX file system) and renamed over the target when the writer
returns; if the writer raises, the temporary file is removed and the target is untouched. A
folder is staged the same way and renamed into place. A process killed at any moment therefore
leaves only complete outputs (and, at worst, a hidden ``.*.partial*`` leftover).

A name that becomes a file name (a case id: ``<output>/<case_id>.nii.gz``) is checked by one rule,
`check_file_name`, and every writer builds such a path with `output_file`, which refuses a path
that would land outside its folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def check_file_name(name: str, what: str = "case id") -> str:
    """Returns `name` when it can name a file inside a folder; raises `ValueError` naming it otherwise.

    A file name is not empty, holds no path separator (``/``, ``\\``) or control character, and
    does not start with ``.`` (which also refuses ``.`` and ``..``; hidden names are where the
    partial files of atomic writes live). So no id can lead a writer out of its folder.

    Args:
        name: The name, e.g. a case id.
        what: What the name is, for the message.

    Example:
        >>> check_file_name("BraTS20_Training_001")
        'BraTS20_Training_001'
        >>> check_file_name("../victim")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: case id '../victim' is not a file name: it must be non-empty, hold no path separator ...
    """
    if (not isinstance(name, str) or not name or name.startswith(".") or "/" in name or "\\" in name
            or any(ord(character) < 32 for character in name)):
        raise ValueError(f"{what} {name!r} is not a file name: it must be non-empty, hold no path separator ('/' or "
                         "backslash) or control character, and not start with '.'")
    return name


def output_file(folder: str | Path, name: str, suffix: str = "", what: str = "case id") -> Path:
    """The path ``folder/<name><suffix>`` a writer may use: `name` is a file name and the path stays in `folder`.

    The path is resolved (an existing link at it followed) and must lie directly in `folder`.

    Args:
        folder: The output folder.
        name: The name the file is made of (a case id), checked by `check_file_name`.
        suffix: What follows the name (``.nii.gz``, ``.json``).
        what: What the name is, for the message.

    Raises:
        ValueError: `name` is not a file name, or the path resolves outside `folder`.

    Example:
        >>> output_file("predictions", "BraTS20_Validation_001", ".nii.gz")
        PosixPath('predictions/BraTS20_Validation_001.nii.gz')
    """
    check_file_name(name, what)
    folder = Path(folder)
    path = folder / check_file_name(f"{name}{suffix}", what)
    resolved = Path(os.path.realpath(path))
    if resolved.parent != Path(os.path.realpath(folder)):
        raise ValueError(f"{what} {name!r}: {path} resolves to {resolved}, outside the folder {folder}; tfbrats "
                         "writes only inside its output folder: remove the link or choose another folder")
    return path


def _suffixes(path: Path) -> str:
    """The file's suffixes (``.nii.gz``, ``.keras``): some writers choose the format by them."""
    return "".join(path.suffixes)


@contextlib.contextmanager
def atomic_path(path: str | Path, mode: int = 0o644) -> Iterator[Path]:
    """Yields a temporary path beside `path` (same suffixes); renames it over `path` on success.

    Args:
        path: The file to write.
        mode: The permissions of the finished file (temporary files start private).

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "weights.txt"
        >>> with atomic_path(target) as partial:
        ...     _ = partial.write_text("done")
        >>> target.read_text()
        'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".partial{_suffixes(path)}", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Writes `text` to `path` atomically and returns the path.

    Example:
        >>> import tempfile
        >>> write_text(Path(tempfile.mkdtemp()) / "flags.txt", "--seed=0\\n").read_text()
        '--seed=0\\n'
    """
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return Path(path)


def write_json(path: str | Path, values: Any) -> Path:
    """Writes `values` as indented JSON (with a final newline) to `path` atomically.

    Example:
        >>> import tempfile
        >>> json.loads(write_json(Path(tempfile.mkdtemp()) / "a.json", {"target": "regions"}).read_text())
        {'target': 'regions'}
    """
    return write_text(path, json.dumps(values, indent=2) + "\n")


@contextlib.contextmanager
def atomic_folder(target: str | Path, replace: bool = False) -> Iterator[Path]:
    """Yields a hidden staging folder beside `target`; renames it to `target` when the block ends.

    Args:
        target: The folder to create.
        replace: Replace an existing `target` (it is moved aside and removed only once the new
            folder is in place); without it an existing `target` is a `FileExistsError`.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> with atomic_folder(root / "case") as stage:
        ...     _ = (stage / "a.txt").write_text("x")
        >>> sorted(p.name for p in (root / "case").iterdir())
        ['a.txt']
    """
    target = Path(target)
    if target.exists() and not replace:
        raise FileExistsError(f"{target} already exists and is not replaced; choose another name or remove it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield staging
        os.chmod(staging, 0o755)  # mkdtemp makes it private; servers often run as another user
        if target.exists():
            if not replace:
                raise FileExistsError(f"{target} appeared while it was being written; the new one is discarded")
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
