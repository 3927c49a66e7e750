"""Whole-volume prediction from a patch predictor by overlapping sliding windows (numpy only).

This module imports neither TensorFlow nor Keras, so the same code serves a Keras model under any
backend, a loaded SavedModel signature or a remote endpoint: the predictor is any callable.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from tfbrats.contract import BLEND_MODES
from tfbrats.conventions import SIZE_MULTIPLE
from tfbrats.inference.window_geometry import check_triple, check_window, padding, window_starts

# Sigma of the centre weighting as a fraction of the window size, as nnU-Net and MONAI use.
GAUSSIAN_SIGMA_SCALE = 0.125

Predictor = Callable[[np.ndarray], Any]


def sliding_window(
    volume: np.ndarray,
    predictor: Predictor,
    patch_size: Sequence[int] | None = (24, 128, 128),
    steps: Sequence[int] = (24, 32, 32),
    batch_size: int = 4,
    blend: str = "mean",
    mirror_tta: bool = False,
    num_classes: int | None = None,
    pad_multiple: Sequence[int] = (1, SIZE_MULTIPLE, SIZE_MULTIPLE),
) -> np.ndarray:
    """Predict class probabilities for a whole volume from overlapping windows.

    Windows are placed as `tfbrats.inference.window_geometry` says (every `steps` voxels, the last
    aligned to the end of each axis, an axis shorter than the window zero-padded after its end),
    and the padding is cropped from the result. Overlapping outputs are averaged, uniformly
    (`blend="mean"`, the paper's choice) or weighted by a Gaussian centred on each window
    (`blend="gaussian"`, sigma = 1/8 of the window).

    Args:
        volume: image `(D, H, W, C)`, already normalised as the predictor expects.
        predictor: callable mapping a batch of windows `(B, d, h, w, C)` to probabilities
            `(B, d, h, w, K)`; numpy arrays, tensors, or a mapping with a single output (as a
            SavedModel signature returns) are accepted.
        patch_size: window size `(d, h, w)`; None runs the whole volume in a single pass, padded
            after its end to multiples of `pad_multiple` (so it shares the windows' stride grid).
        steps: distance `(d, h, w)` between window starts; each must be in 1..patch size.
        batch_size: windows per predictor call.
        blend: "mean" or "gaussian".
        mirror_tta: also predict every flip of the window over the depth, height and width axes
            (axes where the window has size 1 excepted) and average, flipped back.
        num_classes: expected K; checked against the predictor's output when given.
        pad_multiple: `(d, h, w)` the single pass pads each axis to a multiple of (the model needs
            H and W divisible by 32); unused with windows.

    Returns:
        float32 probabilities `(D, H, W, K)`.

    Example:
        >>> import numpy as np
        >>> image = np.zeros((30, 100, 90, 3), np.float32)
        >>> uniform = lambda x: np.full(x.shape[:4] + (4,), 0.25, np.float32)
        >>> sliding_window(image, uniform, (8, 64, 64), (8, 32, 32)).shape
        (30, 100, 90, 4)
    """
    volume = np.asarray(volume)
    patch, step = _checked_windows(volume, patch_size, steps, batch_size, blend, pad_multiple)

    padded, crop = _pad_to_at_least(volume, patch)
    starts = [window_starts(n, p, s).tolist() for n, p, s in zip(padded.shape[:3], patch, step)]
    corners = list(itertools.product(*starts))
    weights = _gaussian_weights(patch) if blend == "gaussian" else None
    flips = _flip_axes(patch) if mirror_tta else [()]

    probs: np.ndarray | None = None
    norm = np.zeros(padded.shape[:3], np.float32)
    batch = np.empty((min(batch_size, len(corners)),) + patch + padded.shape[3:], padded.dtype)
    for group in _chunks(corners, batch_size):
        windows = [tuple(slice(c, c + p) for c, p in zip(corner, patch)) for corner in group]
        for i, window in enumerate(windows):
            batch[i] = padded[window]
        inputs = batch[: len(windows)]
        out = _predict_flips(predictor, inputs, flips, patch, num_classes)
        if probs is None:
            probs = np.zeros(padded.shape[:3] + out.shape[-1:], np.float32)
        for window, window_probs in zip(windows, out):
            if weights is None:
                probs[window] += window_probs
                norm[window] += 1.0
            else:
                probs[window] += window_probs * weights[..., None]
                norm[window] += weights
    probs /= norm[..., None]
    return np.ascontiguousarray(probs[crop]) if padded is not volume else probs


def _checked_windows(
    volume: np.ndarray,
    patch_size: Sequence[int] | None,
    steps: Sequence[int],
    batch_size: int,
    blend: str,
    pad_multiple: Sequence[int],
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Checks `sliding_window`'s arguments and returns its window and step (one padded window when
    `patch_size` is None)."""
    if volume.ndim != 4:
        raise ValueError(f"sliding_window needs a volume (D, H, W, C); got shape {volume.shape}")
    if blend not in BLEND_MODES:
        raise ValueError(f"blend must be one of {BLEND_MODES}; got {blend!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if patch_size is None:
        multiple = check_triple(pad_multiple, "pad_multiple")
        patch = tuple(-(-s // m) * m for s, m in zip(volume.shape[:3], multiple))
        return patch, patch
    return check_window(patch_size, steps)


def _predict_flips(
    predictor: Predictor, inputs: np.ndarray, flips: list[tuple[int, ...]], patch: tuple[int, int, int],
    num_classes: int | None,
) -> np.ndarray:
    """The predictor's probabilities for a batch of windows, averaged over `flips` (flipped back)."""
    out = _predict(predictor, inputs, flips[0], patch, num_classes)
    if len(flips) > 1:
        out = np.array(out)
        for axes in flips[1:]:
            out += _predict(predictor, inputs, axes, patch, num_classes)
        out /= len(flips)
    return out


def _pad_to_at_least(volume: np.ndarray, patch: tuple[int, int, int]) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Zero-pads each spatial axis after its end up to the window size; returns the crop back."""
    widths = [tuple(int(v) for v in padding(n, p)) for n, p in zip(volume.shape[:3], patch)]
    if not any(before or after for before, after in widths):
        return volume, (slice(None),) * 3
    widths.append((0, 0))
    crop = tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, volume.shape[:3]))
    return np.pad(volume, widths), crop


def _gaussian_weights(patch: tuple[int, int, int]) -> np.ndarray:
    """Separable Gaussian centred on the window, sigma 1/8 of its size, peak 1, never zero."""
    weights = np.ones(patch, np.float64)
    for axis, n in enumerate(patch):
        offset = np.arange(n) - (n - 1) / 2
        profile = np.exp(-0.5 * (offset / (GAUSSIAN_SIGMA_SCALE * n)) ** 2)
        weights = weights * profile.reshape([-1 if a == axis else 1 for a in range(3)])
    return np.maximum(weights, np.finfo(np.float32).tiny).astype(np.float32)


def _flip_axes(patch: tuple[int, int, int]) -> list[tuple[int, ...]]:
    """Every subset of the batch's spatial axes (1, 2, 3) along which the window is wider than 1."""
    axes = [axis + 1 for axis, n in enumerate(patch) if n > 1]
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def _chunks(items: list, size: int) -> Iterator[list]:
    """Consecutive slices of `items` of length `size` (the last may be shorter)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _predict(
    predictor: Predictor,
    batch: np.ndarray,
    axes: tuple[int, ...],
    patch: tuple[int, int, int],
    num_classes: int | None,
) -> np.ndarray:
    """Runs the predictor on `batch` flipped along `axes`; returns float32 output flipped back."""
    inputs = np.ascontiguousarray(np.flip(batch, axes)) if axes else batch
    out = predictor(inputs)
    if isinstance(out, Mapping):
        if len(out) != 1:
            raise ValueError(
                f"predictor returned a mapping with outputs {sorted(out)}; wrap it so that it "
                "returns the probabilities alone"
            )
        out = next(iter(out.values()))
    out = np.asarray(out, dtype=np.float32)
    expected = (batch.shape[0],) + patch
    if out.ndim != 5 or out.shape[:4] != expected:
        raise ValueError(f"predictor mapped windows {batch.shape} to {out.shape}; expected {expected} + (K,)")
    if num_classes is not None and out.shape[-1] != num_classes:
        raise ValueError(f"predictor returned {out.shape[-1]} classes; expected {num_classes}")
    return np.flip(out, axes) if axes else out
