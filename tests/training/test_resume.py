"""A run killed with SIGKILL during training resumes from its last checkpoint when started again."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.training.conftest import REPO, python_env, run_python, tiny_flags


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

    result = run_python(["-m", "tfbrats.train", *flags])
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = [line for line in result.stdout.splitlines() if line.startswith("Resuming from checkpoint")]
    assert resumed and " of 6 epochs done" in resumed[0], result.stdout[-3000:]
    done = int(resumed[0].split(": ", 1)[1].split(" of ")[0])
    assert 1 <= done < 6
    assert f"Epoch {done + 1}/6" in result.stdout and "Epoch 1/6" not in result.stdout
    epochs = [line.split(",")[0] for line in (model_dir / "history.csv").read_text().splitlines()[1:]]
    assert epochs == [str(e) for e in range(1, 7)]
    assert (model_dir / "final.keras").is_file() and (model_dir / "best.keras").is_file()

