"""Train AlbuNet3D/AlbuNet2D on BraTS with the multiple Dice loss, on any tf.distribute strategy.

Usage:
    tfbrats-train --flagfile=configs/3d.flags --data_dir=data/MICCAI_BraTS2020_TrainingData --model_dir=runs/3d
    python -m tfbrats.train --flagfile=configs/demo.flags --data_dir=demo_data --model_dir=runs/demo

Running the same command again resumes the run from its last checkpoint, with or without
``--overwrite`` (which replaces only a run made with other settings). Multi-worker: start the
same command on every machine with its own TF_CONFIG and ``--strategy=multi_worker``, and a
``--model_dir`` every worker can read (a shared file system). The run folder's layout is
described in `tfbrats.training.run`. Every flag but ``--overwrite``, ``--tune`` and ``--all_folds``
is a `TrainConfig` setting, defined here from `tfbrats.training.config.settings()`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags, logging

from tfbrats.cli import run_command
from tfbrats.training.config import settings

FLAGS = flags.FlagValues()
_DEFINE = {
    "string": flags.DEFINE_string, "integer": flags.DEFINE_integer, "float": flags.DEFINE_float,
    "boolean": flags.DEFINE_boolean,
}


def _define_flags() -> None:
    """One flag per row of the settings table."""
    for setting in settings():
        if setting.kind == "size":
            flags.DEFINE_list(setting.name, [str(v) for v in setting.default], setting.help, flag_values=FLAGS)
        elif setting.choices and setting.kind == "string":
            flags.DEFINE_enum(setting.name, setting.default, list(setting.choices), setting.help, flag_values=FLAGS)
        else:
            _DEFINE[setting.kind](setting.name, setting.default, setting.help, flag_values=FLAGS)


_define_flags()
_OVERWRITE = flags.DEFINE_boolean(
    "overwrite", False, "Delete the run in --model_dir and start afresh, but only when it was made with other "
    "settings; a run with the same settings (more --epochs included) is resumed either way.", flag_values=FLAGS)
_TUNE = flags.DEFINE_boolean(
    "tune", True, "When training ends, choose the post-processing on the validation cases and write it into the "
    "model (tfbrats-tune); --notune leaves the defaults (brain mask only).", flag_values=FLAGS)
_ALL_FOLDS = flags.DEFINE_boolean(
    "all_folds", False, "Train every fold of the split: --fold into --model_dir, each other fold k into "
    "<model_dir>-fold<k> (each resumed like any run), then choose the post-processing on all their validation "
    "cases (out-of-fold) and write it into every fold's model. Rerun with it to train a finished run's other folds.",
    flag_values=FLAGS)
flags.mark_flag_as_required("model_dir", flag_values=FLAGS)


def recorded_flags(config=None) -> str:
    """The command's flags with their values, one ``--name=value`` a line (a flagfile that resumes the run).

    ``--overwrite``, ``--tune`` and ``--all_folds`` are left out: rerunning the recorded flags must
    resume, never wipe, the run, and neither tuning nor the other folds are training settings.
    With `config` (a fold of ``--all_folds``), its fold and folder replace the flags' own.

    Example:
        >>> _ = FLAGS(["tfbrats-train", "--model_dir=runs/demo", "--batch_size=2"])
        >>> lines = recorded_flags().splitlines()
        >>> "--batch_size=2" in lines, "--model_dir=runs/demo" in lines, any("overwrite" in x for x in lines)
        (True, True, False)
        >>> FLAGS.unparse_flags()
    """
    left_out = (_OVERWRITE.name, _TUNE.name, _ALL_FOLDS.name)
    own = {FLAGS[name] for name in FLAGS}
    chosen = sorted((f for f in own if f.value is not None and f.name not in left_out), key=lambda f: f.name)
    fold = {"fold": config.fold, "model_dir": config.model_dir} if config is not None else {}
    return "".join(f"--{flag.name}={fold[flag.name]}\n" if flag.name in fold else f"{flag.serialize()}\n"
                   for flag in chosen)


def config_from_flags():
    """The `TrainConfig` of the parsed flags.

    Example:
        >>> _ = FLAGS(["tfbrats-train", "--model_dir=runs/demo", "--patch_size=8,64,64"])
        >>> config_from_flags().patch_size
        (8, 64, 64)
        >>> FLAGS.unparse_flags()
    """
    from tfbrats.training.config import config_from_values

    return config_from_values({setting.name: FLAGS[setting.name].value for setting in settings()})


def _train() -> int:
    """Trains with the parsed flags; a bad configuration exits with status 2 and a message on stderr."""
    from tfbrats.evaluation.volumes import score_volumes
    from tfbrats.training import ConfigError, StrategyError, cluster_role, train
    from tfbrats.training.folds import other_fold_configs

    # TensorFlow's Python logs go through absl, which the command sets to INFO: keep the console to progress.
    logging.set_verbosity(logging.WARNING)
    try:
        config = config_from_flags()
        folds = [config, *other_fold_configs(config)] if _ALL_FOLDS.value else [config]
        for fold in folds:
            if len(folds) > 1:
                print(f"fold {fold.fold} of {fold.num_folds}: {fold.model_dir}", flush=True)
            train(fold, overwrite=_OVERWRITE.value, flags_text=recorded_flags(fold), volume_scorer=score_volumes)
    except (ConfigError, StrategyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if _TUNE.value and cluster_role(config.strategy).is_chief:
        from tfbrats.evaluation.tuning_run import tune_run

        print(tune_run(config.model_dir, other_folds=[fold.model_dir for fold in folds[1:]]), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``tfbrats-train``: trains with the flags in `argv` (default: the command line); the exit status.

    Example:
        >>> import contextlib, io
        >>> with contextlib.redirect_stdout(io.StringIO()) as out:
        ...     status = main(["--help"])
        >>> status, "--patch_size" in out.getvalue()
        (0, True)
    """
    return run_command(FLAGS, _train, argv, doc=__doc__, program="tfbrats-train")
