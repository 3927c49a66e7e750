"""``tools/benchmark.py publish``: the performance table written from ``modes`` and ``reference`` JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks import publish

BENCHMARK = Path(__file__).resolve().parents[2] / "tools" / "benchmark.py"
LSCPU = {"Model name": "AMD EPYC", "CPU(s)": "2", "Flags": "fpu avx2 avx512f avx512_bf16 sse"}
STACK = {"tensorflow": "2.21.0", "keras": "3.15.1"}


def _modes() -> dict:
    run = {"seconds": 12.04, "speedup": 7.5, "windows": 1, "peak_rss_gib": 2.31, "wt_dice_vs_paper_windows": 0.9961,
           "mean_dice": {"WT": 0.9594, "TC": 0.8933, "ET": 0.8189},
           "dice_change": {"WT": -0.0011, "TC": -0.0068, "ET": -0.0049}}
    return {"model": "runs/demo", "case": "synthetic", "held_out": "3 cases", "repeats": 3, "lscpu": LSCPU,
            "stack": STACK, "machine": {"commit": "abc1234"},
            "runs": {"full_volume_bf16/tensorflow": run,
                     "full_volume_bf16/onnxruntime": {"skipped": "onnxruntime's CPU provider computes no bfloat16"}}}


def _reference() -> dict:
    return {"published_model": {"window": [24, 128, 128], "threads": 2, "seconds_per_pass": 0.362},
            "tfbrats_predict": {"case_shape": [240, 240, 155], "inference_mode": "full_volume_bf16",
                                "window": {"patch_size": None, "precision": "mixed_bfloat16"},
                                "seconds_per_case": 2.4, "wt_dice_vs_paper_windows": 0.99612},
            "published_passes": 12, "budget_seconds": 4.344, "ratio_case_to_budget": 0.552, "within_budget": True,
            "lscpu": LSCPU, "stack": {**STACK, "torch": "2.14.1"}, "machine": {"commit": "def5678"}}


def test_table_carries_every_figure_with_its_cpu_stack_and_commit():
    table = publish.render(_modes(), _reference(), Path("docs/benchmarks/idle"))
    assert "CPU AMD EPYC, 2 CPUs, flags avx2 avx512f avx512_bf16; tensorflow 2.21.0, keras 3.15.1, torch 2.14.1; " \
           "commit def5678" in table
    assert "commit abc1234" in table
    assert "| 0.362 |" in table and "| the budget: 12 such passes (seconds) | 4.34 |" in table
    assert "mode `full_volume_bf16`, window full volume, precision mixed_bfloat16; seconds) | 2.40 |" in table
    assert "| ratio case / budget (within the budget) | 0.55 |" in table
    assert "the paper's 24x128x128 windows (float32), same case | 0.9961 |" in table
    row = ("| `full_volume_bf16` | tensorflow | 12.0 | 7.50x | 1 | 2.31 | 0.9594 / 0.8933 / 0.8189 | "
           "-0.0011 / -0.0068 / -0.0049 | 0.9961 |")
    assert row in table.splitlines()
    assert "| `full_volume_bf16` | onnxruntime | skipped: onnxruntime's CPU provider computes no bfloat16 |" in table


def test_table_replaces_only_what_lies_between_the_markers(tmp_path):
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Title\n\nbefore\n{publish.BEGIN}\nold table\n{publish.END}\nafter\n")
    publish.write_between_markers(doc, "| new |\n")
    assert doc.read_text() == f"# Title\n\nbefore\n{publish.BEGIN}\n| new |\n{publish.END}\nafter\n"
    publish.write_between_markers(doc, "| newer |\n")  # the markers stay, so it can be rewritten
    assert doc.read_text().count("| newer |") == 1 and "| new |" not in doc.read_text()
    (tmp_path / "bare.md").write_text("no markers\n")
    with pytest.raises(ValueError, match=r"bare\.md: expected the markers"):
        publish.write_between_markers(tmp_path / "bare.md", "| x |\n")


@pytest.mark.parametrize("name", ["docs/performance.md", "README.md"])
def test_the_repository_guide_and_readme_have_the_markers(name):
    text = (Path(__file__).resolve().parents[2] / name).read_text()
    assert text.count(publish.BEGIN) == 1 and text.index(publish.BEGIN) < text.index(publish.END)


def test_render_only_writes_the_table_from_the_kept_json(tmp_path):
    (tmp_path / "modes.json").write_text(json.dumps(_modes()))
    (tmp_path / "reference.json").write_text(json.dumps(_reference()))
    doc, readme = tmp_path / "guide.md", tmp_path / "README.md"
    for path in (doc, readme):
        path.write_text(f"# {path.name}\n{publish.BEGIN}\n{publish.END}\n")
    finished = subprocess.run([sys.executable, str(BENCHMARK), "publish", f"--out={tmp_path}", f"--doc={doc}",
                               f"--readme={readme}", "--render_only"], capture_output=True, text=True, timeout=600,
                              check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert json.loads(finished.stdout)["doc"] == str(doc)
    assert publish.render(_modes(), _reference(), tmp_path) in doc.read_text()
    # The README gets the comparison with the published model alone, with a link to the whole table.
    summary = readme.read_text()
    assert publish.render_reference(_reference(), tmp_path, doc) in summary
    assert "| ratio case / budget (within the budget) | 0.55 |" in summary and "full_volume_bf16/tensorflow" not in \
        summary and "| `full_volume_bf16` | tensorflow |" not in summary and f"]({doc})" in summary


def test_without_modes_json_the_comparison_is_written_and_the_mode_table_says_it_was_not_measured(tmp_path):
    table = publish.render(None, _reference(), tmp_path)
    assert publish.render_reference(_reference(), tmp_path) in table
    assert f"not measured with these figures (no `{tmp_path}/modes.json`)" in table
    assert "| mode | backend |" not in table
