"""Per-region Dice (whole tumor, tumor core, enhancing tumor) as Keras metrics, in `keras.ops`.

Regions are unions of the internal classes 0..3 (DESIGN §4): WT = {1, 2, 3}, TC = {1, 3},
ET = {3}. The predicted class of a voxel is the argmax over the last axis of `y_pred` (logits
or probabilities). Dice is accumulated over every voxel seen since the last reset, as
2 |P & R| / (|P| + |R|), and is 1 when both are empty (the BraTS convention).

`labels_to_regions` and `regions_to_labels` convert between class labels and the nested region
masks (ET inside TC inside WT) that region-based training (``--target=regions``) predicts; the
training loss and metrics and whole-patient prediction all use them.
"""

from __future__ import annotations

import keras
from keras import ops

REGIONS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}


def region_counts(y_true, y_pred):
    """Voxel counts per region: a (3, 3) float32 tensor, rows WT, TC, ET.

    The columns are the overlap |P & R|, the reference size |R| and the predicted size |P|;
    counts from several batches or replicas add up.

    Args:
        y_true: integer labels 0..3 of any shape S.
        y_pred: logits or probabilities of shape S + (num_classes,).

    Example:
        >>> counts = region_counts(np.array([[0, 1, 3]]), np.eye(4)[[[0, 3, 3]]])
        >>> keras.ops.convert_to_numpy(counts)[:, 0]  # overlap per region
        array([2., 2., 1.], dtype=float32)
    """
    labels = ops.cast(y_true, "int32")
    predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
    rows = []
    for classes in REGIONS.values():
        reference = _in_classes(labels, classes)
        prediction = _in_classes(predicted, classes)
        rows.append(ops.stack([ops.sum(reference * prediction), ops.sum(reference), ops.sum(prediction)]))
    return ops.stack(rows)


def labels_to_regions(labels):
    """Nested region masks WT, TC, ET from internal labels 0..3: float32 of shape S + (3,).

    Example:
        >>> keras.ops.convert_to_numpy(labels_to_regions(np.array([0, 1, 2, 3]))).tolist()
        [[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    """
    labels = ops.cast(labels, "int32")
    return ops.stack([_in_classes(labels, classes) for classes in REGIONS.values()], axis=-1)


def regions_to_labels(probabilities, threshold: float = 0.5):
    """Internal labels 0..3 (uint8) from WT, TC, ET probabilities S + (3,), nested ET in TC in WT.

    A voxel is tumor when its WT probability exceeds `threshold` (edema, 2, unless more applies),
    core when its TC probability does too (necrosis, 1), and enhancing when, within the core, its
    ET probability does as well (3); a TC or ET outside WT is ignored, as is an ET outside TC.

    Example:
        >>> p = np.array([[0.2, 0.9, 0.9], [0.8, 0.3, 0.9], [0.8, 0.7, 0.1], [0.8, 0.7, 0.6]])
        >>> keras.ops.convert_to_numpy(regions_to_labels(p)).tolist()
        [0, 2, 1, 3]
    """
    above = ops.greater(probabilities, threshold)
    whole = above[..., 0]
    core = ops.logical_and(whole, above[..., 1])
    enhancing = ops.logical_and(core, above[..., 2])
    labels = ops.where(enhancing, 3, ops.where(core, 1, ops.where(whole, 2, 0)))
    return ops.cast(labels, "uint8")


def _in_classes(labels, classes: tuple[int, ...]):
    """A float32 mask of the voxels whose label is one of `classes`."""
    mask = ops.zeros(ops.shape(labels), dtype="float32")
    for value in classes:
        mask = mask + ops.cast(ops.equal(labels, value), "float32")
    return mask


def dice_from_counts(counts):
    """Dice per region from `region_counts` rows (overlap, reference, predicted); 1 where both are empty.

    Works on numpy arrays and tensors alike.

    Example:
        >>> keras.ops.convert_to_numpy(dice_from_counts(np.array([[2.0, 3.0, 2.0], [0.0, 0.0, 0.0]])))
        array([0.8, 1. ])
    """
    overlap, reference, predicted = counts[..., 0], counts[..., 1], counts[..., 2]
    total = reference + predicted
    return ops.where(total > 0, 2.0 * overlap / ops.maximum(total, 1e-12), ops.ones_like(total))


@keras.saving.register_keras_serializable(package="tfbrats")
class RegionDice(keras.metrics.Metric):
    """Dice of one tumor region (WT, TC or ET) over all voxels seen, for `compile(metrics=...)`.

    Args:
        region: "WT", "TC" or "ET".
        name: The metric's name (default `dice_<region>`).
        dtype: The dtype of the accumulators.

    Example:
        >>> metric = RegionDice("WT")
        >>> metric.update_state(np.array([[0, 1, 2]]), np.eye(4)[[[0, 1, 0]]])
        >>> float(metric.result())  # 2 * 1 / (2 + 1)
        0.6666666865348816
    """

    def __init__(self, region: str, name: str | None = None, dtype=None):
        if region not in REGIONS:
            raise ValueError(f"region must be one of {list(REGIONS)}; got {region!r}")
        super().__init__(name=name or f"dice_{region}", dtype=dtype)
        self.region = region
        self._row = list(REGIONS).index(region)
        self.counts = self.add_variable(shape=(3,), initializer="zeros", name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds the overlap and sizes of the region in a batch."""
        if sample_weight is not None:
            raise ValueError("RegionDice counts voxels and takes no sample_weight; pass None")
        self.counts.assign_add(ops.cast(region_counts(y_true, y_pred)[self._row], self.dtype))

    def result(self):
        return dice_from_counts(self.counts)

    def get_config(self) -> dict:
        return {"region": self.region, "name": self.name, "dtype": self.dtype}
