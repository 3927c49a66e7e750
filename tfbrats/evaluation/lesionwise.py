"""Lesion-wise Dice and HD95 per region, as BraTS 2023+ ranks them, by the official BraTS package.

The scores come from ``brats-evaluation`` (the `lesionwise` extra), which runs ``panoptica`` with
its bundled ``gli`` configuration: each region's connected components are lesions, matched one to
one between prediction and reference (maximum bipartite matching on Dice). tfbrats reports the
figures the package's own CSV parser (``brats-parse-metrics seg``) puts on the leaderboard: the
lesion-wise Dice and HD95 (means over the matched lesions, ``sq_dsc`` and ``sq_hd95``) and the
detection counts and F1, where spurious and missed lesions show, plus the package's panoptic
quality (``pq_dsc``, Dice times F1). tfbrats only maps its labels to
the package's convention and reads the figures back:
the ``gli`` labels are 1 necrotic / non-enhancing core (NETC), 2 edema (SNFH), 3 enhancing tumor
(ET), 4 resection cavity (RC), which are tfbrats' internal classes 1..4 unchanged. The groups
reported are the label set's (`tfbrats.labels.LabelSet.groups`): ET, WT, TC for BraTS 2018-2023,
plus RC, NETC and SNFH for BraTS 2024/2025 post-treatment data (`lesion_columns`).

The package's own conventions are kept: a region present in neither mask scores NaN (it has no
lesion to average over), and HD95 is infinite when only one side has the region. Its HD95 is
measured in voxels whatever the header's voxel size (panoptica 2.1.7 gave the same global and
lesion-wise HD95 for 1x1x1, 1x1x3 and 3x1x1 mm voxels), so it is in mm only on 1 mm grids such as
BraTS'; tfbrats' legacy HD95 uses the voxel size.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import nibabel as nib
import numpy as np

from tfbrats.evaluation.metrics import ALL_GROUPS
from tfbrats.labels import BRATS, REPORT_ORDER, LabelSet

# tfbrats' column name -> the package's per-region result key (its CSV parser's column in the comment).
PACKAGE_KEYS = {
    "LesionDice": "sq_dsc",  # lesionwise_dsc_mean
    "LesionHD95": "sq_hd95",  # lesionwise_hd95_mean
    "LesionF1": "rq",  # all_instance_f1: detection F1 = 2 TP / (2 TP + FP + FN)
    "LesionFP": "fp",  # all_instance_fp: spurious predicted lesions
    "LesionFN": "fn",  # all_instance_fn: missed reference lesions
    "LesionPQ": "pq_dsc",  # (not in the parser's CSV) panoptic quality: lesion-wise Dice x detection F1
}
LESION_METRIC_NAMES = tuple(PACKAGE_KEYS)


def lesion_columns(groups) -> tuple[str, ...]:
    """The lesion-wise columns of `groups` (names), metric by metric.

    Example:
        >>> lesion_columns(["RC"])[:2]
        ('LesionDice_RC', 'LesionHD95_RC')
    """
    return tuple(f"{metric}_{group}" for metric in LESION_METRIC_NAMES for group in groups)


LESION_COLUMNS = lesion_columns(REPORT_ORDER)
ALL_LESION_COLUMNS = lesion_columns(ALL_GROUPS)
# The package's names of tfbrats' groups in its `gli` configuration.
PACKAGE_GROUPS = {"ET": "et", "WT": "wt", "TC": "tc", "RC": "rc", "NETC": "netc", "SNFH": "snfh"}
EXTRA = "lesionwise"


def require_package() -> Any:
    """Imports ``brats_evaluation``, or raises an ImportError that says how to install it.

    Example:
        >>> require_package().config_path("gli").name  # doctest: +SKIP
        'config_gli.yaml'
    """
    try:
        import brats_evaluation
    except ImportError as error:
        raise ImportError(
            "lesion-wise metrics need the official BraTS evaluation package: "
            f"pip install -e '.[{EXTRA}]' (brats-evaluation, panoptica); or pass --metrics=legacy"
        ) from error
    return brats_evaluation


def lesionwise_available() -> bool:
    """Whether the official BraTS evaluation package can be imported.

    Example:
        >>> isinstance(lesionwise_available(), bool)
        True
    """
    try:
        require_package()
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def _evaluator() -> Any:
    """The package's evaluator for glioma (``gli``), built once per process."""
    package = require_package()
    from panoptica import Panoptica_Evaluator

    return Panoptica_Evaluator.load_from_config(str(package.config_path("gli")))


def package_results(
    pred_internal: np.ndarray, ref_internal: np.ndarray, affine: np.ndarray, spacing: Sequence[float], case_id: str
) -> dict[str, Any]:
    """The package's full per-region results for one case (``evaluate_single_exam``'s dict).

    Args:
        pred_internal: Predicted internal classes 0..3, nibabel ``(x, y, z)`` order.
        ref_internal: Reference internal classes 0..3, same shape.
        affine: The reference's 4x4 affine (both images get it).
        spacing: Voxel size of the three axes in mm.
        case_id: The case, for the package's record and error messages.

    Returns:
        Region group (``et``, ``tc``, ``wt``, ``netc``, ``snfh``, ``rc``) -> the package's metrics.

    Raises:
        ValueError: The package reported an error for this case.

    Example: a predicted lesion shifted by one voxel (27 of its 64 voxels on the reference's: Dice
    54/128) and a reference lesion missed (detection F1 2/3). Skipped here: the package installs
    only beside numpy < 2.3 (the oldest stack).

        >>> pred = np.zeros((16, 16, 16), np.uint8)
        >>> pred[2:6, 2:6, 2:6] = 2
        >>> ref = np.zeros((16, 16, 16), np.uint8)
        >>> ref[3:7, 3:7, 3:7] = 2
        >>> ref[10:12, 10:12, 10:12] = 1
        >>> results = package_results(pred, ref, np.eye(4), (1.0, 1.0, 1.0), "c1")  # doctest: +SKIP
        >>> results["wt"]["sq_dsc"], round(results["wt"]["rq"], 4)  # doctest: +SKIP
        (0.421875, 0.6667)
    """
    package = require_package()
    images = []
    for labels in (pred_internal, ref_internal):
        image = nib.Nifti1Image(np.asarray(labels, dtype=np.uint8), np.asarray(affine, dtype=np.float64))
        image.header.set_zooms(tuple(float(s) for s in spacing))
        images.append(image)
    results = package.evaluate_single_exam(images[0], images[1], case_id, _evaluator())
    if "error" in results:
        raise ValueError(f"case {case_id}: the BraTS evaluation package failed: {results['error']}")
    return results


def lesionwise_metrics(
    pred_internal: np.ndarray,
    ref_internal: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    affine: np.ndarray | None = None,
    case_id: str = "case",
    label_set: LabelSet = BRATS,
) -> dict[str, float]:
    """Lesion-wise Dice, HD95 and detection of the label set's groups for one case, keyed like `lesion_columns`.

    Args:
        pred_internal: Predicted internal classes (1 necrosis, 2 edema, 3 enhancing, 4 resection
            cavity with `BRATS_POST_TREATMENT`), nibabel ``(x, y, z)`` order.
        ref_internal: Reference internal classes, same shape.
        spacing: Voxel size of the three axes in mm.
        affine: The reference's affine (None: the spacing as a diagonal).
        case_id: The case, for error messages.
        label_set: The label set: its labels are allowed, its groups reported (`LESION_COLUMNS`
            for `BRATS`).

    Returns:
        ``LesionDice_<region>`` and ``LesionHD95_<region>``, the package's ``sq_dsc`` and ``sq_hd95``
        (the mean over matched lesions; NaN where neither mask has the region, HD95 inf where only
        one has it); ``LesionF1_<region>`` its detection F1 ``rq``; ``LesionFP_<region>`` and
        ``LesionFN_<region>`` the counts of spurious and missed lesions; ``LesionPQ_<region>`` its
        panoptic quality ``pq_dsc`` (lesion-wise Dice times detection F1, which spurious and missed
        lesions lower).

    Example:
        >>> ref = np.zeros((8, 8, 8), np.uint8); ref[1:4, 1:4, 1:4] = 2
        >>> lesionwise_metrics(ref, ref)["LesionDice_WT"]  # doctest: +SKIP
        1.0
    """
    if np.shape(pred_internal) != np.shape(ref_internal):
        raise ValueError(f"case {case_id}: prediction shape {np.shape(pred_internal)} differs from reference "
                         f"{np.shape(ref_internal)}")
    top = label_set.num_classes - 1
    for what, labels in (("prediction", pred_internal), ("reference", ref_internal)):
        if np.size(labels) and (np.min(labels) < 0 or np.max(labels) > top):
            raise ValueError(f"case {case_id}: {what} labels must be internal classes 0..{top}; got "
                             f"{np.unique(labels).tolist()}")
    if affine is None:
        affine = np.diag([*map(float, spacing), 1.0])
    results = package_results(pred_internal, ref_internal, affine, spacing, case_id)
    return {
        f"{metric}_{group}": _number(results[PACKAGE_GROUPS[group]].get(key))
        for metric, key in PACKAGE_KEYS.items()
        for group in label_set.groups
    }


def _number(value: Any) -> float:
    """The package's value as a float (None, its "no value", as NaN)."""
    return math.nan if value is None else float(value)
