"""The README's first command, in a reduced size: data -> train -> predict -> evaluate -> figures."""

import csv
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pytest

REPO = Path(__file__).parents[1]


@pytest.mark.slow
def test_demo_runs_end_to_end_and_leaves_report_and_figures(tmp_path):
    out = tmp_path / "demo"
    command = [
        sys.executable, "-m", "tfbrats.demo", f"--out={out}", "--train_cases=4", "--test_cases=2",
        "--shape=64,64,24", "--train_arg=epochs=2", "--train_arg=steps_per_epoch=2",
        "--train_arg=patch_size=8,32,32", "--train_arg=batch_size=2", "--train_arg=strategy=default",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"Everything is in {out}" in result.stdout
    predictions = sorted((out / "predictions").glob("*.nii.gz"))
    assert len(predictions) == 2
    for prediction in predictions:
        case = out / "data" / "test" / prediction.name.removesuffix(".nii.gz")
        flair = nib.load(case / f"{case.name}_flair.nii.gz")
        assert nib.load(prediction).shape == flair.shape
    with open(out / "report" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and all(0.0 <= float(row["Dice_WT"]) <= 1.0 for row in rows)
    for name in ("summary.md", "dice_boxplot.png"):
        assert (out / "report" / name).stat().st_size > 0
    assert len(list((out / "figures").glob("*.png"))) == 2
    assert "Dice" in result.stdout, "the demo prints the Dice/HD95 table"
