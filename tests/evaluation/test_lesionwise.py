"""Lesion-wise metrics: tfbrats' report against the official BraTS evaluation package's own output.

The same cases (split, merged, missing and spurious lesions, stray enhancing tumour, a region
absent from both) are scored twice: by the package's command-line tools (``brats-evaluate --config
gli`` then ``brats-parse-metrics seg``, its leaderboard CSV) on files in its label convention, and
by ``python -m tfbrats.evaluate`` on the same label maps stored as a BraTS 2020 or BraTS 2023+
dataset. Every lesion-wise figure must be the package's, and tfbrats' legacy Dice and HD95 its
global ones.
"""

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tfbrats.evaluation import LESION_COLUMNS, lesionwise_available, lesionwise_metrics

pytestmark = pytest.mark.skipif(not lesionwise_available(), reason="needs the lesionwise extra (brats-evaluation)")

REPO = Path(__file__).resolve().parents[2]
SHAPE = (40, 40, 20)
# 1 mm voxels: the package's HD95 ignores the header's voxel size (measured with panoptica 2.1.7:
# the same value for 1x1x1, 1x1x2 and 2x1x1 mm), so only on 1 mm grids is it in mm, like tfbrats'.
AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])
# The package's `gli` labels: 1 necrotic / non-enhancing core, 2 edema, 3 enhancing tumour.
NETC, SNFH, ET = 1, 2, 3


def _lesion(labels: np.ndarray, x: int, y: int, z: int, size: int = 8, enhancing: bool = True) -> None:
    """Paints a lesion: an edema box around a core, whose centre enhances."""
    labels[x : x + size, y : y + size, z : z + size // 2] = SNFH
    labels[x + 2 : x + size - 2, y + 2 : y + size - 2, z + 1 : z + size // 2 - 1] = NETC
    if enhancing:
        labels[x + 3 : x + size - 3, y + 3 : y + size - 3, z + 1 : z + size // 2 - 1] = ET


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(prediction, reference) label maps in the package's convention, one pair per situation."""
    cases = {}
    ref = np.zeros(SHAPE, np.uint8)
    _lesion(ref, 4, 4, 4)
    pred = ref.copy()
    pred[30:33, 30:33, 2:4] = SNFH  # three spurious edema lesions and one spurious enhancing one
    pred[30:33, 4:7, 2:4] = SNFH
    pred[4:7, 30:33, 14:16] = SNFH
    pred[20:22, 20:22, 15:17] = ET
    cases["spurious"] = (pred, ref)
    pred = ref.copy()
    pred[:, 5:7, :] = 0  # a cut through the edema: one reference lesion, two predicted
    cases["split"] = (pred, ref.copy())
    ref = np.zeros(SHAPE, np.uint8)
    _lesion(ref, 4, 4, 4)
    _lesion(ref, 4, 16, 4)
    pred = ref.copy()
    pred[4:12, 12:16, 4:8] = SNFH  # a bridge: two reference lesions, one predicted
    cases["merged"] = (pred, ref)
    pred = np.zeros(SHAPE, np.uint8)
    _lesion(pred, 4, 4, 4, enhancing=False)  # the second lesion missed, no enhancing tumour at all
    cases["missing"] = (pred, ref.copy())
    ref = np.zeros(SHAPE, np.uint8)
    _lesion(ref, 10, 10, 4, size=10, enhancing=False)
    pred = ref.copy()
    pred[14:16, 14:16, 6:8] = ET  # stray enhancing tumour where the reference has none
    cases["stray_et"] = (pred, ref)
    cases["no_et_anywhere"] = (ref.copy(), ref.copy())  # enhancing tumour in neither: no lesion to score
    return cases


def _save(labels: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), AFFINE), path)


def _float(text: str) -> float:
    return math.nan if text in ("", "nan") else float(text)


def _same(a: float, b: float, tolerance: float = 1e-9) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b or abs(a - b) <= tolerance


@pytest.fixture(scope="module")
def package_csv(tmp_path_factory) -> dict[str, dict[str, float]]:
    """The package's leaderboard CSV for the cases, keyed by situation."""
    root = tmp_path_factory.mktemp("package")
    names = {}
    for number, (name, (pred, ref)) in enumerate(_cases().items(), start=1):
        subject = f"BraTS-GLI-{number:05d}-000"
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
    # The panoptic quality is in the package's JSON only (its parser leaves it out).
    for subject in json.loads((root / "summary.json").read_text())["metrics"]:
        for region in ("et", "wt", "tc"):
            parsed[names[subject["subject_name"]]][f"pq_dsc_{region}"] = _float(str(subject[region]["pq_dsc"]))
    return parsed


# tfbrats' column -> the package's CSV column, per region.
PACKAGE_COLUMNS = {
    "LesionDice": "lesionwise_dsc_mean_{}",
    "LesionHD95": "lesionwise_hd95_mean_{}",
    "LesionF1": "all_instance_f1_{}",
    "LesionFP": "all_instance_fp_{}",
    "LesionFN": "all_instance_fn_{}",
    "LesionPQ": "pq_dsc_{}",
}


def _write_dataset(root: Path, layout: str) -> None:
    """The cases as a BraTS 2020 (enhancing tumour 4) or BraTS 2023+ dataset, predictions beside it."""
    for number, (pred, ref) in enumerate(_cases().values(), start=1):
        if layout == "brats2020":
            case_id, seg_name = f"BraTS20_Training_{number:03d}", f"BraTS20_Training_{number:03d}_seg.nii.gz"
            pred, ref = (np.where(a == ET, 4, a) for a in (pred, ref))
        else:
            case_id = f"BraTS-GLI-{number:05d}-000"
            seg_name = f"{case_id}-seg.nii.gz"
        _save(ref, root / "ref" / case_id / seg_name)
        _save(pred, root / "pred" / f"{case_id}.nii.gz")


@pytest.mark.parametrize("layout", ["brats2020", "brats2023"])
def test_tfbrats_report_equals_the_official_package(package_csv, layout, tmp_path):
    _write_dataset(tmp_path, layout)
    result = subprocess.run(
        [sys.executable, "-m", "tfbrats.evaluate", f"--pred_dir={tmp_path / 'pred'}",
         f"--ref_dir={tmp_path / 'ref'}", f"--out={tmp_path / 'report'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with (tmp_path / "report" / "metrics.csv").open() as f:
        rows = [{k: _float(v) for k, v in row.items() if k not in ("case_id", "prediction")}
                for row in csv.DictReader(f)]  # fmt: skip
    assert len(rows) == len(package_csv) == 6
    compared = 0
    for row, (name, package) in zip(rows, package_csv.items()):
        for column in LESION_COLUMNS:
            metric, region = column.split("_")
            expected = package[PACKAGE_COLUMNS[metric].format(region.lower())]
            assert _same(row[column], expected, 1e-5), (name, column, row[column], expected)
            compared += 1
        for region in ("ET", "WT", "TC"):  # legacy Dice and HD95 are the package's global ones
            package_dice, package_hd95 = (package[f"global_{m}_{region.lower()}"] for m in ("dsc", "hd95"))
            if math.isnan(package_dice):  # the region in neither mask: BraTS 2020 scored Dice 1, HD95 0
                assert (row[f"Dice_{region}"], row[f"HD95_{region}"]) == (1.0, 0.0), (name, region)
                continue
            assert row[f"Dice_{region}"] == pytest.approx(package_dice, abs=1e-5), (name, region)
            expected_hd95 = 373.13 if package_hd95 == 373 else pytest.approx(package_hd95, abs=1e-4)
            assert row[f"HD95_{region}"] == expected_hd95, (name, region)
    assert compared == 6 * 18
    # The situations are what they claim to be, in the package's own words.
    assert package_csv["spurious"]["all_instance_fp_wt"] == 4 and package_csv["spurious"]["all_instance_fp_et"] == 1
    # A spurious lesion leaves the lesion-wise Dice (matched lesions) at 1 and lowers F1 and PQ: 1 TP, 4 FP.
    spurious = package_csv["spurious"]
    assert spurious["lesionwise_dsc_mean_wt"] == 1.0 and spurious["pq_dsc_wt"] == pytest.approx(1 / 3)
    assert package_csv["split"]["all_instance_fp_wt"] == 1 and package_csv["split"]["all_instance_fn_wt"] == 0
    assert package_csv["merged"]["all_instance_fn_wt"] == 1
    assert package_csv["missing"]["all_instance_fn_et"] == 2
    assert package_csv["stray_et"]["lesionwise_hd95_mean_et"] == math.inf
    assert math.isnan(package_csv["no_et_anywhere"]["lesionwise_dsc_mean_et"])
    summary = (tmp_path / "report" / "summary.md").read_text()
    spurious_wt = sum(int(row["LesionFP_WT"]) for row in rows)
    assert "Lesion-wise" in summary and f"WT: {spurious_wt} spurious" in summary


def test_metrics_flag_chooses_the_family(tmp_path):
    _write_dataset(tmp_path, "brats2023")
    shutil.rmtree(tmp_path / "ref" / "BraTS-GLI-00002-000")
    for family, present, absent in (("legacy", "Dice_WT", "LesionDice_WT"), ("lesionwise", "LesionDice_WT", "Dice_WT")):
        out = tmp_path / family
        subprocess.run(
            [sys.executable, "-m", "tfbrats.evaluate", f"--pred_dir={tmp_path / 'pred'}",
             f"--ref_dir={tmp_path / 'ref'}", f"--out={out}", f"--metrics={family}"],
            cwd=REPO, capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
        assert present in header and absent not in header
        assert (out / "dice_boxplot.png").read_bytes().startswith(b"\x89PNG")


def test_lesionwise_metrics_rejects_dataset_labels():
    labels = np.zeros((8, 8, 8), np.uint8)
    labels[2:4, 2:4, 2:4] = 4  # BraTS 2020's enhancing tumour: map to internal classes first
    with pytest.raises(ValueError, match=r"case c1: prediction labels must be internal classes 0..3; got \[0, 4\]"):
        lesionwise_metrics(labels, labels, case_id="c1")
