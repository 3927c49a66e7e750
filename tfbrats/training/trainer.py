"""The trainer: a class of hooks around the distributed steps, and `train`, its one-call form.

A variant overrides one hook and keeps the rest: `build_model`, `build_loss`, `build_schedule`,
`build_optimizer`, `refresh_batchnorm`, `on_epoch_end` (TensorBoard), `save_checkpoint`,
`save_best`, `save_history` and `log`. The epoch loop itself lives in `fit`.

Reproducible: the patches of global step s are patch indices ``s * batch_size ...`` of one
stream seeded by `TrainConfig.seed` (`tfbrats.data.make_dataset`'s ``first_index``), so a run
resumed at any epoch boundary, or extended with more epochs, sees the batches the unbroken run
would; initial weights come from the seed too. Durable: each epoch is committed as checkpoint,
then best model, then history row (`tfbrats.training.run`); the checkpoint carries the epoch's
row and best, so a restart after a kill anywhere completes the commit. A checkpoint save that
fails (a full disk) removes its partial files, and a start removes those a killed save left
(`Run.remove_failed_checkpoints`).

Its length (~370 lines) is the hooks' docstrings and the one epoch loop they frame; the steps,
factories, run folder and progress output live in their own modules.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfbrats.data import dataset_label_set
from tfbrats.losses import SoftDiceLoss
from tfbrats.training.config import ConfigError, TrainConfig, changed_settings, check_config, read_config
from tfbrats.training.data import check_patch_fits, load_split
from tfbrats.training.factories import (
    build_model,
    label_set_of,
    make_loss,
    make_schedule,
    precision,
    target_of,
)
from tfbrats.training.metrics import dice_from_counts
from tfbrats.training.progress import make_progress
from tfbrats.training.run import Run
from tfbrats.training.steps import make_step_functions
from tfbrats.training.strategy import cluster_role, make_strategy

# A model's score on whole validation volumes: model, validation cases -> mean Dice per region (WT, TC, ET).
VolumeScorer = Callable[[keras.Model, list], dict[str, float]]


@dataclasses.dataclass
class TrainResult:
    """What a finished run returns.

    Args:
        model: The trained model (after the last epoch).
        history: One dict per epoch with the `HISTORY_COLUMNS`.
        best_dice: The best mean validation Dice (WT, TC, ET) of the validation that chooses best.keras.
        resumed_from_epoch: Epochs already done when this call started (0 for a new run).
    """

    model: keras.Model
    history: list[dict[str, float]]
    best_dice: float
    resumed_from_epoch: int


def _batchnorm_layers(layer: keras.layers.Layer) -> list[keras.layers.BatchNormalization]:
    """The BatchNormalization layers in `layer` and every model nested in it."""
    found = [layer] if isinstance(layer, keras.layers.BatchNormalization) else []
    for inner in getattr(layer, "layers", ()):
        found += _batchnorm_layers(inner)
    return found


def _dice(counts: np.ndarray) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(dice_from_counts(counts)), dtype=np.float64)


class Trainer:
    """Trains (or resumes) one run as its `TrainConfig` says; override a hook to make a variant.

    Args:
        config: The settings.
        volume_scorer: Scores a model on the whole validation volumes (`VolumeScorer`); with it and
            ``config.volume_validation_every > 0``, best.keras is chosen by its mean Dice every N epochs
            and at the last; without, by the patch validation of every epoch.
        overwrite: Replace a run in `model_dir` made with other settings (a run with the same
            settings is resumed either way).
        flags_text: The flags to record as `flags.txt`.
        echo: Where the chief's messages go.

    Example:
        A variant that trains on the Dice loss alone whatever the config says; ``.fit()`` then
        trains it and returns the `TrainResult`:

        >>> from tfbrats.losses import loss_for
        >>> class DiceOnly(Trainer):
        ...     def build_loss(self):
        ...         return loss_for(target_of(self.config), cross_entropy_weight=0.0)
        >>> trainer = DiceOnly(TrainConfig(model_dir="runs/x", cross_entropy_weight=1.0))
        >>> type(trainer.build_loss()).__name__, trainer.build_loss().cross_entropy_weight
        ('MultipleDiceLoss', 0.0)
    """

    def __init__(self, config: TrainConfig, *, volume_scorer: VolumeScorer | None = None, overwrite: bool = False,
                 flags_text: str | None = None, echo: Callable[[str], None] = print):
        self.config, self.volume_scorer = config, volume_scorer
        self.overwrite, self.flags_text, self.echo = overwrite, flags_text, echo
        self.run = Run(config.model_dir)
        self.role = cluster_role(config.strategy)
        self.writers: dict[str, Any] = {}
        # The training data's label set (set by `fit` from the cases; what --label_set=auto trains).
        self.data_label_set = None

    @property
    def regions(self) -> tuple[str, ...]:
        """The regions scored in training and validation: those of the label set trained (RC too with a cavity)."""
        return tuple(target_of(self.config, self.data_label_set).label_set.regions)

    @property
    def dice_names(self) -> tuple[str, ...]:
        """``dice_<region>`` for each of `regions`: the training Dice columns of history.csv and the console."""
        return tuple(f"dice_{region}" for region in self.regions)

    # ---- hooks ----------------------------------------------------------------------------------
    def refresh_batchnorm(self) -> None:
        """Re-estimates the BatchNorm moving statistics with the current weights (`bn_refresh_batches`).

        The moving averages (momentum m) mix the statistics of the weights of the last ~1 / (1 - m)
        steps; while the weights change fast they lag, and the model in inference mode (whole-volume
        validation, best.keras, prediction) can segment far worse than in training. Here each
        layer's statistics become the plain mean over `bn_refresh_batches` unaugmented training
        batches, all seen with the current weights (the same batches every time). Every worker
        computes them from the same batches.
        """
        layers = _batchnorm_layers(self.model)
        momenta = [layer.momentum for layer in layers]
        try:
            for index, (images, _) in enumerate(self.refresh_data):
                for layer in layers:  # momentum i / (i + 1): the running mean of the batches so far
                    layer.momentum = index / (index + 1)
                self.model(images, training=True)
        finally:
            for layer, momentum in zip(layers, momenta):
                layer.momentum = momentum

    def build_model(self) -> keras.Model:
        """The network (built under the strategy's scope and the precision policy)."""
        return build_model(self.config, self.data_label_set)

    def build_loss(self) -> SoftDiceLoss:
        """The loss; it must be a `SoftDiceLoss` (sums all-reduced over replicas)."""
        return make_loss(self.config, self.data_label_set)

    def build_schedule(self) -> float | keras.optimizers.schedules.LearningRateSchedule:
        """The learning rate or its schedule."""
        return make_schedule(self.config)

    def build_optimizer(self) -> keras.optimizers.Optimizer:
        """Adam on the schedule; wrapped in dynamic loss scaling for float16."""
        optimizer = keras.optimizers.Adam(learning_rate=self.build_schedule())
        if self.config.mixed_precision == "float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        return optimizer

    def on_epoch_end(self, row: dict[str, float]) -> None:
        """Writes the epoch's TensorBoard scalars (training and validation)."""
        for name, prefix in (("train", ""), ("validation", "val_")):
            with self.writers[name].as_default(step=int(row["epoch"])):
                for key in ("loss", *self.dice_names):
                    tf.summary.scalar(key, row[prefix + key])
                if name == "validation" and not math.isnan(row["volume_dice_mean"]):
                    for key in (*(f"volume_{n}" for n in self.dice_names), "volume_dice_mean"):
                        tf.summary.scalar(key, row[key])

    def save_checkpoint(self, epoch: int) -> None:
        """Saves model, optimizer and run state as checkpoint `epoch` (first write of an epoch's commit)."""
        self.manager.save(checkpoint_number=epoch)

    def save_best(self, record: dict[str, Any]) -> None:
        """Saves best.keras and best.json (second write)."""
        Run(self.write_dir).save_best(self.model, record)

    def save_history(self, rows: list[dict[str, float]]) -> None:
        """Writes history.csv (last write); only the chief."""
        if self.role.is_chief:
            self.run.write_history(rows, self.regions)

    def log(self, message: str) -> None:
        """A message from the chief."""
        if self.role.is_chief:
            self.echo(message)

    # ---- the run --------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Checks everything that can fail, prepares the run folder, then trains to `config.epochs`.

        Raises:
            ConfigError: A bad configuration, data that cannot be used, or an uneven batch split.
        """
        config = self.config
        check_config(config, self.overwrite, check_run_folder=self.role.is_chief)
        self.strategy = make_strategy(config.strategy)
        replicas = self.strategy.num_replicas_in_sync
        if config.batch_size % replicas:
            raise ConfigError(f"batch_size {config.batch_size} does not split evenly over {replicas} replicas; "
                              f"use a multiple of {replicas}")
        self.train_cases, self.val_cases = load_split(config)
        self.data_label_set = dataset_label_set(case.meta.labels for case in self.train_cases + self.val_cases)
        label_set_of(config, self.data_label_set)  # a forced label set that cannot hold the data's classes fails here
        check_patch_fits(config, self.train_cases)
        self.log(f"{len(self.train_cases)} training and {len(self.val_cases)} validation cases; {replicas} "
                 f"replica(s), {self.role.num_workers} worker(s)")
        self._prepare_folder()
        # Every worker saves (saving may need collectives); only the chief's files land in model_dir.
        self.write_dir = self.run.path if self.role.is_chief else Path(
            tempfile.mkdtemp(prefix=f"tfbrats-worker{self.role.task_id}-"))
        try:
            with precision(config.mixed_precision):
                return self._fit()
        finally:
            if not self.role.is_chief:
                shutil.rmtree(self.write_dir, ignore_errors=True)

    def _prepare_folder(self) -> None:
        """Replaces a run made with other settings when asked, then records the settings (chief only)."""
        if not self.role.is_chief:
            return
        self.run.path.mkdir(parents=True, exist_ok=True)
        if self.overwrite and self.run.config_path.is_file():
            try:
                replace = bool(changed_settings(read_config(self.run.config_path), self.config))
            except ConfigError:
                replace = True
            if replace:
                self.log(f"--overwrite: replacing the run in {self.run.path} (it was made with other settings)")
                self.run.clear()
        self.run.write_config(self.config, self.flags_text)

    def _selects_by_volume(self) -> bool:
        return self.volume_scorer is not None and self.config.volume_validation_every > 0

    def _chooses_best(self, epoch: int) -> bool:
        """Whether this epoch's validation can choose best.keras (the last epoch always can)."""
        every = self.config.volume_validation_every
        return not self._selects_by_volume() or epoch % every == 0 or epoch == self.config.epochs

    def _distributed(self, **kwargs):
        from tfbrats.data import make_dataset

        config = self.config
        def make(context):
            return make_dataset(patch_size=tuple(config.patch_size), batch_size=config.batch_size, seed=config.seed,
                                foreground_fraction=config.foreground_fraction,
                                foreground_sampling=config.foreground_sampling, input_context=context, **kwargs)

        return self.strategy.distribute_datasets_from_function(make)

    def _fit(self) -> TrainResult:
        from tfbrats.data import ModalityDropout

        config, strategy = self.config, self.strategy
        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            self.model = self.build_model()
            self.optimizer = self.build_optimizer()
            self.optimizer.build(self.model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.best = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best")
            self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch")
        # Outside the scope: collectives cannot broadcast a string (every worker assigns the same row anyway).
        self.last_row = tf.Variable("", dtype=tf.string, trainable=False, name="last_row")
        loss = self.build_loss()
        train_step, eval_step = make_step_functions(self.model, self.optimizer, loss, strategy,
                                                     target_of(config, self.data_label_set))
        checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, epoch=self.epoch,
                                         best=self.best, best_epoch=self.best_epoch, last_row=self.last_row)
        for leftover in Run(self.write_dir).remove_failed_checkpoints():
            self.log(f"removed {leftover}, left by a checkpoint save that did not finish")
        self.manager = tf.train.CheckpointManager(checkpoint, str(Run(self.write_dir).checkpoint_dir), max_to_keep=2)
        latest = tf.train.latest_checkpoint(str(self.run.checkpoint_dir))
        if latest:
            checkpoint.restore(latest).assert_existing_objects_matched()
            self.log(f"Resuming from checkpoint {latest}: {int(self.epoch.numpy())} of {config.epochs} epochs done, "
                     f"step {int(self.epoch.numpy()) * config.steps_per_epoch}, best mean validation Dice "
                     f"{float(self.best.numpy()):.4f}")
        start = int(self.epoch.numpy())
        history = self._complete_commit(start)
        self.writers = {name: tf.summary.create_file_writer(str(self.run.log_dir / name)) if self.role.is_chief
                        else tf.summary.create_noop_writer() for name in ("train", "validation")}
        transforms = (ModalityDropout(config.modality_dropout),) if config.modality_dropout else ()
        batches = iter(self._distributed(
            source=self.train_cases, augment=config.augment, training=True, sample_transforms=transforms,
            first_index=start * config.steps_per_epoch * config.batch_size))
        if config.validation_steps:
            val_data = self._distributed(source=self.val_cases, training=False, repeat=True)
        else:  # one patch per case, each case once
            val_data = self._distributed(source=self.val_cases, training=False, repeat=False)
        if config.bn_refresh_batches:
            from tfbrats.data import make_dataset

            self.refresh_data = make_dataset(self.train_cases, config.patch_size, config.batch_size, seed=config.seed,
                                             foreground_fraction=config.foreground_fraction,
                                             foreground_sampling=config.foreground_sampling).take(
                                                 config.bn_refresh_batches)
        progress = make_progress(config.steps_per_epoch, config.log_every, self.role.is_chief)
        for index in range(start, config.epochs):
            started = time.monotonic()
            progress.start_epoch(index + 1, config.epochs)
            loss_sum, counts, names = 0.0, np.zeros((len(self.regions), 3)), self.dice_names
            for step in range(config.steps_per_epoch):
                step_loss, step_counts = train_step(next(batches))
                loss_sum += float(step_loss)
                counts += step_counts.numpy()
                progress.update(step + 1, [("loss", loss_sum / (step + 1)), *zip(names, _dice(counts))])
            row = {"epoch": index + 1, "step": (index + 1) * config.steps_per_epoch,
                   "learning_rate": float(keras.ops.convert_to_numpy(self.optimizer.learning_rate)),
                   "loss": loss_sum / config.steps_per_epoch, **dict(zip(names, _dice(counts)))}
            if config.bn_refresh_batches and self._chooses_best(index + 1):
                self.refresh_batchnorm()
            row |= self._validate(eval_step, val_data, loss)
            row |= self._validate_volumes(index + 1)
            row["seconds"] = time.monotonic() - started
            self.on_epoch_end(row)
            history = self._commit(row, history)
            volumes = tuple(f"volume_{n}" for n in names) if not math.isnan(row["volume_dice_mean"]) else ()
            progress.end_epoch([("loss", row["loss"]), *((n, row[n]) for n in names)],
                               [(k, row[k]) for k in ("val_loss", *(f"val_{n}" for n in names), *volumes)],
                               row["seconds"])
        for writer in self.writers.values():
            writer.flush()
        Run(self.write_dir).save_model(self.model, Run(self.write_dir).final_path)
        self.log(f"Done: {config.epochs} epochs, best mean validation Dice {float(self.best.numpy()):.4f} "
                 f"({self._metric()}); models in {self.run.path}")
        return TrainResult(self.model, history, float(self.best.numpy()), start)

    def _validate(self, eval_step, val_data, loss: SoftDiceLoss) -> dict[str, float]:
        """Loss and Dice of the validation patches."""
        counts, sums = np.zeros((len(self.regions), 3)), None
        batches = iter(val_data)
        steps = self.config.validation_steps
        for batch in (next(batches) for _ in range(steps)) if steps else batches:
            batch_counts, *batch_sums = eval_step(batch)
            counts += batch_counts.numpy()
            batch_sums = [value.numpy() for value in batch_sums]
            sums = batch_sums if sums is None else [a + b for a, b in zip(sums, batch_sums)]
        row = {"val_loss": float(loss.loss_from_sums(*sums)),
               **{f"val_{n}": d for n, d in zip(self.dice_names, _dice(counts))}}
        row["val_dice_mean"] = float(np.mean([row[f"val_{n}"] for n in self.dice_names]))
        return row

    def _validate_volumes(self, epoch: int) -> dict[str, float]:
        """Mean Dice of the whole validation volumes on scoring epochs (every N and the last), else NaN."""
        if not self._selects_by_volume() or not self._chooses_best(epoch):
            return {key: math.nan for key in (*(f"volume_{n}" for n in self.dice_names), "volume_dice_mean")}
        scores = self.volume_scorer(self.model, self.val_cases)
        row = {f"volume_dice_{region}": float(scores[region]) for region in self.regions}
        # The mean over every region scored (RC too for a model with the resection cavity) chooses best.keras.
        row["volume_dice_mean"] = float(np.mean([float(value) for value in scores.values()]))
        return row

    def _metric(self) -> str:
        return "volume_dice_mean" if self._selects_by_volume() else "val_dice_mean"

    def _best_record(self, row: dict[str, float]) -> dict[str, Any]:
        metric = self._metric()
        prefix = "volume_" if metric == "volume_dice_mean" else "val_"
        validation = (f"whole volumes: {len(self.val_cases)} validation cases, one full-volume pass each, "
                      f"every {self.config.volume_validation_every} epochs and at the last"
                      if metric == "volume_dice_mean" else
                      f"patches: one per validation case ({len(self.val_cases)}), every epoch"
                      if not self.config.validation_steps else
                      f"patches: {self.config.validation_steps} batches of {self.config.batch_size}, every epoch")
        return {"epoch": int(row["epoch"]), "step": int(row["step"]), "metric": metric, "value": row[metric],
                "validation": validation,
                "dice": {region: row[f"{prefix}dice_{region}"] for region in self.regions}}

    def _commit(self, row: dict[str, float], history: list[dict[str, float]]) -> list[dict[str, float]]:
        """Commits an epoch: checkpoint (with the row and best), then best.keras + best.json, then history."""
        epoch, value = int(row["epoch"]), row[self._metric()]
        improved = not math.isnan(value) and value > float(self.best.numpy())
        self.epoch.assign(epoch)
        self.last_row.assign(json.dumps(row))
        if improved:
            self.best.assign(value)
            self.best_epoch.assign(epoch)
        try:
            self.save_checkpoint(epoch)
        except BaseException:  # a full disk or an interrupt: the partial files must not stay behind
            Run(self.write_dir).remove_failed_checkpoints()
            raise
        if improved:
            self.save_best(self._best_record(row))
            self.log(f"new best {self._metric()} {value:.4f} at epoch {epoch}: saved {self.run.best_path}")
        history = [*history, row]
        self.save_history(history)
        return history

    def _complete_commit(self, start: int) -> list[dict[str, float]]:
        """The history to continue, after completing an epoch commit a kill interrupted (chief only).

        The restored checkpoint is of epoch `start`; its row and best come from the checkpoint, and
        the model's weights are that epoch's, so a missing best.keras of that epoch is saved now.
        """
        history = [row for row in self.run.history() if row["epoch"] <= start]
        if not start or not self.role.is_chief:
            return history
        if len(history) == start - 1:
            history.append(json.loads(self.last_row.numpy().decode()))
            self.log(f"completing epoch {start}'s record from its checkpoint: history row")
            self.run.write_history(history, self.regions)
        record = self.run.best_record()
        if int(self.best_epoch.numpy()) == start and (record is None or int(record.get("epoch", 0)) != start):
            self.log(f"completing epoch {start}'s record from its checkpoint: {self.run.best_path}")
            self.run.save_best(self.model, self._best_record(history[-1]))
        return history


def train(config: TrainConfig, *, overwrite: bool = False, flags_text: str | None = None,
          echo: Callable[[str], None] = print, volume_scorer: VolumeScorer | None = None) -> TrainResult:
    """Trains (or resumes training of) an AlbuNet as `config` says, writing the run folder (`Trainer`).

    Every check that can fail runs before the first step (`ConfigError`). A run folder with a
    checkpoint is resumed: weights, optimizer state (and loss scale), epoch and best come back, and
    the data stream continues where the checkpoint left it.

    Args:
        config: The settings.
        overwrite: Replace a run in `model_dir` made with other settings instead of refusing; a
            run with the same settings is resumed either way.
        flags_text: The flags to record as `flags.txt` (``python -m tfbrats.train`` passes them).
        echo: Where the chief's console messages go (progress goes to stdout).
        volume_scorer: Scores whole validation volumes for choosing best.keras (see `Trainer`).

    Returns:
        The `TrainResult`.

    Example:
        ``train(TrainConfig(model_dir="runs/demo", data_dir="demo_data", patch_size=(8, 64, 64),
        batch_size=2, epochs=20, steps_per_epoch=25))`` trains; ``result.history[-1]`` is the last
        epoch's row of history.csv. A bad configuration fails before anything is read or built,
        with every problem listed:

        >>> train(TrainConfig(model_dir="runs/x", data_dir="no/such/folder", patch_size=(8, 60, 64)))
        Traceback (most recent call last):
        ...
        tfbrats.training.config.ConfigError: bad training configuration:
          - patch_size (8, 60, 64): H and W must be multiples of 32 (the encoder halves them 5 times); e.g. (8, 64, 64)
          - data_dir no/such/folder does not exist; check the path
    """
    return Trainer(config, volume_scorer=volume_scorer, overwrite=overwrite, flags_text=flags_text, echo=echo).fit()
