"""Training: the settings and their checks, the run folder, the distributed steps and the trainer.

- `config`: `TrainConfig` (every setting declared once, with its help) and `check_config`;
- `data`: `load_split`, `load_validation_cases`, `check_patch_fits`;
- `run`: `Run`, the run folder's layout and records (inference reads a run through it);
- `steps`: `make_step_functions`, the custom distributed steps (with float16 loss scaling);
- `factories`: model, loss, schedule and precision of a config;
- `trainer`: `Trainer` (hooks a variant overrides) and `train`, its one-call form;
- `metrics`: per-region Dice as Keras metrics (`RegionDice`) and the voxel counts the steps add up;
- `progress`, `strategy`: console output; distribution strategies.

Example:
    ``train(TrainConfig(model_dir="runs/demo", data_dir="demo_data"))`` trains and writes the run
    folder, which `Run` reads back:

    >>> import tempfile
    >>> from tfbrats.training import Run, TrainConfig
    >>> tmp = tempfile.TemporaryDirectory()
    >>> Run(tmp.name).write_config(TrainConfig(model_dir=tmp.name))
    >>> Run(tmp.name).config.patch_size
    (24, 128, 128)
    >>> tmp.cleanup()
"""

from tfbrats.training.config import ConfigError, TrainConfig, check_config, settings
from tfbrats.training.data import check_patch_fits, load_split, load_validation_cases
from tfbrats.training.factories import (
    build_model,
    contract_of,
    label_set_of,
    make_loss,
    make_schedule,
    precision,
    target_of,
)
from tfbrats.training.run import HISTORY_COLUMNS, Run, RunError
from tfbrats.training.steps import make_step_functions
from tfbrats.training.strategy import ClusterRole, StrategyError, cluster_role, make_strategy
from tfbrats.training.trainer import Trainer, TrainResult, VolumeScorer, train

__all__ = [
    "HISTORY_COLUMNS",
    "ClusterRole",
    "ConfigError",
    "Run",
    "RunError",
    "StrategyError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "VolumeScorer",
    "build_model",
    "check_config",
    "check_patch_fits",
    "cluster_role",
    "contract_of",
    "load_split",
    "load_validation_cases",
    "make_loss",
    "make_schedule",
    "make_step_functions",
    "make_strategy",
    "precision",
    "settings",
    "label_set_of",
    "target_of",
    "train",
]
