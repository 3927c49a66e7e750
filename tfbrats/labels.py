"""Labels, tumor regions and training targets: the one place that says what a network's outputs mean.

Internal classes (every array inside tfbrats): 0 background, 1 necrotic / non-enhancing core,
2 edema, 3 enhancing tumor (ET). Datasets store their own values (ET is 4 in BraTS 2018-2021);
`tfbrats.data` maps them to these classes on reading and back on writing.

Regions are unions of classes, as BraTS scores them: whole tumor WT = {1, 2, 3}, tumor core
TC = {1, 3}, enhancing tumor ET = {3}; they nest (ET inside TC inside WT).

A target says what a network is trained to output and how its outputs become labels:

- `ClassesTarget` ("classes", the paper's): one logit per class, softmax, argmax;
- `RegionsTarget` ("regions"): one logit per region WT, TC, ET, a sigmoid each, and nested labels
  (`regions_to_labels`).

Training (metrics; the loss through `tfbrats.losses.loss_for`), prediction, export and serving all
ask the target (`get_target`) rather than testing the target's name.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

CLASS_NAMES = ("background", "necrotic/non-enhancing core", "edema", "enhancing tumor")
ET_CLASS = 3
# Every internal label a segmentation may hold.
INTERNAL_LABELS = tuple(range(len(CLASS_NAMES)))
# Region -> the internal classes it is made of, in training/prediction order (WT, TC, ET).
REGIONS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
REGION_TITLES = {"WT": "whole tumor", "TC": "tumor core", "ET": "enhancing tumor"}
# BraTS' tables (and the paper's Table 1) list the regions in this order.
REPORT_ORDER = ("ET", "WT", "TC")


def _ops():
    from keras import ops  # imported on first use: numpy users of this module need no Keras

    return ops


def in_classes(labels, classes: tuple[int, ...]):
    """A float32 mask of the voxels whose label is one of `classes` (Keras ops)."""
    ops = _ops()
    mask = ops.zeros(ops.shape(labels), dtype="float32")
    for value in classes:
        mask = mask + ops.cast(ops.equal(labels, value), "float32")
    return mask


def region_masks(labels: np.ndarray, classes: dict[str, tuple[int, ...]] = REGIONS) -> dict[str, np.ndarray]:
    """Boolean numpy masks per region from a label map (internal classes unless `classes` says otherwise).

    Example:
        >>> {k: v.tolist() for k, v in region_masks(np.array([0, 1, 2, 3])).items()}
        {'WT': [False, True, True, True], 'TC': [False, True, False, True], 'ET': [False, False, False, True]}
    """
    labels = np.asarray(labels)
    return {name: np.isin(labels, values) for name, values in classes.items()}


def labels_to_regions(labels):
    """Nested region masks WT, TC, ET from internal labels 0..3: float32 of shape S + (3,) (Keras ops).

    Example:
        >>> import keras
        >>> keras.ops.convert_to_numpy(labels_to_regions(np.array([0, 1, 2, 3]))).tolist()
        [[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    """
    ops = _ops()
    labels = ops.cast(labels, "int32")
    return ops.stack([in_classes(labels, classes) for classes in REGIONS.values()], axis=-1)


def regions_to_labels(probabilities, threshold: float = 0.5):
    """Internal labels 0..3 (uint8) from WT, TC, ET probabilities S + (3,), nested ET in TC in WT (Keras ops).

    A voxel is tumor when its WT probability exceeds `threshold` (edema, 2, unless more applies),
    core when its TC probability does too (necrosis, 1), and enhancing when, within the core, its
    ET probability does as well (3); a TC or ET outside WT is ignored, as is an ET outside TC.

    Example:
        >>> import keras
        >>> p = np.array([[0.2, 0.9, 0.9], [0.8, 0.3, 0.9], [0.8, 0.7, 0.1], [0.8, 0.7, 0.6]])
        >>> keras.ops.convert_to_numpy(regions_to_labels(p)).tolist()
        [0, 2, 1, 3]
    """
    ops = _ops()
    above = ops.greater(probabilities, threshold)
    whole = above[..., 0]
    core = ops.logical_and(whole, above[..., 1])
    enhancing = ops.logical_and(core, above[..., 2])
    labels = ops.where(enhancing, 3, ops.where(core, 1, ops.where(whole, 2, 0)))
    return ops.cast(labels, "uint8")


@dataclasses.dataclass(frozen=True)
class Target:
    """What a network outputs and how its outputs become internal labels 0..3.

    Subclasses: `ClassesTarget`, `RegionsTarget`; get one with `get_target`.
    """

    name = "target"
    activation = "none"

    @property
    def num_outputs(self) -> int:
        raise NotImplementedError

    @property
    def output_names(self) -> tuple[str, ...]:
        """What each output channel is (class or region names)."""
        raise NotImplementedError

    @property
    def labels(self) -> tuple[int, ...]:
        """The internal labels `to_labels` can give."""
        raise NotImplementedError

    def probabilities(self, logits):
        """Logits (..., num_outputs) -> probabilities of the same shape (Keras ops)."""
        raise NotImplementedError

    def to_labels(self, probabilities):
        """Probabilities (..., num_outputs) -> internal labels 0..3, uint8, shape (...) (Keras ops)."""
        raise NotImplementedError

    def to_labels_numpy(self, probabilities: np.ndarray) -> np.ndarray:
        """`to_labels` on a numpy array, returning numpy (the same rule, not a copy of it)."""
        return np.asarray(_ops().convert_to_numpy(self.to_labels(np.asarray(probabilities))), dtype=np.uint8)

    def one_hot_labels(self, logits):
        """One-hot (..., 4) of the labels the logits segment to, for class-based counting (Keras ops)."""
        ops = _ops()
        return ops.one_hot(ops.cast(self.to_labels(self.probabilities(logits)), "int32"), len(CLASS_NAMES))

    def to_json(self) -> dict[str, Any]:
        """What a model file records about its target."""
        return {"name": self.name, "num_outputs": self.num_outputs, "activation": self.activation,
                "outputs": list(self.output_names)}


@dataclasses.dataclass(frozen=True)
class ClassesTarget(Target):
    """Softmax over the classes and argmax (the paper's target).

    Args:
        num_classes: Output channels, one per internal class (4).

    Example:
        >>> ClassesTarget().to_labels_numpy(np.array([[0.1, 0.2, 0.6, 0.1]])).tolist()
        [2]
    """

    num_classes: int = len(CLASS_NAMES)
    name = "classes"
    activation = "softmax"

    def __post_init__(self):
        if self.num_classes < 2:
            raise ValueError(
                f"a classes target needs num_classes >= 2 (background and a class); got {self.num_classes}"
            )

    @property
    def num_outputs(self) -> int:
        return self.num_classes

    @property
    def output_names(self) -> tuple[str, ...]:
        return CLASS_NAMES[: self.num_classes] if self.num_classes <= len(CLASS_NAMES) else tuple(
            f"class_{i}" for i in range(self.num_classes))

    @property
    def labels(self) -> tuple[int, ...]:
        return tuple(range(self.num_classes))

    def probabilities(self, logits):
        return _ops().softmax(_ops().cast(logits, "float32"), axis=-1)

    def to_labels(self, probabilities):
        ops = _ops()
        return ops.cast(ops.argmax(probabilities, axis=-1), "uint8")

    def one_hot_labels(self, logits):
        # argmax of logits = argmax of the softmax: skip the exponentials.
        ops = _ops()
        return ops.one_hot(ops.argmax(logits, axis=-1), self.num_classes)


@dataclasses.dataclass(frozen=True)
class RegionsTarget(Target):
    """A sigmoid per region WT, TC, ET, turned into nested labels (`regions_to_labels`).

    Args:
        threshold: Probability above which a voxel belongs to a region.

    Example:
        >>> RegionsTarget().to_labels_numpy(np.array([[0.9, 0.8, 0.7], [0.9, 0.1, 0.9]])).tolist()
        [3, 2]
    """

    threshold: float = 0.5
    name = "regions"
    activation = "sigmoid"

    @property
    def num_outputs(self) -> int:
        return len(REGIONS)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(REGIONS)

    @property
    def labels(self) -> tuple[int, ...]:
        return INTERNAL_LABELS

    def probabilities(self, logits):
        return _ops().sigmoid(_ops().cast(logits, "float32"))

    def to_labels(self, probabilities):
        return regions_to_labels(probabilities, self.threshold)

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "threshold": self.threshold}


TARGETS: dict[str, type[Target]] = {"classes": ClassesTarget, "regions": RegionsTarget}


def get_target(name: str, num_classes: int = len(CLASS_NAMES)) -> Target:
    """The target called `name` ("classes" or "regions").

    Args:
        name: The target's name.
        num_classes: Output classes of a "classes" target (ignored by "regions": always 3 outputs).

    Example:
        >>> get_target("regions").num_outputs
        3
    """
    if name == "classes":
        return ClassesTarget(num_classes)
    if name == "regions":
        return RegionsTarget()
    raise ValueError(f"target must be one of {list(TARGETS)}; got {name!r}")


def target_from_json(values: dict[str, Any]) -> Target:
    """The target a model file recorded with `Target.to_json`.

    Example:
        >>> target_from_json(get_target("classes").to_json())
        ClassesTarget(num_classes=4)
    """
    name = values.get("name")
    if name == "regions":
        return RegionsTarget(float(values.get("threshold", 0.5)))
    if name == "classes":
        return ClassesTarget(int(values.get("num_outputs", len(CLASS_NAMES))))
    raise ValueError(f"unknown target {name!r} in a model's record; expected one of {list(TARGETS)}")
