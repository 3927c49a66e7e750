"""The settings of a training run, and the checks that reject a bad one before training starts."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from tfbrats.data import AugmentConfig, Case, PreprocessedCase
from tfbrats.labels import TARGETS
from tfbrats.training.strategy import STRATEGIES

MODELS = ("albunet3d", "albunet2d")
SPATIAL_MULTIPLE = 32
CONFIG_NAME = "config.json"
# Settings that may differ when a run is resumed: more epochs extend it; the rest do not change results.
RESUMABLE_CHANGES = ("epochs", "strategy", "model_dir")


class ConfigError(ValueError):
    """A training configuration that cannot work; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the flags of ``python -m tfbrats.train``).

    Args:
        model_dir: The run folder (checkpoints, logs, history, models).
        data_dir: A BraTS dataset root, case folder or manifest (or use `cache_dir`).
        cache_dir: A cache made by ``python -m tfbrats.prepare`` (or use `data_dir`).
        model: "albunet3d" or "albunet2d".
        input_channels: 3 (FLAIR, T1c, T2) or 4 (plus T1).
        num_classes: Output classes (4: background, core, edema, enhancing) with ``target="classes"``;
            a ``target="regions"`` model has 3 outputs (WT, TC, ET) whatever this says.
        patch_size: Training patch ``(D, H, W)``; H and W multiples of 32, D = 1 for albunet2d.
        batch_size: The global batch, split evenly over the replicas.
        epochs: Epochs to train in total.
        steps_per_epoch: Batches per epoch.
        validation_steps: Validation batches per epoch; 0 means one patch per validation case.
        learning_rate: Adam's learning rate.
        encoder_weights: ResNet34 ImageNet weights for the encoder (see `tfbrats.models`), or None.
        fold: The validation fold.
        num_folds: Folds of the patient split.
        seed: Seed of the split, the patches, the augmentation and the initial weights.
        augment: Augmentation of training patches, or None for none.
        foreground_fraction: Probability that a patch (training and validation) is centred on tumor.
        include_background: Average the Dice loss over all classes (True) or tumor classes only.
        cross_entropy_weight: Weight of a cross-entropy term added to the Dice loss (0: the
            paper's Dice loss alone).
        mixed_precision: Compute in bfloat16 (`mixed_bfloat16`), keeping float32 weights and logits.
        strategy: "default", "mirrored" or "multi_worker" (TF_CONFIG).
        target: "classes" (softmax over the classes, multiple Dice loss) or "regions" (sigmoid
            per region WT, TC, ET, region Dice loss).
        modality_dropout: Probability that a training patch loses each input channel (never all),
            filled as a missing modality is at prediction; 0 disables it.

    Example:
        >>> TrainConfig(model_dir="runs/demo", data_dir="demo_data", patch_size=(16, 96, 96)).batch_size
        24
    """

    model_dir: str
    data_dir: str | None = None
    cache_dir: str | None = None
    model: str = "albunet3d"
    input_channels: int = 3
    num_classes: int = 4
    patch_size: tuple[int, int, int] = (24, 128, 128)
    batch_size: int = 24
    epochs: int = 50
    steps_per_epoch: int = 100
    validation_steps: int = 0
    learning_rate: float = 1e-3
    encoder_weights: str | None = None
    fold: int = 0
    num_folds: int = 5
    seed: int = 0
    augment: AugmentConfig | None = dataclasses.field(default_factory=AugmentConfig)
    foreground_fraction: float = 0.0
    include_background: bool = True
    cross_entropy_weight: float = 0.0
    mixed_precision: bool = False
    strategy: str = "mirrored"
    target: str = "classes"
    modality_dropout: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON values (what `config.json` holds)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _static_problems(config: TrainConfig) -> list[str]:
    """Problems visible from the settings alone, without reading data."""
    problems = []
    if config.model not in MODELS:
        problems.append(f"model must be one of {MODELS}; got {config.model!r}")
    if config.strategy not in STRATEGIES:
        problems.append(f"strategy must be one of {STRATEGIES}; got {config.strategy!r}")
    if config.target not in TARGETS:
        problems.append(f"target must be one of {list(TARGETS)}; got {config.target!r}")
    if not 0.0 <= config.modality_dropout <= 1.0:
        problems.append(f"modality_dropout is a probability in [0, 1]; got {config.modality_dropout}")
    if config.input_channels not in (3, 4):
        problems.append(f"input_channels must be 3 (FLAIR, T1c, T2) or 4 (plus T1); got {config.input_channels}")
    patch = tuple(config.patch_size)
    if len(patch) != 3 or min(patch) < 1:
        problems.append(f"patch_size must be three positive sizes D,H,W; got {patch}")
    else:
        depth, height, width = patch
        if height % SPATIAL_MULTIPLE or width % SPATIAL_MULTIPLE:
            problems.append(
                f"patch_size {patch}: H and W must be multiples of {SPATIAL_MULTIPLE} (the encoder halves them "
                f"5 times); e.g. {(depth, _round_up(height), _round_up(width))}"
            )
        if config.model == "albunet2d" and depth != 1:
            problems.append(f"patch_size {patch}: albunet2d trains on single slices, so D must be 1")
    for name in ("batch_size", "epochs", "steps_per_epoch"):
        if getattr(config, name) < 1:
            problems.append(f"{name} must be >= 1; got {getattr(config, name)}")
    if config.validation_steps < 0:
        problems.append(
            f"validation_steps must be >= 0 (0: one patch per validation case); got {config.validation_steps}"
        )
    if not config.learning_rate > 0:
        problems.append(f"learning_rate must be > 0; got {config.learning_rate}")
    if config.num_folds < 2 or not 0 <= config.fold < config.num_folds:
        problems.append(f"need num_folds >= 2 and 0 <= fold < num_folds; got fold {config.fold} of {config.num_folds}")
    if config.cross_entropy_weight < 0:
        problems.append(f"cross_entropy_weight must be >= 0; got {config.cross_entropy_weight}")
    if not 0.0 <= config.foreground_fraction <= 1.0:
        problems.append(f"foreground_fraction is a probability in [0, 1]; got {config.foreground_fraction}")
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


def _round_up(size: int) -> int:
    return SPATIAL_MULTIPLE * math.ceil(size / SPATIAL_MULTIPLE)


def _run_folder_problems(config: TrainConfig, overwrite: bool) -> list[str]:
    """A run folder that holds a run made with other settings (unless it is to be overwritten)."""
    path = Path(config.model_dir) / CONFIG_NAME
    if overwrite or not path.is_file():
        return []
    try:
        previous = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        return [f"{path} is not valid JSON ({error}); pass --overwrite to start a new run in {config.model_dir}"]
    current = config.to_json()
    # A run recorded before a setting existed ran with that setting's default.
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    previous = {**json.loads(json.dumps(defaults)), **previous}
    changed = [
        f"{key}: {previous.get(key)!r} in the run, {current.get(key)!r} now"
        for key in sorted(set(current) | set(previous))
        if key not in RESUMABLE_CHANGES and previous.get(key) != current.get(key)
    ]
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
    if check_run_folder:
        problems += _run_folder_problems(config, overwrite)
    if problems:
        raise ConfigError("bad training configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def load_split(config: TrainConfig) -> tuple[list[PreprocessedCase], list[PreprocessedCase]]:
    """Loads the labelled cases and splits them by patient into training and validation.

    A cache is split exactly like the dataset it was made from (the split depends on case ids only).

    Raises:
        ConfigError: No cases, no labelled case, a case that fails its checks, or a split
            that leaves the training or validation set empty.

    Example:
        >>> train, val = load_split(TrainConfig(model_dir="runs/x", cache_dir="cache"))  # doctest: +SKIP
    """
    from tfbrats.data import CaseError, check_cases, find_cases, load_cache, load_case, split_cases

    source = config.data_dir or config.cache_dir
    try:
        if config.data_dir is not None:
            cases = find_cases(config.data_dir).cases
            labelled_ids = [case.case_id for case in cases if case.has_seg]
        else:
            loaded = {case.meta.case_id: case for case in load_cache(config.cache_dir)}
            cases = [Case(case_id, {}, None) for case_id in loaded]
            labelled_ids = [case_id for case_id, case in loaded.items() if case.label is not None]
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(f"cannot read the training data in {source}: {error}") from error
    if not labelled_ids:
        raise ConfigError(
            f"no case with a reference segmentation (seg) in {source} ({len(cases)} cases without one); "
            "training needs labelled cases, e.g. BraTS' training data, not its validation data"
        )
    labelled = [case for case in cases if case.case_id in set(labelled_ids)]
    train, val = split_cases(labelled, config.fold, config.num_folds, config.seed)
    if not train or not val:
        raise ConfigError(
            f"{len(labelled)} labelled case(s) in {source} leave the training or validation set of fold "
            f"{config.fold} of {config.num_folds} empty; add cases or lower --num_folds"
        )
    if config.data_dir is None:
        return [loaded[c.case_id] for c in train], [loaded[c.case_id] for c in val]
    try:
        check_cases(labelled, config.input_channels)  # every case's values, in parallel, before any is loaded
        return [load_case(c, config.input_channels) for c in train], [load_case(c, config.input_channels) for c in val]
    except CaseError as error:
        raise ConfigError(f"a case in {source} cannot be used: {error}") from error


def check_patch_fits(config: TrainConfig, cases: list[PreprocessedCase]) -> None:
    """Rejects a patch larger than the largest training case (in-plane rounded up to 32).

    Beyond that size a patch is padding in every case: slower and no more informative.

    Example:
        >>> check_patch_fits(TrainConfig(model_dir="x", patch_size=(1, 512, 512)), cases)  # doctest: +SKIP
    """
    channels = {case.image.shape[-1] for case in cases}
    if channels != {config.input_channels}:
        raise ConfigError(
            f"the training cases have {sorted(channels)} channels but input_channels is {config.input_channels}; "
            "use a cache made with the same --input_channels"
        )
    largest = [max(case.image.shape[axis] for case in cases) for axis in range(3)]
    depth = 1 if config.model == "albunet2d" else largest[0]
    allowed = (depth, _round_up(largest[1]), _round_up(largest[2]))
    if any(p > a for p, a in zip(config.patch_size, allowed)):
        raise ConfigError(
            f"patch_size {tuple(config.patch_size)} is larger than the data allow: the largest cropped training "
            f"case is (D, H, W) = {tuple(largest)}, so a patch may be at most {allowed}; choose a smaller patch"
        )
