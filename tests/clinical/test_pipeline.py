"""The whole preparation: T1 substitution, sidecar, masking, errors, and the CLI on DICOM series."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from clinical_helpers import TUMOR_CENTER, centered_image, oblique_direction, rigid, write_dicom_series

from tfbrats.clinical import prepare_case
from tfbrats.clinical.register import rotation_angle_degrees

HEAD_CENTER = np.array([10.0, -20.0, 30.0])
FILES = ("t1", "t1ce", "t2", "flair")


def _nifti_scans(folder, motion=None):
    """Write small NIfTI scans of the phantom (T1c finest); `motion` moves the patient for FLAIR."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = {"t1ce": ((36, 40, 30), (1.5, 1.5, 1.5), None),
             "t2": ((30, 34, 20), (1.8, 1.8, 2.4), None),
             "flair": ((30, 34, 20), (1.8, 1.8, 2.4), motion)}
    paths = {}
    for modality, (size, spacing, transform) in specs.items():
        paths[modality] = folder / f"{modality}.nii.gz"
        sitk.WriteImage(centered_image(size, spacing, modality=modality, transform=transform), str(paths[modality]))
    return paths


def _load(case_dir, case_id, modality):
    return nib.load(case_dir / f"{case_id}_{modality}.nii.gz")


def test_missing_t1_is_replaced_by_t1c_and_recorded(tmp_path):
    scans = _nifti_scans(tmp_path / "in")
    case_dir = prepare_case(scans, "case_001", tmp_path / "out", skull_stripped=True)
    assert case_dir == tmp_path / "out" / "case_001"
    assert sorted(p.name for p in case_dir.iterdir()) == sorted(
        [f"case_001_{m}.nii.gz" for m in FILES] + ["case_001_clinical.json"])
    t1, t1ce = _load(case_dir, "case_001", "t1"), _load(case_dir, "case_001", "t1ce")
    np.testing.assert_array_equal(t1.get_fdata(), t1ce.get_fdata())
    sidecar = json.loads((case_dir / "case_001_clinical.json").read_text())
    assert sidecar["t1_substituted"] is True
    assert sidecar["brain_mask"]["source"] == "none" and "--no_mask" in sidecar["brain_mask"]["reason"]
    assert {"step": "substitute", "missing": "t1", "copied_from": "t1ce",
            "reason": "no T1 given; the paper used T1c where T1 was missing"} in sidecar["steps"]
    assert sidecar["reference"] == "t1ce"  # the finest voxels
    assert [s["modality"] for s in sidecar["steps"] if s["step"] == "register"] == ["t1ce", "t2", "flair"]
    # 1 mm isotropic on the reference's footprint, stored as BraTS stores it.
    assert t1ce.shape == (54, 60, 45)
    assert t1ce.header.get_zooms() == (1.0, 1.0, 1.0)
    assert nib.aff2axcodes(t1ce.affine) == ("L", "P", "S")
    assert not list((tmp_path / "out").glob(".*"))  # no staging folder left behind


def test_mask_sets_voxels_outside_to_zero_in_every_output(tmp_path):
    scans = _nifti_scans(tmp_path / "in")
    mask = centered_image((20, 20, 20), (2.0, 2.0, 2.0)) * 0 + 1  # a 40 mm cube at the head centre
    sitk.WriteImage(sitk.Cast(mask, sitk.sitkUInt8), str(tmp_path / "mask.nii.gz"))
    case_dir = prepare_case({**scans, "t1": scans["t1ce"]}, "c2", tmp_path / "out",
                            mask=tmp_path / "mask.nii.gz")
    image = _load(case_dir, "c2", "flair")
    data = image.get_fdata()
    world_ras = nib.affines.apply_affine(image.affine, np.argwhere(np.ones(data.shape, bool)))
    distance = np.abs(world_ras * [-1, -1, 1] - HEAD_CENTER).max(axis=1).reshape(data.shape)
    assert np.all(data[distance > 20.0] == 0)
    assert np.all(data[distance < 19.5] != 0)
    assert np.count_nonzero(data) == 40**3
    sidecar = json.loads((case_dir / "c2_clinical.json").read_text())
    assert sidecar["t1_substituted"] is False
    assert [s for s in sidecar["steps"] if s["step"] == "mask"][0]["voxels_inside"] == 40**3
    # The mask on the case's grid is written beside the scans, 1 inside and 0 outside.
    assert sidecar["brain_mask"] == {"source": "given", "path": str(tmp_path / "mask.nii.gz"),
                                     "interpolator": "nearest", "file": "c2_brainmask.nii.gz",
                                     "head_file": "c2_head.nii.gz", "head_modality": "t1ce"}
    # The reference before masking, to check the mask against: equal inside, the phantom's scalp outside.
    head = _load(case_dir, "c2", "head").get_fdata()
    t1ce = _load(case_dir, "c2", "t1ce").get_fdata()
    np.testing.assert_array_equal(head[data != 0], t1ce[data != 0])
    assert np.count_nonzero(head[data == 0]) > 0 and np.count_nonzero(t1ce[data == 0]) == 0
    written = _load(case_dir, "c2", "brainmask")
    np.testing.assert_allclose(written.affine, image.affine)
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(written.dataobj), (data != 0).astype(np.uint8))


def test_bad_arguments_are_reported(tmp_path):
    scans = _nifti_scans(tmp_path / "in")
    with pytest.raises(ValueError, match=r"lacks \['flair'\]"):
        prepare_case({"t1ce": scans["t1ce"], "t2": scans["t2"]}, "c", tmp_path / "out")
    with pytest.raises(ValueError, match="reference 't1' is not among"):
        prepare_case(scans, "c", tmp_path / "out", reference="t1")
    with pytest.raises(ValueError, match=r"case_id '\.\./c' is not a file name"):
        prepare_case(scans, "../c", tmp_path / "out")
    with pytest.raises(ValueError, match=r"give one or the other \(--mask or --no_mask\)"):
        prepare_case(scans, "c", tmp_path / "out", mask=scans["t1ce"], skull_stripped=True)
    with pytest.raises(ValueError, match=r"brain mask input \(t2\) only applies to the automatic mask"):
        prepare_case(scans, "c", tmp_path / "out", skull_stripped=True, mask_input="t2")
    far = centered_image((4, 4, 4), (2.0, 2.0, 2.0)) * 0 + 1
    far.SetOrigin((500.0, 500.0, 500.0))  # nowhere near the head
    sitk.WriteImage(sitk.Cast(far, sitk.sitkUInt8), str(tmp_path / "far.nii.gz"))
    with pytest.raises(ValueError, match="far.nii.gz has no voxel inside the case's grid"):
        prepare_case(scans, "c", tmp_path / "out", mask=tmp_path / "far.nii.gz")
    assert not (tmp_path / "out" / "c").exists()
    (tmp_path / "out" / "c").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="--overwrite"):
        prepare_case(scans, "c", tmp_path / "out", skull_stripped=True)
    with pytest.raises(FileNotFoundError, match="nowhere.nii.gz"):
        prepare_case({**scans, "t2": tmp_path / "nowhere.nii.gz"}, "d", tmp_path / "out", skull_stripped=True)


@pytest.mark.slow
def test_cli_turns_three_dicom_series_into_a_brats_case(tmp_path):
    # The patient moved between scans: FLAIR is rotated 4 degrees and shifted 2.5 mm.
    motion = rigid((0, 1, 1), 4.0, (1.5, -2.0, 0.0), HEAD_CENTER)
    series = {
        "t1c": centered_image((40, 48, 32), (1.5, 1.5, 1.5), modality="t1ce"),
        "t2": centered_image((32, 36, 24), (2.0, 2.0, 2.2), np.diag([-1.0, -1.0, 1.0]), modality="t2"),
        "flair": centered_image((32, 24, 34), (2.0, 2.4, 1.8), oblique_direction()
                                @ np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], float), "flair", motion),
    }
    for name, image in series.items():
        write_dicom_series(tmp_path / "dicom" / name.upper(), image * 10.0, seed=len(name))
    command = [sys.executable, "-m", "tfbrats.clinical", "--case_id=P001", f"--out={tmp_path / 'out'}", "--no_mask"]
    command += [f"--{name}={tmp_path / 'dicom' / name.upper()}" for name in series]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    case_dir = tmp_path / "out" / "P001"
    assert done.stdout.strip().endswith(str(case_dir))

    images = {m: _load(case_dir, "P001", m) for m in FILES}
    shapes = {img.shape for img in images.values()}
    assert shapes == {(60, 72, 48)}
    for img in images.values():
        np.testing.assert_allclose(img.affine, images["t1ce"].affine)
        assert img.header.get_zooms() == (1.0, 1.0, 1.0)
        assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    np.testing.assert_array_equal(images["t1"].get_fdata(), images["t1ce"].get_fdata())

    sidecar = json.loads((case_dir / "P001_clinical.json").read_text())
    assert sidecar["reference"] == "t1ce"
    assert sidecar["inputs"]["flair"]["format"] == "dicom"
    assert sidecar["inputs"]["flair"]["files"] == 34
    flair = next(s for s in sidecar["steps"] if s["step"] == "register" and s["modality"] == "flair")
    estimated = np.array(flair["transform"]["matrix_lps_fixed_to_moving"])
    points = np.random.default_rng(0).uniform(-20, 20, (2000, 3)) + HEAD_CENTER
    error = np.linalg.norm(points @ (estimated - motion)[:3, :3].T + (estimated - motion)[:3, 3], axis=1)
    assert error.max() < 0.3  # docs/clinical.md's claim
    assert rotation_angle_degrees(estimated[:3, :3] @ motion[:3, :3].T) < 0.3
    # The tumour (bright on FLAIR and T1c) sits at its world position in every output.
    for modality, threshold in (("t1ce", 1500), ("flair", 1900)):
        data = images[modality].get_fdata()
        centre_ras = nib.affines.apply_affine(images[modality].affine, np.argwhere(data > threshold).mean(axis=0))
        np.testing.assert_allclose(centre_ras * [-1, -1, 1], TUMOR_CENTER, atol=1.0)


def test_output_is_readable_by_tfbrats_data(tmp_path):
    data = pytest.importorskip("tfbrats.data")
    if not hasattr(data, "find_cases"):
        pytest.skip("tfbrats.data.find_cases is not written yet")
    prepare_case(_nifti_scans(tmp_path / "in"), "BraTS20_Clinical_001", tmp_path / "out", skull_stripped=True)
    index = data.find_cases(tmp_path / "out")
    assert index.layout == "brats2020"
    assert [c.case_id for c in index.cases] == ["BraTS20_Clinical_001"]
    case = data.load_case(index.cases[0])
    assert case.label is None
    assert case.image.shape[-1] == 3


def test_cli_reports_bad_input_with_exit_status_1(tmp_path):
    scans = _nifti_scans(tmp_path / "in")
    command = [sys.executable, "-m", "tfbrats.clinical", f"--t1c={scans['t1ce']}", f"--t2={scans['t2']}",
               f"--flair={tmp_path / 'missing.nii.gz'}", "--case_id=P9", f"--out={tmp_path / 'out'}", "--no_mask"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert f"error: {tmp_path / 'missing.nii.gz'}: no such file or folder" in done.stderr
    assert not (tmp_path / "out" / "P9").exists()
