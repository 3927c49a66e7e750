"""float16 with dynamic loss scaling in the custom step; learning-rate schedules."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training.conftest import tiny_config
from tfbrats.losses import MultipleDiceLoss
from tfbrats.training import Run, TrainConfig, make_schedule, make_step_functions, precision


def _float16_step(initial_scale: float):
    """A tiny float16 model, its loss-scale optimizer and the training step, on one batch."""
    with precision("float16"):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((1, 8, 8, 3))
        outputs = keras.layers.Dense(4, dtype="float32")(keras.layers.Dense(8, activation="relu")(inputs))
        model = keras.Model(inputs, outputs)
    assert model.layers[1].compute_dtype == "float16"
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-2), initial_scale=initial_scale)
    optimizer.build(model.trainable_variables)
    strategy = tf.distribute.get_strategy()
    train_step, _ = make_step_functions(model, optimizer, MultipleDiceLoss(), strategy)
    rng = np.random.default_rng(0)
    batch = (rng.normal(size=(2, 1, 8, 8, 3)).astype("float32"), rng.integers(0, 4, size=(2, 1, 8, 8)).astype("int32"))
    return model, optimizer, train_step, batch


def test_a_float16_step_that_overflows_is_skipped_and_the_scale_halves():
    # 2^40 times the loss overflows float16 (largest 65504) in the backward pass of the float16 layer.
    model, optimizer, train_step, batch = _float16_step(2.0**40)
    before = [w.copy() for w in model.get_weights()]
    loss, _ = train_step(batch)
    assert math.isfinite(float(loss))  # the reported loss is the unscaled one
    assert float(optimizer.dynamic_scale.numpy()) == 2.0**39
    assert int(optimizer.iterations.numpy()) == 0
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_a_float16_step_within_range_is_applied_unscaled():
    model, optimizer, train_step, batch = _float16_step(2.0**4)
    before = [w.copy() for w in model.get_weights()]
    train_step(batch)
    assert float(optimizer.dynamic_scale.numpy()) == 2.0**4 and int(optimizer.iterations.numpy()) == 1
    # Adam's first step moves every weight with a non-zero gradient by about the learning rate, not 16x it.
    change = max(float(np.max(np.abs(a - b))) for a, b in zip(before, model.get_weights()))
    assert 0.5e-2 < change < 1.5e-2


def test_a_float16_run_keeps_its_loss_scale_in_the_checkpoint(tiny_data, tmp_path, tiny_trainer):
    config = tiny_config(tiny_data, tmp_path / "run", epochs=1, mixed_precision="float16")
    result = tiny_trainer(config, echo=lambda m: None).fit()
    assert keras.mixed_precision.global_policy().name == "float32"  # the policy is restored
    assert np.isfinite(result.history[0]["loss"])
    checkpoint = tf.train.latest_checkpoint(str(Run(config.model_dir).checkpoint_dir))
    scale = tf.train.load_variable(checkpoint, "optimizer/dynamic_scale/.ATTRIBUTES/VARIABLE_VALUE")
    assert 0 < float(scale) <= 2.0**15


@pytest.mark.parametrize("schedule", ["constant", "poly", "cosine"])
def test_learning_rate_schedules_follow_their_formulas(schedule):
    config = TrainConfig(model_dir="x", learning_rate=1e-3, epochs=4, steps_per_epoch=25, lr_schedule=schedule)
    steps = np.array([0, 10, 50, 99, 100])
    expected = {
        "constant": np.full(steps.shape, 1e-3),
        "poly": 1e-3 * (1 - steps / 100) ** 0.9,
        "cosine": 1e-3 * 0.5 * (1 + np.cos(np.pi * steps / 100)),
    }[schedule]
    rate = make_schedule(config)
    values = [float(rate(int(s))) if callable(rate) else rate for s in steps]
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-9)


def test_the_history_records_the_scheduled_rate(tiny_data, tmp_path, tiny_trainer):
    config = tiny_config(tiny_data, tmp_path / "run", epochs=2, lr_schedule="poly")
    result = tiny_trainer(config, echo=lambda m: None).fit()
    rates = [row["learning_rate"] for row in result.history]
    np.testing.assert_allclose(rates, [1e-3 * (1 - 2 / 4) ** 0.9, 0.0], atol=1e-9)
