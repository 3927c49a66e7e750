"""MultipleDiceLoss and the region Dice metrics against independent numpy computations."""

import textwrap

import keras
import numpy as np
import pytest

from tests.training.conftest import run_python
from tfbrats.losses import MultipleDiceLoss
from tfbrats.training.metrics import RegionDice, dice_from_counts, region_counts


def _softmax(logits):
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def _design_formula(labels, logits, num_classes, include_background, smooth, cross_entropy_weight=0.0):
    """The multiple Dice loss class by class, each sum over every voxel of the batch (+ weighted mean CE)."""
    probabilities = _softmax(logits.astype(np.float64))
    classes = range(num_classes) if include_background else range(1, num_classes)
    dices = []
    for c in classes:
        r, p = (labels == c).astype(np.float64), probabilities[..., c]
        dices.append((2 * np.sum(r * p) + smooth) / (np.sum(r) + np.sum(p) + smooth))
    of_label = np.take_along_axis(probabilities, labels[..., None], axis=-1)
    return 1 - np.mean(dices) + cross_entropy_weight * np.mean(-np.log(of_label))


@pytest.fixture
def random_batch():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(3, 2, 8, 8))
    logits = rng.normal(scale=2.0, size=(3, 2, 8, 8, 4)).astype(np.float32)
    return labels, logits


@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize(("smooth", "cross_entropy_weight"), [(0.0, 0.0), (1.0, 0.0), (1.0, 0.7)])
def test_loss_equals_numpy(random_batch, include_background, smooth, cross_entropy_weight):
    labels, logits = random_batch
    loss = MultipleDiceLoss(4, include_background=include_background, smooth=smooth,
                            cross_entropy_weight=cross_entropy_weight)
    expected = _design_formula(labels, logits, 4, include_background, smooth, cross_entropy_weight)
    np.testing.assert_allclose(float(loss(labels, logits)), expected, rtol=1e-5)


def test_background_changes_the_loss(random_batch):
    labels, logits = random_batch
    assert float(MultipleDiceLoss(4)(labels, logits)) != pytest.approx(
        float(MultipleDiceLoss(4, include_background=False)(labels, logits)), rel=1e-3)


@pytest.mark.parametrize("include_background", [True, False])
def test_loss_is_zero_for_a_perfect_prediction(include_background):
    labels = np.random.default_rng(1).integers(0, 4, size=(2, 3, 16, 16))
    labels[1] = np.minimum(labels[1], 2)  # the second sample has no enhancing tumor at all
    logits = 60.0 * np.eye(4, dtype=np.float32)[labels]
    loss = MultipleDiceLoss(4, include_background=include_background)
    assert float(loss(labels, logits)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("cross_entropy_weight", [0.0, 0.5])
def test_sums_of_parts_give_the_loss_of_the_whole(random_batch, cross_entropy_weight):
    labels, logits = random_batch
    loss = MultipleDiceLoss(4, cross_entropy_weight=cross_entropy_weight)
    parts = [loss.sums(labels[i : i + 1], logits[i : i + 1]) for i in range(3)]
    added = [sum(keras.ops.convert_to_numpy(part[k]) for part in parts) for k in range(len(parts[0]))]
    assert len(added) == (4 if cross_entropy_weight else 2)
    np.testing.assert_allclose(float(loss.loss_from_sums(*added)), float(loss(labels, logits)), rtol=1e-6)


def test_false_positives_in_a_sample_without_the_class_get_a_gradient():
    """The reason the sums run over the batch: a per-sample Dice would all but ignore sample 1 here."""
    import tensorflow as tf

    labels = np.zeros((2, 1, 32, 32), "int32")
    labels[0, 0, :8, :8] = 1  # tumor in sample 0 only
    logits = np.zeros((2, 1, 32, 32, 2), "float32")
    logits[..., 1] = 4.0  # both samples predict tumor everywhere
    logits = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = MultipleDiceLoss(2)(labels, logits)
    gradient = tape.gradient(value, logits).numpy()[..., 1]
    # Raising the tumor logit where there is none costs as much in sample 1 as in sample 0.
    assert gradient[1].mean() > 0
    assert gradient[1].mean() == pytest.approx(gradient[0][labels[0] == 0].mean(), rel=0.05)


def test_a_class_absent_from_the_batch_is_pulled_to_zero_only_with_a_large_smooth():
    """smooth 1 (the published code) scores an absent class 1 / (sum p + 1): a pull towards predicting none."""
    import tensorflow as tf

    from tfbrats.training import TrainConfig
    from tfbrats.training.factories import make_loss

    intersection = tf.constant([900.0, 300.0, 0.0])  # class 2 is in no voxel of the batch ...
    total = tf.Variable([2000.0, 700.0, 20.0])  # ... and predicted with a mass of 20 voxels

    def pull(smooth):
        loss = make_loss(TrainConfig(model_dir="x", num_classes=3, dice_smooth=smooth))
        with tf.GradientTape() as tape:
            value = loss.loss_from_sums(intersection, total)
        return float(tape.gradient(value, total)[2])

    assert pull(1.0) == pytest.approx(1.0 / (3 * 21**2), rel=1e-5)  # d/dS of -(1/3) / (S + 1)
    assert 0 < pull(1e-5) < 1e-4 * pull(1.0)


def test_loss_round_trips_through_its_config():
    loss = MultipleDiceLoss(4, include_background=False, smooth=0.5, cross_entropy_weight=0.25)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert (type(clone), clone.include_background, clone.smooth, clone.cross_entropy_weight) == (
        MultipleDiceLoss, False, 0.5, 0.25)


def _numpy_region_dice(labels, predicted, classes):
    reference, prediction = np.isin(labels, classes), np.isin(predicted, classes)
    total = reference.sum() + prediction.sum()
    return 1.0 if total == 0 else 2 * np.sum(reference & prediction) / total


def test_region_counts_and_dice_equal_numpy(random_batch):
    labels, logits = random_batch
    predicted = logits.argmax(-1)
    counts = keras.ops.convert_to_numpy(region_counts(labels, logits))
    for row, classes in enumerate([(1, 2, 3), (1, 3), (3,)]):
        reference, prediction = np.isin(labels, classes), np.isin(predicted, classes)
        assert counts[row].tolist() == [np.sum(reference & prediction), reference.sum(), prediction.sum()]
    dice = keras.ops.convert_to_numpy(dice_from_counts(counts))
    expected = [_numpy_region_dice(labels, predicted, c) for c in [(1, 2, 3), (1, 3), (3,)]]
    np.testing.assert_allclose(dice, expected, rtol=1e-6)


def test_region_counts_follow_the_label_set_with_the_resection_cavity():
    from tfbrats.labels import BRATS_POST_TREATMENT

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, size=(2, 3, 8, 8))
    logits = rng.normal(size=(2, 3, 8, 8, 5)).astype("float32")
    predicted = logits.argmax(-1)
    counts = keras.ops.convert_to_numpy(region_counts(labels, logits, BRATS_POST_TREATMENT.regions))
    assert counts.shape == (4, 3)
    for row, classes in enumerate([(1, 2, 3), (1, 3), (3,), (4,)]):
        reference, prediction = np.isin(labels, classes), np.isin(predicted, classes)
        assert counts[row].tolist() == [np.sum(reference & prediction), reference.sum(), prediction.sum()]
    assert counts[3, 1] > 0 and counts[0, 1] < labels.size  # RC voxels counted, and never as whole tumor


def test_region_dice_metric_accumulates_over_batches(random_batch):
    labels, logits = random_batch
    metric = RegionDice("TC")
    for i in range(3):
        metric.update_state(labels[i : i + 1], logits[i : i + 1])
    expected = _numpy_region_dice(labels, logits.argmax(-1), (1, 3))
    assert float(metric.result()) == pytest.approx(expected, rel=1e-6)
    metric.reset_state()
    metric.update_state(np.zeros((1, 4, 4)), np.eye(4)[np.zeros((1, 4, 4), int)])
    assert float(metric.result()) == 1.0  # both empty: the BraTS convention


def test_region_dice_rejects_an_unknown_region():
    with pytest.raises(ValueError, match="region must be one of"):
        RegionDice("edema")


def test_loss_and_metric_run_under_jax():
    pytest.importorskip("jax")
    script = textwrap.dedent("""
        import keras, numpy as np
        from tfbrats.losses import MultipleDiceLoss
        from tfbrats.training.metrics import RegionDice
        assert keras.backend.backend() == "jax"
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 4, size=(2, 2, 8, 8))
        logits = rng.normal(size=(2, 2, 8, 8, 4)).astype("float32")
        metric = RegionDice("WT")
        metric.update_state(labels, logits)
        print("jax-ok", float(MultipleDiceLoss(4)(labels, logits)), float(metric.result()))
    """)
    result = run_python(["-c", script], timeout=300, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    _, jax_loss, jax_dice = result.stdout.split()[-3:]
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(2, 2, 8, 8))
    logits = rng.normal(size=(2, 2, 8, 8, 4)).astype("float32")
    assert float(jax_loss) == pytest.approx(_design_formula(labels, logits, 4, True, 1.0), rel=1e-5)
    assert float(jax_dice) == pytest.approx(_numpy_region_dice(labels, logits.argmax(-1), (1, 2, 3)), rel=1e-6)
