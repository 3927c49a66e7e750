"""The training loop in-process: a few steps lower the loss; a run writes its folder and resumes."""

import csv
import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfbrats.contract import SegmentationContract
from tfbrats.data import make_dataset
from tfbrats.losses import MultipleDiceLoss
from tfbrats.models import AlbuNet2D
from tfbrats.training import Run, TrainConfig, build_model, load_split, make_step_functions, train


def _config(tiny_data: Path, model_dir: Path, **changes) -> TrainConfig:
    base = TrainConfig(model_dir=str(model_dir), data_dir=str(tiny_data), model="albunet2d", patch_size=(1, 32, 32),
                       batch_size=2, epochs=1, steps_per_epoch=2, num_folds=2, foreground_fraction=0.5,
                       strategy="default")
    return dataclasses.replace(base, **changes)


def test_a_few_training_steps_lower_the_loss(tiny_data, tmp_path):
    config = _config(tiny_data, tmp_path, batch_size=4)
    train_cases, _ = load_split(config)
    batch = next(iter(make_dataset(train_cases, config.patch_size, 4, foreground_fraction=1.0)))
    strategy = tf.distribute.get_strategy()
    keras.utils.set_random_seed(0)
    model = build_model(config)
    optimizer = keras.optimizers.Adam(1e-3)
    loss = MultipleDiceLoss()
    train_step, eval_step = make_step_functions(model, optimizer, loss, strategy)
    losses = [float(train_step(batch)[0]) for _ in range(6)]
    assert losses[-1] < losses[0] - 0.01, losses
    counts, intersection, total = eval_step(batch)
    assert intersection.shape == total.shape == (4,) and counts.shape == (3, 3)
    # The evaluation sums give the loss of the batch as the model now stands.
    expected = loss(batch[1], model(batch[0], training=False))
    np.testing.assert_allclose(float(loss.loss_from_sums(intersection, total)), float(expected), rtol=1e-5)
    assert float(counts[0, 1]) == np.count_nonzero(batch[1].numpy())  # WT reference voxels


def _history(model_dir: Path) -> list[dict[str, str]]:
    with (model_dir / "history.csv").open() as f:
        return list(csv.DictReader(f))


def test_train_writes_the_run_folder_then_resumes(tiny_data, tmp_path):
    model_dir = tmp_path / "run"
    config = _config(tiny_data, model_dir, mixed_precision="bfloat16")
    messages: list[str] = []
    first = train(config, flags_text="--epochs=1\n", echo=messages.append)
    assert keras.mixed_precision.global_policy().name == "float32"  # the policy is restored
    assert first.resumed_from_epoch == 0 and len(first.history) == 1
    names = {p.name for p in model_dir.iterdir()}
    assert {"config.json", "flags.txt", "history.csv", "best.keras", "final.keras", "checkpoints", "logs"} <= names
    assert not [p for p in names if p.startswith(".")]  # no temporary files left behind
    recorded = json.loads((model_dir / "config.json").read_text())
    assert (recorded["model"], recorded["patch_size"], recorded["num_classes"]) == ("albunet2d", [1, 32, 32], 4)
    assert (model_dir / "flags.txt").read_text() == "--epochs=1\n"
    assert list(_history(model_dir)[0]) == [
        "epoch", "step", "learning_rate", "loss", "dice_WT", "dice_TC", "dice_ET", "val_loss", "val_dice_WT",
        "val_dice_TC", "val_dice_ET", "val_dice_mean", "volume_dice_WT", "volume_dice_TC", "volume_dice_ET",
        "volume_dice_mean", "seconds"]
    # Without a volume scorer, best.keras is kept by the patch validation; the model carries its contract.
    assert Run(model_dir).best_record()["metric"] == "val_dice_mean"
    best = keras.models.load_model(model_dir / "best.keras", compile=False)
    contract = SegmentationContract.from_json(best.segmentation)
    assert (contract.target.name, contract.window.patch_size, contract.channels) == (
        "classes", (1, 32, 32), ("flair", "t1ce", "t2"))
    assert list((model_dir / "logs" / "validation").glob("events.out.tfevents.*"))
    assert isinstance(keras.models.load_model(model_dir / "best.keras", compile=False), AlbuNet2D)

    messages.clear()
    second = train(dataclasses.replace(config, epochs=2), echo=messages.append)
    assert any("Resuming from checkpoint" in m and "1 of 2 epochs done, step 2" in m for m in messages), messages
    assert second.resumed_from_epoch == 1
    assert [(row["epoch"], row["step"]) for row in _history(model_dir)] == [("1", "2"), ("2", "4")]


def test_bn_momentum_is_every_batch_normalization_s_average(tiny_data, tmp_path):
    model = build_model(_config(tiny_data, tmp_path, bn_momentum=0.75))
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) > 40 and {norm.momentum for norm in norms} == {0.75}
    stem = model.get_layer("stem_bn")
    features = keras.Model(model.input, stem.input)
    images = np.random.default_rng(0).normal(size=(2, 1, 32, 32, 3)).astype(np.float32)
    batch_mean = keras.ops.convert_to_numpy(features(images)).mean(axis=(0, 1, 2, 3))
    before = keras.ops.convert_to_numpy(stem.moving_mean)
    model(images, training=True)
    after = keras.ops.convert_to_numpy(stem.moving_mean)
    np.testing.assert_allclose(after, 0.75 * before + 0.25 * batch_mean, rtol=1e-4, atol=1e-5)
