"""Rigid registration accuracy, 1 mm resampling and mask application."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from clinical_helpers import TUMOR_CENTER, centered_image, oblique_direction, rigid

from tfbrats.clinical import apply_mask, brats_grid, register_rigid, resample_to_grid
from tfbrats.clinical.register import RegistrationSettings, rotation_angle_degrees, transform_to_json

HEAD_CENTER = np.array([10.0, -20.0, 30.0])
# 5 degrees about an oblique axis and 3 mm along an oblique direction.
SHIFT = rigid((1, 2, 3), 5.0, 3.0 * np.array([2.0, -1.5, 1.5]) / np.linalg.norm([2.0, -1.5, 1.5]),
              HEAD_CENTER)


def registration_errors(estimated: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Largest displacement difference (mm) over points in the head, and the rotation error (deg)."""
    points = np.random.default_rng(0).uniform(-20, 20, (2000, 3)) + HEAD_CENTER
    moved = points @ estimated[:3, :3].T + estimated[:3, 3]
    expected = points @ true[:3, :3].T + true[:3, 3]
    distance = float(np.linalg.norm(moved - expected, axis=1).max())
    return distance, rotation_angle_degrees(estimated[:3, :3] @ true[:3, :3].T)


def _register(modality: str, settings: RegistrationSettings | None = None):
    fixed = centered_image((40, 48, 32), (1.6, 1.6, 1.6))
    moving = centered_image((40, 48, 32), (1.6, 1.6, 1.6), modality=modality, transform=SHIFT)
    result = register_rigid(fixed, moving, settings=settings)
    return fixed, moving, result, np.array(transform_to_json(result.transform)["matrix_lps_fixed_to_moving"])


@pytest.mark.parametrize("modality", ["t1ce", "flair"])
def test_known_rigid_shift_is_recovered(modality):
    fixed, moving, result, estimated = _register(modality)
    before = registration_errors(np.eye(4), SHIFT)
    distance, degrees = registration_errors(estimated, SHIFT)
    assert before[0] > 3.0 and before[1] == pytest.approx(5.0)
    assert distance < 0.3  # docs/clinical.md's claim
    assert degrees < 0.3
    assert result.metric_final < result.metric_initial
    # The moving scan resampled through the transform equals the same modality drawn on the fixed
    # grid without motion (an inverted or shifted image would not), far better than before registration.
    truth = sitk.GetArrayFromImage(centered_image((40, 48, 32), (1.6, 1.6, 1.6), modality=modality))
    inside = sitk.GetArrayFromImage(fixed) > 1.0
    aligned = sitk.GetArrayFromImage(resample_to_grid(moving, fixed, result.transform))[inside]
    unaligned = sitk.GetArrayFromImage(resample_to_grid(moving, fixed))[inside]
    assert np.corrcoef(aligned, truth[inside])[0, 1] > 0.999
    assert np.abs(aligned - truth[inside]).mean() < 0.1 * np.abs(unaligned - truth[inside]).mean()


def test_registration_is_reproducible_and_every_seed_is_close():
    first = _register("flair")[3]
    np.testing.assert_allclose(_register("flair")[3], first, atol=1e-9)  # seeded sampling: the same transform
    errors = np.array([registration_errors(_register(modality, RegistrationSettings(seed=seed))[3], SHIFT)
                       for seed in range(2, 6) for modality in ("t1ce", "flair")])
    assert errors[:, 0].max() < 0.3 and errors[:, 1].max() < 0.5  # docs/clinical.md's claim over seeds
    with pytest.raises(ValueError, match="seed is 0.*clock"):
        RegistrationSettings(seed=0)


def test_resampling_to_1mm_gives_expected_shape_and_spacing():
    image = centered_image((40, 48, 32), (0.9, 1.1, 2.5))
    grid = brats_grid(image, 1.0)
    resampled = resample_to_grid(image, grid)
    assert resampled.GetSize() == (36, 53, 80)  # round(size * spacing)
    assert resampled.GetSpacing() == (1.0, 1.0, 1.0)
    assert resampled.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert resampled.GetPixelID() == sitk.sitkFloat32
    # The footprint is the reference's: outer voxel faces coincide.
    low_face = np.array(image.GetOrigin()) - np.array(image.GetSpacing()) / 2
    np.testing.assert_allclose(np.array(resampled.GetOrigin()) - 0.5, low_face, atol=1e-9)
    # Values at the phantom's tumour centre survive the linear interpolation.
    index = resampled.TransformPhysicalPointToIndex(TUMOR_CENTER.tolist())
    original = image.TransformPhysicalPointToContinuousIndex(TUMOR_CENTER.tolist())
    assert resampled[index] == pytest.approx(
        sitk.GetArrayViewFromImage(image)[tuple(int(round(c)) for c in original[::-1])], rel=0.05)


def test_oblique_reference_grid_is_axis_aligned_box():
    image = centered_image((20, 24, 16), (2.0, 2.0, 2.0), oblique_direction())
    grid = brats_grid(image, 1.0)
    assert grid.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert all(g > s * 2 for g, s in zip(grid.GetSize(), image.GetSize()))
    center = np.array(grid.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in grid.GetSize()]))
    np.testing.assert_allclose(center, HEAD_CENTER, atol=0.51)


def test_masks_resample_with_nearest_neighbour_and_keep_labels():
    columns = np.broadcast_to(np.arange(4, dtype=np.uint8), (4, 4, 4))
    labels = sitk.GetImageFromArray(np.ascontiguousarray(columns))
    labels.SetSpacing((3.0, 3.0, 3.0))
    grid = brats_grid(labels, 1.0)
    resampled = resample_to_grid(labels, grid, interpolator="nearest")
    assert resampled.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayFromImage(resampled))) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="interpolator 'cubic'"):
        resample_to_grid(labels, grid, interpolator="cubic")


def test_mask_on_another_grid_zeroes_voxels_outside():
    image = centered_image((40, 48, 32), (1.0, 1.0, 1.0), modality="t2")
    # A coarse, oblique box mask around the head centre: inside |p - centre| < 10 mm per axis.
    mask = sitk.GetImageFromArray(np.ones((10, 10, 10), np.uint8))
    mask.SetSpacing((2.0, 2.0, 2.0))
    direction = oblique_direction()
    mask.SetDirection(tuple(direction.ravel()))
    mask.SetOrigin(tuple(HEAD_CENTER - direction @ np.full(3, 9.0)))
    masked = apply_mask(image, mask)
    before, after = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(masked)
    inside = sitk.GetArrayFromImage(resample_to_grid(mask, image, interpolator="nearest")) > 0
    assert 0 < inside.sum() < inside.size
    np.testing.assert_array_equal(after[inside], before[inside])
    assert np.all(after[~inside] == 0)
    assert np.count_nonzero(before[~inside]) > 0
