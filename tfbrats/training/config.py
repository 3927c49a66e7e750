"""The settings of a training run, declared once, and the checks that reject a bad one before training.

Every setting is a field of `TrainConfig` whose metadata holds its help text (and its allowed
choices or range): `settings()` turns the fields into one table (name, kind, default, help,
choices), from which ``python -m tfbrats.train`` defines its flags, `config_from_values` builds a
config from flag values, and `check_config` checks choices and ranges. Adding a setting is adding
one field. The augmentation probabilities come from `tfbrats.data.AugmentConfig` the same way
(flags ``--aug_<name>``).

Its length (~380 lines) is the settings table itself: one field with its help text per setting.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tfbrats.conventions import SIZE_MULTIPLE
from tfbrats.data import AugmentConfig
from tfbrats.labels import LABEL_SETS, TARGETS
from tfbrats.training.strategy import STRATEGIES

MODELS = ("albunet3d", "albunet2d")
PRECISIONS = ("none", "bfloat16", "float16")
SCHEDULES = ("constant", "poly", "cosine")
CONFIG_NAME = "config.json"
AUGMENT_PREFIX = "aug_"
# The augmentation probabilities (the other AugmentConfig fields are ranges, not flags).
AUGMENT_PROBABILITIES = ("elastic", "flip", "rotate", "scale", "gamma", "brightness", "noise", "blur")
# Settings that may differ when a run is resumed: more epochs extend it; the rest do not change results.
RESUMABLE_CHANGES = ("epochs", "strategy", "model_dir", "log_every")


class ConfigError(ValueError):
    """A training configuration that cannot work; the message says what to change."""


def _setting(default: Any, help: str, *, choices: tuple = (), low: float | None = None,
             high: float | None = None, default_factory: Any = None) -> Any:
    """A `TrainConfig` field with its help, allowed choices and inclusive range [low, high]."""
    metadata = {"help": help, "choices": tuple(choices), "low": low, "high": high}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the flags of ``python -m tfbrats.train``).

    Each field's help text (its metadata) is the flag's help; `settings()` lists them.

    Example:
        >>> TrainConfig(model_dir="runs/demo", data_dir="demo_data", patch_size=(16, 96, 96)).batch_size
        24
    """

    model_dir: str = _setting(None, "Run folder: config.json, checkpoints, logs, history.csv, best/final.keras.")
    data_dir: str | None = _setting(None, "BraTS dataset root, case folder or CSV manifest (or --cache_dir).")
    cache_dir: str | None = _setting(None, "Cache made by python -m tfbrats.prepare (or --data_dir).")
    model: str = _setting("albunet3d", "Network.", choices=MODELS)
    input_channels: int = _setting(3, "3 (FLAIR, T1c, T2) or 4 (plus T1).", choices=(3, 4))
    num_classes: int = _setting(
        4, "Output classes with --target=classes and the label set brats (background, core, edema, enhancing); "
        "regions have one output per region; brats_post_treatment has 5 classes.", low=2)
    patch_size: tuple[int, int, int] = _setting((24, 128, 128), "Training patch D,H,W (H, W multiples of 32).")
    batch_size: int = _setting(24, "Global batch size, split over the replicas.", low=1)
    epochs: int = _setting(50, "Epochs in total (raise it to extend a finished run).", low=1)
    steps_per_epoch: int = _setting(100, "Training batches per epoch.", low=1)
    validation_steps: int = _setting(
        0, "Validation batches of patches per epoch (0: one patch per validation case, each case once).", low=0)
    volume_validation_every: int = _setting(
        5, "Score whole validation volumes every N epochs and at the last one, and keep best.keras by their "
        "mean Dice (0: keep it by the patch validation of every epoch).", low=0)
    learning_rate: float = _setting(1e-3, "Adam's (initial) learning rate.", low=0.0)
    lr_schedule: str = _setting(
        "constant", "Learning rate over the run: constant (the paper), poly (x (1 - step/total)^0.9, nnU-Net) or "
        "cosine (half a cosine down to 0).", choices=SCHEDULES)
    bn_momentum: float = _setting(
        0.9, "BatchNormalization's moving-average momentum (moving = m * moving + (1 - m) * batch); 0.9 is torch's "
        "default, the encoder's pretraining. The moving statistics are what inference uses: with small batches a "
        "higher m (0.99) averages them over more batches, so whole-volume predictions vary less between epochs.",
        low=0.0, high=1.0)
    bn_refresh_batches: int = _setting(
        0, "Before each validation that can choose best.keras (and so before final.keras), re-estimate every "
        "BatchNormalization's moving statistics from this many unaugmented training batches with the current weights "
        "(the same batches each time); 0: keep the moving averages, which lag the weights while they change fast.",
        low=0)
    encoder_weights: str | None = _setting(
        None, "ResNet34 ImageNet weights (.weights.h5 from tools/convert_weights.py, .safetensors, .pth); "
        "empty or unset: random initialisation.")
    fold: int = _setting(0, "Validation fold.", low=0)
    num_folds: int = _setting(5, "Folds of the patient split.", low=2)
    seed: int = _setting(0, "Seed of split, patches, augmentation and initial weights.")
    augment: AugmentConfig | None = _setting(
        None, "Augment training patches (probabilities --aug_*).", default_factory=AugmentConfig)
    foreground_fraction: float = _setting(0.0, "Probability that a patch is centred on tumor.", low=0.0, high=1.0)
    foreground_sampling: str = _setting(
        "voxels", "How a patch centred on tumor is centred: on a tumor voxel of the epoch's case (voxels), or on a "
        "voxel of a tumor class drawn uniformly among the dataset's, in a case holding it (classes: every class "
        "alike, the resection cavity of post-treatment cases too).", choices=("voxels", "classes"))
    include_background: bool = _setting(
        True, "Average the Dice loss over background too (published code) or tumor classes only.")
    cross_entropy_weight: float = _setting(
        0.0, "Weight of a cross-entropy term added to the Dice loss (0: the paper's loss).", low=0.0)
    dice_smooth: float = _setting(
        1.0, "Added to the numerator and denominator of each class's batch Dice (1: the published code; a tiny "
        "value such as 1e-5, nnU-Net's, leaves a class absent from the batch without a gradient; not 0, which "
        "divides 0 by 0 where a class is absent and predicted nowhere).", low=1e-8)
    mixed_precision: str = _setting(
        "none", "Compute in bfloat16 (CPUs with AVX512_BF16 or AMX, A100/H100 GPUs) or float16 with dynamic loss "
        "scaling (V100, T4 and other GPUs without fast bfloat16); weights and logits stay float32.",
        choices=PRECISIONS)
    strategy: str = _setting(
        "mirrored", "mirrored: all local GPUs (or the CPU); multi_worker: from TF_CONFIG; default: one device.",
        choices=STRATEGIES)
    target: str = _setting(
        "classes", "classes: softmax over the classes (the paper); regions: a sigmoid each for WT, TC, ET with a "
        "region Dice loss.", choices=tuple(TARGETS))
    label_set: str = _setting(
        "auto", "Internal classes and regions: auto (from the data: brats_post_treatment, with a resection-cavity "
        "class and region RC, when any case has a cavity label, as BraTS 2024/2025; else brats), brats or "
        "brats_post_treatment.", choices=("auto", *LABEL_SETS))
    modality_dropout: float = _setting(
        0.0, "Probability that a training patch loses each input channel (never all; filled with 0, as a missing "
        "modality at prediction), so the model copes with missing modalities; 0: off.", low=0.0, high=1.0)
    log_every: int = _setting(
        0, "When stdout is not a terminal, also print a line every N steps (0: one line per epoch).", low=0)

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON values (what `config.json` holds).

        Example:
            >>> TrainConfig(model_dir="x").to_json()["patch_size"]
            [24, 128, 128]
        """
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> TrainConfig:
        """The config a `config.json` recorded; a setting the record lacks takes its default.

        Keys that name no setting are ignored, so a record with settings this version does not
        know still reads; `mixed_precision` recorded as true/false reads as bfloat16/none.

        Example:
            >>> TrainConfig.from_json({"model_dir": "x", "mixed_precision": True}).mixed_precision
            'bfloat16'
        """
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        if "patch_size" in values:
            values["patch_size"] = tuple(int(v) for v in values["patch_size"])
        if isinstance(values.get("augment"), dict):
            augment = {k: tuple(v) if isinstance(v, list) else v for k, v in values["augment"].items()}
            values["augment"] = AugmentConfig(**augment)
        if isinstance(values.get("mixed_precision"), bool):
            values["mixed_precision"] = "bfloat16" if values["mixed_precision"] else "none"
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One row of the settings table: a flag of ``python -m tfbrats.train``.

    Args:
        name: The flag's name (a `TrainConfig` field, or ``aug_<name>`` for an augmentation probability).
        kind: "string", "integer", "float", "boolean" or "size" (three integers D,H,W).
        default: The default value.
        help: The help text.
        choices: The allowed values (empty: any).
        low: Smallest allowed value (None: no bound).
        high: Largest allowed value (None: no bound).
    """

    name: str
    kind: str
    default: Any
    help: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None


_KINDS = {str: "string", int: "integer", float: "float", bool: "boolean"}


def _kind(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = args[0] if args and typing.get_origin(annotation) is not tuple else annotation
    if typing.get_origin(base) is tuple:
        return "size"
    return _KINDS[base]


def settings() -> tuple[Setting, ...]:
    """The table of every training setting, in `TrainConfig` order, augmentation probabilities after `augment`.

    Example:
        >>> [s.kind for s in settings() if s.name in ("patch_size", "augment", "aug_flip")]
        ['size', 'boolean', 'float']
    """
    hints = typing.get_type_hints(TrainConfig)
    rows = []
    for field in dataclasses.fields(TrainConfig):
        meta = field.metadata
        if field.name == "augment":
            rows.append(Setting("augment", "boolean", True, meta["help"]))
            defaults = AugmentConfig()
            rows.extend(
                Setting(f"{AUGMENT_PREFIX}{name}", "float", getattr(defaults, name),
                        f"Probability of the {name} augmentation of a training patch.", low=0.0, high=1.0)
                for name in AUGMENT_PROBABILITIES)
            continue
        rows.append(Setting(field.name, _kind(hints[field.name]), field.default, meta["help"], meta["choices"],
                            meta["low"], meta["high"]))
    return tuple(rows)


def config_from_values(values: Mapping[str, Any]) -> TrainConfig:
    """A `TrainConfig` from flag values by setting name (missing names take their defaults).

    Args:
        values: Setting name -> value, as `settings()` names them (``augment`` a boolean,
            ``aug_<name>`` probabilities, ``patch_size`` three integers or strings).

    Raises:
        ConfigError: A patch size that is not three integers, or a bad augmentation probability.

    Example:
        >>> config_from_values({"model_dir": "x", "patch_size": ["8", "64", "64"], "augment": False}).patch_size
        (8, 64, 64)
    """
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    chosen = {k: v for k, v in values.items() if k in fields and k != "augment"}
    if "patch_size" in chosen:
        try:
            chosen["patch_size"] = tuple(int(v) for v in chosen["patch_size"])
        except (TypeError, ValueError) as error:
            raise ConfigError(f"--patch_size must be three integers D,H,W; got {chosen['patch_size']}") from error
    if "encoder_weights" in chosen:
        chosen["encoder_weights"] = chosen["encoder_weights"] or None
    if values.get("augment", True):
        probabilities = {name: values[f"{AUGMENT_PREFIX}{name}"] for name in AUGMENT_PROBABILITIES
                         if values.get(f"{AUGMENT_PREFIX}{name}") is not None}
        try:
            chosen["augment"] = AugmentConfig(**probabilities)
        except ValueError as error:
            raise ConfigError(f"bad augmentation flag: {error}") from error
    else:
        chosen["augment"] = None
    return TrainConfig(**chosen)


def _table_problems(config: TrainConfig) -> list[str]:
    """Choices and ranges of the settings table."""
    problems = []
    for setting in settings():
        if not hasattr(config, setting.name):
            continue
        value = getattr(config, setting.name)
        if setting.choices and value not in setting.choices:
            problems.append(f"{setting.name} must be one of {list(setting.choices)}; got {value!r}")
        elif setting.kind in ("integer", "float") and value is not None:
            if (setting.low, setting.high) == (0.0, 1.0) and not 0.0 <= value <= 1.0:
                problems.append(f"{setting.name} is a probability in [0, 1]; got {value}")
                continue
            if setting.low is not None and value < setting.low:
                problems.append(f"{setting.name} must be >= {setting.low}; got {value}")
            if setting.high is not None and value > setting.high:
                problems.append(f"{setting.name} must be <= {setting.high}; got {value}")
    return problems


def _static_problems(config: TrainConfig) -> list[str]:
    """Problems visible from the settings alone, without reading data."""
    problems = _table_problems(config)
    if not config.model_dir:
        problems.append("model_dir (the run folder) must be given")
    elif Path(config.model_dir).exists() and not Path(config.model_dir).is_dir():
        problems.append(f"model_dir {config.model_dir} is a file; give a folder for the run (created if missing)")
    patch = tuple(config.patch_size)
    if len(patch) != 3 or min(patch) < 1:
        problems.append(f"patch_size must be three positive sizes D,H,W; got {patch}")
    else:
        depth, height, width = patch
        if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
            problems.append(
                f"patch_size {patch}: H and W must be multiples of {SIZE_MULTIPLE} (the encoder halves them "
                f"5 times); e.g. {(depth, round_up(height), round_up(width))}"
            )
        if config.model == "albunet2d" and depth != 1:
            problems.append(f"patch_size {patch}: albunet2d trains on single slices, so D must be 1")
    if not config.learning_rate > 0:
        problems.append(f"learning_rate must be > 0; got {config.learning_rate}")
    if not 0 <= config.fold < config.num_folds:
        problems.append(f"need 0 <= fold < num_folds; got fold {config.fold} of {config.num_folds}")
    if config.encoder_weights is not None and not Path(config.encoder_weights).is_file():
        problems.append(
            f"encoder weights file {config.encoder_weights} does not exist; convert torchvision's ResNet34 "
            "weights with tools/convert_weights.py, or train from scratch without --encoder_weights"
        )
    problems.extend(_data_location_problems(config))
    return problems


def _data_location_problems(config: TrainConfig) -> list[str]:
    """Exactly one of data_dir and cache_dir, and it exists and holds something."""
    if (config.data_dir is None) == (config.cache_dir is None):
        return ["give exactly one of --data_dir (BraTS folder) and --cache_dir (made by python -m tfbrats.prepare)"]
    folder = Path(config.data_dir or config.cache_dir)
    what = "data_dir" if config.data_dir else "cache_dir"
    if not folder.exists():
        return [f"{what} {folder} does not exist; check the path"]
    if folder.is_dir() and not any(folder.iterdir()):
        return [f"{what} {folder} is empty; put the BraTS cases there (or make synthetic ones with "
                "python -m tfbrats.data.synthetic)"]
    return []


def round_up(size: int) -> int:
    """`size` rounded up to a multiple of 32 (what the encoder needs in-plane).

    Example:
        >>> round_up(100)
        128
    """
    return SIZE_MULTIPLE * math.ceil(size / SIZE_MULTIPLE)


def changed_settings(previous: TrainConfig, current: TrainConfig) -> list[str]:
    """The settings that differ between a recorded run and a new config, except those a resume may change.

    Example:
        >>> changed_settings(TrainConfig(model_dir="x"), TrainConfig(model_dir="x", batch_size=2, epochs=9))
        ['batch_size: 24 in the run, 2 now']
    """
    old, new = previous.to_json(), current.to_json()
    return [f"{key}: {old[key]!r} in the run, {new[key]!r} now"
            for key in new if key not in RESUMABLE_CHANGES and old[key] != new[key]]


def read_config(path: str | Path) -> TrainConfig:
    """The `TrainConfig` recorded in a `config.json` file (tolerant of settings added since).

    Raises:
        ConfigError: The file is missing, not JSON, or holds a bad setting.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = Path(tmp.name) / CONFIG_NAME
        >>> _ = path.write_text(json.dumps({"model_dir": tmp.name, "patch_size": [8, 64, 64]}))
        >>> read_config(path).patch_size
        (8, 64, 64)
        >>> tmp.cleanup()
    """
    path = Path(path)
    try:
        values = json.loads(path.read_text())
        if not isinstance(values, dict):
            raise ValueError(f"expected a JSON object, got {type(values).__name__}")
        return TrainConfig.from_json(values)
    except FileNotFoundError as error:
        raise ConfigError(f"{path} does not exist: the folder holds no training run") from error
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{path} is not a training config ({error})") from error


def _run_folder_problems(config: TrainConfig, overwrite: bool) -> list[str]:
    """A run folder that holds a run made with other settings (unless it is to be overwritten)."""
    path = Path(config.model_dir) / CONFIG_NAME
    if overwrite or not path.is_file():
        return []
    try:
        changed = changed_settings(read_config(path), config)
    except ConfigError as error:
        return [f"{error}; pass --overwrite to start a new run in {config.model_dir}"]
    if not changed:
        return []
    return [
        f"model_dir {config.model_dir} holds a run with different settings ({'; '.join(changed)}); resume it "
        "with its own flags (see its flags.txt), choose a new --model_dir, or pass --overwrite to replace it"
    ]


def check_config(config: TrainConfig, overwrite: bool = False, check_run_folder: bool = True) -> None:
    """Raises `ConfigError` listing every problem visible without reading the data.

    Args:
        config: The settings.
        overwrite: The run folder may hold a run with other settings (it will be replaced).
        check_run_folder: Compare with the run in `model_dir` (only the chief does).

    Example:
        >>> check_config(TrainConfig(model_dir="runs/x", data_dir="/nowhere"))
        Traceback (most recent call last):
        ...
        tfbrats.training.config.ConfigError: bad training configuration:
          - data_dir /nowhere does not exist; check the path
    """
    problems = _static_problems(config)
    if check_run_folder and config.model_dir:
        problems += _run_folder_problems(config, overwrite)
    if problems:
        raise ConfigError("bad training configuration:\n" + "\n".join(f"  - {p}" for p in problems))
