"""BatchNorm statistics re-estimated with the current weights before the validations that choose best.keras."""

import keras
import numpy as np
import pytest

from tests.training.conftest import tiny_config
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
