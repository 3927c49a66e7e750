"""tools/plot_training.py draws validation Dice curves from a run's history.csv."""

import pytest

from tests.training.conftest import run_python
from tfbrats.training import HISTORY_COLUMNS, Run


def test_plot_training_draws_the_dice_curves(tmp_path):
    pytest.importorskip("matplotlib")
    run = Run(tmp_path / "run")
    run.path.mkdir()
    rows = [{**{column: 0.5 for column in HISTORY_COLUMNS}, "epoch": e, "step": 10 * e, "val_dice_WT": e / 10,
             "volume_dice_mean": float("nan")} for e in range(1, 4)]
    run.write_history(rows)
    assert [row["val_dice_WT"] for row in run.history()] == [0.1, 0.2, 0.3]
    out = tmp_path / "dice.png"
    result = run_python(["tools/plot_training.py", f"--runs={run.path}", f"--out={out}"], timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
