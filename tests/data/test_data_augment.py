"""Augmentation: image/label alignment, label range, shapes, reproducibility."""

import numpy as np
import pytest

from tfbrats.data import AugmentConfig, augment_patch

GEOMETRY = AugmentConfig(elastic=1.0, flip=0.5, rotate=1.0, scale=1.0, gamma=0.0, brightness=0.0, noise=0.0, blur=0.0)
EVERYTHING = AugmentConfig(elastic=1.0, flip=0.5, rotate=1.0, scale=1.0, gamma=1.0, brightness=1.0, noise=1.0, blur=1.0)


def _blocks(depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels in blocks, and an image whose intensity equals the label in every channel."""
    label = np.zeros((depth, 48, 48), np.int32)
    label[:, 8:30, 10:34] = 2
    label[:, 14:24, 16:28] = 1
    label[:, 17:21, 20:24] = 3
    label[:, 34:44, 30:44] = 3
    return np.repeat(label[..., None].astype(np.float32), 2, axis=-1), label


@pytest.mark.parametrize("depth", [12, 1])
def test_geometry_keeps_image_and_labels_aligned(depth: int) -> None:
    image, label = _blocks(depth)
    for seed in range(4):
        x, y = augment_patch(image, label, GEOMETRY, np.random.default_rng(seed))
        assert x.shape == image.shape and y.shape == label.shape and y.dtype == np.int32
        assert set(np.unique(y)) <= {0, 1, 2, 3}
        # Where the linearly interpolated image is (nearly) a pure label, it names the label voxel's class.
        pure = np.abs(x[..., 0] - np.rint(x[..., 0])) < 0.05
        agree = np.rint(x[..., 0])[pure] == y[pure]
        assert pure.mean() > 0.6 and agree.mean() > 0.98


def test_flips_are_exact() -> None:
    image, label = _blocks(12)
    flips = AugmentConfig(elastic=0, flip=1.0, rotate=0, scale=0, gamma=0, brightness=0, noise=0, blur=0)
    x, y = augment_patch(image, label, flips, np.random.default_rng(0))
    assert np.array_equal(y, label[::-1, ::-1, ::-1]) and np.array_equal(x[..., 0], y.astype(np.float32))


@pytest.mark.parametrize("depth", [12, 1])
def test_reproducible_under_a_seed(depth: int) -> None:
    image, label = _blocks(depth)
    image = image + np.random.default_rng(9).normal(size=image.shape).astype(np.float32)
    a = augment_patch(image, label, EVERYTHING, np.random.default_rng(7))
    b = augment_patch(image, label, EVERYTHING, np.random.default_rng(7))
    c = augment_patch(image, label, EVERYTHING, np.random.default_rng(8))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert np.all(np.isfinite(a[0])) and a[0].dtype == np.float32 and set(np.unique(a[1])) <= {0, 1, 2, 3}


def test_intensity_transforms_leave_labels_and_respect_probabilities() -> None:
    image, label = _blocks(8)
    image = image - 1.5  # negative z-scores: gamma must stay finite
    intensity = AugmentConfig(elastic=0, flip=0, rotate=0, scale=0, gamma=1.0, brightness=1.0, noise=1.0, blur=1.0)
    x, y = augment_patch(image, label, intensity, np.random.default_rng(1))
    assert np.array_equal(y, label) and np.all(np.isfinite(x)) and not np.allclose(x, image)
    nothing = AugmentConfig(elastic=0, flip=0, rotate=0, scale=0, gamma=0, brightness=0, noise=0, blur=0)
    x, y = augment_patch(image, label, nothing, np.random.default_rng(1))
    assert np.array_equal(x, image) and np.array_equal(y, label)
    with pytest.raises(ValueError, match="AugmentConfig.noise is a probability"):
        AugmentConfig(noise=1.5)
