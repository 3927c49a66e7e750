"""BraTS region metrics: Dice and 95th-percentile Hausdorff distance (mm) for WT, TC and ET.

Conventions are BraTS 2020's: both masks empty gives Dice 1 and HD95 0; exactly one empty gives
Dice 0 and HD95 373.13, the sentinel of the BraTS evaluation. Regions are `tfbrats.labels.REGIONS`,
reported in BraTS' order (ET, WT, TC).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from medpy.metric import binary

from tfbrats.labels import ET_CLASS, REPORT_ORDER
from tfbrats.labels import REGIONS as REGION_CLASSES

REGIONS = REPORT_ORDER  # the report's column order (the paper's Table 1)
METRIC_NAMES = ("Dice", "HD95")
COLUMNS = tuple(f"{metric}_{region}" for metric in METRIC_NAMES for region in REGIONS)
# Counts beside the legacy scores: a case without enhancing tumor in the reference scores any
# predicted ET as Dice 0, and these say how much stray ET it was.
ET_COUNT_COLUMNS = ("ET_voxels_reference", "ET_voxels_predicted", "ET_components_predicted")
HD95_EMPTY = 373.13
INTERNAL_ET_LABEL = ET_CLASS


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


def region_labels(et_label: int = INTERNAL_ET_LABEL) -> dict[str, tuple[int, ...]]:
    """The labels each region is made of, with enhancing tumour stored as `et_label`.

    Args:
        et_label: value of enhancing tumour: 3 internally and in BraTS 2023+, 4 in BraTS 2018-2021.

    Returns:
        `tfbrats.labels.REGIONS` with the internal ET class replaced by `et_label`, in report order.

    Example:
        >>> region_labels(4)["TC"]
        (1, 4)
    """
    return {region: tuple(et_label if c == ET_CLASS else c for c in REGION_CLASSES[region]) for region in REGIONS}


def region_masks(labels: np.ndarray, et_label: int = INTERNAL_ET_LABEL) -> dict[str, np.ndarray]:
    """Boolean masks of WT, TC and ET from a label map; rejects labels outside {0, 1, 2, et_label}.

    Args:
        labels: integer label map of any shape.
        et_label: value of enhancing tumour in `labels`.

    Returns:
        dict region -> boolean mask of `labels.shape`.

    Example:
        >>> import numpy as np
        >>> region_masks(np.array([0, 1, 2, 3]))["WT"].tolist()
        [False, True, True, True]
    """
    labels = np.asarray(labels)
    unexpected = np.setdiff1d(np.unique(labels), (0, 1, 2, et_label))
    if unexpected.size:
        raise ValueError(
            f"labels {unexpected.tolist()} are not in {{0, 1, 2, {et_label}}}: enhancing tumour "
            f"is expected as {et_label}; pass the et_label the labels use (3 or 4)"
        )
    return {name: np.isin(labels, values) for name, values in region_labels(et_label).items()}


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


def case_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | None = None,
    et_label: int = INTERNAL_ET_LABEL,
) -> dict[str, float]:
    """Dice and HD95 of every region for one case, keyed like `COLUMNS` (`Dice_ET`, `HD95_WT`, ...).

    Args:
        pred: predicted label map.
        ref: reference label map of the same shape and labels.
        spacing: voxel size per axis in mm.
        et_label: value of enhancing tumour in both maps (3 internal / BraTS 2023+, 4 BraTS 2020).

    Returns:
        dict column -> value.

    Example:
        >>> ref = np.zeros((4, 4, 4), np.uint8); ref[1:3, 1:3, 1:3] = 2
        >>> case_metrics(ref, ref)["Dice_WT"], case_metrics(ref, ref)["HD95_ET"]
        (1.0, 0.0)
    """
    if np.shape(pred) != np.shape(ref):
        raise ValueError(f"prediction shape {np.shape(pred)} differs from reference {np.shape(ref)}")
    pred_masks, ref_masks = region_masks(pred, et_label), region_masks(ref, et_label)
    values = {}
    for region in REGIONS:
        values[f"Dice_{region}"] = dice(pred_masks[region], ref_masks[region])
        values[f"HD95_{region}"] = hd95(pred_masks[region], ref_masks[region], spacing)
    return {column: values[column] for column in COLUMNS}


def et_counts(pred: np.ndarray, ref: np.ndarray, et_label: int = INTERNAL_ET_LABEL) -> dict[str, int]:
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
