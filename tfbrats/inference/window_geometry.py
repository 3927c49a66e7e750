"""Where sliding windows go: the one definition that the numpy and the in-graph windows share.

Along each axis, windows of size `patch` start every `step` voxels and the last one is aligned to
the end, so every voxel is covered: with n = ceil((size - patch) / step) + 1 windows, window i
starts at min(i * step, size - patch). An axis shorter than the window is first zero-padded after
its last voxel up to the window, and so is a single pass over a whole volume (a window the size of
the volume rounded up to a multiple of 32 in-plane).

Padding only after keeps the volume's first voxel where the first window starts: on the origin of
the network's stride grid. AlbuNet downsamples by 32 in-plane, and a strided network is not
shift-invariant: its labels depend on where that grid falls. Windows starting every 32 voxels (the
paper's steps) share the grid, and a single pass padded after shares it with them; padded
symmetrically, the pass put the grid elsewhere. Measured on BraTS-size (240x240x155) synthetic
cases with a demo-trained AlbuNet3D: the single pass's whole-tumor labels agreed with the paper's
24x128x128 windows at Dice 0.9916-0.9966 padded symmetrically and 0.9951-0.9983 padded after
(4 cases; docs/performance.md). The functions take the array
operations as arguments so that `tfbrats.inference.sliding_window` (numpy, static sizes) and
`tfbrats.serving.window` (TensorFlow, sizes known only when a volume arrives) compute the same
starts from the same formula.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def check_window(patch_size: Sequence[int], steps: Sequence[int]) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Three positive window sizes and three steps in 1..size, or a ValueError naming the bad value.

    Example:
        >>> check_window((8, 64, 64), (8, 32, 32))
        ((8, 64, 64), (8, 32, 32))
    """
    patch, step = check_triple(patch_size, "patch_size"), check_triple(steps, "steps")
    for axis, (p, s) in enumerate(zip(patch, step)):
        if s > p:
            raise ValueError(f"steps[{axis}] = {s} must be in 1..patch_size[{axis}] = {p}, "
                             "or some voxels would never be predicted")
    return patch, step


def check_triple(values: Sequence[int], name: str) -> tuple[int, int, int]:
    """Three positive Python integers (depth, height, width), or a ValueError naming the argument.

    Example:
        >>> check_triple([1, 2, 3], "steps")
        (1, 2, 3)
    """
    values = tuple(int(v) for v in values)
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"{name} must be three positive integers (d, h, w); got {values}")
    return values


def padding(size: Any, patch: int, maximum: Callable = np.maximum) -> tuple[Any, Any]:
    """Zeros to add (before, after) an axis of `size` voxels so that it holds one window: all after.

    Example:
        >>> tuple(int(v) for v in padding(5, 8))
        (0, 3)
    """
    return 0 * size, maximum(patch - size, 0)


def window_starts(size: Any, patch: int, step: int, arange: Callable = np.arange,
                  minimum: Callable = np.minimum) -> Any:
    """Window starts along an axis of `size` voxels (at least `patch`), the last aligned to the end.

    Args:
        size: The (padded) axis length: a Python int or a scalar tensor.
        patch: The window size.
        step: The distance between starts.
        arange, minimum: The array operations (numpy's by default; `tf.range`, `tf.minimum` in a graph).

    Example:
        >>> window_starts(100, 64, 32).tolist()
        [0, 32, 36]
        >>> window_starts(96, 64, 32).tolist()
        [0, 32]
    """
    count = (size - patch + step - 1) // step + 1
    return minimum(arange(count) * step, size - patch)
