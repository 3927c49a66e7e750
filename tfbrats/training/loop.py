"""One custom distributed training loop for every strategy (DESIGN §5b).

Keras 3's `Model.fit` does not run under `MultiWorkerMirroredStrategy`, so tfbrats trains with
its own step: a `tf.function` that takes the next batch of a distributed dataset, runs
`strategy.run` with a `tf.GradientTape` and Adam's `apply_gradients` (which all-reduces the
gradients), with the Dice loss of the global batch (its sums all-reduced over the replicas), and
reduces the loss and the region counts over the replicas.

A run folder (`TrainConfig.model_dir`) holds::

    config.json        the TrainConfig (also read by tfbrats.predict: patch_size, target, modality_dropout, ...)
    flags.txt          the command-line flags, when started by python -m tfbrats.train
    checkpoints/       model + optimizer + epoch + best Dice after every epoch (the last 2 kept)
    logs/train/, logs/validation/   TensorBoard scalars per epoch
    history.csv        one row per epoch: loss and Dice per region, training and validation
    best.keras         the model of the epoch with the best mean validation Dice
    final.keras        the model after the last epoch

Every file is written under a temporary name and renamed, so a run killed at any moment leaves
complete files, and the same command resumes from the last checkpoint.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import io
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfbrats.labels import REGIONS, Target, get_target
from tfbrats.losses import SoftDiceLoss, loss_for
from tfbrats.metrics import dice_from_counts, region_counts
from tfbrats.models import AlbuNet2D, AlbuNet3D, load_encoder_weights
from tfbrats.training.config import (
    CONFIG_NAME,
    ConfigError,
    TrainConfig,
    check_config,
    check_patch_fits,
    load_split,
)
from tfbrats.training.strategy import ClusterRole, cluster_role, make_strategy

FLAGS_NAME = "flags.txt"
HISTORY_NAME = "history.csv"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
BEST_NAME = "best.keras"
FINAL_NAME = "final.keras"
RUN_ENTRIES = (CONFIG_NAME, FLAGS_NAME, HISTORY_NAME, CHECKPOINT_DIR, LOG_DIR, BEST_NAME, FINAL_NAME)
DICE_NAMES = tuple(f"dice_{region}" for region in REGIONS)
HISTORY_COLUMNS = (
    "epoch", "step", "loss", *DICE_NAMES, "val_loss", *(f"val_{n}" for n in DICE_NAMES), "val_dice_mean", "seconds"
)


@dataclasses.dataclass
class TrainResult:
    """What a finished run returns.

    Args:
        model: The trained model (after the last epoch).
        history: One dict per epoch with the `HISTORY_COLUMNS`.
        best_dice: The best mean validation Dice (WT, TC, ET) of any epoch.
        resumed_from_epoch: Epochs already done when this call started (0 for a new run).
    """

    model: keras.Model
    history: list[dict[str, float]]
    best_dice: float
    resumed_from_epoch: int


def build_model(config: TrainConfig) -> keras.Model:
    """The AlbuNet of a configuration, with its pretrained encoder if one is given.

    It returns logits: one per class, or one per region (WT, TC, ET) for ``target="regions"``.

    Example:
        >>> build_model(TrainConfig(model_dir="x", model="albunet2d")).name
        'albunet2d'
    """
    model_class = AlbuNet3D if config.model == "albunet3d" else AlbuNet2D
    model = model_class(num_classes=target_of(config).num_outputs, input_channels=config.input_channels)
    if config.encoder_weights is not None:
        load_encoder_weights(model, config.encoder_weights)
    return model


def target_of(config: TrainConfig) -> Target:
    """The `tfbrats.labels.Target` a configuration trains.

    Example:
        >>> target_of(TrainConfig(model_dir="x", target="regions")).num_outputs
        3
    """
    return get_target(config.target, config.num_classes)


def make_loss(config: TrainConfig) -> SoftDiceLoss:
    """The loss of a configuration's target.

    Example:
        >>> make_loss(TrainConfig(model_dir="x", target="regions")).name
        'region_dice_loss'
    """
    return loss_for(target_of(config), include_background=config.include_background,
                    cross_entropy_weight=config.cross_entropy_weight)


def make_step_functions(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    loss: SoftDiceLoss,
    strategy: tf.distribute.Strategy,
    target: Target | None = None,
) -> tuple[Callable, Callable]:
    """The distributed training and evaluation steps.

    The loss is the Dice of the global batch: each replica computes its Dice `sums`, the sums are
    all-reduced, and each replica differentiates the loss of the global sums through its own
    share only, so the gradients the optimizer adds up over replicas are those of the global loss.

    Args:
        model: The model, created under `strategy.scope()`.
        optimizer: A Keras optimizer created under the same scope.
        loss: A `SoftDiceLoss` (`MultipleDiceLoss` or `RegionDiceLoss`).
        strategy: The distribution strategy.
        target: What the model's outputs are (`tfbrats.labels.Target`; default: 4 classes); the
            region counts score the labels the target makes of them, as prediction writes them.

    Returns:
        ``train_step(batch) -> (loss, counts)`` and ``eval_step(batch) -> (counts, *sums)``, where
        `batch` is an element of a distributed dataset of ``(images, labels)``, `counts` are the
        (3, 3) `region_counts` and `sums` the loss's `sums`, all summed over replicas (the loss of
        several evaluation batches is `loss.loss_from_sums` of their added sums).

    Example:
        >>> train_step, eval_step = make_step_functions(model, optimizer, loss, strategy)  # doctest: +SKIP
        >>> batch_loss, counts = train_step(next(iterator))  # doctest: +SKIP
    """
    variables = model.trainable_variables
    target = target or get_target("classes")

    def counts(labels, logits):
        return region_counts(labels, target.one_hot_labels(logits))

    def replica_train(images, labels):
        context = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            sums = loss.sums(labels, logits)
            global_sums = context.all_reduce(tf.distribute.ReduceOp.SUM, [tf.stop_gradient(s) for s in sums])
            # Worth the global loss; its gradient is this replica's share of the global gradient.
            replica_loss = loss.loss_from_sums(*(g + s - tf.stop_gradient(s) for g, s in zip(global_sums, sums)))
        gradients = tape.gradient(replica_loss, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        return replica_loss / context.num_replicas_in_sync, counts(labels, logits)

    def replica_eval(images, labels):
        logits = model(images, training=False)
        return (counts(labels, logits), *loss.sums(labels, logits))

    def reduce(values):
        return tuple(strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in values)

    @tf.function(autograph=False)  # no tensor-dependent Python control flow to convert
    def train_step(batch):
        return reduce(strategy.run(replica_train, args=batch))

    @tf.function(autograph=False)  # no tensor-dependent Python control flow to convert
    def eval_step(batch):
        return reduce(strategy.run(replica_eval, args=batch))

    return train_step, eval_step


def epoch_seed(seed: int, epoch: int) -> int:
    """The data seed of one epoch: a run resumed at epoch e sees the patches an unbroken run would.

    Example:
        >>> epoch_seed(0, 3) == epoch_seed(0, 3) != epoch_seed(0, 4)
        True
    """
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def _dice(counts: np.ndarray) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(dice_from_counts(counts)), dtype=np.float64)


def _write_atomic(path: Path, text: str) -> None:
    """Writes `text` to a temporary file beside `path`, then renames it over `path`."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as f:
            f.write(text)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; these are ordinary run files
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _save_model_atomic(model: keras.Model, path: Path) -> None:
    """Saves a `.keras` file under a temporary name (Keras wants the suffix), then renames it."""
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.partial.keras")
    try:
        model.save(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _read_history(path: Path, epochs_done: int) -> list[dict[str, float]]:
    """The history rows of the epochs a checkpoint covers (rows written after it are dropped)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return [row for row in rows if row["epoch"] <= epochs_done]


def _write_history(path: Path, rows: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (int(v) if k in ("epoch", "step") else f"{v:.6g}") for k, v in row.items()})
    _write_atomic(path, buffer.getvalue())


def _clear_run(model_dir: Path) -> None:
    """Removes the files of an earlier run (only the ones a run writes)."""
    for name in RUN_ENTRIES:
        path = model_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


@contextlib.contextmanager
def _precision(mixed: bool) -> Iterator[None]:
    """Sets the `mixed_bfloat16` policy for the models built inside, then restores the previous one."""
    previous = keras.mixed_precision.global_policy()
    if mixed:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _distributed(strategy: tf.distribute.Strategy, make: Callable[..., tf.data.Dataset]):
    """A distributed dataset; each worker's pipeline samples its own shard at the per-replica batch."""
    return strategy.distribute_datasets_from_function(lambda context: make(input_context=context))


def prepare_run(config: TrainConfig, overwrite: bool, flags_text: str | None, role: ClusterRole) -> None:
    """Replaces an old run if asked, then records the settings (and flags) in the run folder (chief only).

    Example:
        >>> prepare_run(config, overwrite=False, flags_text=None, role=cluster_role("default"))  # doctest: +SKIP
    """
    model_dir = Path(config.model_dir)
    if not role.is_chief:
        return
    model_dir.mkdir(parents=True, exist_ok=True)
    if overwrite:
        _clear_run(model_dir)
    _write_atomic(model_dir / CONFIG_NAME, json.dumps(config.to_json(), indent=2) + "\n")
    if flags_text is not None:
        _write_atomic(model_dir / FLAGS_NAME, flags_text)


def train(
    config: TrainConfig,
    *,
    overwrite: bool = False,
    flags_text: str | None = None,
    echo: Callable[[str], None] = print,
) -> TrainResult:
    """Trains (or resumes training of) an AlbuNet as `config` says, writing the run folder.

    Every check that can fail runs before the first step (`ConfigError`). A run folder with a
    checkpoint is resumed: weights, optimizer state, epoch and best Dice come back, and the epochs
    continue where the checkpoint left them.

    Args:
        config: The settings.
        overwrite: Replace a run in `model_dir` made with other settings instead of refusing.
        flags_text: The flags to record as `flags.txt` (``python -m tfbrats.train`` passes them).
        echo: Where the chief's console messages go (progress bars go to stdout).

    Returns:
        The `TrainResult`.

    Example:
        >>> config = TrainConfig(model_dir="runs/demo", data_dir="demo_data", patch_size=(16, 96, 96),
        ...                      batch_size=2, epochs=10, steps_per_epoch=60)
        >>> result = train(config)  # doctest: +SKIP
        >>> result.history[-1]["val_dice_WT"]  # doctest: +SKIP
        0.93
    """
    role = cluster_role(config.strategy)
    check_config(config, overwrite, check_run_folder=role.is_chief)
    strategy = make_strategy(config.strategy)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ConfigError(
            f"batch_size {config.batch_size} does not split evenly over {replicas} replicas; "
            f"use a multiple of {replicas}"
        )
    train_cases, val_cases = load_split(config)
    check_patch_fits(config, train_cases)

    def say(message: str) -> None:
        if role.is_chief:
            echo(message)

    say(f"{len(train_cases)} training and {len(val_cases)} validation cases; {replicas} replica(s), "
        f"{role.num_workers} worker(s)")
    prepare_run(config, overwrite, flags_text, role)
    model_dir = Path(config.model_dir)
    # Every worker saves (saving may need collectives); only the chief's files land in model_dir.
    write_dir = model_dir if role.is_chief else Path(tempfile.mkdtemp(prefix=f"tfbrats-worker{role.task_id}-"))
    try:
        with _precision(config.mixed_precision):
            return _train(config, strategy, role, train_cases, val_cases, write_dir, say)
    finally:
        if not role.is_chief:
            shutil.rmtree(write_dir, ignore_errors=True)


def _train(
    config: TrainConfig,
    strategy: tf.distribute.Strategy,
    role: ClusterRole,
    train_cases: list,
    val_cases: list,
    write_dir: Path,
    say: Callable[[str], None],
) -> TrainResult:
    """The loop itself, for `train` (which has checked and recorded everything)."""
    from tfbrats.data import ModalityDropout, make_dataset

    model_dir = Path(config.model_dir)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = build_model(config)
        optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
        optimizer.build(model.trainable_variables)
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        best = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_val_dice_mean")
    loss = make_loss(config)
    train_step, eval_step = make_step_functions(model, optimizer, loss, strategy, target_of(config))
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch, best=best)
    manager = tf.train.CheckpointManager(checkpoint, str(write_dir / CHECKPOINT_DIR), max_to_keep=2)
    latest = tf.train.latest_checkpoint(str(model_dir / CHECKPOINT_DIR))
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        say(f"Resuming from checkpoint {latest}: {int(epoch.numpy())} of {config.epochs} epochs done, "
            f"step {int(optimizer.iterations.numpy())}, best mean validation Dice {float(best.numpy()):.4f}")
    start = int(epoch.numpy())
    history = _read_history(model_dir / HISTORY_NAME, start)

    patch = tuple(config.patch_size)
    transforms = (ModalityDropout(config.modality_dropout),) if config.modality_dropout else ()
    validation_steps = config.validation_steps or math.ceil(len(val_cases) / config.batch_size)
    val_data = _distributed(strategy, functools.partial(
        make_dataset, val_cases, patch, config.batch_size, seed=config.seed,
        foreground_fraction=config.foreground_fraction, training=False))
    writers = {
        name: tf.summary.create_file_writer(str(model_dir / LOG_DIR / name)) if role.is_chief
        else tf.summary.create_noop_writer()
        for name in ("train", "validation")
    }
    for index in range(start, config.epochs):
        started = time.monotonic()
        say(f"Epoch {index + 1}/{config.epochs}")
        train_data = _distributed(strategy, functools.partial(
            make_dataset, train_cases, patch, config.batch_size, augment=config.augment,
            seed=epoch_seed(config.seed, index), foreground_fraction=config.foreground_fraction, training=True,
            sample_transforms=transforms))
        progress = keras.utils.Progbar(
            config.steps_per_epoch, verbose=1 if role.is_chief else 0,
            stateful_metrics=["loss", *DICE_NAMES, "val_loss", *(f"val_{n}" for n in DICE_NAMES)],
        )
        loss_sum, counts = 0.0, np.zeros((3, 3))
        batches = iter(train_data)
        for step in range(config.steps_per_epoch):
            step_loss, step_counts = train_step(next(batches))
            loss_sum += float(step_loss)
            counts += step_counts.numpy()
            # The bar is finalized once, below, with the validation results added.
            progress.update(step + 1, [("loss", loss_sum / (step + 1)), *zip(DICE_NAMES, _dice(counts))],
                            finalize=False)
        val_counts, val_sums = np.zeros((3, 3)), None
        batches = iter(val_data)
        for _ in range(validation_steps):
            batch_counts, *batch_sums = eval_step(next(batches))
            val_counts += batch_counts.numpy()
            batch_sums = [value.numpy() for value in batch_sums]
            val_sums = batch_sums if val_sums is None else [a + b for a, b in zip(val_sums, batch_sums)]
        val_loss = float(loss.loss_from_sums(*val_sums))
        row = {"epoch": index + 1, "step": int(optimizer.iterations.numpy()), "loss": loss_sum / config.steps_per_epoch}
        row |= dict(zip(DICE_NAMES, _dice(counts)))
        row |= {"val_loss": val_loss, **{f"val_{n}": d for n, d in zip(DICE_NAMES, _dice(val_counts))}}
        row["val_dice_mean"] = float(np.mean([row[f"val_{n}"] for n in DICE_NAMES]))
        row["seconds"] = time.monotonic() - started
        progress.update(config.steps_per_epoch, [(k, row[k]) for k in ("val_loss", *(f"val_{n}" for n in DICE_NAMES))],
                        finalize=True)
        for name, prefix in (("train", ""), ("validation", "val_")):
            with writers[name].as_default(step=index + 1):
                for key in ("loss", *DICE_NAMES):
                    tf.summary.scalar(key, row[prefix + key])
        if row["val_dice_mean"] > float(best.numpy()):
            best.assign(row["val_dice_mean"])
            _save_model_atomic(model, write_dir / BEST_NAME)
            say(f"new best mean validation Dice {row['val_dice_mean']:.4f}: saved {model_dir / BEST_NAME}")
        history.append(row)
        if role.is_chief:
            _write_history(model_dir / HISTORY_NAME, history)
        epoch.assign(index + 1)
        manager.save(checkpoint_number=index + 1)
    for writer in writers.values():
        writer.flush()
    _save_model_atomic(model, write_dir / FINAL_NAME)
    say(f"Done: {config.epochs} epochs, best mean validation Dice {float(best.numpy()):.4f}; models in {model_dir}")
    return TrainResult(model, history, float(best.numpy()), start)
