"""Train AlbuNet3D/AlbuNet2D on BraTS with the multiple Dice loss, on any tf.distribute strategy.

Usage:
    python -m tfbrats.train --flagfile=configs/3d.flags --data_dir=data/MICCAI_BraTS2020_TrainingData \\
        --model_dir=runs/3d
    python -m tfbrats.train --flagfile=configs/demo.flags --data_dir=demo_data --model_dir=runs/demo

Running the same command again resumes the run from its last checkpoint, with or without
``--overwrite`` (which replaces only a run made with other settings). Multi-worker: start the
same command on every machine with its own TF_CONFIG and ``--strategy=multi_worker``, and a
``--model_dir`` every worker can read (a shared file system). The run folder's layout is
described in `tfbrats.training.run`. Every flag but ``--overwrite`` is a `TrainConfig` setting,
defined here from `tfbrats.training.config.settings()`.
"""

from __future__ import annotations

import sys
import weakref

from absl import app, flags, logging

from tfbrats.training.config import settings

_DEFINE = {
    "string": flags.DEFINE_string, "integer": flags.DEFINE_integer, "float": flags.DEFINE_float,
    "boolean": flags.DEFINE_boolean,
}


def _define_flags() -> None:
    """One flag per row of the settings table."""
    for setting in settings():
        if setting.kind == "size":
            flags.DEFINE_list(setting.name, [str(v) for v in setting.default], setting.help)
        elif setting.choices and setting.kind == "string":
            flags.DEFINE_enum(setting.name, setting.default, list(setting.choices), setting.help)
        else:
            _DEFINE[setting.kind](setting.name, setting.default, setting.help)


_define_flags()
_OVERWRITE = flags.DEFINE_boolean(
    "overwrite", False, "Delete the run in --model_dir and start afresh, but only when it was made with other "
    "settings; a run with the same settings (more --epochs included) is resumed either way.")
_TUNE = flags.DEFINE_boolean(
    "tune", True, "When training ends, choose the post-processing on the validation cases and write it into the "
    "model (python -m tfbrats.tune); --notune leaves the defaults (brain mask only).")
_ALL_FOLDS = flags.DEFINE_boolean(
    "all_folds", False, "Train every fold of the split: --fold into --model_dir, each other fold k into "
    "<model_dir>-fold<k> (each resumed like any run), then choose the post-processing on all their validation "
    "cases (out-of-fold) and write it into every fold's model. Rerun with it to train a finished run's other folds.")
flags.mark_flag_as_required("model_dir")


def recorded_flags(config=None) -> str:
    """This module's flags with their values, one ``--name=value`` a line (a flagfile that resumes the run).

    ``--overwrite``, ``--tune`` and ``--all_folds`` are left out: rerunning the recorded flags must
    resume, never wipe, the run, and neither tuning nor the other folds are training settings.
    With `config` (a fold of ``--all_folds``), its fold and folder replace the flags' own.

    Example: after ``python -m tfbrats.train --model_dir=runs/demo --batch_size=2``, its flagfile
    ``runs/demo/flags.txt`` holds one line per flag, among them::

        --batch_size=2
        --model_dir=runs/demo
    """
    own = flags.FLAGS.get_key_flags_for_module(sys.modules[__name__])
    left_out = (_OVERWRITE.name, _TUNE.name, _ALL_FOLDS.name)
    chosen = sorted((f for f in own if f.value is not None and f.name not in left_out), key=lambda f: f.name)
    fold = {"fold": config.fold, "model_dir": config.model_dir} if config is not None else {}
    return "".join(f"--{flag.name}={fold[flag.name]}\n" if flag.name in fold else f"{flag.serialize()}\n"
                   for flag in chosen)


def config_from_flags():
    """The `TrainConfig` of the parsed flags.

    Example: inside `main`, once absl has parsed ``--model=albunet3d``::

        config = config_from_flags()
        config.model  # 'albunet3d'
    """
    from tfbrats.training.config import config_from_values

    return config_from_values({setting.name: flags.FLAGS[setting.name].value for setting in settings()})


# One compiled predictor per model: a traced function reads the weights' current values at each call.
_VOLUME_PREDICTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def score_volumes(model, cases: list) -> dict[str, float]:
    """Mean Dice per region (WT, TC, ET, and RC for a model with the cavity) on whole cropped cases, one pass each.

    The model's own segmentation contract turns probabilities into labels, as prediction does
    (`tfbrats.inference.predict.window_probabilities`, `tfbrats.contract.finish_segmentation`),
    with the window replaced by a single pass; Dice follows BraTS (1 when both are empty).
    The pass runs through `tfbrats.inference.model.make_predictor` (a traced function, compiled
    once per model and reused while its weights change), not eagerly: on a 123x201x184 case an
    eager pass of the demo's AlbuNet3D held 14 GB, the traced one 2.5 GB.

    Example: with a tfbrats model and validation cases (`tfbrats.data.load_case`)::

        score_volumes(model, val_cases)  # {'WT': 0.95, 'TC': 0.91, 'ET': 0.87}
    """
    from tfbrats.contract import SegmentationContract, Window, finish_segmentation
    from tfbrats.evaluation.tuning import mean_dice
    from tfbrats.inference.model import make_predictor
    from tfbrats.inference.predict import window_probabilities

    contract = SegmentationContract.from_json(model.segmentation)
    contract = contract.replace(window=Window(patch_size=None, steps=contract.window.steps, batch_size=1))
    predictor = _VOLUME_PREDICTORS.get(model)
    if predictor is None:
        predictor = _VOLUME_PREDICTORS[model] = make_predictor(model, contract.target)
    labels = [finish_segmentation(window_probabilities(case.image, predictor, contract), case.image, contract)
              for case in cases]
    return mean_dice(labels, [case.label for case in cases], contract.target.label_set)


def main(argv: list[str]) -> int:
    """Trains with the flags; a bad configuration exits with status 2 and a message on stderr."""
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}; every setting is a --flag", file=sys.stderr)
        return 2
    from tfbrats.training import ConfigError, StrategyError, cluster_role, train
    from tfbrats.training.folds import other_fold_configs

    # TensorFlow's Python logs go through absl, which app.run sets to INFO: keep the console to progress.
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


if __name__ == "__main__":
    app.run(main)
