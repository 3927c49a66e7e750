"""Brain masks of clinical cases: automatic extraction on a synthetic head, --no_mask, a missing extractor."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from clinical_helpers import centered_image, grid_points, head_brain, head_image, write_dicom_series

from tfbrats.clinical import BrainMaskUnavailable, choose_input, prepare_case

FILES = ("t1", "t1ce", "t2", "flair")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _small_nifti_scans(folder):
    """Three small NIfTI scans of the skull-less phantom (already 'stripped')."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for modality in ("t1ce", "t2", "flair"):
        paths[modality] = folder / f"{modality}.nii.gz"
        sitk.WriteImage(centered_image((30, 34, 24), (1.8, 1.8, 2.0), modality=modality), str(paths[modality]))
    return paths


def _run_cli(*args):
    """`python -m tfbrats.clinical ARGS` with deepbet made unimportable, as on an install without the extra."""
    code = ("import runpy, sys; sys.modules['deepbet'] = None; "
            "sys.argv = ['tfbrats.clinical', *sys.argv[1:]]; runpy.run_module('tfbrats.clinical', run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=ENV, timeout=300)


def test_the_mask_input_is_t1_when_present_else_t1c_or_the_one_asked_for():
    assert choose_input({"t1ce", "t2", "flair"}) == "t1ce"
    assert choose_input({"t1", "t1ce", "t2", "flair"}) == "t1"
    assert choose_input({"t1ce", "t2", "flair"}, "flair") == "flair"
    with pytest.raises(ValueError, match=r"input 't1' is not among the given scans \['flair', 't1ce', 't2'\]"):
        choose_input({"t1ce", "t2", "flair"}, "t1")


def test_a_threshold_outside_0_1_is_refused_before_reading(tmp_path):
    scans = {m: tmp_path / f"{m}.nii.gz" for m in ("t1ce", "t2", "flair")}
    with pytest.raises(ValueError, match="brain mask threshold 1.5 must lie strictly between 0 and 1"):
        prepare_case(scans, "c1", tmp_path / "out", mask_threshold=1.5)


def test_without_mask_or_extractor_prepare_case_stops_before_reading(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "deepbet", None)
    # The scans do not exist: the stop comes before any of them is read.
    scans = {m: tmp_path / f"{m}.nii.gz" for m in ("t1ce", "t2", "flair")}
    with pytest.raises(BrainMaskUnavailable, match=r"pip install 'tfbrats\[brainmask\]'"):
        prepare_case(scans, "c1", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_without_mask_or_extractor_exits_1_and_with_no_mask_records_it(tmp_path):
    scans = _small_nifti_scans(tmp_path / "in")
    args = [f"--t1c={scans['t1ce']}", f"--t2={scans['t2']}", f"--flair={scans['flair']}", f"--out={tmp_path / 'out'}"]
    refused = _run_cli(*args, "--case_id=P1")
    assert refused.returncode == 1, refused.stderr
    message = refused.stderr.strip().splitlines()[-1]
    assert message.startswith("error: no brain mask: the brain extractor deepbet cannot be imported")
    for way in ("--mask=BRAIN_MASK", "pip install 'tfbrats[brainmask]'", "--no_mask"):
        assert way in message
    assert not (tmp_path / "out" / "P1").exists()

    done = _run_cli(*args, "--case_id=P2", "--no_mask")
    assert done.returncode == 0, done.stderr
    case_dir = tmp_path / "out" / "P2"
    assert sorted(p.name for p in case_dir.iterdir()) == sorted(
        [f"P2_{m}.nii.gz" for m in FILES] + ["P2_clinical.json"])  # no brain mask file
    sidecar = json.loads((case_dir / "P2_clinical.json").read_text())
    assert sidecar["brain_mask"]["source"] == "none"
    assert "skull-stripped" in sidecar["brain_mask"]["reason"]
    assert not [s for s in sidecar["steps"] if s["step"] == "mask"]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.mark.slow
def test_automatic_mask_of_a_dicom_head_matches_the_phantom_brain(tmp_path):
    # A life-sized head (brain in CSF, skull with diploe, scalp fat, skin; Rician noise in the air)
    # as three DICOM series of different resolutions; FLAIR sagittal.
    series = {
        "t1c": head_image((90, 105, 85), (2.0, 2.0, 2.0), "t1ce", seed=1),
        "t2": head_image((75, 88, 57), (2.4, 2.4, 3.0), "t2", seed=2),
        "flair": head_image((88, 61, 60), (2.4, 2.8, 3.0), "flair",
                            np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], float), seed=3),
    }
    for name, image in series.items():
        write_dicom_series(tmp_path / "dicom" / name.upper(), image * 10.0, seed=len(name))
    command = [sys.executable, "-m", "tfbrats.clinical", "--case_id=H1", f"--out={tmp_path / 'out'}", "--spacing=2"]
    command += [f"--{name}={tmp_path / 'dicom' / name.upper()}" for name in series]
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr
    case_dir = tmp_path / "out" / "H1"

    mask_file = nib.load(case_dir / "H1_brainmask.nii.gz")
    mask = np.asarray(mask_file.dataobj)
    assert mask_file.get_data_dtype() == np.uint8 and set(np.unique(mask)) == {0, 1}
    # The phantom's brain at the case's voxel centres (NIfTI RAS -> LPS world).
    index = np.stack(np.meshgrid(*(np.arange(n) for n in mask.shape), indexing="ij"), axis=-1)
    truth = head_brain(nib.affines.apply_affine(mask_file.affine, index) * [-1, -1, 1])
    assert _dice(mask > 0, truth) >= 0.90

    for modality in FILES:
        image = nib.load(case_dir / f"H1_{modality}.nii.gz")
        np.testing.assert_allclose(image.affine, mask_file.affine)
        data = np.asarray(image.dataobj)
        assert np.count_nonzero(data[mask == 0]) == 0  # nothing outside the mask
        assert np.count_nonzero(data[mask == 1]) > 0.99 * np.count_nonzero(mask)

    # The unmasked T1c to check the mask against, and the figure drawn from it.
    head = np.asarray(nib.load(case_dir / "H1_head.nii.gz").dataobj)
    t1ce = np.asarray(nib.load(case_dir / "H1_t1ce.nii.gz").dataobj)
    np.testing.assert_array_equal(head[mask == 1], t1ce[mask == 1])
    assert np.count_nonzero(head[mask == 0]) > 0.9 * np.count_nonzero(mask == 0)  # noise in the air
    assert f"check the brain mask: {case_dir / 'H1_brainmask.png'}" in done.stderr
    assert (case_dir / "H1_brainmask.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    sidecar = json.loads((case_dir / "H1_clinical.json").read_text())
    record = sidecar["brain_mask"]
    assert (record["source"], record["tool"], record["version"]) == ("automatic", "deepbet", "1.0.2")
    assert (record["input"], record["threshold"], record["file"]) == ("t1ce", 0.5, "H1_brainmask.nii.gz")
    assert (record["head_file"], record["head_modality"]) == ("H1_head.nii.gz", "t1ce")
    assert record["voxels_inside"] == np.count_nonzero(mask)
    assert record["volume_ml"] == pytest.approx(np.count_nonzero(mask) * 8 / 1000, abs=0.1)


def test_head_phantom_brain_is_where_the_grid_says():
    # The test's ground truth: the brain ellipsoid (66, 80, 56) mm has 4/3 pi abc = 1238.6 ml.
    image = head_image((90, 105, 85), (2.0, 2.0, 2.0), "t1ce")
    points = grid_points(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    volume_ml = np.count_nonzero(head_brain(points)) * 8 / 1000
    assert volume_ml == pytest.approx(4 / 3 * np.pi * 66 * 80 * 56 / 1000, rel=0.01)
