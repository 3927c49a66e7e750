"""Value checks of a whole folder before training: a NaN voxel or an unknown label in the last case."""

import gzip
import io
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tfbrats.data import CaseError, check_case_values, check_cases, find_cases


@pytest.fixture
def folder(brats2020: Path, tmp_path: Path) -> Path:
    root = tmp_path / "brats"
    shutil.copytree(brats2020, root)
    return root


def _rewrite(path: Path, change) -> None:
    image = nib.load(path)
    data = change(np.asarray(image.dataobj))
    nib.save(nib.Nifti1Image(data, image.affine), path)


def _nan_at_voxel(data: np.ndarray) -> np.ndarray:
    out = data.astype(np.float32)
    out[20, 21, 11] = np.nan
    return out


def _label_five(data: np.ndarray) -> np.ndarray:
    out = data.astype(np.uint8)
    out[0, 0, 0] = 5
    return out


def test_a_clean_folder_passes_and_only_labels_are_read(folder: Path) -> None:
    cases = find_cases(folder).cases
    check_cases(cases)
    # int16 images cannot hold NaN: only the segmentation's voxels are read.
    assert [check_case_values(case) for case in cases] == [["seg"]] * 4


@pytest.mark.parametrize(
    ("fault", "match"),
    [
        ("nan", r"1 of 4 case\(s\).*\ncase BraTS20_Training_004: flair file .*004_flair.nii.gz holds 1 NaN"),
        ("label", r"1 of 4 case\(s\).*\ncase BraTS20_Training_004: seg file .*004_seg.nii.gz holds label values "
                  r"\[5\]; expected only \[0, 1, 2, 4\]"),
    ],
)
def test_a_fault_in_the_last_case_is_found(folder: Path, fault: str, match: str) -> None:
    cases = find_cases(folder).cases
    last = cases[-1]
    if fault == "nan":
        _rewrite(last.images["flair"], _nan_at_voxel)
        assert check_case_values(cases[0]) == ["seg"]
    else:
        _rewrite(last.seg, _label_five)
    with pytest.raises(CaseError, match=match):
        check_cases(cases, workers=2)


def test_every_bad_case_is_listed_in_order(folder: Path) -> None:
    cases = find_cases(folder).cases
    _rewrite(cases[1].seg, _label_five)
    _rewrite(cases[3].images["t2"], _nan_at_voxel)
    with pytest.raises(CaseError) as raised:
        check_cases(cases)
    lines = str(raised.value).splitlines()
    assert lines[0] == "2 of 4 case(s) cannot be used:"
    assert lines[1].startswith("case BraTS20_Training_002: seg file") and "[5]" in lines[1]
    assert lines[2].startswith("case BraTS20_Training_004: t2 file") and "1 NaN" in lines[2]


def test_an_image_stored_as_floats_is_read(folder: Path) -> None:
    case = find_cases(folder).cases[0]
    _rewrite(case.images["t2"], lambda d: d.astype(np.float32))
    assert check_case_values(case) == ["t2", "seg"]


def _scale(path: Path, slope: float) -> None:
    """Sets a stored file's scl_slope in place (nibabel resets the scaling of the images it saves)."""
    raw = gzip.decompress(path.read_bytes())
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(raw))
    header["scl_slope"], header["scl_inter"] = slope, 0.0
    path.write_bytes(gzip.compress(header.binaryblock + raw[len(header.binaryblock):]))


def test_integers_scaled_past_float32_are_read_and_refused(folder: Path) -> None:
    cases = find_cases(folder).cases
    flair = cases[2].images["flair"]
    stored = np.asarray(nib.load(flair).dataobj)
    assert stored.dtype == np.int16
    _scale(flair, 1e37)
    # Independently: the stored values whose scaled magnitude float32 cannot hold.
    overflowing = int(np.count_nonzero(np.abs(stored.astype(np.float64) * 1e37) > np.finfo(np.float32).max))
    assert 0 < overflowing < stored.size
    with pytest.raises(CaseError, match=rf"case BraTS20_Training_003: flair file {flair} holds {overflowing} NaN or "
                                        r"infinite voxels"):
        check_cases(cases, workers=2)
    _scale(flair, 1e30)  # 32767e30 fits float32 with room to spare: not read
    assert check_case_values(cases[2]) == ["seg"]
