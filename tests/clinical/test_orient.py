"""Reorientation to the BraTS storage order keeps every voxel at its world position."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from clinical_helpers import TUMOR_CENTER, centered_image, oblique_direction, phantom, write_dicom_series

from tfbrats.clinical import orientation_code, read_dicom_series, to_brats_orientation

# LPS-world direction matrices (columns = index axes) named by the DICOM orientation code.
DIRECTIONS = {
    "LPS": np.eye(3),
    "LAS": np.diag([1.0, -1.0, 1.0]),
    "RAS": np.diag([-1.0, -1.0, 1.0]),
    "sagittal PSR": np.array([[0, 0, -1], [1, 0, 0], [0, 1, 0]], dtype=float).T,
    "oblique": oblique_direction(),
}


def _world_of_brightest_tumor(image: sitk.Image) -> np.ndarray:
    """World position (LPS) of the intensity-weighted centre of the tumor's bright FLAIR signal."""
    array = sitk.GetArrayFromImage(image)
    k, j, i = np.nonzero(array > 150)
    weights = array[k, j, i]
    index = np.array([np.average(i, weights=weights), np.average(j, weights=weights),
                      np.average(k, weights=weights)])
    return np.array(image.TransformContinuousIndexToPhysicalPoint(index.tolist()))


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_reoriented_volume_is_axial_with_world_coordinates_kept(name):
    image = centered_image((40, 48, 32), (1.4, 1.2, 2.0), DIRECTIONS[name], modality="flair")
    result = to_brats_orientation(image)
    assert orientation_code(result) == "LPS"
    direction = np.array(result.GetDirection()).reshape(3, 3)
    assert np.argmax(np.abs(direction[:, 2])) == 2  # third axis runs head-foot: axial slices
    assert np.all(np.diag(direction) > 0.9)
    if name != "oblique":
        np.testing.assert_array_equal(direction, np.eye(3))
    # Every voxel holds the phantom's value at its own world position.
    rng = np.random.default_rng(0)
    for index in rng.integers(0, result.GetSize(), size=(20, 3)):
        point = np.array(result.TransformIndexToPhysicalPoint(index.tolist()))
        assert result[index.tolist()] == pytest.approx(phantom(point, "flair"), rel=1e-5, abs=1e-3)
    np.testing.assert_allclose(_world_of_brightest_tumor(result), TUMOR_CENTER, atol=0.5)


def test_las_dicom_series_ends_axial_like_brats_files(tmp_path):
    image = centered_image((40, 48, 32), (1.4, 1.2, 2.0), DIRECTIONS["LAS"], modality="flair")
    write_dicom_series(tmp_path / "las", image)
    read, _ = read_dicom_series(tmp_path / "las")
    # DICOM slice frames are right-handed: the LAS stack is read as LAI (slices along -S).
    assert orientation_code(read) == "LAI"
    result = to_brats_orientation(read)
    sitk.WriteImage(result, str(tmp_path / "flair.nii.gz"))
    assert nib.aff2axcodes(nib.load(tmp_path / "flair.nii.gz").affine) == ("L", "P", "S")
    np.testing.assert_allclose(_world_of_brightest_tumor(result), TUMOR_CENTER, atol=0.5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result),
                                  np.round(sitk.GetArrayFromImage(image))[:, ::-1, :])
