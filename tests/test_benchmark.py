"""tools/benchmark.py train_step prints its figures as JSON (tiny sizes: figures, not speed, are checked)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "tools" / "benchmark.py"


@pytest.mark.slow
def test_train_step_prints_its_figures():
    command = [sys.executable, str(BENCHMARK), "train_step", "--patch", "2", "32", "32", "--shape", "48", "48", "32",
               "--cases", "2", "--steps", "1", "--repeats", "1"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=900, check=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    figures = json.loads(finished.stdout)
    assert figures["benchmark"] == "train_step" and figures["patch"] == [2, 32, 32]
    # 3 x forward GFLOP of a 24x128x128 window, scaled to 2 x 2x32x32 voxels.
    assert figures["step_gflop"] == pytest.approx(3 * 90.66 * 2 * 2 * 32 * 32 / (24 * 128 * 128), abs=0.01)
    assert figures["in_memory_seconds"] > 0 and figures["pipeline_seconds"] > 0
    assert figures["input_bound_ratio"] == pytest.approx(figures["pipeline_seconds"] / figures["in_memory_seconds"],
                                                         rel=0.03)
    assert figures["ratio_to_peak"] == pytest.approx(
        figures["step_gflop"] / figures["in_memory_seconds"] / figures["peak_gflops"], rel=0.03)
