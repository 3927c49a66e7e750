"""Folder evaluation and the `python -m tfbrats.evaluate` CLI on a tiny BraTS-format folder."""

import csv
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tfbrats.evaluation import (
    COLUMNS,
    LESION_COLUMNS,
    PAPER_TABLE1,
    available_metric_families,
    evaluate_folders,
    summarize,
    summary_markdown,
    write_report,
)
from tfbrats.evaluation.metrics import ET_COUNT_COLUMNS

REPO = Path(__file__).resolve().parents[2]
AFFINE = np.diag([-1.0, -1.0, 2.0, 1.0])  # 1 x 1 x 2 mm voxels


def tumour(shape=(16, 16, 8), shift=0):
    """A label map (BraTS 2020 values) with boxes of edema, core and enhancing tumour, moved by
    `shift` voxels along z (the 2 mm axis)."""
    labels = np.zeros(shape, np.uint8)
    labels[3:12, 4:12, 2 + shift : 6 + shift] = 2
    labels[5:10, 6:10, 3 + shift : 5 + shift] = 1
    labels[6:8, 7:9, 3 + shift : 5 + shift] = 4
    return labels


def write_nifti(labels, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(labels, AFFINE), path)


@pytest.fixture
def folders(tmp_path):
    """References for three BraTS 2020 cases; predictions for two of them and one stray file."""
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    for case_id in ("case_a", "case_b", "case_c"):
        write_nifti(tumour(), ref_dir / case_id / f"{case_id}_seg.nii.gz")
    write_nifti(tumour(), pred_dir / "case_a.nii.gz")
    write_nifti(tumour(shift=1), pred_dir / "case_b.nii.gz")
    write_nifti(tumour(), pred_dir / "stray.nii.gz")
    return pred_dir, ref_dir


def test_evaluate_folders_scores_and_counts_missing(folders, tmp_path):
    evaluation = evaluate_folders(*folders)
    assert [r.case_id for r in evaluation.results] == ["case_a", "case_b", "case_c"]
    assert evaluation.missing == ["case_c"]
    assert evaluation.unmatched_predictions == ["stray"]
    a, b, c = (r.metrics for r in evaluation.results)
    assert all(a[f"Dice_{region}"] == 1.0 for region in ("ET", "WT", "TC"))
    # Moved by one voxel along z, whose voxels are 2 mm: every surface distance is 0 or 2 mm, and
    # more than 5% are 2 mm, so HD95 is exactly 2 mm (1 if spacing were ignored). WT is a 9x8x4 box
    # that keeps 3 of its 4 slices in common: Dice 0.75; TC (5x4x2) and ET (2x2x2) keep 1 of 2: 0.5.
    assert [b[f"HD95_{region}"] for region in ("ET", "WT", "TC")] == [2.0, 2.0, 2.0]
    assert [b[f"Dice_{region}"] for region in ("ET", "WT", "TC")] == pytest.approx([0.5, 0.75, 0.5], abs=1e-12)
    assert c["Dice_WT"] == 0.0 and c["HD95_ET"] == 373.13
    paths = write_report(evaluation.results, tmp_path / "report")
    assert sorted(paths) == ["dice_boxplot.png", "metrics.csv", "summary.md"]
    assert summarize(evaluation.results)["median"]["Dice_ET"] == b["Dice_ET"]


def test_report_without_matplotlib_writes_the_tables_and_warns(folders, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    evaluation = evaluate_folders(*folders)
    with pytest.warns(UserWarning, match=r"dice_boxplot.png not drawn .*tfbrats\[plots\]"):
        paths = write_report(evaluation.results, tmp_path / "report")
    assert sorted(paths) == ["metrics.csv", "summary.md"]
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["metrics.csv", "summary.md"]


def test_the_summary_shows_enhancing_tumor_apart_on_cases_without_it(tmp_path):
    without_et = tumour()
    without_et[without_et == 4] = 1
    write_nifti(tumour(), tmp_path / "ref" / "case_a" / "case_a_seg.nii.gz")
    write_nifti(without_et, tmp_path / "ref" / "case_d" / "case_d_seg.nii.gz")
    write_nifti(tumour(), tmp_path / "pred" / "case_a.nii.gz")
    write_nifti(tumour(), tmp_path / "pred" / "case_d.nii.gz")  # 8 voxels of ET where there is none
    results = evaluate_folders(tmp_path / "pred", tmp_path / "ref", metrics=("legacy",)).results
    assert [[r.metrics[c] for c in ET_COUNT_COLUMNS] for r in results] == [[8, 8, 1], [0, 8, 1]]
    lines = summary_markdown(results).splitlines()
    assert "| with enhancing tumor | 1 | 1.0000 | 0.00 | 8 | 1 |" in lines
    assert "| without enhancing tumor | 1 | 0.0000 | 373.13 | 8 | 1 |" in lines
    assert "stray ET on cases without enhancing tumor: case_d 8 voxels in 1 components" in lines
    write_report(results, tmp_path / "report")
    with (tmp_path / "report" / "metrics.csv").open() as f:
        assert [row["ET_voxels_predicted"] for row in csv.DictReader(f)] == ["8", "8"]


def test_evaluate_cli_writes_csv_table_and_plot(folders, tmp_path):
    pred_dir, ref_dir = folders
    out = tmp_path / "report"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfbrats.evaluate",
            f"--pred_dir={pred_dir}",
            f"--ref_dir={ref_dir}",
            f"--out={out}",
        ],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [row["case_id"] for row in rows] == ["case_a", "case_b", "case_c"]
    assert [row["prediction"] for row in rows] == ["ok", "ok", "missing"]
    # Both families by default where the lesionwise extra is installed, legacy alone (and said) elsewhere.
    lesion_columns = list(LESION_COLUMNS) if "lesionwise" in available_metric_families() else []
    assert list(rows[0]) == ["case_id", "prediction", *COLUMNS, *ET_COUNT_COLUMNS, *lesion_columns]
    assert ("reporting legacy only" in result.stdout) == (not lesion_columns)
    summary = (out / "summary.md").read_text()
    assert f"{PAPER_TABLE1['mean']['Dice_ET']:.4f}" in summary
    assert "| mean |" in summary and "| median |" in summary and "| std |" in summary
    assert (out / "dice_boxplot.png").read_bytes().startswith(b"\x89PNG")
    assert "1 without prediction" in result.stdout and "case_c" in result.stdout
    assert "predictions without reference (ignored): stray" in result.stdout


def test_shape_mismatch_names_the_case(folders):
    pred_dir, ref_dir = folders
    write_nifti(np.zeros((16, 16, 9), np.uint8), pred_dir / "case_b.nii.gz")
    with pytest.raises(ValueError, match=r"case case_b: prediction .* \(16, 16, 9\) .* \(16, 16, 8\)"):
        evaluate_folders(pred_dir, ref_dir)


def test_brats2023_references_use_et_label_3(tmp_path):
    labels = tumour()
    labels[labels == 4] = 3
    write_nifti(labels, tmp_path / "ref" / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-seg.nii.gz")
    write_nifti(labels, tmp_path / "pred" / "BraTS-GLI-00001-000.nii.gz")
    (result,) = evaluate_folders(tmp_path / "pred", tmp_path / "ref").results
    assert result.metrics["Dice_ET"] == 1.0 and result.metrics["HD95_ET"] == 0.0
