"""A folder of preprocessed cases: memory-mappable arrays plus JSON metadata per case.

Layout of a cache folder::

    settings.json              # how the cache was made; a cache never mixes settings
    <case_id>.image.npy        # (D, H, W, C) float32, z-scored and cropped
    <case_id>.label.npy        # (D, H, W) uint8 0..3 (only for cases with a reference)
    <case_id>.json             # CaseMeta; written last, so it marks the case as complete

Every file is written under a temporary name and renamed, so a killed run leaves no
half-written case, and a rerun skips the cases whose JSON exists. Every path is made by
`tfbrats.files.output_file`, so a case id that is not a file name is refused, never written
outside the cache folder.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfbrats.conventions import channels_for
from tfbrats.data.checks import check_case
from tfbrats.data.nifti import CaseError
from tfbrats.data.preprocess import CaseMeta, PreprocessedCase, load_case
from tfbrats.data.records import Case
from tfbrats.files import atomic_path, output_file, write_json

# 2: cases are stored in BraTS' voxel orientation (tfbrats.data.orientation); format 1 kept the input's.
CACHE_FORMAT = 2
SETTINGS_NAME = "settings.json"


def _write_npy(path: Path, array: np.ndarray) -> None:
    """Saves `array` in .npy format, atomically."""
    with atomic_path(path) as temporary, temporary.open("wb") as f:
        np.save(f, array)


def cache_settings(input_channels: int) -> dict[str, Any]:
    """The settings that make two caches compatible.

    Example:
        >>> cache_settings(3)["channels"]
        ['flair', 't1ce', 't2']
    """
    return {
        "format": CACHE_FORMAT,
        "input_channels": input_channels,
        "channels": list(channels_for(input_channels)),
        "normalisation": "zscore_nonzero",
        "crop": "nonzero_union",
    }


def _claim_settings(cache_dir: Path, settings: dict[str, Any]) -> None:
    """Writes the settings of a new cache, or refuses a cache made with other settings."""
    path = cache_dir / SETTINGS_NAME
    if path.exists():
        existing = json.loads(path.read_text())
        if existing != settings:
            raise ValueError(
                f"cache {cache_dir} was made with settings {existing}, not {settings}; "
                "use a new --cache_dir (or delete this one) rather than mix the two"
            )
        return
    write_json(path, settings)


def is_cached(cache_dir: str | Path, case_id: str) -> bool:
    """Whether a case has been written completely to the cache.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> is_cached(tmp.name, "BraTS20_Training_001")
        False
        >>> tmp.cleanup()
    """
    return output_file(cache_dir, case_id, ".json").is_file()


def write_cached_case(cache_dir: str | Path, case: PreprocessedCase) -> None:
    """Writes one preprocessed case to the cache, atomically (the JSON last).

    Example:
        >>> import tempfile
        >>> from tfbrats.data import find_cases
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(f"{tmp.name}/data", cases=2, shape=(48, 48, 32))
        >>> write_cached_case(tmp.name, load_case(find_cases(f"{tmp.name}/data").cases[0]))
        >>> is_cached(tmp.name, "BraTS20_Training_001")
        True
        >>> tmp.cleanup()
    """
    case_id = case.meta.case_id
    _write_npy(output_file(cache_dir, case_id, ".image.npy"), case.image)
    if case.label is not None:
        _write_npy(output_file(cache_dir, case_id, ".label.npy"), case.label)
    write_json(output_file(cache_dir, case_id, ".json"), case.meta.to_json() | {"has_label": case.label is not None})


def _prepare_one(case: Case, cache_dir: Path, input_channels: int) -> str:
    """Preprocesses one case into the cache (run in a worker process); returns its id."""
    write_cached_case(cache_dir, load_case(case, input_channels))
    return case.case_id


def _progress(done: int, total: int, started: float) -> None:
    """Draws a one-line progress bar on stderr."""
    width = 30
    filled = width * done // max(total, 1)
    elapsed = time.monotonic() - started
    remaining = elapsed / done * (total - done) if done else 0.0
    sys.stderr.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} cases, "
        f"{elapsed:.0f} s elapsed, ~{remaining:.0f} s left"
    )
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def prepare_cache(
    cases: Sequence[Case],
    cache_dir: str | Path,
    input_channels: int = 3,
    workers: int | None = None,
    progress: bool = True,
) -> list[str]:
    """Preprocesses cases into a cache folder in parallel, skipping cases already there.

    All cases' headers are checked first, so a bad file stops the run before the long work.

    Args:
        cases: The cases (from `find_cases`).
        cache_dir: The cache folder (created if needed).
        input_channels: 3 or 4; part of the cache's settings.
        workers: Worker processes (default: the CPU count).
        progress: Draw a progress bar on stderr.

    Returns:
        The ids of the cases written by this call (skipped ones excluded).

    Raises:
        CaseError: A case fails its checks (all failures are listed in one message).
        ValueError: The cache was made with other settings.

    Example:
        >>> import tempfile
        >>> from tfbrats.data import find_cases
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(f"{tmp.name}/data", cases=2, shape=(48, 48, 32))
        >>> prepare_cache(find_cases(f"{tmp.name}/data").cases, f"{tmp.name}/cache", workers=1, progress=False)
        ['BraTS20_Training_001', 'BraTS20_Training_002']
        >>> prepare_cache(find_cases(f"{tmp.name}/data").cases, f"{tmp.name}/cache", progress=False)  # done already
        []
        >>> tmp.cleanup()
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    _claim_settings(cache_dir, cache_settings(input_channels))
    todo = [case for case in cases if not is_cached(cache_dir, case.case_id)]
    problems = []
    for case in todo:
        try:
            check_case(case, input_channels)
        except CaseError as error:
            problems.append(str(error))
    if problems:
        raise CaseError(f"{len(problems)} case(s) failed their checks; nothing was written:\n" + "\n".join(problems))
    written: list[str] = []
    if not todo:
        return written
    started = time.monotonic()
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    failures = []
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_prepare_one, case, cache_dir, input_channels) for case in todo]
        for future in concurrent.futures.as_completed(futures):
            try:
                written.append(future.result())
            except CaseError as error:
                failures.append(str(error))
            if progress:
                _progress(len(written) + len(failures), len(todo), started)
    if failures:
        raise CaseError(
            f"{len(failures)} case(s) failed while reading their voxels ({len(written)} written; "
            "rerun after fixing them to add the rest):\n" + "\n".join(failures)
        )
    return sorted(written)


def list_cached_cases(cache_dir: str | Path) -> list[str]:
    """The ids of the complete cases in a cache folder, sorted.

    Example:
        >>> import tempfile
        >>> from tfbrats.data import find_cases
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(f"{tmp.name}/data", cases=2, shape=(48, 48, 32))
        >>> prepare_cache(find_cases(f"{tmp.name}/data").cases, f"{tmp.name}/cache", workers=1, progress=False)
        ['BraTS20_Training_001', 'BraTS20_Training_002']
        >>> list_cached_cases(f"{tmp.name}/cache")
        ['BraTS20_Training_001', 'BraTS20_Training_002']
        >>> tmp.cleanup()
    """
    cache_dir = Path(cache_dir)
    if not (cache_dir / SETTINGS_NAME).is_file():
        raise FileNotFoundError(
            f"{cache_dir} is not a tfbrats cache (no {SETTINGS_NAME}); make one with "
            f"python -m tfbrats.prepare --data_dir=... --cache_dir={cache_dir}"
        )
    return sorted(p.name[: -len(".json")] for p in cache_dir.glob("*.json")
                  if p.name != SETTINGS_NAME and not p.name.startswith("."))


def load_cached_case(cache_dir: str | Path, case_id: str, mmap: bool = True) -> PreprocessedCase:
    """Loads one case from a cache folder, memory-mapped by default.

    Example:
        >>> import tempfile
        >>> from tfbrats.data import find_cases
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(f"{tmp.name}/data", cases=2, shape=(48, 48, 32))
        >>> prepare_cache(find_cases(f"{tmp.name}/data").cases, f"{tmp.name}/cache", workers=1, progress=False)
        ['BraTS20_Training_001', 'BraTS20_Training_002']
        >>> case = load_cached_case(f"{tmp.name}/cache", "BraTS20_Training_001")
        >>> type(case.image).__name__, case.image.shape, case.meta.box
        ('memmap', (25, 39, 36, 3), ((4, 29), (4, 43), (5, 41)))
        >>> del case
        >>> tmp.cleanup()
    """
    values = json.loads(output_file(cache_dir, case_id, ".json").read_text())
    mode = "r" if mmap else None
    image = np.load(output_file(cache_dir, case_id, ".image.npy"), mmap_mode=mode)
    label = np.load(output_file(cache_dir, case_id, ".label.npy"), mmap_mode=mode) if values["has_label"] else None
    return PreprocessedCase(image, label, CaseMeta.from_json(values))


def load_cache(cache_dir: str | Path, mmap: bool = True) -> list[PreprocessedCase]:
    """Loads every complete case of a cache folder.

    Example:
        >>> import tempfile
        >>> from tfbrats.data import find_cases
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(f"{tmp.name}/data", cases=2, shape=(48, 48, 32))
        >>> prepare_cache(find_cases(f"{tmp.name}/data").cases, f"{tmp.name}/cache", workers=1, progress=False)
        ['BraTS20_Training_001', 'BraTS20_Training_002']
        >>> [case.meta.case_id for case in load_cache(f"{tmp.name}/cache", mmap=False)]
        ['BraTS20_Training_001', 'BraTS20_Training_002']
        >>> tmp.cleanup()
    """
    return [load_cached_case(cache_dir, case_id, mmap) for case_id in list_cached_cases(cache_dir)]
