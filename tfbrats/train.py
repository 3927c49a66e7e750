"""Train AlbuNet3D/AlbuNet2D on BraTS with the multiple Dice loss, on any tf.distribute strategy.

Usage:
    python -m tfbrats.train --flagfile=configs/3d.flags --data_dir=data/MICCAI_BraTS2020_TrainingData \\
        --model_dir=runs/3d
    python -m tfbrats.train --flagfile=configs/demo.flags --data_dir=demo_data --model_dir=runs/demo

Running the same command again resumes the run from its last checkpoint. Multi-worker: start
the same command on every machine with its own TF_CONFIG and ``--strategy=multi_worker``, and a
``--model_dir`` every worker can read (a shared file system). The run folder's layout is
described in `tfbrats.training.loop`.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_DATA_DIR = flags.DEFINE_string("data_dir", None, "BraTS dataset root, case folder or CSV manifest (or --cache_dir).")
_CACHE_DIR = flags.DEFINE_string("cache_dir", None, "Cache made by python -m tfbrats.prepare (or --data_dir).")
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Run folder: checkpoints, logs, history.csv, best/final.keras.")
_MODEL = flags.DEFINE_enum("model", "albunet3d", ["albunet3d", "albunet2d"], "Network.")
_INPUT_CHANNELS = flags.DEFINE_integer("input_channels", 3, "3 (FLAIR, T1c, T2) or 4 (plus T1).")
_PATCH_SIZE = flags.DEFINE_list("patch_size", ["24", "128", "128"], "Training patch D,H,W (H, W multiples of 32).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 24, "Global batch size, split over the replicas.")
_EPOCHS = flags.DEFINE_integer("epochs", 50, "Epochs in total (raise it to extend a finished run).")
_STEPS = flags.DEFINE_integer("steps_per_epoch", 100, "Training batches per epoch.")
_VALIDATION_STEPS = flags.DEFINE_integer("validation_steps", 0, "Validation batches per epoch (0: one patch per case).")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
_ENCODER_WEIGHTS = flags.DEFINE_string(
    "encoder_weights", None, "ResNet34 ImageNet weights (.weights.h5 from tools/convert_weights.py, .safetensors, "
    ".pth); empty or unset: random initialisation.")
_FOLD = flags.DEFINE_integer("fold", 0, "Validation fold.")
_NUM_FOLDS = flags.DEFINE_integer("num_folds", 5, "Folds of the patient split.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of split, patches, augmentation and initial weights.")
_AUGMENT = flags.DEFINE_boolean("augment", True, "Augment training patches (probabilities below).")
_AUG_ELASTIC = flags.DEFINE_float("aug_elastic", 0.2, "Probability of an elastic deformation.")
_AUG_FLIP = flags.DEFINE_float("aug_flip", 0.5, "Probability of a flip, per axis.")
_AUG_ROTATE = flags.DEFINE_float("aug_rotate", 0.3, "Probability of an in-plane rotation.")
_AUG_SCALE = flags.DEFINE_float("aug_scale", 0.3, "Probability of a scaling.")
_AUG_GAMMA = flags.DEFINE_float("aug_gamma", 0.3, "Probability of a gamma change.")
_AUG_BRIGHTNESS = flags.DEFINE_float("aug_brightness", 0.3, "Probability of a brightness/contrast change.")
_AUG_NOISE = flags.DEFINE_float("aug_noise", 0.2, "Probability of Gaussian noise.")
_AUG_BLUR = flags.DEFINE_float("aug_blur", 0.2, "Probability of a Gaussian blur.")
_FOREGROUND = flags.DEFINE_float("foreground_fraction", 0.0, "Probability that a patch is centred on tumor.")
_INCLUDE_BACKGROUND = flags.DEFINE_boolean(
    "include_background", True, "Average the Dice loss over background too (published code) or tumor classes only.")
_CROSS_ENTROPY_WEIGHT = flags.DEFINE_float(
    "cross_entropy_weight", 0.0, "Weight of a cross-entropy term added to the Dice loss (0: the paper's loss).")
_TARGET = flags.DEFINE_enum(
    "target", "classes", ["classes", "regions"],
    "classes: softmax over the classes (the paper); regions: a sigmoid each for WT, TC, ET with a region Dice loss.")
_MODALITY_DROPOUT = flags.DEFINE_float(
    "modality_dropout", 0.0, "Probability that a training patch loses each input channel (never all; filled with 0, "
    "as a missing modality at prediction), so the model copes with missing modalities; 0: off.")
_MIXED_PRECISION = flags.DEFINE_boolean("mixed_precision", False, "Compute in bfloat16 (mixed_bfloat16 policy).")
_STRATEGY = flags.DEFINE_enum("strategy", "mirrored", ["mirrored", "multi_worker", "default"],
                              "mirrored: all local GPUs (or the CPU); multi_worker: from TF_CONFIG.")
_OVERWRITE = flags.DEFINE_boolean("overwrite", False, "Replace a run in --model_dir made with other flags.")
flags.mark_flag_as_required("model_dir")



def recorded_flags() -> str:
    """This module's flags with their values, one ``--name=value`` a line (a flagfile that resumes the run).

    ``--overwrite`` is left out: rerunning the recorded flags must resume, never wipe, the run.

    Example:
        >>> print(recorded_flags())  # doctest: +SKIP
        --batch_size=2
    """
    own = flags.FLAGS.get_key_flags_for_module(sys.modules[__name__])
    chosen = sorted((f for f in own if f.value is not None and f.name != _OVERWRITE.name), key=lambda f: f.name)
    return "".join(f"{flag.serialize()}\n" for flag in chosen)


def config_from_flags():
    """The `TrainConfig` of the parsed flags.

    Example:
        >>> config_from_flags().model  # doctest: +SKIP
        'albunet3d'
    """
    from tfbrats.data import AugmentConfig
    from tfbrats.training import ConfigError, TrainConfig

    try:
        patch_size = tuple(int(v) for v in _PATCH_SIZE.value)
    except ValueError as error:
        raise ConfigError(f"--patch_size must be three integers D,H,W; got {','.join(_PATCH_SIZE.value)}") from error
    augment = None
    if _AUGMENT.value:
        try:
            augment = AugmentConfig(
                elastic=_AUG_ELASTIC.value, flip=_AUG_FLIP.value, rotate=_AUG_ROTATE.value, scale=_AUG_SCALE.value,
                gamma=_AUG_GAMMA.value, brightness=_AUG_BRIGHTNESS.value, noise=_AUG_NOISE.value, blur=_AUG_BLUR.value,
            )
        except ValueError as error:
            raise ConfigError(f"bad augmentation flag: {error}") from error
    return TrainConfig(
        model_dir=_MODEL_DIR.value,
        data_dir=_DATA_DIR.value,
        cache_dir=_CACHE_DIR.value,
        model=_MODEL.value,
        input_channels=_INPUT_CHANNELS.value,
        patch_size=patch_size,
        batch_size=_BATCH_SIZE.value,
        epochs=_EPOCHS.value,
        steps_per_epoch=_STEPS.value,
        validation_steps=_VALIDATION_STEPS.value,
        learning_rate=_LEARNING_RATE.value,
        encoder_weights=_ENCODER_WEIGHTS.value or None,
        fold=_FOLD.value,
        num_folds=_NUM_FOLDS.value,
        seed=_SEED.value,
        augment=augment,
        foreground_fraction=_FOREGROUND.value,
        include_background=_INCLUDE_BACKGROUND.value,
        cross_entropy_weight=_CROSS_ENTROPY_WEIGHT.value,
        mixed_precision=_MIXED_PRECISION.value,
        strategy=_STRATEGY.value,
        target=_TARGET.value,
        modality_dropout=_MODALITY_DROPOUT.value,
    )


def main(argv: list[str]) -> int:
    """Trains with the flags; a bad configuration exits with status 2 and a message on stderr."""
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}; every setting is a --flag", file=sys.stderr)
        return 2
    from tfbrats.training import ConfigError, StrategyError, train

    # TensorFlow's Python logs go through absl, which app.run sets to INFO: keep the console to progress.
    logging.set_verbosity(logging.WARNING)
    try:
        config = config_from_flags()
        train(config, overwrite=_OVERWRITE.value, flags_text=recorded_flags())
    except (ConfigError, StrategyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    app.run(main)
