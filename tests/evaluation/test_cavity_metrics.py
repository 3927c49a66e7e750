"""Evaluation of post-treatment data (BraTS 2024/2025): Dice and HD95 per group, RC, NETC and SNFH included."""

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tfbrats.evaluation import evaluate_folders, summary_markdown, write_report
from tfbrats.evaluation.metrics import case_metrics, hd95
from tfbrats.labels import BRATS_POST_TREATMENT

SHAPE = (24, 24, 12)
AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])
GROUPS = {"ET": (3,), "WT": (1, 2, 3), "TC": (1, 3), "RC": (4,), "NETC": (1,), "SNFH": (2,)}


def _post_treatment(cavity: bool, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.zeros(SHAPE, np.uint8)
    labels[4:16, 4:16, 2:10] = 2
    labels[7:12, 7:12, 4:8] = 1
    labels[8:10, 8:10, 5:7] = 3
    if cavity:
        labels[12:18, 12:18, 3:8] = 4
    noise = rng.random(SHAPE) < 0.02
    return np.where(noise & (labels == 2), 1, labels).astype(np.uint8)


def _save(labels: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(labels, AFFINE), path)


def _numpy_dice(a: np.ndarray, b: np.ndarray) -> float:
    if not a.any() and not b.any():
        return 1.0
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture()
def folders(tmp_path):
    """Three cases in the BraTS 2025 layout: a post-treatment one, and two pre-treatment ones, one given a cavity."""
    references = {"BraTS-GLI-00001-100": _post_treatment(True, 0), "BraTS-GLI-00002-000": _post_treatment(False, 1),
                  "BraTS-GLI-00003-000": _post_treatment(False, 2)}
    predictions = {}
    for case_id, ref in references.items():
        pred = np.roll(ref, 1, axis=0)
        if case_id.endswith("-100"):
            pred[pred == 4] = 0
            pred[13:18, 12:17, 3:8] = 4  # a smaller, shifted cavity
        if case_id == "BraTS-GLI-00003-000":
            pred[20:22, 2:4, 2:4] = 4  # a spurious 8-voxel cavity on a pre-treatment case
        predictions[case_id] = pred
        _save(ref, tmp_path / "ref" / case_id / f"{case_id}-seg.nii.gz")
        _save(pred, tmp_path / "pred" / f"{case_id}.nii.gz")
    return tmp_path, references, predictions


def test_every_group_scores_as_numpy_does_and_a_pre_treatment_case_scores_rc_by_the_empty_rule(folders):
    root, references, predictions = folders
    results = evaluate_folders(root / "pred", root / "ref", metrics=("legacy",)).results
    for result in results:
        ref, pred = references[result.case_id], predictions[result.case_id]
        for group, classes in GROUPS.items():
            assert result.metrics[f"Dice_{group}"] == pytest.approx(
                _numpy_dice(np.isin(pred, classes), np.isin(ref, classes))), (result.case_id, group)
            assert result.metrics[f"HD95_{group}"] == pytest.approx(hd95(np.isin(pred, classes), np.isin(ref, classes)))
    by_id = {r.case_id: r.metrics for r in results}
    # No cavity in the reference: none predicted is Dice 1 / HD95 0; eight voxels are Dice 0 / HD95 373.13.
    assert (by_id["BraTS-GLI-00002-000"]["Dice_RC"], by_id["BraTS-GLI-00002-000"]["HD95_RC"]) == (1.0, 0.0)
    assert (by_id["BraTS-GLI-00003-000"]["Dice_RC"], by_id["BraTS-GLI-00003-000"]["HD95_RC"]) == (0.0, 373.13)
    assert by_id["BraTS-GLI-00003-000"]["RC_voxels_predicted"] == 8
    assert by_id["BraTS-GLI-00003-000"]["RC_components_predicted"] == 1
    assert 0.5 < by_id["BraTS-GLI-00001-100"]["Dice_RC"] < 1
    # The cavity is no part of the whole tumor.
    assert case_metrics(predictions["BraTS-GLI-00001-100"], references["BraTS-GLI-00001-100"],
                        label_set=BRATS_POST_TREATMENT)["Dice_WT"] == by_id["BraTS-GLI-00001-100"]["Dice_WT"]


def test_the_report_follows_the_label_set(folders):
    root, _, _ = folders
    results = evaluate_folders(root / "pred", root / "ref", metrics=("legacy",)).results
    summary = summary_markdown(results)
    header = summary.splitlines()[0]
    for group in GROUPS:
        assert f"Dice {group} |" in header and f"HD95 {group} (mm)" in header
    assert "Resection cavity by reference" in summary
    assert "| without resection cavity | 2 | 0.5000 | 186.56 | 8 | 1 |" in summary
    assert "stray RC on cases without resection cavity: BraTS-GLI-00003-000 8 voxels in 1 components" in summary
    written = write_report(results, root / "report")
    columns = written["metrics.csv"].read_text().splitlines()[0].split(",")
    assert {"Dice_RC", "Dice_NETC", "Dice_SNFH", "HD95_RC", "RC_voxels_predicted"} <= set(columns)
    mean_rc = np.mean([r.metrics["Dice_RC"] for r in results])
    assert "| mean | " in summary and not math.isnan(mean_rc)
