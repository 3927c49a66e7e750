"""Labels, tumor regions and training targets: the one place that says what a network's outputs mean.

Internal classes (every array inside tfbrats): 0 background, 1 necrotic / non-enhancing core
(NETC), 2 edema (SNFH), 3 enhancing tumor (ET), and, for post-treatment data, 4 resection cavity
(RC). Datasets store their own values (ET is 4 in BraTS 2018-2021); `tfbrats.data` maps them to
these classes on reading and back on writing.

Regions are unions of classes, as BraTS scores them: whole tumor WT = {1, 2, 3}, tumor core
TC = {1, 3}, enhancing tumor ET = {3}; they nest (ET inside TC inside WT). The resection cavity
RC = {4} is a region of its own, outside WT.

A `LabelSet` is the data that says all of this for one dataset convention: its internal classes,
the regions a regions-target network outputs, and the groups evaluation scores. There are two:
`BRATS` (BraTS 2018-2023, the Decathlon; 4 classes) and `BRATS_POST_TREATMENT` (BraTS 2024/2025
glioma; 5 classes with RC, scored also as NETC and SNFH alone as the official ``gli``
configuration does). Every other module asks a label set (`get_label_set`, a target's `label_set`)
rather than testing for a class.

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
RC_CLASS = 4


@dataclasses.dataclass(frozen=True, repr=False)
class LabelSet:
    """The internal classes of a dataset convention, the regions a network outputs and the groups scored.

    Args:
        name: The name a model's contract records (``brats``, ``brats_post_treatment``).
        classes: Internal class names; class i is ``classes[i]`` (0 is background).
        regions: Region -> its internal classes, in the order of a regions-target network's
            outputs. The first three (WT, TC, ET) nest; every further region is one class that
            lies outside WT (`regions_to_labels`).
        groups: Group -> its internal classes, in the order evaluation reports them.
        titles: Region or group -> its name in words.

    Example:
        >>> BRATS_POST_TREATMENT.num_classes, list(BRATS_POST_TREATMENT.groups)
        (5, ['ET', 'WT', 'TC', 'RC', 'NETC', 'SNFH'])
    """

    name: str
    classes: tuple[str, ...]
    regions: dict[str, tuple[int, ...]]
    groups: dict[str, tuple[int, ...]]
    titles: dict[str, str]

    @property
    def num_classes(self) -> int:
        """The number of internal classes, background included."""
        return len(self.classes)

    @property
    def labels(self) -> tuple[int, ...]:
        """The internal labels a segmentation in this set may hold."""
        return tuple(range(self.num_classes))

    def __repr__(self) -> str:
        return f"LabelSet({self.name!r})"

    def __hash__(self) -> int:  # the name says it all; targets holding a label set stay hashable
        return hash(self.name)


BRATS = LabelSet("brats", CLASS_NAMES, REGIONS, {name: REGIONS[name] for name in REPORT_ORDER}, REGION_TITLES)
BRATS_POST_TREATMENT = LabelSet(
    "brats_post_treatment",
    (*CLASS_NAMES, "resection cavity"),
    {**REGIONS, "RC": (RC_CLASS,)},
    {**BRATS.groups, "RC": (RC_CLASS,), "NETC": (1,), "SNFH": (2,)},
    {**REGION_TITLES, "RC": "resection cavity", "NETC": "non-enhancing tumor core",
     "SNFH": "surrounding FLAIR hyperintensity"},
)
LABEL_SETS = {label_set.name: label_set for label_set in (BRATS, BRATS_POST_TREATMENT)}


def get_label_set(name: str) -> LabelSet:
    """The label set called `name`.

    Example:
        >>> get_label_set("brats_post_treatment").regions["RC"]
        (4,)
    """
    if name not in LABEL_SETS:
        raise ValueError(f"unknown label set {name!r}; expected one of {list(LABEL_SETS)}")
    return LABEL_SETS[name]


def _ops():
    from keras import ops  # imported on first use: numpy users of this module need no Keras

    return ops


class NumpyOps:
    """The few Keras ops the label rules use, on numpy arrays: the same rule runs without Keras.

    `Target.to_labels_numpy` hands this to `to_labels`, so a numpy volume is labelled by numpy
    (no conversion to a backend tensor and back) with the code a graph runs.

    Example:
        >>> NumpyOps.cast(NumpyOps.argmax(np.array([[0.1, 0.9]]), axis=-1), "uint8").tolist()
        [1]
    """

    argmax = staticmethod(np.argmax)
    greater = staticmethod(np.greater)
    logical_and = staticmethod(np.logical_and)
    logical_not = staticmethod(np.logical_not)
    where = staticmethod(np.where)

    @staticmethod
    def cast(values, dtype: str) -> np.ndarray:
        return np.asarray(values).astype(dtype, copy=False)


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


def labels_to_regions(labels, label_set: LabelSet = BRATS):
    """Region masks (WT, TC, ET, then any further region of the set) from internal labels: float32 S + (R,) (Keras ops).

    Example:
        >>> import keras
        >>> keras.ops.convert_to_numpy(labels_to_regions(np.array([0, 1, 2, 3]))).tolist()
        [[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    """
    ops = _ops()
    labels = ops.cast(labels, "int32")
    return ops.stack([in_classes(labels, classes) for classes in label_set.regions.values()], axis=-1)


def regions_to_labels(probabilities, threshold: float = 0.5, label_set: LabelSet = BRATS, ops=None):
    """Internal labels (uint8) from region probabilities S + (R,): WT, TC, ET nested, more regions outside WT.

    A voxel is tumor when its WT probability exceeds `threshold` (edema, 2, unless more applies),
    core when its TC probability does too (necrosis, 1), and enhancing when, within the core, its
    ET probability does as well (3); a TC or ET outside WT is ignored, as is an ET outside TC.
    Each further region of the label set (RC, 4) is one class, given to the voxels outside WT
    where its probability exceeds `threshold` (tumor wins where both do). `ops`: the array
    operations (default Keras'; `NumpyOps` for numpy arrays).

    Example:
        >>> import keras
        >>> p = np.array([[0.2, 0.9, 0.9], [0.8, 0.3, 0.9], [0.8, 0.7, 0.1], [0.8, 0.7, 0.6]])
        >>> keras.ops.convert_to_numpy(regions_to_labels(p)).tolist()
        [0, 2, 1, 3]
    """
    ops = ops or _ops()
    above = ops.greater(probabilities, threshold)
    whole = above[..., 0]
    core = ops.logical_and(whole, above[..., 1])
    enhancing = ops.logical_and(core, above[..., 2])
    labels = ops.where(enhancing, 3, ops.where(core, 1, ops.where(whole, 2, 0)))
    for index, classes in list(enumerate(label_set.regions.values()))[3:]:
        labels = ops.where(ops.logical_and(above[..., index], ops.logical_not(whole)), classes[0], labels)
    return ops.cast(labels, "uint8")


@dataclasses.dataclass(frozen=True)
class Target:
    """What a network outputs and how its outputs become internal labels (those of its `label_set`).

    Subclasses: `ClassesTarget`, `RegionsTarget`; get one with `get_target`.
    """

    name = "target"
    activation = "none"
    label_set = BRATS

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

    def to_labels(self, probabilities, ops=None):
        """Probabilities (..., num_outputs) -> internal labels, uint8, shape (...) (Keras ops, or `ops`)."""
        raise NotImplementedError

    def to_labels_numpy(self, probabilities: np.ndarray) -> np.ndarray:
        """`to_labels` on a numpy array with numpy's operations (`NumpyOps`): the same rule, not a copy of it."""
        return np.asarray(self.to_labels(np.asarray(probabilities), NumpyOps), dtype=np.uint8)

    def one_hot_labels(self, logits):
        """One-hot (..., labels) of the labels the logits segment to, for class-based counting (Keras ops)."""
        ops = _ops()
        return ops.one_hot(ops.cast(self.to_labels(self.probabilities(logits)), "int32"), len(self.labels))

    def to_json(self) -> dict[str, Any]:
        """What a model file records about its target (the label set only when it is not `BRATS`)."""
        values = {"name": self.name, "num_outputs": self.num_outputs, "activation": self.activation,
                  "outputs": list(self.output_names)}
        if self.label_set is not BRATS:
            values["label_set"] = self.label_set.name
        return values


def _check_label_set(value: Any) -> LabelSet:
    if not isinstance(value, LabelSet):
        raise ValueError(f"a target's label_set must be a LabelSet (one of {list(LABEL_SETS)}); got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class ClassesTarget(Target):
    """Softmax over the classes and argmax (the paper's target).

    Args:
        num_classes: Output channels, one per internal class (4; the label set's count when
            it is not `BRATS`).
        label_set: The internal classes the outputs are.

    Example:
        >>> ClassesTarget().to_labels_numpy(np.array([[0.1, 0.2, 0.6, 0.1]])).tolist()
        [2]
        >>> ClassesTarget(5, BRATS_POST_TREATMENT).output_names[-1]
        'resection cavity'
    """

    num_classes: int = len(CLASS_NAMES)
    label_set: LabelSet = BRATS
    name = "classes"
    activation = "softmax"

    def __post_init__(self):
        _check_label_set(self.label_set)
        if self.num_classes < 2:
            raise ValueError(
                f"a classes target needs num_classes >= 2 (background and a class); got {self.num_classes}"
            )
        if self.label_set is not BRATS and self.num_classes != self.label_set.num_classes:
            raise ValueError(f"label set {self.label_set.name} has {self.label_set.num_classes} classes "
                             f"({', '.join(self.label_set.classes)}); got num_classes {self.num_classes}")

    @property
    def num_outputs(self) -> int:
        return self.num_classes

    @property
    def output_names(self) -> tuple[str, ...]:
        names = self.label_set.classes
        return names[: self.num_classes] if self.num_classes <= len(names) else tuple(
            f"class_{i}" for i in range(self.num_classes))

    @property
    def labels(self) -> tuple[int, ...]:
        return tuple(range(self.num_classes))

    def probabilities(self, logits):
        return _ops().softmax(_ops().cast(logits, "float32"), axis=-1)

    def to_labels(self, probabilities, ops=None):
        ops = ops or _ops()
        return ops.cast(ops.argmax(probabilities, axis=-1), "uint8")

    def one_hot_labels(self, logits):
        # argmax of logits = argmax of the softmax: skip the exponentials.
        ops = _ops()
        return ops.one_hot(ops.argmax(logits, axis=-1), self.num_classes)


@dataclasses.dataclass(frozen=True)
class RegionsTarget(Target):
    """A sigmoid per region of the label set (WT, TC, ET[, RC]), turned into labels (`regions_to_labels`).

    Args:
        threshold: Probability above which a voxel belongs to a region.
        label_set: The regions the outputs are (`LabelSet.regions`).

    Example:
        >>> RegionsTarget().to_labels_numpy(np.array([[0.9, 0.8, 0.7], [0.9, 0.1, 0.9]])).tolist()
        [3, 2]
        >>> RegionsTarget(label_set=BRATS_POST_TREATMENT).to_labels_numpy(np.array([[0.1, 0, 0, 0.9]])).tolist()
        [4]
    """

    threshold: float = 0.5
    label_set: LabelSet = BRATS
    name = "regions"
    activation = "sigmoid"

    def __post_init__(self):
        _check_label_set(self.label_set)

    @property
    def num_outputs(self) -> int:
        return len(self.label_set.regions)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(self.label_set.regions)

    @property
    def labels(self) -> tuple[int, ...]:
        return self.label_set.labels

    def probabilities(self, logits):
        return _ops().sigmoid(_ops().cast(logits, "float32"))

    def to_labels(self, probabilities, ops=None):
        return regions_to_labels(probabilities, self.threshold, self.label_set, ops)

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "threshold": self.threshold}


TARGETS: dict[str, type[Target]] = {"classes": ClassesTarget, "regions": RegionsTarget}


def get_target(name: str, num_classes: int | None = None, label_set: LabelSet = BRATS) -> Target:
    """The target called `name` ("classes" or "regions") over a label set.

    Args:
        name: The target's name.
        num_classes: Output classes of a "classes" target; None: the label set's classes (ignored
            by "regions": one output per region of the label set).
        label_set: The label set the outputs are (`BRATS` or `BRATS_POST_TREATMENT`).

    Example:
        >>> get_target("regions").num_outputs, get_target("regions", label_set=BRATS_POST_TREATMENT).num_outputs
        (3, 4)
    """
    if name == "classes":
        return ClassesTarget(label_set.num_classes if num_classes is None else num_classes, label_set)
    if name == "regions":
        return RegionsTarget(label_set=label_set)
    raise ValueError(f"target must be one of {list(TARGETS)}; got {name!r}")


def target_from_json(values: dict[str, Any]) -> Target:
    """The target a model file recorded with `Target.to_json` (no ``label_set``: `BRATS`, as before it was recorded).

    Example:
        >>> target_from_json(get_target("classes").to_json())
        ClassesTarget(num_classes=4, label_set=LabelSet('brats'))
    """
    name = values.get("name")
    label_set = get_label_set(values.get("label_set", BRATS.name))
    if name == "regions":
        return RegionsTarget(float(values.get("threshold", 0.5)), label_set)
    if name == "classes":
        return ClassesTarget(int(values.get("num_outputs", len(CLASS_NAMES))), label_set)
    raise ValueError(f"unknown target {name!r} in a model's record; expected one of {list(TARGETS)}")
