"""What a training configuration builds: its target, contract, model, loss, learning-rate schedule and precision.

The `Trainer`'s default hooks call these; a variant may call them too and change one piece.
"""

from __future__ import annotations

import keras

from tfbrats.labels import BRATS, LabelSet, Target, get_label_set, get_target
from tfbrats.losses import SoftDiceLoss, loss_for
from tfbrats.precision import compute_precision
from tfbrats.training.config import ConfigError, TrainConfig

POLICIES = {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def label_set_of(config: TrainConfig, data_label_set: LabelSet | None = None) -> LabelSet:
    """The label set a configuration trains: its `label_set` setting, or with "auto" the data's (`BRATS` unknown).

    Raises:
        ConfigError: A forced label set with fewer classes than the data's (four classes cannot
            learn the resection cavity that post-treatment references hold).

    Example:
        >>> label_set_of(TrainConfig(model_dir="x", label_set="brats_post_treatment")).num_classes
        5
    """
    if config.label_set == "auto":
        return data_label_set or BRATS
    forced = get_label_set(config.label_set)
    if data_label_set is not None and forced.num_classes < data_label_set.num_classes:
        raise ConfigError(
            f"--label_set={forced.name} has {forced.num_classes} classes but the training data has the label set "
            f"{data_label_set.name} ({', '.join(data_label_set.classes)}); use --label_set=auto or "
            f"{data_label_set.name}"
        )
    return forced


def target_of(config: TrainConfig, data_label_set: LabelSet | None = None) -> Target:
    """The `tfbrats.labels.Target` a configuration trains on data of `data_label_set` (see `label_set_of`).

    `num_classes` applies to the label set `BRATS`; another label set has its own class count.

    Example:
        >>> target_of(TrainConfig(model_dir="x", target="regions")).num_outputs
        3
        >>> from tfbrats.labels import BRATS_POST_TREATMENT
        >>> target_of(TrainConfig(model_dir="x"), BRATS_POST_TREATMENT).output_names[-1]
        'resection cavity'
    """
    label_set = label_set_of(config, data_label_set)
    return get_target(config.target, config.num_classes if label_set is BRATS else None, label_set)


def contract_of(config: TrainConfig, data_label_set: LabelSet | None = None):
    """The segmentation contract a run's models carry: target, channels, the training patch as window.

    Window steps are the paper's (24, 32, 32), capped at the patch so windows always overlap or touch.

    Example:
        >>> contract_of(TrainConfig(model_dir="x", patch_size=(8, 64, 64))).window.steps
        (8, 32, 32)
    """
    from tfbrats.contract import SegmentationContract, Window
    from tfbrats.conventions import channels_for

    return SegmentationContract(target=target_of(config, data_label_set), channels=channels_for(config.input_channels),
                                window=Window.for_patch(tuple(config.patch_size)))


def build_model(config: TrainConfig, data_label_set: LabelSet | None = None) -> keras.Model:
    """The AlbuNet of a configuration, carrying its contract, with its pretrained encoder if one is given.

    It returns logits: one per class, or one per region (WT, TC, ET[, RC]) for ``target="regions"``;
    `data_label_set` is the training data's label set (see `label_set_of`).

    Example:
        >>> build_model(TrainConfig(model_dir="x", model="albunet2d")).name
        'albunet2d'
    """
    from tfbrats.models import AlbuNet2D, AlbuNet3D, load_encoder_weights

    model_class = AlbuNet3D if config.model == "albunet3d" else AlbuNet2D
    contract = contract_of(config, data_label_set)
    model = model_class(num_classes=contract.target.num_outputs, input_channels=config.input_channels,
                        segmentation=contract.to_json())
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = config.bn_momentum
    if config.encoder_weights:
        load_encoder_weights(model, config.encoder_weights)
    return model


def _all_layers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The layers of `layer`, nested ones included."""
    found = []
    for child in getattr(layer, "layers", ()):
        found += [child, *_all_layers(child)]
    return found


def make_loss(config: TrainConfig, data_label_set: LabelSet | None = None) -> SoftDiceLoss:
    """The loss of a configuration's target.

    Example:
        >>> make_loss(TrainConfig(model_dir="x", target="regions")).name
        'region_dice_loss'
    """
    return loss_for(target_of(config, data_label_set), include_background=config.include_background,
                    cross_entropy_weight=config.cross_entropy_weight, smooth=config.dice_smooth)


def make_schedule(config: TrainConfig) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The learning rate over the run's optimizer steps: constant, poly (power 0.9) or cosine, to 0 at the end.

    Example:
        >>> schedule = make_schedule(TrainConfig(model_dir="x", lr_schedule="poly", epochs=2, steps_per_epoch=5))
        >>> round(float(schedule(5)), 6)
        0.000536
    """
    total = config.epochs * config.steps_per_epoch
    if config.lr_schedule == "poly":
        return keras.optimizers.schedules.PolynomialDecay(config.learning_rate, total, 0.0, power=0.9)
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, total)
    return config.learning_rate


def precision(name: str):
    """The Keras dtype policy of a `mixed_precision` setting, for the models built inside, then restored.

    Example:
        >>> with precision("bfloat16"):
        ...     keras.mixed_precision.global_policy().name
        'mixed_bfloat16'
    """
    return compute_precision(POLICIES[name])
