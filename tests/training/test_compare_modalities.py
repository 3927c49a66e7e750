"""tools/compare_modalities.py trains the three models and writes the Dice table, here at a tiny size."""

import pytest

from tests.training.conftest import run_python


@pytest.mark.slow
def test_compare_modalities_writes_the_table(tmp_path):
    output = tmp_path / "table.md"
    result = run_python(
        ["tools/compare_modalities.py", f"--workdir={tmp_path / 'work'}", f"--output={output}", "--train_cases=3",
         "--test_cases=1", "--shape", "48", "48", "32", "--model=albunet2d", "--patch_size=1,32,32", "--epochs=1",
         "--steps_per_epoch=1"],
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = output.read_text().splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith(("| model", "| ---"))]
    assert len(rows) == 3 * 4, lines
    for model in ("classes", "classes + dropout", "regions + dropout"):
        assert [row.split(" | ")[1] for row in rows if row.startswith(f"| {model} |")] == ["none", "FLAIR", "T1c", "T2"]
    for row in rows:
        dices = [float(v) for v in row.strip("| ").split(" | ")[2:]]
        assert len(dices) == 3 and all(0.0 <= d <= 1.0 for d in dices), row
    assert "| regions + dropout | T2 |" in result.stdout
