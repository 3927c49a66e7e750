"""DICOM series reading: voxels, affine, rescale, the two pixel readers, and broken or hostile series."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from clinical_helpers import centered_image, oblique_direction, write_dicom_series

from tfbrats.clinical import (
    DicomReaderUnavailable,
    DicomSeriesError,
    dicom_reader_version,
    image_affine,
    read_dicom_series,
)

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


def _modality_values(image: sitk.Image, slope: float, intercept: float) -> np.ndarray:
    """Stored values x slope + intercept in float64, the stored values rounded as the writer rounds them."""
    stored = np.round((sitk.GetArrayFromImage(image).astype(np.float64) - intercept) / slope)
    return stored * slope + intercept


RESCALES = [(False, 0.5, -3.0), (True, 2.0, -100.0), (False, 1.0, -1024.0), (True, 0.1, 12.5)]


@pytest.mark.parametrize(("signed", "slope", "intercept"), RESCALES)
def test_rescale_slope_and_intercept_is_exact(tmp_path, signed, slope, intercept):
    image = centered_image((16, 12, 4), (2.0, 2.0, 3.0)) * 10.0 - (200.0 if signed else 0.0)
    write_dicom_series(tmp_path, image, signed=signed, slope=slope, intercept=intercept)
    read, info = read_dicom_series(tmp_path)
    values = sitk.GetArrayFromImage(read)
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, _modality_values(image, slope, intercept).astype(np.float32))
    assert info["rescale"] == {"slope": slope, "intercept": intercept}
    assert info["reader"] == f"pydicom {pydicom.__version__}"


def _tfio_or_skip() -> None:
    try:
        dicom_reader_version("tfio")
    except DicomReaderUnavailable as error:
        pytest.skip(f"no second reader to compare with: {error}")


@pytest.mark.parametrize(("signed", "slope", "intercept"), [(True, None, None), (False, None, None), *RESCALES])
def test_pydicom_and_tfio_readers_agree(tmp_path, signed, slope, intercept):
    _tfio_or_skip()
    image = centered_image((40, 48, 6), SPACING, oblique_direction()) * 10.0 - (300.0 if signed else 0.0)
    write_dicom_series(tmp_path, image, signed=signed, slope=slope, intercept=intercept)
    exact, exact_info = read_dicom_series(tmp_path, reader="pydicom")
    tfio, tfio_info = read_dicom_series(tmp_path, reader="tfio")
    assert tfio_info["reader"].startswith("tensorflow-io ")
    assert {k: v for k, v in tfio_info.items() if k != "reader"} == {
        k: v for k, v in exact_info.items() if k != "reader"}
    np.testing.assert_array_equal(image_affine(tfio), image_affine(exact))
    exact, tfio = sitk.GetArrayFromImage(exact), sitk.GetArrayFromImage(tfio)
    assert exact.dtype == tfio.dtype == np.float32
    values = _modality_values(image, slope or 1.0, intercept or 0.0)
    np.testing.assert_array_equal(exact, values.astype(np.float32))
    if float(slope or 1.0).is_integer() and float(intercept or 0.0).is_integer():
        np.testing.assert_array_equal(tfio, exact)  # integer modality values: identical
    else:  # DCMTK holds modality values as integers truncated toward zero
        np.testing.assert_array_equal(tfio, np.trunc(values).astype(np.float32))
        assert 0 < np.abs(tfio - exact).max() < 1


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


def test_import_and_dicom_reading_do_not_load_tensorflow(oblique_series):
    code = ("import sys, tfbrats.clinical as c; c.read_dicom_series(sys.argv[1]); "
            "print(sorted(m for m in ('tensorflow', 'tensorflow_io', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(oblique_series[0])], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture
def broken_tensorflow_io(tmp_path):
    """A folder holding a `tensorflow_io` that imports but whose kernels fail to load, as 0.37.1 does
    on TensorFlow 2.17 and later; it leaves a marker file when its kernels are touched."""
    ops = tmp_path / "site" / "tensorflow_io" / "python" / "ops"
    ops.mkdir(parents=True)
    (ops.parents[1] / "__init__.py").write_text("")
    (ops.parent / "__init__.py").write_text("")
    (ops / "__init__.py").write_text(
        "import pathlib\n"
        "class _Kernels:\n"
        "    def __getattr__(self, name):\n"
        f"        pathlib.Path({str(tmp_path / 'touched')!r}).touch()\n"
        "        raise NotImplementedError('unable to open file: libtensorflow_io.so, caused by: undefined '\n"
        "                                  'symbol: _ZN3tsl8internal10LogMessageC1EPKcii')\n"
        "core_ops = _Kernels()\n")
    return tmp_path / "site"


def test_tfio_that_does_not_load_is_one_clear_error(broken_tensorflow_io, monkeypatch):
    for name in [m for m in sys.modules if m == "tensorflow_io" or m.startswith("tensorflow_io.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(broken_tensorflow_io))
    with pytest.raises(DicomReaderUnavailable, match=r"tensorflow-io DICOM reader is unavailable "
                       r"\(NotImplementedError: .*undefined symbol.*\); .*--dicom_reader=pydicom"):
        dicom_reader_version("tfio")
    monkeypatch.setitem(sys.modules, "tensorflow_io", None)  # not installed
    with pytest.raises(DicomReaderUnavailable, match=r"unavailable \(ModuleNotFoundError"):
        dicom_reader_version("tfio")
    with pytest.raises(ValueError, match=r"DICOM reader 'dcmtk' is unknown; use one of \['pydicom', 'tfio'\]"):
        dicom_reader_version("dcmtk")


def test_cli_works_where_tensorflow_io_does_not_load(tmp_path, broken_tensorflow_io):
    series = tmp_path / "T1C"
    write_dicom_series(series, centered_image((24, 28, 16), (2.5, 2.5, 2.5)) * 10.0)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(broken_tensorflow_io), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "tfbrats.clinical", f"--t1c={series}", f"--t2={series}", f"--flair={series}",
               "--no_mask", "--nofigure", f"--out={tmp_path / 'out'}"]
    done = subprocess.run([*command, "--case_id=P1"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "P1" / "P1_t1ce.nii.gz").exists()
    assert not (tmp_path / "touched").exists()  # the default reader never touches tensorflow-io
    done = subprocess.run([*command, "--case_id=P2", "--dicom_reader=tfio"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "undefined symbol" in errors[0] and "--dicom_reader=pydicom" in errors[0]
    assert not (tmp_path / "out" / "P2").exists()


def _edit(path, **tags) -> None:
    """Rewrite DICOM tags of one file in place."""
    ds = pydicom.dcmread(path)
    for name, value in tags.items():
        setattr(ds, name, value)
    ds.save_as(path)


def _about(path) -> str:
    """A pattern for a one-line message that begins with `path`."""
    return rf"^{re.escape(str(path))}: [^\n]*"


SLICE = (64, 48, 4)  # 64 x 48 int16 pixels: 6144 bytes of pixel data per file


def test_pixel_data_cut_short_names_the_file(tmp_path):
    paths = write_dicom_series(tmp_path, centered_image(SLICE, (1.0, 1.0, 3.0)))
    with open(paths[2], "r+b") as f:  # the end of the file, in the middle of the pixel data, is lost
        f.truncate(paths[2].stat().st_size - 3000)
    with pytest.raises(DicomSeriesError, match=_about(paths[2]) + "pixel data cut short: Rows 48 x Columns 64 x "
                                               "16 bits declare 6144 bytes, the file holds 3144; "):
        read_dicom_series(tmp_path)


def test_pixel_data_element_shorter_than_declared(tmp_path):
    paths = write_dicom_series(tmp_path, centered_image(SLICE, (1.0, 1.0, 3.0)))
    _edit(paths[1], PixelData=pydicom.dcmread(paths[1]).PixelData[:-3000])
    with pytest.raises(DicomSeriesError, match=_about(paths[1]) + "declare 6144 bytes, the file holds 3144;"):
        read_dicom_series(tmp_path)


def test_huge_declared_size_is_refused_before_decoding(tmp_path):
    # Every slice claims 30000 x 30000 pixels, so the series is consistent; a decoder would allocate
    # gigabytes per slice.
    paths = write_dicom_series(tmp_path, centered_image(SLICE, (1.0, 1.0, 3.0)))
    for path in paths:
        _edit(path, Rows=30000, Columns=30000)
    first = tmp_path / min(p.name for p in paths)  # files are read in name order
    with pytest.raises(DicomSeriesError, match=_about(first) + "pixel data cut short: Rows 30000 x Columns 30000 x "
                                               "16 bits declare 1800000000 bytes, the file holds 6144;"):
        read_dicom_series(tmp_path)


def test_voxel_limit_per_slice_and_per_series(tmp_path, monkeypatch):
    paths = write_dicom_series(tmp_path, centered_image(SLICE, (1.0, 1.0, 3.0)))
    monkeypatch.setenv("TFBRATS_MAX_VOXELS", "3000")
    first = tmp_path / min(p.name for p in paths)  # files are read in name order
    with pytest.raises(DicomSeriesError, match=_about(first) + r"Rows 48 x Columns 64 = 3072 voxels in one slice, "
                                               r"more than the limit of 3000; .* TFBRATS_MAX_VOXELS=6144\.$"):
        read_dicom_series(tmp_path)
    monkeypatch.setenv("TFBRATS_MAX_VOXELS", "10000")  # every slice fits, the series does not
    with pytest.raises(DicomSeriesError, match=_about(tmp_path) + r"4 slices of 48 x 64 = 12288 voxels, more than "
                                               r"the limit of 10000; .*TFBRATS_MAX_VOXELS=24576\.$"):
        read_dicom_series(tmp_path)
    assert read_dicom_series(tmp_path, max_voxels=12288)[0].GetSize() == SLICE  # the argument wins
    monkeypatch.setenv("TFBRATS_MAX_VOXELS", "12288")
    assert read_dicom_series(tmp_path)[0].GetSize() == SLICE
    monkeypatch.setenv("TFBRATS_MAX_VOXELS", "lots")
    with pytest.raises(ValueError, match="TFBRATS_MAX_VOXELS='lots' is not a positive whole number"):
        read_dicom_series(tmp_path)


@pytest.mark.parametrize(("orientation", "what"), [
    ([0, 0, 0, 0, 0, 0], "has a zero-length direction, so the slice has no orientation in space"),
    ([1, 0, 0, 0, 0, 0], "has a zero-length direction"),
    ([1, 0, 0, 1, 0, 0], "has row and column directions that are not perpendicular"),
])
def test_damaged_orientation_names_the_file(tmp_path, orientation, what):
    paths = write_dicom_series(tmp_path, centered_image((8, 8, 4), (3.0, 3.0, 3.0)))
    _edit(paths[3], ImageOrientationPatient=orientation)
    with pytest.raises(DicomSeriesError, match=_about(paths[3]) + rf"ImageOrientationPatient \[.*\] {what}"):
        read_dicom_series(tmp_path)


def test_zero_rescale_slope_names_the_file(tmp_path):
    paths = write_dicom_series(tmp_path, centered_image((8, 8, 4), (3.0, 3.0, 3.0)), slope=1.0, intercept=0.0)
    _edit(paths[0], RescaleSlope="0")
    with pytest.raises(DicomSeriesError, match=_about(paths[0]) + "RescaleSlope is 0"):
        read_dicom_series(tmp_path)


def test_compressed_series_and_a_missing_decoder(tmp_path):
    image = centered_image((16, 12, 4), (2.0, 2.0, 3.0)) * 10.0 - 200.0
    paths = write_dicom_series(tmp_path, image)
    for path in paths:  # RLE Lossless: pydicom decodes it without plugins
        ds = pydicom.dcmread(path)
        ds.compress(pydicom.uid.RLELossless)
        ds.save_as(path)
    read, _ = read_dicom_series(tmp_path)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), np.round(sitk.GetArrayFromImage(image)))
    ds = pydicom.dcmread(paths[0])
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGLosslessSV1  # data no JPEG decoder can read
    ds.save_as(paths[0])
    with pytest.raises(DicomSeriesError, match=_about(paths[0]) + r"pixel data cannot be decoded \(.*JPEG Lossless"
                                               r".*\); compressed files need pydicom's decoder plugins"):
        read_dicom_series(tmp_path)
