"""Random patches inside a cropped case, padded when the case is smaller than the patch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PatchSize = tuple[int, int, int]


def padded_shape(shape: Sequence[int], patch_size: Sequence[int]) -> PatchSize:
    """The ``(D, H, W)`` of a case after padding each axis up to at least the patch size.

    Example:
        >>> padded_shape((20, 150, 100), (24, 128, 128))
        (24, 150, 128)
    """
    return tuple(max(int(s), int(p)) for s, p in zip(shape[:3], patch_size))


def pad_to_patch(array: np.ndarray, patch_size: Sequence[int]) -> np.ndarray:
    """Zero-pads the first three axes of `array` symmetrically up to at least `patch_size`.

    Example:
        >>> pad_to_patch(np.ones((20, 150, 100, 3)), (24, 128, 128)).shape
        (24, 150, 128, 3)
    """
    target = padded_shape(array.shape, patch_size)
    if target == tuple(array.shape[:3]):
        return array
    widths = [((t - s) // 2, t - s - (t - s) // 2) for s, t in zip(array.shape[:3], target)]
    widths += [(0, 0)] * (array.ndim - 3)
    return np.pad(array, widths)


def patch_corner(
    shape: Sequence[int],
    patch_size: Sequence[int],
    rng: np.random.Generator,
    label: np.ndarray | None = None,
    foreground: bool = False,
    foreground_class: int | None = None,
) -> PatchSize:
    """Chooses the corner of a patch inside a (padded) case.

    Args:
        shape: The padded case's ``(D, H, W)``; every axis is >= the patch's.
        patch_size: The patch ``(d, h, w)``.
        rng: The random generator.
        label: The padded case's labels, used when `foreground` is True.
        foreground: Centre the patch on a random tumor voxel (label > 0) when there is one.
        foreground_class: With `foreground`, centre it on a voxel of this class instead.

    Returns:
        The corner ``(d0, h0, w0)``; the patch ``corner + patch_size`` lies inside `shape`.

    Example:
        >>> patch_corner((30, 150, 140), (24, 128, 128), np.random.default_rng(0))
        (5, 14, 6)
        >>> label = np.zeros((30, 150, 140), np.int32)
        >>> label[20, 100, 90] = 3  # one tumor voxel: the patch is centred on it where it fits
        >>> patch_corner((30, 150, 140), (24, 128, 128), np.random.default_rng(0), label, foreground=True)
        (6, 22, 12)
    """
    highest = np.array(shape[:3]) - np.array(patch_size)
    if np.any(highest < 0):
        raise ValueError(f"case shape {tuple(shape)} is smaller than the patch {tuple(patch_size)}; pad it first")
    if foreground and label is not None:
        tumor = np.flatnonzero(label if foreground_class is None else label == foreground_class)
        if tumor.size:
            centre = np.unravel_index(tumor[rng.integers(tumor.size)], label.shape)
            corner = np.array(centre) - np.array(patch_size) // 2
            return tuple(int(v) for v in np.clip(corner, 0, highest))
    return tuple(int(rng.integers(0, h + 1)) for h in highest)


def sample_patch(
    image: np.ndarray,
    label: np.ndarray | None,
    patch_size: Sequence[int],
    rng: np.random.Generator,
    foreground_fraction: float = 0.0,
    foreground_class: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Takes one random patch of a cropped case, padding the case first when it is smaller.

    Args:
        image: ``(D, H, W, C)`` float32.
        label: ``(D, H, W)`` labels 0..3, or None (the label patch is then all zeros).
        patch_size: ``(d, h, w)``, e.g. (24, 128, 128), or (1, 128, 128) for 2-D.
        rng: The random generator (seed it for reproducible patches).
        foreground_fraction: Probability that the patch is centred on a tumor voxel.
        foreground_class: Centre the patch on a voxel of this class (`class_balanced_patch`
            chose it); `foreground_fraction` is then not drawn.

    Returns:
        ``(image_patch (d, h, w, C) float32, label_patch (d, h, w) int32)``.

    Example:
        >>> image = np.ones((20, 40, 40, 4), np.float32)  # a case shallower than the patch
        >>> label = np.zeros((20, 40, 40), np.int32)
        >>> label[8:12, 10:20, 10:20] = 1
        >>> x, y = sample_patch(image, label, (24, 32, 32), np.random.default_rng(0), foreground_fraction=1.0)
        >>> x.shape, x.dtype, y.shape, y.dtype
        ((24, 32, 32, 4), dtype('float32'), (24, 32, 32), dtype('int32'))
        >>> int(y.sum())  # centred on the tumor, the patch holds all 400 of its voxels
        400
    """
    padded_image = pad_to_patch(image, patch_size)
    padded_label = None if label is None else pad_to_patch(label, patch_size)
    if foreground_class is None:
        foreground = foreground_fraction > 0 and rng.random() < foreground_fraction
    else:
        foreground = padded_label is not None
    d0, h0, w0 = patch_corner(padded_image.shape, patch_size, rng, padded_label, foreground, foreground_class)
    d, h, w = patch_size
    window = (slice(d0, d0 + d), slice(h0, h0 + h), slice(w0, w0 + w))
    image_patch = np.asarray(padded_image[window], dtype=np.float32)
    if padded_label is None:
        return image_patch, np.zeros((d, h, w), dtype=np.int32)
    return image_patch, np.asarray(padded_label[window], dtype=np.int32)


def cases_per_class(labels: Sequence[np.ndarray | None]) -> dict[int, list[int]]:
    """Tumor class -> the indices of the cases whose labels hold it (classes in no case are left out).

    Example:
        >>> cases_per_class([np.array([0, 1, 2]), np.array([0, 2, 4]), None])
        {1: [0], 2: [0, 1], 4: [1]}
    """
    found: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        if label is None:
            continue
        for value in np.flatnonzero(np.bincount(np.asarray(label, dtype=np.int64).ravel())).tolist():
            if value:  # (bincount: one pass over a case's labels, unlike np.unique's sort)
                found.setdefault(int(value), []).append(index)
    return dict(sorted(found.items()))


def class_balanced_patch(
    classes: dict[int, list[int]], rng: np.random.Generator, foreground_fraction: float
) -> tuple[int, int] | None:
    """Whether a patch is centred on tumor, and then on which class and case, every tumor class alike.

    With probability `foreground_fraction` a tumor class is drawn uniformly among the classes of
    the dataset (`cases_per_class`), then a case holding it; the patch is centred on a voxel of that
    class (like nnU-Net's oversampling of foreground classes, across cases: a class that only some
    cases hold, such as the resection cavity of post-treatment cases, or small, such as enhancing
    tumor, is centred on as often as edema, which fills most tumor voxels). Otherwise None: the
    patch is placed at random in the case the epoch's order gives.

    Example:
        >>> class_balanced_patch({1: [0], 4: [2, 3]}, np.random.default_rng(0), 1.0)
        (4, 2)
        >>> class_balanced_patch({1: [0]}, np.random.default_rng(0), 0.0) is None
        True
    """
    if not classes or not (foreground_fraction > 0 and rng.random() < foreground_fraction):
        return None
    values = list(classes)
    value = values[int(rng.integers(len(values)))]
    holders = classes[value]
    return value, holders[int(rng.integers(len(holders)))]
