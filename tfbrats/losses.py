"""Losses on (integer labels, logits), written with `keras.ops` only so they run on any backend."""

from __future__ import annotations

import keras
from keras import ops

from tfbrats.metrics import REGIONS, labels_to_regions


@keras.saving.register_keras_serializable(package="tfbrats")
class MultipleDiceLoss(keras.losses.Loss):
    """Multiple Dice loss: one minus the mean soft Dice of the classes (DESIGN §5).

    For each sample and class l, with softmax probabilities p and the one-hot reference r,
    Dice_l = (2 sum_n r_ln p_ln + smooth) / (sum_n r_ln + sum_n p_ln + smooth), summed over the
    sample's voxels n; the sample's loss is 1 - mean_l Dice_l. Computing it per sample (not over
    the whole batch) makes the batch loss a plain mean, so a distributed step that divides by the
    global batch gives the same loss on any number of replicas.

    Args:
        num_classes: K, the number of output channels (4: background, core, edema, enhancing).
        include_background: Average over all K channels (the published code's default) or, when
            False, over channels 1..K-1 only (the paper's formula with K = 3).
        smooth: Added to numerator and denominator, so a class absent from both the reference
            and the prediction scores Dice 1 instead of 0/0. 0 gives the bare formula.
        reduction: Keras' reduction over the batch; None returns one loss per sample.
        name: The loss's name.

    Example:
        >>> loss = MultipleDiceLoss(num_classes=4)
        >>> labels = np.zeros((1, 2, 32, 32), "int32")
        >>> round(float(loss(labels, np.zeros((1, 2, 32, 32, 4), "float32"))), 3)
        0.898
    """

    def __init__(
        self,
        num_classes: int = 4,
        include_background: bool = True,
        smooth: float = 1.0,
        reduction: str | None = "sum_over_batch_size",
        name: str = "multiple_dice_loss",
    ):
        if num_classes < 2:
            raise ValueError(f"MultipleDiceLoss needs num_classes >= 2 (background and one class); got {num_classes}")
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0; got {smooth}")
        super().__init__(name=name, reduction=reduction)
        self.num_classes = num_classes
        self.include_background = include_background
        self.smooth = smooth

    def call(self, y_true, y_pred):
        """Per-sample losses (B,) from labels (B, ...) and logits (B, ..., K)."""
        labels = ops.cast(y_true, "int32")
        probabilities = ops.softmax(ops.cast(y_pred, "float32"), axis=-1)
        reference = ops.one_hot(labels, self.num_classes, dtype="float32")
        if not self.include_background:
            probabilities = probabilities[..., 1:]
            reference = reference[..., 1:]
        axes = tuple(range(1, len(probabilities.shape) - 1))
        intersection = ops.sum(reference * probabilities, axis=axes)
        total = ops.sum(reference, axis=axes) + ops.sum(probabilities, axis=axes)
        dice = (2.0 * intersection + self.smooth) / (total + self.smooth)
        return 1.0 - ops.mean(dice, axis=-1)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "include_background": self.include_background,
            "smooth": self.smooth,
        }


@keras.saving.register_keras_serializable(package="tfbrats")
class RegionDiceLoss(keras.losses.Loss):
    """Region Dice loss for ``--target=regions``: one minus the mean soft Dice of WT, TC and ET.

    The model predicts one logit per region (WT, TC, ET, in that order); p = sigmoid(logit) and
    the reference r is the region's mask from the integer labels (`labels_to_regions`). Per
    sample and region, Dice = (2 sum_n r_n p_n + smooth) / (sum_n r_n + sum_n p_n + smooth); the
    sample's loss is 1 - the mean over the three regions (no background term: each region is its
    own binary problem, and its sigmoid is pulled to 0 outside the region).

    Args:
        smooth: Added to numerator and denominator, so a region absent from both the reference
            and the prediction scores Dice 1 instead of 0/0. 0 gives the bare formula.
        reduction: Keras' reduction over the batch; None returns one loss per sample.
        name: The loss's name.

    Example:
        >>> loss = RegionDiceLoss()
        >>> labels = np.zeros((1, 2, 32, 32), "int32")
        >>> round(float(loss(labels, np.zeros((1, 2, 32, 32, 3), "float32"))), 3)
        0.999
    """

    def __init__(
        self,
        smooth: float = 1.0,
        reduction: str | None = "sum_over_batch_size",
        name: str = "region_dice_loss",
    ):
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0; got {smooth}")
        super().__init__(name=name, reduction=reduction)
        self.smooth = smooth

    def call(self, y_true, y_pred):
        """Per-sample losses (B,) from labels (B, ...) and region logits (B, ..., 3)."""
        if y_pred.shape[-1] != len(REGIONS):
            raise ValueError(
                f"RegionDiceLoss needs one logit per region {list(REGIONS)} (last axis 3); got shape {y_pred.shape}"
            )
        probabilities = ops.sigmoid(ops.cast(y_pred, "float32"))
        reference = labels_to_regions(y_true)
        axes = tuple(range(1, len(probabilities.shape) - 1))
        intersection = ops.sum(reference * probabilities, axis=axes)
        total = ops.sum(reference, axis=axes) + ops.sum(probabilities, axis=axes)
        dice = (2.0 * intersection + self.smooth) / (total + self.smooth)
        return 1.0 - ops.mean(dice, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "smooth": self.smooth}
