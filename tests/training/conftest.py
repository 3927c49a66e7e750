"""Shared fixtures for the training tests: a tiny synthetic dataset and helpers to run scripts."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tfbrats.data.synthetic import write_synthetic_dataset

REPO = Path(__file__).resolve().parents[2]
# 48x48x32 voxels: the cropped brains are about 40 voxels across, so 32x32 patches fit.
SHAPE_XYZ = (48, 48, 32)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four labelled synthetic cases (the 4th without enhancing tumor)."""
    root = tmp_path_factory.mktemp("tiny_brats")
    write_synthetic_dataset(root, cases=4, shape=SHAPE_XYZ, seed=0)
    return root


def tiny_flags(data: Path, model_dir: Path, **overrides) -> list[str]:
    """Command-line flags of a seconds-long AlbuNet2D run on `data` (1x32x32 patches, batch 2)."""
    values = {
        "data_dir": data, "model_dir": model_dir, "model": "albunet2d", "patch_size": "1,32,32",
        "batch_size": 2, "epochs": 1, "steps_per_epoch": 2, "num_folds": 2, "foreground_fraction": 0.5,
        "strategy": "default",
    } | overrides
    return [f"--{name}={value}" for name, value in values.items()]


def python_env(**extra: str) -> dict[str, str]:
    """The environment of a child Python: quiet TensorFlow, one thread pool per process."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow", **extra}


def run_python(args: list[str], timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """Runs ``python <args>`` in the repository root and returns the finished process."""
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=python_env(**env))


def tiny_config(data: Path, model_dir: Path, **changes):
    """A `TrainConfig` of a seconds-long run on `data` (1x32x32 patches, batch 2, no augmentation)."""
    from tfbrats.training import TrainConfig

    values = dict(model_dir=str(model_dir), data_dir=str(data), model="albunet2d", patch_size=(1, 32, 32),
                  batch_size=2, epochs=2, steps_per_epoch=2, num_folds=2, foreground_fraction=0.5, strategy="default",
                  augment=None, volume_validation_every=0) | changes
    return TrainConfig(**values)


def _tiny_trainer_class():
    import keras

    from tfbrats.training import Trainer

    class TinyTrainer(Trainer):
        """A `Trainer` whose model is two per-voxel dense layers: the loop, files and data of a run in seconds."""

        def build_model(self):
            inputs = keras.Input((None, None, None, self.config.input_channels))
            hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
            return keras.Model(inputs, keras.layers.Dense(4, dtype="float32", name="final")(hidden), name="tiny")

    return TinyTrainer


@pytest.fixture(scope="session")
def tiny_trainer():
    """The `TinyTrainer` class (a `Trainer` variant overriding only `build_model`)."""
    return _tiny_trainer_class()
