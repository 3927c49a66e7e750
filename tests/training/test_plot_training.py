"""tools/plot_training.py draws validation Dice curves from a run's history.csv."""

import pytest

from tests.training.conftest import run_python
from tfbrats.training.loop import HISTORY_COLUMNS


def test_plot_training_draws_the_dice_curves(tmp_path):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    run.mkdir()
    header = ",".join(HISTORY_COLUMNS)
    rows = [f"{e},{10 * e},0.5,0.8,0.7,0.6,0.5,0.{e}1,0.{e}2,0.{e}3,0.{e}2,1.0" for e in range(1, 4)]
    (run / "history.csv").write_text("\n".join([header, *rows]) + "\n")
    out = tmp_path / "dice.png"
    result = run_python(["tools/plot_training.py", f"--runs={run}", f"--out={out}"], timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
