"""Training progress for terminals and for files.

On a terminal, a Keras progress bar per epoch. Anywhere else (stdout redirected to a file, nohup,
a batch scheduler, CI), plain lines with no carriage returns or colour codes: one per epoch and,
if asked, one every N steps.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TextIO


def _values(values: Sequence[tuple[str, float]]) -> str:
    return " ".join(f"{name} {value:.4f}" for name, value in values)


class PlainProgress:
    """Progress as plain text lines: every `every` steps (0: never) and once at the end of each epoch.

    Args:
        steps: Steps per epoch.
        every: Print a line every this many steps (0: only the epoch line).
        write: Where the lines go (one call per line, without the newline).

    Example:
        >>> lines = []
        >>> progress = PlainProgress(4, every=2, write=lines.append)
        >>> progress.start_epoch(1, 3)
        >>> for step in range(1, 5):
        ...     progress.update(step, [("loss", 1.0 / step)])
        >>> progress.end_epoch([("loss", 0.25)], [("val_loss", 0.3)], seconds=12.0)
        >>> print("\\n".join(lines))
        epoch 1/3 step 2/4 loss 0.5000
        epoch 1/3 step 4/4 loss 0.2500
        epoch 1/3 done in 12 s: loss 0.2500 val_loss 0.3000
    """

    def __init__(self, steps: int, every: int = 0, write: Callable[[str], None] | None = None):
        self.steps, self.every = steps, every
        self.write = write or _print_line
        self.epoch, self.epochs = 0, 0

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.epoch, self.epochs = epoch, epochs

    def update(self, step: int, values: Sequence[tuple[str, float]]) -> None:
        if self.every and step % self.every == 0:
            self.write(f"epoch {self.epoch}/{self.epochs} step {step}/{self.steps} {_values(values)}")

    def end_epoch(self, values: Sequence[tuple[str, float]], validation: Sequence[tuple[str, float]],
                  seconds: float) -> None:
        self.write(f"epoch {self.epoch}/{self.epochs} done in {seconds:.0f} s: {_values([*values, *validation])}")


class BarProgress:
    """A Keras progress bar per epoch (for terminals).

    Args:
        steps: Steps per epoch.

    Example:
        >>> progress = BarProgress(100)  # then start_epoch(1, 50), update(step, values), end_epoch(...)
        >>> progress.steps
        100
    """

    def __init__(self, steps: int):
        self.steps = steps
        self.bar = None

    def start_epoch(self, epoch: int, epochs: int) -> None:
        import keras

        print(f"Epoch {epoch}/{epochs}", flush=True)
        # No metric is averaged by the bar: every value given is already the epoch's running figure.
        self.bar = keras.utils.Progbar(self.steps, verbose=1, stateless_metrics=[])

    def update(self, step: int, values: Sequence[tuple[str, float]]) -> None:
        self.bar.update(step, list(values), finalize=False)

    def end_epoch(self, values: Sequence[tuple[str, float]], validation: Sequence[tuple[str, float]],
                  seconds: float) -> None:
        self.bar.update(self.steps, [*values, *validation], finalize=True)


class SilentProgress:
    """No progress (workers other than the chief)."""

    def start_epoch(self, epoch: int, epochs: int) -> None:
        pass

    def update(self, step: int, values: Sequence[tuple[str, float]]) -> None:
        pass

    def end_epoch(self, values: Sequence[tuple[str, float]], validation: Sequence[tuple[str, float]],
                  seconds: float) -> None:
        pass


def _print_line(line: str) -> None:
    print(line, flush=True)


def make_progress(steps: int, every: int = 0, is_chief: bool = True, stream: TextIO | None = None):
    """The progress display for this process: a bar on a terminal, plain lines otherwise, nothing off the chief.

    Args:
        steps: Steps per epoch.
        every: With plain lines, one every this many steps too (0: one per epoch).
        is_chief: Whether this process reports.
        stream: The stream whose kind decides (default: sys.stdout).

    Example:
        >>> type(make_progress(10, is_chief=False)).__name__
        'SilentProgress'
    """
    if not is_chief:
        return SilentProgress()
    stream = stream or sys.stdout
    if stream.isatty():
        return BarProgress(steps)
    return PlainProgress(steps, every)
