"""Reading, checking and preprocessing cases; inverting the preprocessing."""

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tfbrats.data import (
    Case,
    CaseError,
    crop,
    find_cases,
    labels_to_dataset,
    labels_to_internal,
    load_case,
    nonzero_box,
    uncrop,
    write_labels_nifti,
    zscore_nonzero,
)


@pytest.fixture()
def case_copy(tmp_path: Path, brats2020: Path) -> Case:
    """A writable copy of the first synthetic case."""
    shutil.copytree(brats2020 / "BraTS20_Training_001", tmp_path / "BraTS20_Training_001")
    return find_cases(tmp_path).cases[0]


def _rewrite(path: Path, change) -> None:
    image = nib.load(path)
    data, affine = change(np.asarray(image.dataobj), image.affine.copy())
    changed = nib.Nifti1Image(data, affine, image.header)
    changed.set_data_dtype(data.dtype)
    changed.to_filename(path)


def test_load_case_values(brats2020: Path) -> None:
    case = find_cases(brats2020).cases[0]
    pre = load_case(case)
    flair_xyz = np.asarray(nib.load(case.images["flair"]).dataobj, dtype=np.float32)
    seg_xyz = np.asarray(nib.load(case.seg).dataobj)
    assert pre.image.dtype == np.float32 and pre.image.shape[-1] == 3
    assert pre.meta.original_shape == (32, 48, 48)  # (D, H, W) = (z, y, x)
    assert pre.meta.channels == ("flair", "t1ce", "t2")
    # The axis mapping: image[d, h, w] is nibabel's [x=w, y=h, z=d] inside the box.
    full = uncrop(pre.image[..., 0], pre.meta)
    brain = flair_xyz.transpose(2, 1, 0) != 0
    expected = zscore_nonzero(flair_xyz.transpose(2, 1, 0))
    np.testing.assert_allclose(full, expected, atol=1e-6)
    assert np.array_equal(uncrop(pre.label, pre.meta), labels_to_internal(seg_xyz.transpose(2, 1, 0), 4))
    assert np.all(full[~brain] == 0)
    assert pre.label.dtype == np.uint8 and set(np.unique(pre.label)) <= {0, 1, 2, 3}
    assert pre.meta.spacing == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(pre.meta.affine, nib.load(case.images["flair"]).affine)


def test_zscore_over_brain_only() -> None:
    rng = np.random.default_rng(0)
    volume = np.zeros((10, 12, 14), np.float32)
    volume[2:8, 3:9, 4:10] = rng.uniform(100, 900, size=(6, 6, 6))
    out = zscore_nonzero(volume)
    brain = volume != 0
    assert abs(out[brain].mean()) < 1e-5 and abs(out[brain].std() - 1) < 1e-5
    assert np.all(out[~brain] == 0)
    values = volume[brain].astype(np.float64)
    np.testing.assert_allclose(out[brain], (values - values.mean()) / values.std(), rtol=1e-5)


def test_normalised_case_statistics(brats2020: Path) -> None:
    pre = load_case(find_cases(brats2020).cases[1], input_channels=4)
    assert pre.image.shape[-1] == 4 and pre.meta.channels[-1] == "t1"
    for c in range(4):
        channel = pre.image[..., c]
        brain = channel != 0
        assert abs(channel[brain].mean()) < 1e-4 and abs(channel[brain].std() - 1) < 1e-4


def test_crop_then_uncrop_is_exact() -> None:
    rng = np.random.default_rng(1)
    volume = np.zeros((9, 11, 13), np.float32)
    volume[2:7, 1:10, 3:8] = rng.normal(size=(5, 9, 5)) + 5
    box = nonzero_box(volume != 0)
    assert box == ((2, 7), (1, 10), (3, 8))

    class Meta:
        case_id, original_shape = "x", volume.shape

    Meta.box = box
    assert np.array_equal(uncrop(crop(volume, box), Meta), volume)
    stacked = np.stack([volume, -volume], -1)
    assert np.array_equal(uncrop(crop(stacked, box), Meta), stacked)


def test_label_mapping_both_ways() -> None:
    for et in (4, 3):
        seg = np.array([[0, 1], [2, et]])
        internal = labels_to_internal(seg, et)
        assert internal.tolist() == [[0, 1], [2, 3]] and internal.dtype == np.uint8
        assert np.array_equal(labels_to_dataset(internal, et), seg)
    with pytest.raises(ValueError, match="0..3"):
        labels_to_dataset(np.array([5]), 4)


def test_write_labels_nifti_round_trip(brats2020: Path, tmp_path: Path) -> None:
    case = find_cases(brats2020).cases[0]
    pre = load_case(case)
    out = write_labels_nifti(uncrop(pre.label, pre.meta), pre.meta, tmp_path / "pred" / "x.nii.gz")
    written = nib.load(out)
    reference = nib.load(case.seg)
    assert np.array_equal(np.asarray(written.dataobj), np.asarray(reference.dataobj))
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(written.affine, reference.affine)
    assert [p.name for p in out.parent.iterdir()] == ["x.nii.gz"]  # no temporary left behind


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ("missing", r"case BraTS20_Training_001: no file for modality \['t2'\]"),
        ("shape", r"t2 file .*_t2.nii.gz has shape \(48, 48, 31\) but flair has \(48, 48, 32\)"),
        ("affine", r"t2 file .*_t2.nii.gz has an affine that differs"),
        ("nan", r"t2 file .*_t2.nii.gz holds 1 NaN or infinite voxels"),
        ("labels", r"seg file .*_seg.nii.gz holds label values \[3\]; expected only \[0, 1, 2, 4\]"),
        ("truncated", r"t2 file .*_t2.nii.gz .*corrupt or truncated"),
        ("garbage", r"cannot read t2 file .*_t2.nii.gz as NIfTI.*corrupt or truncated"),
    ],
)
def test_bad_inputs_name_case_file_and_expectation(case_copy: Case, change: str, match: str) -> None:
    t2 = case_copy.images["t2"]
    if change == "missing":
        t2.unlink()
        case_copy = find_cases(t2.parent).cases[0]
    elif change == "shape":
        _rewrite(t2, lambda d, a: (d[:, :, :31], a))
    elif change == "affine":
        _rewrite(t2, lambda d, a: (d, a + np.diag([0.0, 0.0, 0.01, 0.0])))
    elif change == "nan":
        _rewrite(t2, lambda d, a: (np.where(np.arange(d.size).reshape(d.shape) == 5, np.nan, d).astype(np.float32), a))
    elif change == "labels":
        _rewrite(case_copy.seg, lambda d, a: (np.where(d == 4, 3, d).astype(np.uint8), a))
    elif change == "truncated":
        raw = t2.read_bytes()
        t2.write_bytes(raw[: len(raw) // 2])
    elif change == "garbage":
        t2.write_bytes(gzip.compress(b"not a nifti file at all" * 10))
    with pytest.raises(CaseError, match=match):
        load_case(case_copy)


def test_t1_only_required_for_four_channels(case_copy: Case) -> None:
    case_copy.images["t1"].unlink()
    case = find_cases(case_copy.images["flair"].parent).cases[0]
    assert load_case(case).image.shape[-1] == 3
    with pytest.raises(CaseError, match=r"no file for modality \['t1'\].*input_channels=4"):
        load_case(case, input_channels=4)
