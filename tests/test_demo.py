"""The README's first command, in a reduced size: data -> train -> predict -> evaluate -> figures.

The reduced demo trains 75 steps: enough to beat an untrained model's whole-tumor Dice by a wide
margin, and its printed table must be the evaluation of the files it wrote.
"""

import csv
import subprocess
import sys
from pathlib import Path

import keras
import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).parents[1]
PATCH = (8, 32, 32)
REGIONS = {"ET": (4,), "WT": (1, 2, 4), "TC": (1, 4)}  # BraTS 2020 label values


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice with the BraTS convention that two empty masks agree perfectly."""
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total


def printed_rows(stdout: str) -> dict[str, list[float]]:
    """The `mean` and `median` rows of the Dice/HD95 table that the demo printed."""
    rows = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] in ("mean", "median") and cells[0] not in rows:
            rows[cells[0]] = [float(cell) for cell in cells[1:]]
    return rows


def untrained_wt_dice(cases: list) -> float:
    """Mean whole-tumor Dice of an untrained AlbuNet3D on `cases`, windows as the demo predicts."""
    from tfbrats.contract import SegmentationContract, Window
    from tfbrats.data import load_case, uncrop
    from tfbrats.inference.model import make_predictor
    from tfbrats.inference.predict import segment
    from tfbrats.labels import get_target
    from tfbrats.models import AlbuNet3D

    keras.utils.set_random_seed(0)
    predictor = make_predictor(AlbuNet3D(num_classes=4), get_target("classes"))
    contract = SegmentationContract(window=Window(PATCH, PATCH, 2))
    scores = []
    for case in cases:
        preprocessed = load_case(case)
        labels = segment(preprocessed, predictor, contract)
        scores.append(dice(labels > 0, uncrop(preprocessed.label, preprocessed.meta) > 0))
    return float(np.mean(scores))


@pytest.mark.slow
def test_demo_learns_and_reports_the_evaluation_of_its_files(tmp_path):
    out = tmp_path / "demo"
    command = [
        sys.executable, "-m", "tfbrats.demo", f"--out={out}", "--train_cases=6", "--test_cases=3",
        "--shape=64,64,32", "--train_arg=epochs=3", "--train_arg=steps_per_epoch=25",
        "--train_arg=patch_size=" + ",".join(map(str, PATCH)), "--train_arg=batch_size=2",
        "--train_arg=strategy=default",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"Everything is in {out}" in result.stdout
    test_dir = out / "data" / "test"
    predictions = sorted((out / "predictions").glob("*.nii.gz"))
    assert [p.name.removesuffix(".nii.gz") for p in predictions] == sorted(p.name for p in test_dir.iterdir())

    # The files, scored here with numpy: Dice per region and case, and ET on the cases without ET.
    scores = {region: [] for region in REGIONS}
    et_free = []  # (ET Dice, predicted ET voxels) of each held-out case without enhancing tumor
    for prediction in predictions:
        case = test_dir / prediction.name.removesuffix(".nii.gz")
        written, reference = nib.load(prediction), nib.load(case / f"{case.name}_seg.nii.gz")
        assert written.shape == reference.shape
        np.testing.assert_array_equal(written.affine, reference.affine)
        labels, truth = np.asarray(written.dataobj), np.asarray(reference.dataobj)
        assert set(np.unique(labels)) <= {0, 1, 2, 4}
        for region, values in REGIONS.items():
            scores[region].append(dice(np.isin(labels, values), np.isin(truth, values)))
        if not (truth == 4).any():
            et_free.append((scores["ET"][-1], int((labels == 4).sum())))

    # The printed table and metrics.csv are that evaluation (HD95 from the same files).
    from tfbrats.evaluation import evaluate_folders

    rows = printed_rows(result.stdout)
    with open(out / "report" / "metrics.csv") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert [row["case_id"] for row in csv_rows] == [p.name.removesuffix(".nii.gz") for p in predictions]
    hd95 = {region: [r.metrics[f"HD95_{region}"] for r in evaluate_folders(out / "predictions", test_dir).results]
            for region in REGIONS}
    for index, region in enumerate(REGIONS):
        assert [float(row[f"Dice_{region}"]) for row in csv_rows] == pytest.approx(scores[region], abs=1e-6)
        assert rows["mean"][index] == pytest.approx(np.mean(scores[region]), abs=6e-5), region
        assert rows["median"][index] == pytest.approx(np.median(scores[region]), abs=6e-5), region
        assert rows["mean"][3 + index] == pytest.approx(np.mean(hd95[region]), abs=6e-3), region
        assert rows["median"][3 + index] == pytest.approx(np.median(hd95[region]), abs=6e-3), region

    # The cases without enhancing tumor (case 8 of 9: every fourth) are shown apart.
    assert "held-out: 3 cases, 1 of them without enhancing tumor" in result.stdout
    assert len(et_free) == 1
    row = next(line for line in result.stdout.splitlines() if line.startswith("| without enhancing tumor |"))
    cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
    assert int(cells[1]) == 1 and float(cells[2]) == pytest.approx(et_free[0][0], abs=6e-5)
    assert int(cells[4]) == et_free[0][1]

    # Trained beats untrained by a wide margin (measured: ~0.1 untrained, 0.66 after 60 steps).
    from tfbrats.data import find_cases

    untrained = untrained_wt_dice(find_cases(test_dir).cases)
    assert np.mean(scores["WT"]) > untrained + 0.3, (np.mean(scores["WT"]), untrained)

    for name in ("summary.md", "dice_boxplot.png"):
        assert (out / "report" / name).stat().st_size > 0
    assert len(list((out / "figures").glob("*.png"))) == 2
