"""BraTS region metrics: Dice and 95th-percentile Hausdorff distance (mm) per scored group.

Conventions are BraTS 2020's: both masks empty gives Dice 1 and HD95 0; exactly one empty gives
Dice 0 and HD95 373.13, the sentinel of the BraTS evaluation. The groups are the label set's
(`tfbrats.labels.LabelSet.groups`): ET, WT, TC for BraTS 2018-2023 (`COLUMNS`); ET, WT, TC, RC,
NETC, SNFH for BraTS 2024/2025 post-treatment data. So a pre-treatment case (no resection
cavity in its reference) scores RC Dice 1 and HD95 0 when no cavity is predicted, and Dice 0 and
HD95 373.13 as soon as one voxel is, as BraTS scores ET on a case without enhancing tumor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from medpy.metric import binary

from tfbrats.labels import BRATS, ET_CLASS, LABEL_SETS, REPORT_ORDER, LabelSet

METRIC_NAMES = ("Dice", "HD95")
# Every group any label set scores, in report order (ET, WT, TC, then RC, NETC, SNFH).
ALL_GROUPS = tuple(dict.fromkeys(group for label_set in LABEL_SETS.values() for group in label_set.groups))


def legacy_columns(groups) -> tuple[str, ...]:
    """The legacy metric columns of `groups` (names), metric by metric: ``Dice_ET``, ..., ``HD95_TC``.

    Example:
        >>> legacy_columns(["ET", "RC"])
        ('Dice_ET', 'Dice_RC', 'HD95_ET', 'HD95_RC')
    """
    return tuple(f"{metric}_{group}" for metric in METRIC_NAMES for group in groups)


def count_columns(group: str) -> tuple[str, str, str]:
    """The count columns of a one-class group: reference voxels, predicted voxels, predicted components.

    Example:
        >>> count_columns("RC")[1]
        'RC_voxels_predicted'
    """
    return (f"{group}_voxels_reference", f"{group}_voxels_predicted", f"{group}_components_predicted")


COLUMNS = legacy_columns(REPORT_ORDER)
ALL_COLUMNS = legacy_columns(ALL_GROUPS)
# Counts beside the legacy scores: a case without enhancing tumor (or, post-treatment data, without
# a resection cavity) in the reference scores any predicted ET (RC) as Dice 0, and these say how
# much stray ET (RC) it was.
COUNTED_GROUPS = ("ET", "RC")
ET_COUNT_COLUMNS = count_columns("ET")
ALL_COUNT_COLUMNS = tuple(column for group in COUNTED_GROUPS for column in count_columns(group))
HD95_EMPTY = 373.13


@dataclasses.dataclass(frozen=True)
class CaseResult:
    """Metrics of one case; `missing` marks a case without prediction, scored as an empty mask.

    Args:
        case_id: the case identifier.
        metrics: dict column (`Dice_ET`, ..., `HD95_TC`) -> value.
        missing: True when no prediction was found for this reference case.

    Example:
        >>> CaseResult("BraTS20_Validation_001", dict.fromkeys(COLUMNS, 1.0)).missing
        False
    """

    case_id: str
    metrics: dict[str, float]
    missing: bool = False


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice overlap of two boolean masks with BraTS's empty-mask convention.

    Args:
        pred: predicted mask.
        ref: reference mask of the same shape.

    Returns:
        1.0 when both are empty, 0.0 when exactly one is, else 2|P∩R| / (|P| + |R|).

    Example:
        >>> dice(np.array([1, 1, 0]), np.array([1, 0, 0]))
        0.6666666666666666
    """
    pred, ref = _as_masks(pred, ref)
    if not pred.any() and not ref.any():
        return 1.0
    return float(binary.dc(pred, ref))


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """95th percentile of the symmetric surface distance in mm, with BraTS's empty-mask values.

    Surface voxels are found with a face-connected erosion (medpy's definition). The distance is
    computed on the bounding box of both masks plus a one-voxel margin, which gives exactly the
    whole-volume value at a fraction of the cost.

    Args:
        pred: predicted mask.
        ref: reference mask of the same shape.
        spacing: voxel size per axis in mm (None: 1 mm).

    Returns:
        0.0 when both are empty, 373.13 when exactly one is, else the HD95 in mm.

    Example:
        >>> a = np.zeros((5, 5), bool); a[1:3, 1:3] = True
        >>> hd95(a, np.roll(a, 2, axis=0), spacing=(2.0, 1.0))
        4.0
    """
    pred, ref = _as_masks(pred, ref)
    has_pred, has_ref = pred.any(), ref.any()
    if not has_pred and not has_ref:
        return 0.0
    if has_pred != has_ref:
        return HD95_EMPTY
    if spacing is not None and len(spacing) != pred.ndim:
        raise ValueError(f"spacing {tuple(spacing)} does not match a mask of shape {pred.shape}")
    box = _union_box(pred | ref)
    return float(binary.hd95(pred[box], ref[box], voxelspacing=spacing))


def group_masks(labels: np.ndarray, label_set: LabelSet) -> dict[str, np.ndarray]:
    """Boolean masks of the label set's groups from internal labels; rejects labels outside the set.

    Example:
        >>> from tfbrats.labels import BRATS_POST_TREATMENT
        >>> group_masks(np.array([0, 4, 1]), BRATS_POST_TREATMENT)["RC"].tolist()
        [False, True, False]
    """
    labels = np.asarray(labels)
    unexpected = np.setdiff1d(np.unique(labels), label_set.labels)
    if unexpected.size:
        raise ValueError(f"labels {unexpected.tolist()} are not internal labels {list(label_set.labels)} of the "
                         f"label set {label_set.name}")
    return {name: np.isin(labels, classes) for name, classes in label_set.groups.items()}


def case_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | None = None,
    label_set: LabelSet = BRATS,
) -> dict[str, float]:
    """Dice and HD95 of every group for one case, keyed like `legacy_columns` (`Dice_ET`, `HD95_WT`, ...).

    Args:
        pred: predicted label map, internal labels (`tfbrats.data.LabelMap.to_internal` maps a
            dataset's values to them).
        ref: reference label map of the same shape, internal labels.
        spacing: voxel size per axis in mm.
        label_set: whose groups are scored (`COLUMNS` for `BRATS`).

    Raises:
        ValueError: Maps of different shapes, or labels outside the label set's.

    Returns:
        dict column -> value.

    Example:
        >>> ref = np.zeros((4, 4, 4), np.uint8); ref[1:3, 1:3, 1:3] = 2
        >>> case_metrics(ref, ref)["Dice_WT"], case_metrics(ref, ref)["HD95_ET"]
        (1.0, 0.0)
    """
    if np.shape(pred) != np.shape(ref):
        raise ValueError(f"prediction shape {np.shape(pred)} differs from reference {np.shape(ref)}")
    pred_masks, ref_masks = group_masks(pred, label_set), group_masks(ref, label_set)
    values = {}
    for group in label_set.groups:
        values[f"Dice_{group}"] = dice(pred_masks[group], ref_masks[group])
        values[f"HD95_{group}"] = hd95(pred_masks[group], ref_masks[group], spacing)
    return {column: values[column] for column in legacy_columns(label_set.groups)}


def group_counts(pred: np.ndarray, ref: np.ndarray, label_set: LabelSet = BRATS) -> dict[str, int]:
    """`count_columns` of each of the label set's `COUNTED_GROUPS` (ET; RC too with a cavity), on internal labels.

    Example:
        >>> from tfbrats.labels import BRATS_POST_TREATMENT
        >>> group_counts(np.array([[4, 0, 4]]), np.zeros((1, 3), np.uint8), BRATS_POST_TREATMENT)["RC_voxels_predicted"]
        2
    """
    counts = {}
    for group in COUNTED_GROUPS:
        if group in label_set.groups:
            (value,) = label_set.groups[group]
            counts |= dict(zip(count_columns(group), et_counts(pred, ref, value).values()))
    return counts


def et_counts(pred: np.ndarray, ref: np.ndarray, et_label: int = ET_CLASS) -> dict[str, int]:
    """Enhancing-tumor voxels of reference and prediction, and the prediction's ET components (26-connected).

    Args:
        pred: predicted label map.
        ref: reference label map of the same shape.
        et_label: value of enhancing tumour in both maps.

    Returns:
        dict `ET_COUNT_COLUMNS` -> count.

    Example:
        >>> et_counts(np.array([[3, 0, 3, 3]]), np.zeros((1, 4), np.uint8))
        {'ET_voxels_reference': 0, 'ET_voxels_predicted': 3, 'ET_components_predicted': 2}
    """
    from scipy import ndimage

    predicted, reference = _as_masks(np.asarray(pred) == et_label, np.asarray(ref) == et_label)
    _, components = ndimage.label(predicted, structure=np.ones((3,) * predicted.ndim, bool))
    return dict(zip(ET_COUNT_COLUMNS, (int(reference.sum()), int(predicted.sum()), int(components))))


def _as_masks(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arguments as boolean arrays of one shape."""
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    if pred.shape != ref.shape:
        raise ValueError(f"mask shapes differ: prediction {pred.shape}, reference {ref.shape}")
    return pred, ref


def _union_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of a non-empty mask grown by one voxel (so erosion sees the same borders)."""
    box = []
    for axis in range(mask.ndim):
        nonzero = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(nonzero[0] - 1, 0), nonzero[-1] + 2))
    return tuple(box)
