"""Exact resume across processes, kill-and-rerun, and the log a run writes when stdout is a file."""

import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfbrats.models  # noqa: F401  (registers the AlbuNet classes for loading .keras files)
from tests.training.conftest import REPO, python_env, run_python, tiny_flags
from tfbrats.training import Run

NOISE = re.compile(r"cuda|cuFFT|cuDNN|cuBLAS|TensorRT|oneDNN|cpu_feature_guard", re.IGNORECASE)


def _quiet_env() -> dict[str, str]:
    """The child's environment without TF_CPP_MIN_LOG_LEVEL: the entry point must silence TensorFlow itself."""
    env = python_env()
    env.pop("TF_CPP_MIN_LOG_LEVEL")
    return env


def _train(flags: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "tfbrats.train", *flags], cwd=REPO, capture_output=True,
                            text=True, timeout=900, env=_quiet_env())
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _state(run: Run) -> tuple[list[np.ndarray], int, np.ndarray]:
    """Final weights, optimizer iterations and the history without timings."""
    weights = keras.models.load_model(run.final_path, compile=False).get_weights()
    checkpoint = tf.train.latest_checkpoint(str(run.checkpoint_dir))
    iterations = int(tf.train.load_variable(checkpoint, "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"))
    rows = np.array([[v for k, v in row.items() if k != "seconds"] for row in run.history()])
    return weights, iterations, rows


@pytest.mark.slow
def test_one_epoch_then_a_new_process_to_two_equals_two_epochs_straight(tiny_data, tmp_path):
    flags = tiny_flags(tiny_data, tmp_path / "straight", epochs=2, volume_validation_every=1)
    straight = _train(flags)
    resumed_flags = tiny_flags(tiny_data, tmp_path / "resumed", epochs=1, volume_validation_every=1)
    first = _train(resumed_flags)
    second = _train([*resumed_flags, "--epochs=2"])
    assert "Resuming from checkpoint" in second.stdout and "1 of 2 epochs done, step 2" in second.stdout
    weights, iterations, rows = _state(Run(tmp_path / "straight"))
    weights2, iterations2, rows2 = _state(Run(tmp_path / "resumed"))
    assert iterations == iterations2 == 4
    np.testing.assert_allclose(rows2, rows, rtol=1e-6, atol=1e-7, equal_nan=True)
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(weights, weights2)) <= 1e-5
    # stdout is a pipe here: plain lines, no bar redraws or colours, a few lines per epoch; no C++ start-up noise.
    for result, epochs in ((straight, 2), (first, 1), (second, 1)):
        assert "\r" not in result.stdout and "\x1b" not in result.stdout
        # The lines at the end report the post-processing chosen on the validation cases (4, and one
        # per "little evidence" note: at most 3), then the inference mode (1, and one per mode measured).
        lines = result.stdout.splitlines()
        modes = [line for line in lines if re.match(r"  \w+: ([\d.]+ s, WT |not measured \()", line)]
        assert modes and len(lines) <= 2 + 3 * epochs + 4 + 3 + 1 + len(modes), lines
        chosen = [i for i, line in enumerate(lines) if line.startswith("post-processing chosen on")]
        assert len(chosen) == 1 and len(lines) - chosen[0] - 4 - 1 - len(modes) == sum(
            line.startswith("  little evidence:") for line in lines[chosen[0]:]), lines
        assert len([line for line in lines if re.match(r"epoch \d/\d done in", line)]) == epochs
        assert not NOISE.search(result.stderr), result.stderr[:2000]
    assert "\r" not in second.stdout


@pytest.mark.slow
def test_kill_then_rerun_resumes(tiny_data, tmp_path):
    model_dir = tmp_path / "run"
    flags = tiny_flags(tiny_data, model_dir, epochs=6)
    process = subprocess.Popen([sys.executable, "-m", "tfbrats.train", *flags], cwd=REPO, env=python_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = model_dir / "checkpoints" / "checkpoint"
    deadline = time.monotonic() + 600
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (model_dir / "final.keras").exists(), "the run finished before it could be killed"
    assert Run(model_dir).problems() == []

    result = run_python(["-m", "tfbrats.train", *flags])
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = [line for line in result.stdout.splitlines() if line.startswith("Resuming from checkpoint")]
    assert resumed and " of 6 epochs done" in resumed[0], result.stdout[-3000:]
    done = int(resumed[0].split(": ", 1)[1].split(" of ")[0])
    assert 1 <= done < 6
    assert f"epoch {done + 1}/6 done" in result.stdout and "epoch 1/6 done" not in result.stdout
    assert [int(row["epoch"]) for row in Run(model_dir).history()] == list(range(1, 7))
    assert Run(model_dir).problems() == []
    assert (model_dir / "final.keras").is_file() and (model_dir / "best.keras").is_file()


def test_train_starts_without_tensorflow_noise():
    # --help already loads TensorFlow (the flags come from the settings table); the package silences it for
    # every python -m tfbrats.* command.
    result = subprocess.run([sys.executable, "-m", "tfbrats.train", "--help"], cwd=REPO, capture_output=True,
                            text=True, timeout=300, env=_quiet_env())
    assert result.returncode == 0 and "--mixed_precision" in result.stdout, result.stderr[-2000:]
    assert not NOISE.search(result.stderr), result.stderr[:2000]
