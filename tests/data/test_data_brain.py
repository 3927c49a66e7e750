"""The whole-head rule: a case's nonzero region measured against the size of a brain."""

import numpy as np
import pytest

from tfbrats.data.brain import MAX_BRAIN_ML, MAX_IMAGE_FRACTION, brain_extent

BRAIN_AXES = np.array([56.0, 80.0, 66.0])  # (D, H, W) = (S-I, A-P, L-R) semi-axes in mm: 1239 ml
LAYERS_MM = 17.0  # CSF, skull, scalp fat and skin around it: the head ellipsoid holds 2462 ml


def ellipsoid(shape, spacing, axes):
    """Boolean ellipsoid with semi-axes `axes` (mm) centred in a `(D, H, W)` grid of `spacing` mm."""
    grid = np.meshgrid(*((np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)), indexing="ij")
    return sum((g / a) ** 2 for g, a in zip(grid, axes)) < 1.0


def test_a_brain_in_a_brats_grid_is_not_a_whole_head():
    brain = ellipsoid((155, 240, 240), (1.0, 1.0, 1.0), BRAIN_AXES)
    extent = brain_extent(brain, (1.0, 1.0, 1.0))
    assert extent.volume_ml == pytest.approx(4 / 3 * np.pi * np.prod(BRAIN_AXES) / 1000, rel=0.01)
    np.testing.assert_allclose(extent.extent_mm, 2 * BRAIN_AXES, atol=2.0)
    assert extent.image_fraction == pytest.approx(np.count_nonzero(brain) / brain.size)
    assert not extent.whole_head and extent.reasons == [] and extent.warning("c1") is None
    assert extent.to_json()["whole_head"] is False


def test_a_head_out_to_the_skin_is_too_big_for_a_brain():
    head = ellipsoid((155, 240, 240), (1.0, 1.0, 1.0), BRAIN_AXES + LAYERS_MM)
    extent = brain_extent(head, (1.0, 1.0, 1.0))
    assert extent.volume_ml > MAX_BRAIN_ML and extent.image_fraction < MAX_IMAGE_FRACTION
    assert extent.whole_head and len(extent.reasons) == 1
    assert f"holds {extent.volume_ml:.0f} ml" in extent.warning("P001")
    assert extent.warning("P001").startswith("case P001 looks like a whole head")
    # The same voxels at 0.5 mm are an eighth of the volume: a brain.
    assert not brain_extent(head, (0.5, 0.5, 0.5)).whole_head


def test_noise_in_the_air_makes_a_small_field_of_view_a_whole_head():
    # 100 x 120 x 110 mm holds only 1.3 litres, but every voxel is nonzero.
    noisy = np.random.default_rng(0).rayleigh(4.0, (100, 120, 110)) != 0
    extent = brain_extent(noisy, (1.0, 1.0, 1.0))
    assert extent.volume_ml < MAX_BRAIN_ML and extent.image_fraction == 1.0
    assert extent.whole_head and "100 % of the image is nonzero" in extent.warning("c")


def test_a_crop_is_measured_against_the_whole_image():
    brain = ellipsoid((155, 240, 240), (1.0, 1.0, 1.0), BRAIN_AXES)
    d, h, w = (np.flatnonzero(brain.any(axis=tuple(a for a in range(3) if a != k))) for k in range(3))
    cropped = brain[d[0]:d[-1] + 1, h[0]:h[-1] + 1, w[0]:w[-1] + 1]
    assert brain_extent(cropped, (1.0, 1.0, 1.0)).whole_head is False  # an ellipsoid fills ~52 % of its box
    whole = brain_extent(cropped, (1.0, 1.0, 1.0), image_voxels=brain.size)
    assert whole.image_fraction == pytest.approx(np.count_nonzero(brain) / brain.size)
    assert whole.volume_ml == brain_extent(brain, (1.0, 1.0, 1.0)).volume_ml
    with pytest.raises(ValueError, match="image_voxels 10 is smaller than the mask's"):
        brain_extent(cropped, (1.0, 1.0, 1.0), image_voxels=10)
    with pytest.raises(ValueError, match=r"expected a \(D, H, W\) mask and three voxel sizes"):
        brain_extent(cropped[0], (1.0, 1.0))
