"""Cross-validation: the other folds of a run, each a run of its own beside it.

Fold k of a run in ``runs/demo`` (trained on fold f) lives in ``runs/demo-fold<k>``; its settings
are the run's with only the fold and the folder changed, so the folds' validation cases are
disjoint and together are every labelled case of the data. Choosing post-processing on all of
them (`tfbrats.evaluation.tuning_run.tune_run` with ``other_folds``) rests on every case, as
nnU-Net's choice on out-of-fold predictions does, instead of one fold's few.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from tfbrats.training.config import TrainConfig

# The settings that decide which cases a fold validates on: folds compared must agree on them.
SPLIT_SETTINGS = ("data_dir", "cache_dir", "num_folds", "seed")


def fold_config(config: TrainConfig, fold: int) -> TrainConfig:
    """The settings of fold `fold` of the run `config` describes (itself for its own fold).

    Example:
        >>> run = TrainConfig(model_dir="runs/demo", fold=0, num_folds=5)
        >>> fold_config(run, 2).model_dir, fold_config(run, 2).fold
        ('runs/demo-fold2', 2)
        >>> fold_config(run, 0) == run
        True
    """
    if fold == config.fold:
        return config
    if not 0 <= fold < config.num_folds:
        raise ValueError(f"fold {fold} does not exist in a {config.num_folds}-fold split")
    return dataclasses.replace(config, fold=fold, model_dir=f"{str(config.model_dir).rstrip('/')}-fold{fold}")


def other_fold_configs(config: TrainConfig) -> list[TrainConfig]:
    """The settings of every fold of the run but its own, in fold order.

    Example:
        >>> [c.fold for c in other_fold_configs(TrainConfig(model_dir="runs/demo", fold=1, num_folds=3))]
        [0, 2]
    """
    return [fold_config(config, fold) for fold in range(config.num_folds) if fold != config.fold]


def check_folds(configs: Sequence[TrainConfig], run_dirs: Sequence[str | Path]) -> None:
    """Refuses runs that are not distinct folds of one split (same data, fold count and seed).

    Raises:
        ValueError: Naming the runs and the setting that differs, or the fold given twice.

    Example:
        >>> a, b = TrainConfig(model_dir="a", fold=0, num_folds=2), TrainConfig(model_dir="b", fold=0, num_folds=2)
        >>> check_folds([a, b], ["a", "b"])
        Traceback (most recent call last):
        ...
        ValueError: runs a and b both validate on fold 0: give each fold once
    """
    first, first_dir = configs[0], run_dirs[0]
    seen: dict[int, str | Path] = {}
    for config, run_dir in zip(configs, run_dirs):
        for name in SPLIT_SETTINGS:
            if getattr(config, name) != getattr(first, name):
                raise ValueError(f"runs {first_dir} and {run_dir} are not folds of one split: {name} is "
                                 f"{getattr(first, name)!r} in one and {getattr(config, name)!r} in the other")
        if config.fold in seen:
            raise ValueError(f"runs {seen[config.fold]} and {run_dir} both validate on fold {config.fold}: "
                             "give each fold once")
        seen[config.fold] = run_dir
