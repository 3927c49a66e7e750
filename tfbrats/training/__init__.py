"""Training: the settings and their checks, distribution strategies, and the custom training loop.

Example:
    >>> from tfbrats.training import TrainConfig, train
    >>> result = train(TrainConfig(model_dir="runs/demo", data_dir="demo_data"))  # doctest: +SKIP
"""

from tfbrats.training.config import ConfigError, TrainConfig, check_config, check_patch_fits, load_split
from tfbrats.training.loop import TrainResult, build_model, make_loss, make_step_functions, train
from tfbrats.training.strategy import ClusterRole, StrategyError, cluster_role, make_strategy

__all__ = [
    "ClusterRole",
    "ConfigError",
    "StrategyError",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "check_config",
    "check_patch_fits",
    "cluster_role",
    "load_split",
    "make_loss",
    "make_step_functions",
    "make_strategy",
    "train",
]
