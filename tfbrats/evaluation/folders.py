"""Pairs a folder of predicted `<case_id>.nii.gz` with the reference segmentations of a dataset.

References are the segmentations of the cases `tfbrats.data.find_cases` finds under a root:
`<id>_seg.nii.gz` (2018-2021, enhancing tumour 4), `<id>-seg.nii.gz` (2023+, enhancing tumour 3),
or a manifest's `seg` column.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import nibabel as nib
import numpy as np

from tfbrats.data.cases import find_cases
from tfbrats.evaluation.metrics import CaseResult, case_metrics

PREDICTION_SUFFIXES = (".nii.gz", ".nii")

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Reference:
    """A reference segmentation: its file and the label value of enhancing tumour in it."""

    path: Path
    et_label: int


@dataclasses.dataclass(frozen=True)
class FolderEvaluation:
    """Per-case results over all reference cases, and predictions that had no reference."""

    results: list[CaseResult]
    unmatched_predictions: list[str]

    @property
    def missing(self) -> list[str]:
        """Reference cases that had no prediction (scored as empty masks)."""
        return [result.case_id for result in self.results if result.missing]


def find_reference_segs(ref_dir: str | Path) -> dict[str, Reference]:
    """Finds the reference segmentations under `ref_dir`, keyed by case id.

    Any layout `tfbrats.data.find_cases` knows (BraTS 2018-2020, 2021, 2023+, a manifest, one
    case folder); cases without a segmentation are left out.

    Args:
        ref_dir: a dataset root, manifest or single case folder.

    Returns:
        dict case id -> `Reference`, sorted by case id.

    Example:
        >>> find_reference_segs("/data/MICCAI_BraTS2020_TrainingData")  # doctest: +SKIP
        {'BraTS20_Training_001': Reference(path=..., et_label=4), ...}
    """
    cases = find_cases(ref_dir).cases
    return {case.case_id: Reference(case.seg, case.et_label) for case in cases if case.has_seg}


def find_predictions(pred_dir: str | Path) -> dict[str, Path]:
    """Finds the predictions `<case_id>.nii.gz` (or `.nii`) directly in `pred_dir`.

    Args:
        pred_dir: the folder of predictions.

    Returns:
        dict case id -> path.

    Example:
        >>> find_predictions("predictions")  # doctest: +SKIP
        {'BraTS20_Validation_001': PosixPath('predictions/BraTS20_Validation_001.nii.gz'), ...}
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"prediction folder {pred_dir} does not exist")
    found = {}
    for path in sorted(pred_dir.iterdir()):
        suffix = next((s for s in PREDICTION_SUFFIXES if path.name.endswith(s)), None)
        if suffix is not None and path.is_file():
            found[path.name[: -len(suffix)]] = path
    return found


def read_labels(path: Path) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    """Reads a label map from NIfTI as int16, with voxel spacing (mm) and affine.

    Args:
        path: the NIfTI file.

    Returns:
        (labels in nibabel's axis order, spacing of its three axes, 4x4 affine).

    Example:
        >>> labels, spacing, affine = read_labels(Path("case.nii.gz"))  # doctest: +SKIP
    """
    image = nib.load(path)
    data = np.asanyarray(image.dataobj)
    if data.ndim != 3:
        raise ValueError(f"{path}: a segmentation must be 3-D; got shape {data.shape}")
    labels = data.astype(np.int16)
    if not np.array_equal(labels, data):
        raise ValueError(f"{path}: segmentation values are not integer labels")
    return labels, tuple(float(z) for z in image.header.get_zooms()[:3]), image.affine


def evaluate_folders(pred_dir: str | Path, ref_dir: str | Path, et_label: int | None = None) -> FolderEvaluation:
    """Scores every reference case against its prediction; a missing prediction scores as empty.

    Args:
        pred_dir: folder of `<case_id>.nii.gz` predictions, labels in the dataset's own values.
        ref_dir: dataset root (or case folder) holding the reference segmentations.
        et_label: value of enhancing tumour in both; None takes it from the reference layout
            (4 for `_seg`, 3 for `-seg`).

    Returns:
        a `FolderEvaluation`.

    Example:
        >>> evaluation = evaluate_folders("predictions", "BraTS2020_Training")  # doctest: +SKIP
        >>> evaluation.missing  # doctest: +SKIP
        []
    """
    references = find_reference_segs(ref_dir)
    if not references:
        raise FileNotFoundError(f"no reference segmentations (*_seg.nii.gz or *-seg.nii.gz) found under {ref_dir}")
    predictions = find_predictions(pred_dir)
    results = []
    for case_id, reference in references.items():
        ref, spacing, affine = read_labels(reference.path)
        pred_path = predictions.get(case_id)
        if pred_path is None:
            logger.warning("case %s: no prediction in %s; scored as an empty mask", case_id, pred_dir)
            pred = np.zeros_like(ref)
        else:
            pred, _, pred_affine = read_labels(pred_path)
            if pred.shape != ref.shape:
                raise ValueError(
                    f"case {case_id}: prediction {pred_path} has shape {pred.shape} but reference "
                    f"{reference.path} has {ref.shape}; write predictions on the reference grid"
                )
            if not np.allclose(pred_affine, affine, atol=1e-3):
                logger.warning("case %s: prediction affine differs from the reference's", case_id)
        try:
            metrics = case_metrics(pred, ref, spacing, et_label or reference.et_label)
        except ValueError as error:
            raise ValueError(f"case {case_id} ({pred_path}, {reference.path}): {error}") from None
        results.append(CaseResult(case_id, metrics, missing=pred_path is None))
        logger.info("case %s: %s", case_id, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    unmatched = sorted(set(predictions) - set(references))
    return FolderEvaluation(results, unmatched)
