"""The run folder of a training run: its layout, what it records, and the checks that it agrees with itself.

A run folder (``--model_dir``) holds::

    config.json        the TrainConfig (read back typed by Run(path).config)
    flags.txt          the command-line flags, when started by python -m tfbrats.train
    checkpoints/       model + optimizer (with its loss scale) + epoch, global step, best and the epoch's
                       history row, after every epoch (the last 2 kept)
    logs/train/, logs/validation/   TensorBoard scalars per epoch
    history.csv        one row per epoch (`history_columns`: a Dice per region of the label set)
    best.keras         the model of the best epoch; best.json says which epoch and by which validation
    final.keras        the model after the last epoch

Every file is written atomically, and an epoch is committed in a fixed order: checkpoint, then
best.keras and best.json, then the history row. A run killed anywhere therefore leaves a folder
whose history and best model never run ahead of its checkpoint, at most one epoch behind it; the
next start completes them from the checkpoint (`Run.problems` names real contradictions). A
checkpoint save that fails or is killed leaves temporary files (TensorFlow's ``ckpt-N_temp/``)
that `Run.remove_failed_checkpoints` removes: at once when the save fails, and at the next start.

Inference uses `Run(path).config` and `Run(path).model_path()`.
"""

from __future__ import annotations

import csv
import io
import math
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfbrats.contract import save_model
from tfbrats.files import write_json, write_text
from tfbrats.labels import REGIONS
from tfbrats.training.config import CONFIG_NAME, ConfigError, TrainConfig, read_config

FLAGS_NAME = "flags.txt"
HISTORY_NAME = "history.csv"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
BEST_NAME = "best.keras"
BEST_RECORD_NAME = "best.json"
FINAL_NAME = "final.keras"
RUN_ENTRIES = (CONFIG_NAME, FLAGS_NAME, HISTORY_NAME, CHECKPOINT_DIR, LOG_DIR, BEST_NAME, BEST_RECORD_NAME,
               FINAL_NAME)
DICE_NAMES = tuple(f"dice_{region}" for region in REGIONS)
VOLUME_NAMES = tuple(f"volume_dice_{region}" for region in REGIONS)


def history_columns(regions: Sequence[str] = tuple(REGIONS)) -> tuple[str, ...]:
    """The columns of history.csv for a run whose label set has `regions` (its Dice per region).

    Example:
        >>> [c for c in history_columns(("WT", "TC", "ET", "RC")) if c.startswith("val_dice")]
        ['val_dice_WT', 'val_dice_TC', 'val_dice_ET', 'val_dice_RC', 'val_dice_mean']
    """
    dice = tuple(f"dice_{region}" for region in regions)
    return ("epoch", "step", "learning_rate", "loss", *dice, "val_loss", *(f"val_{n}" for n in dice),
            "val_dice_mean", *(f"volume_{n}" for n in dice), "volume_dice_mean", "seconds")


# A 4-class run's columns (WT, TC, ET); a run with the resection cavity adds RC's after each ET column.
HISTORY_COLUMNS = history_columns()
INTEGER_COLUMNS = ("epoch", "step")
_CHECKPOINT_STATE = re.compile(r'^model_checkpoint_path:\s*"[^"]*?ckpt-(\d+)"', re.MULTILINE)
# The entries of one checkpoint save: its files, and the folder TensorFlow writes them in first.
_CHECKPOINT_ENTRY = re.compile(r"^ckpt-(\d+)(?:\.index|\.data-\d+-of-\d+|_temp)")


class RunError(ConfigError):
    """A run folder that is missing a part or contradicts itself; the message names the files."""


class Run:
    """A training run folder: where each file lives, and reading and writing them.

    Args:
        path: The run folder (``--model_dir``).

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> run = Run(tmp.name)
        >>> run.best_path.name
        'best.keras'
        >>> run.write_config(TrainConfig(model_dir=tmp.name, patch_size=(8, 64, 64)))
        >>> run.config.patch_size
        (8, 64, 64)
        >>> tmp.cleanup()
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    config_path = property(lambda self: self.path / CONFIG_NAME, doc="config.json")
    flags_path = property(lambda self: self.path / FLAGS_NAME, doc="flags.txt")
    history_path = property(lambda self: self.path / HISTORY_NAME, doc="history.csv")
    checkpoint_dir = property(lambda self: self.path / CHECKPOINT_DIR, doc="checkpoints/")
    log_dir = property(lambda self: self.path / LOG_DIR, doc="TensorBoard logs/")
    best_path = property(lambda self: self.path / BEST_NAME, doc="best.keras")
    best_record_path = property(lambda self: self.path / BEST_RECORD_NAME, doc="best.json")
    final_path = property(lambda self: self.path / FINAL_NAME, doc="final.keras")

    @property
    def config(self) -> TrainConfig:
        """The run's `TrainConfig` (settings recorded before a field existed take its default).

        Raises:
            RunError: No config.json, or one that is not a training config.
        """
        try:
            return read_config(self.config_path)
        except RunError:
            raise
        except ConfigError as error:
            raise RunError(str(error)) from error

    def write_config(self, config: TrainConfig, flags_text: str | None = None) -> None:
        """Records the settings (and the flags that gave them) atomically."""
        write_json(self.config_path, config.to_json())
        if flags_text is not None:
            write_text(self.flags_path, flags_text)

    def model_path(self) -> Path:
        """best.keras, else final.keras.

        Raises:
            FileNotFoundError: Neither exists (no epoch finished yet, or not a run folder).
        """
        for path in (self.best_path, self.final_path):
            if path.is_file():
                return path
        raise FileNotFoundError(f"{self.path}: no {BEST_NAME} or {FINAL_NAME} in this folder; is it a training run "
                                "with at least one finished epoch?")

    def history(self) -> list[dict[str, float]]:
        """The rows of history.csv as floats (NaN where an epoch has no value, e.g. unscored volumes)."""
        if not self.history_path.is_file():
            return []
        with self.history_path.open(newline="") as f:
            try:
                return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
            except (TypeError, ValueError) as error:
                raise RunError(f"{self.history_path} is not a history of numbers ({error})") from error

    def write_history(self, rows: list[dict[str, float]], regions: Sequence[str] = tuple(REGIONS)) -> None:
        """Writes history.csv atomically with `history_columns` of `regions` (missing values as nan)."""
        columns = history_columns(regions)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _format(key, row.get(key, math.nan)) for key in columns})
        write_text(self.history_path, buffer.getvalue())

    def best_record(self) -> dict[str, Any] | None:
        """best.json: the epoch of best.keras, the validation that chose it and its Dice; None before any."""
        import json

        if not self.best_record_path.is_file():
            return None
        try:
            return json.loads(self.best_record_path.read_text())
        except json.JSONDecodeError as error:
            raise RunError(f"{self.best_record_path} is not valid JSON ({error})") from error

    def save_model(self, model: Any, path: Path) -> None:
        """Saves a Keras model to `path` (a `.keras` file of this run) atomically (`tfbrats.contract.save_model`)."""
        save_model(model, path)

    def save_best(self, model: Any, record: dict[str, Any]) -> None:
        """Saves best.keras, then best.json (the record of which epoch and validation chose it)."""
        self.save_model(model, self.best_path)
        write_json(self.best_record_path, record)

    def checkpoint_epoch(self) -> int | None:
        """The epoch of the latest checkpoint (its number), or None without one (no TensorFlow needed)."""
        state = self.checkpoint_dir / "checkpoint"
        if not state.is_file():
            return None
        match = _CHECKPOINT_STATE.search(state.read_text())
        if match is None:
            raise RunError(f"{state} names no ckpt-<epoch> checkpoint; it was not written by tfbrats.train")
        return int(match.group(1))

    def remove_failed_checkpoints(self) -> list[Path]:
        """Removes what an unfinished checkpoint save left in checkpoints/; returns the removed paths.

        A save writes its files under temporary names (TensorFlow's ``ckpt-N_temp/`` folder and
        ``*.tempstate*`` files, ``checkpoint.tmp*``) and lists the checkpoint in the state file
        ``checkpoint`` last. A save that failed (a full disk) or was killed therefore leaves
        temporary entries, or files of a checkpoint newer than the latest the state file lists;
        both are removed. Complete checkpoints are untouched.

        Example:
            >>> import tempfile
            >>> tmp = tempfile.TemporaryDirectory()
            >>> run = Run(tmp.name)
            >>> (run.checkpoint_dir / "ckpt-3_temp").mkdir(parents=True)  # a save killed midway
            >>> [path.name for path in run.remove_failed_checkpoints()]
            ['ckpt-3_temp']
            >>> tmp.cleanup()
        """
        if not self.checkpoint_dir.is_dir():
            return []
        latest = self.checkpoint_epoch() or 0
        removed = []
        for entry in sorted(self.checkpoint_dir.iterdir()):
            save = _CHECKPOINT_ENTRY.match(entry.name)
            temporary = ".tempstate" in entry.name or entry.name.startswith("checkpoint.tmp")
            if temporary or (save is not None and (int(save.group(1)) > latest or entry.name.endswith("_temp"))):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry)
        return removed

    def clear(self) -> None:
        """Removes the files a run writes (and nothing else in the folder)."""
        for name in RUN_ENTRIES:
            path = self.path / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def problems(self) -> list[str]:
        """Contradictions between the run's files; an empty list for a folder that agrees with itself.

        A history or best model one epoch behind the checkpoint is not a contradiction: it is what a
        kill during an epoch's commit leaves, and the next start completes it.

        Example:
            >>> import tempfile
            >>> tmp = tempfile.TemporaryDirectory()
            >>> run = Run(tmp.name)
            >>> run.write_config(TrainConfig(model_dir=tmp.name))
            >>> run.problems()
            []
            >>> run.write_history([{"epoch": 1, "step": 100}])  # an epoch no checkpoint holds
            >>> [problem.replace(tmp.name, "runs/x") for problem in run.problems()]
            ['runs/x/history.csv has 1 epochs but the latest checkpoint is of epoch 0']
            >>> tmp.cleanup()
        """
        problems = []
        try:
            config = self.config
        except RunError as error:
            return [str(error)]
        try:
            epoch, rows, best = self.checkpoint_epoch() or 0, self.history(), self.best_record()
        except RunError as error:
            return [str(error)]
        epochs = [int(row["epoch"]) for row in rows]
        if epochs != list(range(1, len(epochs) + 1)):
            problems.append(f"{self.history_path} lists epochs {epochs}, not 1, 2, ... in order")
        if len(rows) > epoch:
            problems.append(f"{self.history_path} has {len(rows)} epochs but the latest checkpoint is of epoch {epoch}")
        elif len(rows) < epoch - 1:
            problems.append(f"{self.history_path} has {len(rows)} epochs, more than one behind the checkpoint of "
                            f"epoch {epoch}")
        steps = [int(row["step"]) for row in rows]
        expected = [e * config.steps_per_epoch for e in epochs]
        if steps != expected:
            problems.append(f"{self.history_path} steps {steps} are not epoch x steps_per_epoch {expected}")
        if best is not None:
            if not self.best_path.is_file():
                problems.append(f"{self.best_record_path} describes epoch {best.get('epoch')} but there is no "
                                f"{self.best_path}")
            if int(best.get("epoch", 0)) > epoch:
                problems.append(f"{self.best_record_path} is of epoch {best.get('epoch')}, after the checkpoint of "
                                f"epoch {epoch}")
            row = next((r for r in rows if int(r["epoch"]) == int(best.get("epoch", 0))), None)
            key = best.get("metric")
            if row is not None and key in row and not math.isclose(row[key], best.get("value", math.nan),
                                                                    rel_tol=1e-5, abs_tol=1e-6):
                problems.append(f"{self.best_record_path} says {key} {best.get('value')} at epoch {best['epoch']}, "
                                f"{self.history_path} {row[key]}")
        return problems

    def check(self) -> None:
        """Raises `RunError` listing `problems()`, if any."""
        problems = self.problems()
        if problems:
            raise RunError(f"run folder {self.path} contradicts itself:\n" + "\n".join(f"  - {p}" for p in problems))


def _format(key: str, value: float) -> str:
    if key in INTEGER_COLUMNS:
        return str(int(value))
    return "nan" if value is None or math.isnan(value) else f"{value:.6g}"
