"""tools/visualize.py draws a case (and a prediction) into a PNG."""

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[2]


def write_case(case_dir, case_id):
    """A 16 x 16 x 8 BraTS 2020 case: four random modalities and a segmentation."""
    case_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for modality in ("t1", "t1ce", "t2", "flair"):
        image = rng.uniform(0, 100, (16, 16, 8)).astype(np.float32)
        nib.save(nib.Nifti1Image(image, np.eye(4)), case_dir / f"{case_id}_{modality}.nii.gz")
    seg = np.zeros((16, 16, 8), np.uint8)
    seg[3:12, 4:12, 2:6] = 2
    seg[5:10, 6:10, 5] = 1
    seg[6:8, 7:9, 5] = 4
    nib.save(nib.Nifti1Image(seg, np.eye(4)), case_dir / f"{case_id}_seg.nii.gz")
    return seg


def run_visualize(*args):
    return subprocess.run(
        [sys.executable, "tools/visualize.py", *args],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_visualize_writes_png_with_reference_and_prediction(tmp_path):
    seg = write_case(tmp_path / "case_a", "case_a")
    pred = np.where(seg == 4, 1, seg).astype(np.uint8)
    nib.save(nib.Nifti1Image(pred, np.eye(4)), tmp_path / "case_a.nii.gz")
    out = tmp_path / "case_a.png"
    result = run_visualize(f"--case_dir={tmp_path / 'case_a'}", f"--pred={tmp_path / 'case_a.nii.gz'}", f"--out={out}")
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    assert out.read_bytes().startswith(b"\x89PNG")


def test_visualize_without_prediction(tmp_path):
    write_case(tmp_path / "case_b", "case_b")
    out = tmp_path / "case_b.png"
    result = run_visualize(f"--case_dir={tmp_path / 'case_b'}", f"--out={out}")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(b"\x89PNG")
