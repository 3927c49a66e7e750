"""tools/plot_training.py draws validation Dice curves from a run's history.csv."""

import numpy as np
import pytest

from tests.training.conftest import run_python
from tfbrats.training import HISTORY_COLUMNS, Run

# Validation Dice per region, constant over the epochs, so each panel's line is one horizontal row.
VALUES = {"WT": 0.9, "TC": 0.6, "ET": 0.3}


def test_plot_training_draws_each_region_at_its_value(tmp_path):
    image = pytest.importorskip("matplotlib.image")
    run = Run(tmp_path / "run")
    run.path.mkdir()
    rows = []
    for epoch in range(1, 4):
        row = dict.fromkeys(HISTORY_COLUMNS, 0.5) | {"epoch": epoch, "step": 10 * epoch}
        rows.append(row | {f"val_dice_{region}": value for region, value in VALUES.items()})
    run.write_history(rows)
    assert [row["val_dice_WT"] for row in run.history()] == [0.9, 0.9, 0.9]
    out = tmp_path / "dice.png"
    result = run_python(["tools/plot_training.py", f"--runs={run.path}", f"--out={out}"], timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(out)[..., :3]
    assert pixels.shape == (432, 1512, 3)  # 3 panels of 4.2 x 3.6 inches at 120 dpi
    # The axes frames (black spines, shared y) give the rows of Dice 1.0 (top) and 0.0 (bottom).
    black = (pixels < 0.15).all(axis=-1)
    spines = np.flatnonzero(black.sum(axis=1) > 0.5 * pixels.shape[1])
    top, bottom = spines.min(), spines.max()
    assert bottom - top > 200
    # The run's line is matplotlib's first colour, #1f77b4.
    blue = (np.abs(pixels - np.array([0x1F, 0x77, 0xB4]) / 255).max(axis=-1) < 0.03)
    third = pixels.shape[1] // 3
    for panel, (region, value) in enumerate(VALUES.items()):
        rows_drawn = np.flatnonzero(blue[:, panel * third:(panel + 1) * third].any(axis=1))
        line_row = np.median(np.nonzero(blue[:, panel * third:(panel + 1) * third])[0])
        assert rows_drawn.size > 0, region
        assert line_row == pytest.approx(bottom - value * (bottom - top), abs=3), region
