"""Lesion-wise figures of post-treatment cases (resection cavity) against the official BraTS package.

Cases with a split, a missing and a spurious cavity, and pre-treatment cases without one, are
scored by the package's command-line tools (``brats-evaluate --config gli``, ``brats-parse-metrics
seg``) and by ``python -m tfbrats.evaluate`` on the same files stored as a BraTS 2025 dataset.
Every lesion-wise figure of every group (ET, WT, TC, RC, NETC, SNFH) must be the package's, and the
legacy Dice its global one.
"""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.evaluation.test_lesionwise import PACKAGE_COLUMNS, REPO, SHAPE, _float, _lesion, _same, _save
from tfbrats.evaluation import lesionwise_available
from tfbrats.evaluation.lesionwise import lesion_columns
from tfbrats.labels import BRATS_POST_TREATMENT

pytestmark = pytest.mark.skipif(not lesionwise_available(), reason="needs the lesionwise extra (brats-evaluation)")

RC = 4
GROUPS = tuple(BRATS_POST_TREATMENT.groups)


def _cavity_cases() -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """(prediction, reference, visit) in the package's labels (4 = resection cavity), one per situation."""
    cases = {}
    ref = np.zeros(SHAPE, np.uint8)
    _lesion(ref, 4, 4, 4)
    ref[20:30, 20:30, 4:12] = RC
    pred = ref.copy()
    pred[24:26, :, :] = np.where(pred[24:26] == RC, 0, pred[24:26])  # the cavity cut in two
    cases["split_cavity"] = (pred, ref, "100")
    pred = ref.copy()
    pred[pred == RC] = 0  # the cavity missed
    cases["missing_cavity"] = (pred, ref.copy(), "101")
    pred = ref.copy()
    pred[32:35, 4:7, 14:17] = RC  # a second, spurious cavity
    cases["spurious_cavity"] = (pred, ref.copy(), "100")
    ref = np.zeros(SHAPE, np.uint8)
    _lesion(ref, 10, 10, 4, size=10)
    cases["pre_treatment"] = (ref.copy(), ref.copy(), "000")
    pred = ref.copy()
    pred[30:33, 30:33, 2:4] = RC  # a cavity on a case that has none
    cases["pre_treatment_given_cavity"] = (pred, ref.copy(), "000")
    return cases


@pytest.fixture(scope="module")
def package_csv(tmp_path_factory) -> dict[str, dict[str, float]]:
    """The package's leaderboard CSV for the cavity cases, keyed by situation (its PQ from its JSON)."""
    root = tmp_path_factory.mktemp("package")
    names = {}
    for number, (name, (pred, ref, visit)) in enumerate(_cavity_cases().items(), start=1):
        subject = f"BraTS-GLI-{number:05d}-{visit}"
        names[f"{subject}-seg.nii.gz"] = name
        _save(ref, root / "ref" / f"{subject}-seg.nii.gz")
        _save(pred, root / "pred" / f"{subject}.nii.gz")
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [str(bin_dir / "brats-evaluate"), "--config", "gli", "--ref_path", str(root / "ref"),
         "--pred_path", str(root / "pred"), "--summary_json", str(root / "summary.json")],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    subprocess.run(
        [str(bin_dir / "brats-parse-metrics"), "seg", "--json_path", str(root / "summary.json"),
         "--output_csv_path", str(root / "parsed.csv")],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    with (root / "parsed.csv").open() as f:
        rows = {row["subject_id"]: row for row in csv.DictReader(f)}
    parsed = {names[subject]: {k: _float(v) for k, v in row.items() if k != "subject_id"}
              for subject, row in rows.items() if subject in names}  # fmt: skip
    for subject in json.loads((root / "summary.json").read_text())["metrics"]:
        for group in GROUPS:
            key = group.lower()
            parsed[names[subject["subject_name"]]][f"pq_dsc_{key}"] = _float(str(subject[key]["pq_dsc"]))
    return parsed


def test_cavity_lesion_figures_equal_the_official_package(package_csv, tmp_path):
    ids = []
    for number, (pred, ref, visit) in enumerate(_cavity_cases().values(), start=1):
        case_id = f"BraTS-GLI-{number:05d}-{visit}"
        ids.append(case_id)
        _save(ref, tmp_path / "ref" / case_id / f"{case_id}-seg.nii.gz")
        _save(pred, tmp_path / "pred" / f"{case_id}.nii.gz")
    result = subprocess.run(
        [sys.executable, "-m", "tfbrats.evaluate", f"--pred_dir={tmp_path / 'pred'}",
         f"--ref_dir={tmp_path / 'ref'}", f"--out={tmp_path / 'report'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with (tmp_path / "report" / "metrics.csv").open() as f:
        rows = {row["case_id"]: {k: _float(v) for k, v in row.items() if k not in ("case_id", "prediction")}
                for row in csv.DictReader(f)}  # fmt: skip
    assert list(rows) == ids
    compared = 0
    for row, (name, package) in zip(rows.values(), package_csv.items()):
        for column in lesion_columns(GROUPS):
            metric, group = column.split("_")
            expected = package[PACKAGE_COLUMNS[metric].format(group.lower())]
            assert _same(row[column], expected, 1e-5), (name, column, row[column], expected)
            compared += 1
        for group in GROUPS:
            package_dice = package[f"global_dsc_{group.lower()}"]
            if math.isnan(package_dice):  # in neither mask: BraTS 2020's Dice 1
                assert row[f"Dice_{group}"] == 1.0, (name, group)
            else:
                assert row[f"Dice_{group}"] == pytest.approx(package_dice, abs=1e-5), (name, group)
    assert compared == 5 * len(lesion_columns(GROUPS))
    # The situations, in the package's own words.
    assert package_csv["split_cavity"]["all_instance_fp_rc"] == 1
    assert package_csv["missing_cavity"]["all_instance_fn_rc"] == 1
    assert package_csv["spurious_cavity"]["all_instance_fp_rc"] == 1
    assert package_csv["spurious_cavity"]["lesionwise_dsc_mean_rc"] == 1.0
    assert math.isnan(package_csv["pre_treatment"]["lesionwise_dsc_mean_rc"])
    assert package_csv["pre_treatment_given_cavity"]["lesionwise_hd95_mean_rc"] == math.inf
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "LesionDice RC (" not in summary and "| LesionDice RC |" in summary and "RC: 3 spurious, 1 missed" in summary
