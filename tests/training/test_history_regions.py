"""history.csv and the training console carry a Dice per region of the run's label set (RC too)."""

import csv

from tfbrats.training import HISTORY_COLUMNS, Run
from tfbrats.training.run import history_columns


def test_a_4_class_history_keeps_its_columns():
    assert history_columns() == HISTORY_COLUMNS
    assert [c for c in HISTORY_COLUMNS if "RC" in c] == []
    assert HISTORY_COLUMNS[:7] == ("epoch", "step", "learning_rate", "loss", "dice_WT", "dice_TC", "dice_ET")


def test_a_cavity_run_writes_and_reads_back_rc_columns(tmp_path):
    regions = ("WT", "TC", "ET", "RC")
    rows = [{"epoch": 1, "step": 5, "loss": 0.9, "dice_RC": 0.25, "val_dice_RC": 0.5, "volume_dice_RC": 0.75}]
    run = Run(tmp_path)
    run.write_history(rows, regions)
    with run.history_path.open(newline="") as f:
        header = next(csv.reader(f))
    assert header == list(history_columns(regions))
    assert [c for c in header if c.endswith("_RC")] == ["dice_RC", "val_dice_RC", "volume_dice_RC"]
    back = run.history()[0]
    assert (back["dice_RC"], back["val_dice_RC"], back["volume_dice_RC"]) == (0.25, 0.5, 0.75)
    assert back["epoch"] == 1 and back["dice_WT"] != back["dice_WT"]  # a value not given is nan
