"""BatchNorm statistics re-estimated with the current weights before the validations that choose best.keras."""

import json
import textwrap

import keras
import numpy as np
import pytest

from tests.training.conftest import run_python, tiny_config
from tfbrats.training import Trainer


def test_refreshed_statistics_are_the_mean_of_the_batches_statistics(tmp_path):
    inputs = keras.Input((4, 6, 6, 3))
    normalised = keras.layers.BatchNormalization(momentum=0.99, name="outer_bn")(inputs)
    inner_in = keras.Input((4, 6, 6, 3))
    inner = keras.Model(inner_in, keras.layers.BatchNormalization(momentum=0.99, name="inner_bn")(
        keras.layers.Dense(3, name="dense")(inner_in)), name="inner")
    model = keras.Model(inputs, inner(normalised))
    rng = np.random.default_rng(0)
    batches = [(rng.normal(loc=i, scale=1 + i, size=(2, 4, 6, 6, 3)).astype(np.float32), None) for i in range(3)]
    trainer = Trainer(tiny_config(tmp_path, tmp_path / "run"))
    trainer.model, trainer.refresh_data = model, batches
    inner_before = inner.get_layer("inner_bn").moving_mean.numpy().copy()
    trainer.refresh_batchnorm()

    outer = model.get_layer("outer_bn")
    axes = (0, 1, 2, 3)
    np.testing.assert_allclose(outer.moving_mean.numpy(), np.mean([b.mean(axes) for b, _ in batches], 0), rtol=1e-5)
    np.testing.assert_allclose(outer.moving_variance.numpy(), np.mean([b.var(axes) for b, _ in batches], 0),
                               rtol=1e-4)
    assert not np.allclose(inner.get_layer("inner_bn").moving_mean.numpy(), inner_before)  # nested models too
    assert outer.momentum == inner.get_layer("inner_bn").momentum == 0.99


@pytest.mark.parametrize(("every", "expected"), [(0, [1, 2, 3]), (2, [2, 3])])
def test_a_run_refreshes_before_each_validation_that_can_choose_best(tiny_trainer, tiny_data, tmp_path, every,
                                                                    expected):
    refreshed = []

    class Counting(tiny_trainer):
        def refresh_batchnorm(self):
            refreshed.append(int(self.epoch.numpy()) + 1)
            assert len(list(self.refresh_data)) == 2
            super().refresh_batchnorm()

    scorer = (lambda model, cases: {"WT": 0.5, "TC": 0.5, "ET": 0.5}) if every else None
    config = tiny_config(tiny_data, tmp_path / "run", epochs=3, bn_refresh_batches=2, volume_validation_every=every)
    Counting(config, volume_scorer=scorer).fit()
    assert refreshed == expected


# Two replicas need logical devices configured before TensorFlow starts: a child process.
MIRRORED_REFRESH_SCRIPT = textwrap.dedent("""
    import json
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from tests.training.conftest import tiny_config
    from tfbrats.training import Trainer

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        inputs = keras.Input((4, 6, 6, 3))
        model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.99, name="bn")(inputs))
    rng = np.random.default_rng(0)
    batches = [(rng.normal(loc=i, scale=1 + i, size=(2, 4, 6, 6, 3)).astype(np.float32), None) for i in range(3)]
    trainer = Trainer(tiny_config(sys.argv[1], sys.argv[1] + "/run"))
    trainer.model, trainer.refresh_data = model, batches
    with strategy.scope():
        trainer.refresh_batchnorm()
    layer = model.get_layer("bn")
    print("RESULT " + json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "means": [v.numpy().tolist() for v in strategy.experimental_local_results(layer.moving_mean.value)],
        "variances": [v.numpy().tolist() for v in strategy.experimental_local_results(layer.moving_variance.value)],
        "momentum": layer.momentum}))
""")


@pytest.mark.slow
def test_two_replicas_refresh_to_the_same_statistics_on_each(tmp_path):
    result = run_python(["-c", MIRRORED_REFRESH_SCRIPT, str(tmp_path)], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.split("RESULT ", 1)[1])
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=i, scale=1 + i, size=(2, 4, 6, 6, 3)).astype(np.float32) for i in range(3)]
    axes = (0, 1, 2, 3)
    assert found["replicas"] == len(found["means"]) == 2 and found["momentum"] == 0.99
    for means, variances in zip(found["means"], found["variances"], strict=True):
        np.testing.assert_allclose(means, np.mean([b.mean(axes) for b in batches], 0), rtol=1e-5)
        np.testing.assert_allclose(variances, np.mean([b.var(axes) for b in batches], 0), rtol=1e-4)
