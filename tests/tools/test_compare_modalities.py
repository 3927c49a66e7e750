"""tools/compare_modalities.py trains the three models and writes the Dice table, here at a tiny size."""

import dataclasses

import numpy as np
import pytest

from tests.training.conftest import run_python


@pytest.mark.slow
def test_compare_modalities_writes_the_table(tmp_path):
    output = tmp_path / "table.md"
    result = run_python(
        ["tools/compare_modalities.py", f"--workdir={tmp_path / 'work'}", f"--output={output}", "--train_cases=3",
         "--test_cases=1", "--shape=48,48,32", "--model=albunet2d", "--patch_size=1,32,32", "--epochs=1",
         "--steps_per_epoch=1"],
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = output.read_text().splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith(("| model", "| ---"))]
    assert len(rows) == 3 * 4, lines
    for model in ("classes", "classes + dropout", "regions + dropout"):
        assert [row.split(" | ")[1] for row in rows if row.startswith(f"| {model} |")] == ["none", "FLAIR", "T1c", "T2"]
    table = {tuple(row.strip("| ").split(" | ")[:2]): [float(v) for v in row.strip("| ").split(" | ")[2:]]
             for row in rows}
    assert all(len(dices) == 3 for dices in table.values())
    assert "| regions + dropout | T2 |" in result.stdout
    # Recomputed here for the class model: FLAIR zeroed in the preprocessed image (the tool instead
    # leaves the file out), the same windows, whole-tumor Dice in numpy, over the held-out case.
    from tfbrats.data import MISSING_FILL, find_cases, load_case, uncrop
    from tfbrats.inference.model import load_model, make_predictor, override_contract
    from tfbrats.inference.predict import segment

    loaded = load_model(tmp_path / "work" / "runs" / "classes")
    predictor = make_predictor(loaded.model, loaded.target)
    contract = override_contract(loaded.contract, patch_size=(1, 32, 32), steps=(1, 32, 32), batch_size=2)
    (case,) = find_cases(tmp_path / "work" / "test").cases
    full = load_case(case)
    truth = uncrop(full.label, full.meta) > 0
    for missing, channel in (("none", None), ("FLAIR", 0), ("T2", 2)):
        image = full.image.copy()
        if channel is not None:
            image[..., channel] = MISSING_FILL
        labels = segment(dataclasses.replace(full, image=image), predictor, contract)
        predicted = labels > 0
        wt = 2.0 * np.logical_and(predicted, truth).sum() / (predicted.sum() + truth.sum())
        assert table[("classes", missing)][0] == pytest.approx(wt, abs=6e-4), missing
