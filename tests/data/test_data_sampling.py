"""Patch sampling: shapes, positions inside the padded case, padding, seeding, foreground."""

import numpy as np

from tfbrats.data import pad_to_patch, patch_corner, sample_patch
from tfbrats.data.sampling import padded_shape


def test_patches_lie_inside_the_padded_case() -> None:
    rng = np.random.default_rng(0)
    for shape, patch in [((30, 50, 40), (24, 32, 32)), ((10, 20, 30), (24, 32, 32)), ((5, 40, 40), (1, 32, 32))]:
        padded = padded_shape(shape, patch)
        assert all(p >= max(s, q) for p, s, q in zip(padded, shape, patch))
        for _ in range(50):
            corner = patch_corner(padded, patch, rng)
            assert all(0 <= c and c + q <= p for c, q, p in zip(corner, patch, padded))


def test_sample_patch_matches_the_padded_case() -> None:
    image = np.arange(10 * 20 * 30 * 2, dtype=np.float32).reshape(10, 20, 30, 2) + 1
    label = (np.arange(10 * 20 * 30).reshape(10, 20, 30) % 4).astype(np.uint8)
    patch = (16, 16, 16)
    padded_image, padded_label = pad_to_patch(image, patch), pad_to_patch(label, patch)
    assert padded_image.shape == (16, 20, 30, 2)
    assert np.array_equal(padded_image[3:13, :, :], image)  # symmetric zero padding
    x, y = sample_patch(image, label, patch, np.random.default_rng(4))
    assert x.shape == (16, 16, 16, 2) and x.dtype == np.float32 and y.shape == patch and y.dtype == np.int32
    corner = patch_corner(padded_image.shape, patch, np.random.default_rng(4))
    window = tuple(slice(c, c + q) for c, q in zip(corner, patch))
    assert np.array_equal(x, padded_image[window]) and np.array_equal(y, padded_label[window])
    x2, y2 = sample_patch(image, label, patch, np.random.default_rng(4))
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_foreground_patches_are_centred_on_tumor() -> None:
    label = np.zeros((40, 64, 64), np.uint8)
    label[30:33, 50:54, 5:9] = 2
    image = np.ones(label.shape + (3,), np.float32)
    rng = np.random.default_rng(0)
    hits = [sample_patch(image, label, (8, 16, 16), rng, foreground_fraction=1.0)[1].any() for _ in range(20)]
    assert all(hits)
    plain = [sample_patch(image, label, (8, 16, 16), rng)[1].any() for _ in range(40)]
    assert sum(plain) < 20
    _, empty = sample_patch(image, None, (8, 16, 16), rng, foreground_fraction=1.0)
    assert not empty.any()
