"""tools/visualize.py draws a case (and a prediction) into a PNG, the labels where they are."""

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
Z = 5  # the slice with most tumour


def write_case(case_dir, case_id):
    """A 16 x 16 x 8 BraTS 2020 case: random modalities; on slice 5 edema fills the half x < 8, and
    enhancing tumour (4) the corner x, y >= 12; other slices hold a little necrosis (1)."""
    case_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for modality in ("t1", "t1ce", "t2", "flair"):
        image = rng.uniform(0, 100, (16, 16, 8)).astype(np.float32)
        nib.save(nib.Nifti1Image(image, np.eye(4)), case_dir / f"{case_id}_{modality}.nii.gz")
    seg = np.zeros((16, 16, 8), np.uint8)
    seg[6:9, 6:9, 2:5] = 1
    seg[:8, :, Z] = 2
    seg[12:, 12:, Z] = 4
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


def _overlay_masks(pixels):
    """Pixels of edema (orange) and enhancing tumour (red) drawn at alpha 0.8 over a grey image.

    Over grey g, orange (1, 0.55, 0) becomes (0.8 + 0.2g, 0.44 + 0.2g, 0.2g) and red (0.9, 0, 0)
    becomes (0.72 + 0.2g, 0.2g, 0.2g); the legend's opaque patches differ from both.
    """
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    orange = (np.abs(r - g - 0.36) < 0.02) & (np.abs(g - b - 0.44) < 0.02)
    red = (np.abs(r - g - 0.72) < 0.02) & (np.abs(g - b) < 0.02)
    return orange, red


def _box(mask):
    rows, cols = np.nonzero(mask)
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def test_visualize_draws_each_label_where_it_is(tmp_path):
    image = pytest.importorskip("matplotlib.image")
    seg = write_case(tmp_path / "case_a", "case_a")
    pred = np.where(seg == 4, 1, seg).astype(np.uint8)  # the prediction has no enhancing tumour
    nib.save(nib.Nifti1Image(pred, np.eye(4)), tmp_path / "case_a.nii.gz")
    out = tmp_path / "case_a.png"
    result = run_visualize(f"--case_dir={tmp_path / 'case_a'}", f"--pred={tmp_path / 'case_a.nii.gz'}", f"--out={out}")
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    assert out.read_bytes().startswith(b"\x89PNG")
    pixels = image.imread(out)[..., :3]
    assert pixels.shape == (384, 1872, 3)  # 6 panels of 2.6 x 3.2 inches at 120 dpi
    orange, red = _overlay_masks(pixels)
    panel = pixels.shape[1] // 6
    reference, prediction = slice(4 * panel, 5 * panel), slice(5 * panel, 6 * panel)
    top, bottom, _, _ = _box(orange[:, reference])  # the rows of the images (the legend lies below)
    images = np.s_[top:bottom, : 4 * panel]
    assert not orange[images].any() and not red[images].any()  # T1, T1c, T2 and FLAIR carry no overlay
    assert not red[:, prediction].any()
    for columns in (reference, prediction):
        # Edema: the left half of the slice (x < 8), every y: a rectangle twice as tall as wide.
        top, bottom, left, right = _box(orange[:, columns])
        side = bottom - top
        assert side > 100 and right - left == pytest.approx(side / 2, abs=2)
        assert orange[top:bottom, columns][:, left:right].mean() > 0.97
    # Enhancing tumour: the corner x, y >= 12, drawn at the top right (origin lower) of the same square.
    top, bottom, left, right = _box(orange[:, reference])
    red_top, red_bottom, red_left, red_right = _box(red[:, reference])
    pixel = (bottom - top) / 16
    assert (red_top, red_bottom) == pytest.approx((top, top + 4 * pixel), abs=2)
    assert (red_left, red_right) == pytest.approx((left + 12 * pixel, left + 16 * pixel), abs=2)


def test_visualize_without_prediction(tmp_path):
    image = pytest.importorskip("matplotlib.image")
    write_case(tmp_path / "case_b", "case_b")
    out = tmp_path / "case_b.png"
    result = run_visualize(f"--case_dir={tmp_path / 'case_b'}", f"--out={out}")
    assert result.returncode == 0, result.stderr
    pixels = image.imread(out)[..., :3]
    assert pixels.shape == (384, 1560, 3)  # 5 panels
    orange, red = _overlay_masks(pixels)
    reference = np.s_[:, 4 * 312:]
    top, bottom, left, right = _box(orange[reference])
    assert bottom - top > 100 and right - left == pytest.approx((bottom - top) / 2, abs=2)
    assert red[reference].sum() == pytest.approx(orange[reference].sum() * (4 * 4) / (8 * 16), rel=0.05)
    assert not orange[top:bottom, : 4 * 312].any() and not red[top:bottom, : 4 * 312].any()


def test_a_post_treatment_case_draws_the_cavity_blue_and_enhancing_tumour_red(tmp_path):
    """In BraTS 2024/2025 names 3 is enhancing tumour and 4 the resection cavity: each has its own colour."""
    image = pytest.importorskip("matplotlib.image")
    case_id = "BraTS-GLI-00001-100"
    case_dir = tmp_path / case_id
    case_dir.mkdir()
    rng = np.random.default_rng(0)
    for modality in ("t1n", "t1c", "t2w", "t2f"):
        volume = rng.uniform(0, 100, (16, 16, 8)).astype(np.float32)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), case_dir / f"{case_id}-{modality}.nii.gz")
    seg = np.zeros((16, 16, 8), np.uint8)
    seg[:8, :, Z] = 2
    seg[12:, 12:, Z] = 3  # enhancing tumour: 4 x 4 pixels
    seg[8:12, :8, Z] = 4  # cavity: 4 x 8 pixels, twice the enhancing tumour
    nib.save(nib.Nifti1Image(seg, np.eye(4)), case_dir / f"{case_id}-seg.nii.gz")
    out = tmp_path / "post.png"
    result = run_visualize(f"--case_dir={case_dir}", f"--out={out}")
    assert result.returncode == 0, result.stderr
    pixels = image.imread(out)[..., :3]
    orange, red = _overlay_masks(pixels)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    blue = (np.abs(b - r - 0.72) < 0.02) & (np.abs(g - r - 0.28) < 0.02)  # (0.1, 0.45, 1.0) at alpha 0.8
    reference = np.s_[: int(0.85 * pixels.shape[0]), 4 * 312:]  # the panel, above the legend
    # (edge pixels where two colours meet are blended, hence the tolerance)
    assert red[reference].sum() > 0 and blue[reference].sum() == pytest.approx(2 * red[reference].sum(), rel=0.12)
    assert orange[reference].sum() == pytest.approx(8 * red[reference].sum(), rel=0.12)
