"""Shared fixtures: the real AlbuNet3D on tiny windows, saved as a run and exported once per session."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tfbrats.contract import SegmentationContract, Window
from tfbrats.inference.model import save_with_contract
from tfbrats.models import AlbuNet3D

ROOT = Path(__file__).resolve().parents[2]
PATCH = (4, 32, 32)
STEPS = (2, 16, 16)
BATCH = 3
VOLUME_SHAPE = (6, 40, 50, 3)
# The contract the run's model carries: the windows above, the brain mask, no other post-processing.
CONTRACT = SegmentationContract(window=Window(PATCH, STEPS, BATCH))


def run_tool(name: str, *args: str) -> subprocess.CompletedProcess:
    """Runs `python tools/<name> args...` from the repository root and returns the finished process."""
    return subprocess.run([sys.executable, str(ROOT / "tools" / name), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=900)


@pytest.fixture(scope="session")
def model() -> keras.Model:
    """AlbuNet3D (the real architecture) with a softmax head and fixed random weights."""
    keras.utils.set_random_seed(0)
    model = AlbuNet3D(head="softmax")
    # Freshly initialised, the classes differ by ~1e-6 in probability; scaled final weights give
    # clear margins, so that identical labels test the windows rather than rounding luck.
    final = model.get_layer("final")
    final.kernel.assign(final.kernel * 100.0)
    return model


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory, model: keras.Model) -> Path:
    """A training run folder as `python -m tfbrats.train` leaves it: best.keras (with its contract) and config.json."""
    folder = tmp_path_factory.mktemp("run")
    save_with_contract(model, CONTRACT, folder / "best.keras")
    (folder / "config.json").write_text(json.dumps({"model": "albunet3d", "patch_size": list(PATCH)}))
    return folder


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, run_dir: Path) -> Path:
    """`tools/export.py` of the run: the version folder saved_models/albunet3d/1."""
    base = tmp_path_factory.mktemp("saved_models") / "albunet3d"
    done = run_tool("export.py", f"--model={run_dir}", f"--output={base}", "--version=1",
                    "--steps=" + ",".join(map(str, STEPS)), f"--batch_size={BATCH}")
    assert done.returncode == 0, done.stderr
    return base / "1"


@pytest.fixture(scope="session")
def volume() -> np.ndarray:
    """A preprocessed-looking volume (D, H, W, C) that is not a multiple of the window."""
    return np.random.default_rng(1).normal(size=VOLUME_SHAPE).astype(np.float32)
