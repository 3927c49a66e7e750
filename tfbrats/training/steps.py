"""The distributed training and evaluation steps: one custom step for every strategy.

Keras 3's `Model.fit` does not run under `MultiWorkerMirroredStrategy`, so tfbrats trains with
its own step: a `tf.function` that takes the next batch of a distributed dataset, runs
`strategy.run` with a `tf.GradientTape` and the optimizer's `apply_gradients` (which all-reduces
the gradients), with the Dice loss of the global batch (its sums all-reduced over the replicas),
and reduces the loss and the region counts over the replicas.

With a `keras.optimizers.LossScaleOptimizer` (float16), the loss is multiplied by the dynamic
scale before differentiation; a step whose gradients are not finite on any replica is skipped
and the scale halves, and after `dynamic_growth_steps` finite steps it doubles (the optimizer's
variables, scale included, are part of the checkpoint).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from tfbrats.labels import Target, get_target
from tfbrats.losses import SoftDiceLoss
from tfbrats.training.metrics import region_counts


def _poison_unless_all_finite(context: tf.distribute.ReplicaContext, gradients: list) -> list:
    """Makes every replica's gradients non-finite when any replica's are.

    The loss-scale optimizer decides from the first replica's gradients; without this, an
    overflow on another replica alone would be applied.
    """
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients if g is not None])
    bad = context.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
    poison = tf.where(bad > 0, tf.constant(float("nan")), tf.constant(0.0))
    return [g if g is None else g + tf.cast(poison, g.dtype) for g in gradients]


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
        optimizer: A Keras optimizer created under the same scope; a `LossScaleOptimizer` scales
            the loss and skips steps whose gradients overflow.
        loss: A `SoftDiceLoss` (`MultipleDiceLoss` or `RegionDiceLoss`).
        strategy: The distribution strategy.
        target: What the model's outputs are (`tfbrats.labels.Target`; default: 4 classes); the
            region counts score the labels the target makes of them, as prediction writes them.

    Returns:
        ``train_step(batch) -> (loss, counts)`` and ``eval_step(batch) -> (counts, *sums)``, where
        `batch` is an element of a distributed dataset of ``(images, labels)``, `counts` are the
        (R, 3) `region_counts` (a row per region of the target's label set) and `sums` the loss's
        `sums`, all summed over replicas (the loss of several evaluation batches is
        `loss.loss_from_sums` of their added sums).

    Example:
        >>> from tfbrats.losses import MultipleDiceLoss
        >>> strategy = tf.distribute.get_strategy()
        >>> with strategy.scope():  # a one-layer stand-in for an AlbuNet: logits of 4 classes
        ...     model = keras.Sequential([keras.Input((2, 8, 8, 3)), keras.layers.Conv3D(4, 1)])
        ...     optimizer = keras.optimizers.Adam(1e-3)
        >>> train_step, eval_step = make_step_functions(model, optimizer, MultipleDiceLoss(), strategy)
        >>> batch = (tf.ones((2, 2, 8, 8, 3)), tf.zeros((2, 2, 8, 8), tf.int32))
        >>> batches = iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch)))
        >>> batch_loss, counts = train_step(next(batches))
        >>> 0.0 <= float(batch_loss) <= 1.0, tuple(counts.shape), int(optimizer.iterations)
        (True, (3, 3), 1)
    """
    variables = model.trainable_variables
    target = target or get_target("classes")
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def counts(labels, logits):
        return region_counts(labels, target.one_hot_labels(logits), target.label_set.regions)

    def replica_train(images, labels):
        context = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            sums = loss.sums(labels, logits)
            global_sums = context.all_reduce(tf.distribute.ReduceOp.SUM, [tf.stop_gradient(s) for s in sums])
            # Worth the global loss; its gradient is this replica's share of the global gradient.
            replica_loss = loss.loss_from_sums(*(g + s - tf.stop_gradient(s) for g, s in zip(global_sums, sums)))
            objective = optimizer.scale_loss(replica_loss) if scaled else replica_loss
        gradients = tape.gradient(objective, variables)
        if scaled:
            gradients = _poison_unless_all_finite(context, gradients)
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
