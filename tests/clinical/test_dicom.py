"""DICOM series reading with tensorflow-io: voxels, affine, rescale and the errors of broken series."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from clinical_helpers import centered_image, oblique_direction, write_dicom_series

from tfbrats.clinical import DicomSeriesError, image_affine, read_dicom_series

SIZE = (40, 48, 32)
SPACING = (1.3, 1.1, 2.0)


@pytest.fixture(scope="module")
def oblique_series(tmp_path_factory):
    """An oblique, signed int16 series with negative values, written under shuffled file names."""
    image = centered_image(SIZE, SPACING, oblique_direction())
    image = sitk.Cast(image * 10.0 - 300.0, sitk.sitkFloat32)
    folder = tmp_path_factory.mktemp("oblique")
    write_dicom_series(folder, image, seed=1)
    return folder, np.round(sitk.GetArrayFromImage(image)), image


def test_round_trip_same_voxels_and_affine(oblique_series):
    folder, expected, written = oblique_series
    image, info = read_dicom_series(folder)
    assert image.GetSize() == SIZE
    assert expected.min() < 0
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), expected)
    np.testing.assert_allclose(image_affine(image), image_affine(written), atol=1e-4)
    assert info["files"] == SIZE[2]


def test_geometry_matches_simpleitk_gdcm_reader(oblique_series, tmp_path):
    folder = oblique_series[0]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    gdcm = reader.Execute()
    image, _ = read_dicom_series(folder)
    np.testing.assert_allclose(image.GetOrigin(), gdcm.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), gdcm.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(image.GetDirection(), gdcm.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(gdcm))
    # The RAS affine is the one nibabel reads from the NIfTI SimpleITK writes.
    sitk.WriteImage(image, str(tmp_path / "x.nii.gz"))
    np.testing.assert_allclose(image_affine(image), nib.load(tmp_path / "x.nii.gz").affine, atol=1e-4)


@pytest.mark.parametrize(("signed", "slope", "intercept"),
                         [(False, 0.5, -3.0), (True, 2.0, -100.0), (False, 1.0, -1024.0)])
def test_rescale_slope_and_intercept(tmp_path, signed, slope, intercept):
    image = centered_image((16, 12, 4), (2.0, 2.0, 3.0)) * 10.0 - (200.0 if signed else 0.0)
    write_dicom_series(tmp_path, image, signed=signed, slope=slope, intercept=intercept)
    read, info = read_dicom_series(tmp_path)
    stored = np.round((sitk.GetArrayFromImage(image) - intercept) / slope)
    # DCMTK rounds internally when the slope is not 1 (measured: within 2 stored units).
    np.testing.assert_allclose(sitk.GetArrayFromImage(read), stored * slope + intercept,
                               atol=2 * abs(slope) + 1e-3)
    assert info["rescale"] == {"slope": slope, "intercept": intercept}


def test_two_series_in_one_folder(tmp_path):
    image = centered_image((8, 8, 3), (3.0, 3.0, 3.0))
    write_dicom_series(tmp_path / "a", image, series_uid="1.2.3.100")
    write_dicom_series(tmp_path / "b", image, series_uid="1.2.3.200", seed=5)
    for path in (tmp_path / "b").iterdir():
        path.rename(tmp_path / "a" / f"B_{path.name}")
    with pytest.raises(DicomSeriesError, match=r"holds 2 series.*own folder") as error:
        read_dicom_series(tmp_path / "a")
    assert "1.2.3.100: 3 files, e.g. IM" in str(error.value)
    assert "1.2.3.200: 3 files, e.g. B_IM" in str(error.value)


def test_missing_slice_names_the_neighbours(tmp_path):
    paths = write_dicom_series(tmp_path, centered_image((8, 8, 6), (3.0, 3.0, 2.5)))
    paths[3].unlink()
    with pytest.raises(DicomSeriesError,
                       match=rf"1 slice\(s\) appear to be missing between {paths[2].name} and "
                             rf"{paths[4].name}: gap 5 mm.*spacing is 2.5 mm"):
        read_dicom_series(tmp_path)


def test_inconsistent_spacing_names_the_files(tmp_path):
    image = centered_image((8, 8, 6), (3.0, 3.0, 2.5))
    paths = write_dicom_series(tmp_path, image, series_uid="1.2.3.300")
    shifted = sitk.Image(image)
    shifted.SetOrigin(tuple(np.array(image.GetOrigin()) + [0, 0, 0.7]))
    replacement = write_dicom_series(tmp_path / "tmp", shifted, series_uid="1.2.3.300")
    replacement[5].replace(paths[5])
    (tmp_path / "tmp").rename(tmp_path / ".ignored")
    with pytest.raises(DicomSeriesError, match=rf"inconsistent between {paths[4].name} and {paths[5].name}"):
        read_dicom_series(tmp_path)


def test_folder_without_dicom_files(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DicomSeriesError, match="no DICOM files"):
        read_dicom_series(tmp_path)


def test_import_does_not_load_tensorflow():
    code = ("import sys, tfbrats.clinical; "
            "print(sorted(m for m in ('tensorflow', 'tensorflow_io', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
