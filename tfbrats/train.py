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

import numpy as np
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
flags.mark_flag_as_required("model_dir")


def recorded_flags() -> str:
    """This module's flags with their values, one ``--name=value`` a line (a flagfile that resumes the run).

    ``--overwrite`` and ``--tune`` are left out: rerunning the recorded flags must resume, never
    wipe, the run, and tuning is not a training setting.

    Example:
        >>> print(recorded_flags())  # doctest: +SKIP
        --batch_size=2
    """
    own = flags.FLAGS.get_key_flags_for_module(sys.modules[__name__])
    chosen = sorted((f for f in own if f.value is not None and f.name not in (_OVERWRITE.name, _TUNE.name)),
                    key=lambda f: f.name)
    return "".join(f"{flag.serialize()}\n" for flag in chosen)


def config_from_flags():
    """The `TrainConfig` of the parsed flags.

    Example:
        >>> config_from_flags().model  # doctest: +SKIP
        'albunet3d'
    """
    from tfbrats.training.config import config_from_values

    return config_from_values({setting.name: flags.FLAGS[setting.name].value for setting in settings()})


def score_volumes(model, cases: list) -> dict[str, float]:
    """Mean Dice per region (WT, TC, ET, and RC for a model with the cavity) on whole cropped cases, one pass each.

    The model's own segmentation contract turns probabilities into labels, as prediction does
    (`tfbrats.inference.predict.window_probabilities`, `tfbrats.contract.finish_segmentation`),
    with the window replaced by a single pass; Dice follows BraTS (1 when both are empty).

    Example:
        >>> score_volumes(model, val_cases)  # doctest: +SKIP
        {'WT': 0.95, 'TC': 0.91, 'ET': 0.87}
    """
    import keras

    from tfbrats.contract import SegmentationContract, Window, finish_segmentation
    from tfbrats.evaluation.tuning import mean_dice
    from tfbrats.inference.predict import window_probabilities

    contract = SegmentationContract.from_json(model.segmentation)
    contract = contract.replace(window=Window(patch_size=None, steps=contract.window.steps, batch_size=1))

    def predictor(batch: np.ndarray) -> np.ndarray:  # eager: the model changes between calls
        return keras.ops.convert_to_numpy(contract.target.probabilities(model(batch, training=False)))

    labels = [finish_segmentation(window_probabilities(case.image, predictor, contract), case.image, contract)
              for case in cases]
    return mean_dice(labels, [case.label for case in cases], contract.target.label_set)


def main(argv: list[str]) -> int:
    """Trains with the flags; a bad configuration exits with status 2 and a message on stderr."""
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}; every setting is a --flag", file=sys.stderr)
        return 2
    from tfbrats.training import ConfigError, StrategyError, cluster_role, train

    # TensorFlow's Python logs go through absl, which app.run sets to INFO: keep the console to progress.
    logging.set_verbosity(logging.WARNING)
    try:
        config = config_from_flags()
        train(config, overwrite=_OVERWRITE.value, flags_text=recorded_flags(), volume_scorer=score_volumes)
    except (ConfigError, StrategyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if _TUNE.value and cluster_role(config.strategy).is_chief:
        from tfbrats.evaluation.tuning_run import tune_run

        print(tune_run(config.model_dir), flush=True)
    return 0


if __name__ == "__main__":
    app.run(main)
