"""Per-region Dice (whole tumor, tumor core, enhancing tumor) as Keras metrics, in `keras.ops`.

Regions are unions of the internal classes 0..3 (WT = {1, 2, 3}, TC = {1, 3}, ET = {3}). The
predicted class of a voxel is the argmax over the last axis of `y_pred` (logits or probabilities).
Dice is accumulated over every voxel seen since the last reset, as 2 |P & R| / (|P| + |R|), and is
1 when both are empty (the BraTS convention).

Regions and the targets that read network outputs are defined in `tfbrats.labels`.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
from keras import ops

from tfbrats.labels import REGIONS, in_classes


def region_counts(y_true, y_pred, regions: Mapping[str, tuple[int, ...]] | None = None):
    """Voxel counts per region: a (R, 3) float32 tensor, one row per region (WT, TC, ET by default).

    The columns are the overlap |P & R|, the reference size |R| and the predicted size |P|;
    counts from several batches or replicas add up.

    Args:
        y_true: integer internal labels of any shape S.
        y_pred: logits or probabilities of shape S + (num_classes,).
        regions: Region -> its internal classes, in row order (a label set's ``regions``, e.g.
            WT, TC, ET and RC for post-treatment data); None: WT, TC, ET.

    Example:
        >>> import numpy as np
        >>> counts = region_counts(np.array([[0, 1, 3]]), np.eye(4)[[[0, 3, 3]]])
        >>> keras.ops.convert_to_numpy(counts)[:, 0]  # overlap per region
        array([2., 2., 1.], dtype=float32)
        >>> from tfbrats.labels import BRATS_POST_TREATMENT
        >>> counts = region_counts(np.array([[4, 4, 3]]), np.eye(5)[[[4, 0, 3]]], BRATS_POST_TREATMENT.regions)
        >>> keras.ops.convert_to_numpy(counts)[3]  # RC: overlap, reference, predicted
        array([1., 2., 1.], dtype=float32)
    """
    labels = ops.cast(y_true, "int32")
    predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
    rows = []
    for classes in (REGIONS if regions is None else regions).values():
        reference = in_classes(labels, classes)
        prediction = in_classes(predicted, classes)
        rows.append(ops.stack([ops.sum(reference * prediction), ops.sum(reference), ops.sum(prediction)]))
    return ops.stack(rows)


def dice_from_counts(counts):
    """Dice per region from `region_counts` rows (overlap, reference, predicted); 1 where both are empty.

    Works on numpy arrays and tensors alike.

    Example:
        >>> import numpy as np
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
        >>> import numpy as np
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
