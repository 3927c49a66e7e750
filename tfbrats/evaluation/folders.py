"""Pairs a folder of predicted `<case_id>.nii.gz` with the reference segmentations of a dataset.

References are the segmentations of the cases `tfbrats.data.find_cases` finds under a root:
`<id>_seg.nii.gz` (2018-2021, enhancing tumour 4), `<id>-seg.nii.gz` (2023+, enhancing tumour 3),
a manifest's `seg` column, or `labelsTr/<id>.nii.gz` of a Decathlon or nnU-Net raw dataset (its
`dataset.json` giving the label values). Predictions carry the same label values as the
references; both are mapped to tfbrats' classes before scoring.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from tfbrats.data.cases import find_cases
from tfbrats.data.nifti import open_image
from tfbrats.data.records import LabelMap, dataset_label_set, label_map
from tfbrats.evaluation.metrics import CaseResult, case_metrics, group_counts
from tfbrats.labels import LabelSet

PREDICTION_SUFFIXES = (".nii.gz", ".nii")
# The metric families: BraTS 2020's global Dice/HD95, BraTS 2023+'s lesion-wise figures.
METRIC_FAMILIES = ("legacy", "lesionwise")

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Reference:
    """A reference segmentation: its file and the dataset's label values (`LabelMap`)."""

    path: Path
    labels: LabelMap

    @property
    def et_label(self) -> int:
        """The value of enhancing tumour in the file."""
        return self.labels.enhancing


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
    case folder, Decathlon, nnU-Net raw); cases without a segmentation are left out.

    Args:
        ref_dir: a dataset root, manifest or single case folder.

    Returns:
        dict case id -> `Reference`, sorted by case id.

    Example:
        >>> import shutil, tempfile
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> folders = write_synthetic_dataset(f"{tmp.name}/data", cases=2, shape=(48, 48, 32))
        >>> pred = Path(tmp.name) / "pred"
        >>> pred.mkdir()
        >>> _ = shutil.copy(folders[0] / "BraTS20_Training_001_seg.nii.gz", pred / "BraTS20_Training_001.nii.gz")
        >>> references = find_reference_segs(f"{tmp.name}/data")
        >>> list(references), references["BraTS20_Training_001"].labels
        (['BraTS20_Training_001', 'BraTS20_Training_002'], LabelMap(necrosis=1, edema=2, enhancing=4))
        >>> tmp.cleanup()
    """
    cases = find_cases(ref_dir).cases
    return {case.case_id: Reference(case.seg, case.labels) for case in cases if case.has_seg}


def find_predictions(pred_dir: str | Path) -> dict[str, Path]:
    """Finds the predictions `<case_id>.nii.gz` (or `.nii`) directly in `pred_dir`.

    Args:
        pred_dir: the folder of predictions.

    Returns:
        dict case id -> path.

    Example:
        >>> import shutil, tempfile
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> folders = write_synthetic_dataset(f"{tmp.name}/data", cases=2, shape=(48, 48, 32))
        >>> pred = Path(tmp.name) / "pred"
        >>> pred.mkdir()
        >>> _ = shutil.copy(folders[0] / "BraTS20_Training_001_seg.nii.gz", pred / "BraTS20_Training_001.nii.gz")
        >>> {case_id: path.name for case_id, path in find_predictions(pred).items()}
        {'BraTS20_Training_001': 'BraTS20_Training_001.nii.gz'}
        >>> tmp.cleanup()
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

    Raises:
        tfbrats.data.CaseError: The header declares more voxels than the file holds or than
            ``TFBRATS_MAX_VOXELS`` allows (`tfbrats.data.nifti.open_image`).
        ValueError: The labels are not 3-D or not whole numbers.

    Example:
        >>> import shutil, tempfile
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> folders = write_synthetic_dataset(f"{tmp.name}/data", cases=2, shape=(48, 48, 32))
        >>> pred = Path(tmp.name) / "pred"
        >>> pred.mkdir()
        >>> _ = shutil.copy(folders[0] / "BraTS20_Training_001_seg.nii.gz", pred / "BraTS20_Training_001.nii.gz")
        >>> labels, spacing, affine = read_labels(pred / "BraTS20_Training_001.nii.gz")
        >>> labels.shape, labels.dtype.name, spacing, np.unique(labels).tolist()
        ((48, 48, 32), 'int16', (1.0, 1.0, 1.0), [0, 1, 2, 4])
        >>> tmp.cleanup()
    """
    image = open_image(path)
    data = np.asanyarray(image.dataobj)
    if data.ndim != 3:
        raise ValueError(f"{path}: a segmentation must be 3-D; got shape {data.shape}")
    labels = data.astype(np.int16)
    if not np.array_equal(labels, data):
        raise ValueError(f"{path}: segmentation values are not integer labels")
    return labels, tuple(float(z) for z in image.header.get_zooms()[:3]), image.affine


def available_metric_families() -> tuple[str, ...]:
    """The default metric families: legacy, and lesion-wise where the `lesionwise` extra is installed.

    Example:
        >>> available_metric_families()[0]
        'legacy'
    """
    from tfbrats.evaluation.lesionwise import lesionwise_available

    return METRIC_FAMILIES if lesionwise_available() else ("legacy",)


def evaluate_folders(
    pred_dir: str | Path,
    ref_dir: str | Path,
    et_label: int | None = None,
    metrics: tuple[str, ...] | None = None,
) -> FolderEvaluation:
    """Scores every reference case against its prediction; a missing prediction scores as empty.

    Args:
        pred_dir: folder of `<case_id>.nii.gz` predictions, labels in the dataset's own values.
        ref_dir: dataset root (or case folder) holding the reference segmentations.
        et_label: BraTS' value of enhancing tumour in both (4 or 3); None takes the label
            values from the reference layout (4 for `_seg`, 3 for `-seg`, `dataset.json`'s).
        metrics: the families to compute: "legacy" (BraTS 2020: global Dice and HD95, columns
            `COLUMNS`, with the enhancing-tumor counts `ET_COUNT_COLUMNS`) and/or "lesionwise"
            (BraTS 2023+ by the official package, columns `LESION_COLUMNS`); None:
            `available_metric_families()`. References with a resection cavity (BraTS 2024/2025,
            any case) score the label set `BRATS_POST_TREATMENT`'s groups for every case: RC,
            NETC and SNFH columns too, and the counts of predicted RC.

    Returns:
        a `FolderEvaluation`; each result's metrics hold the chosen families' columns.

    Example:
        >>> import shutil, tempfile
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> folders = write_synthetic_dataset(f"{tmp.name}/data", cases=2, shape=(48, 48, 32))
        >>> pred = Path(tmp.name) / "pred"
        >>> pred.mkdir()
        >>> _ = shutil.copy(folders[0] / "BraTS20_Training_001_seg.nii.gz", pred / "BraTS20_Training_001.nii.gz")
        >>> evaluation = evaluate_folders(pred, f"{tmp.name}/data", metrics=("legacy",))
        >>> evaluation.missing  # no prediction: scored as an empty mask
        ['BraTS20_Training_002']
        >>> [(result.case_id, result.metrics["Dice_WT"]) for result in evaluation.results]
        [('BraTS20_Training_001', 1.0), ('BraTS20_Training_002', 0.0)]
        >>> tmp.cleanup()
    """
    metrics = _checked_families(metrics)
    references = find_reference_segs(ref_dir)
    if not references:
        raise FileNotFoundError(
            f"no reference segmentations (*_seg.nii.gz, *-seg.nii.gz or labelsTr/) found under {ref_dir}"
        )
    predictions = find_predictions(pred_dir)
    label_set = dataset_label_set(reference.labels for reference in references.values())
    results = []
    for case_id, reference in references.items():
        labels = reference.labels
        if et_label is not None:
            labels = dataclasses.replace(label_map(et_label), cavity=reference.labels.cavity)
        pred_path = predictions.get(case_id)
        if pred_path is None:
            logger.warning("case %s: no prediction in %s; scored as an empty mask", case_id, pred_dir)
        pred, ref, spacing, affine = _read_case(case_id, pred_path, reference.path, labels.covering(label_set))
        values = _case_values(case_id, pred, ref, spacing, affine, metrics, label_set)
        results.append(CaseResult(case_id, values, missing=pred_path is None))
        logger.info("case %s: %s", case_id, ", ".join(f"{k} {v:.4g}" for k, v in values.items()))
    unmatched = sorted(set(predictions) - set(references))
    return FolderEvaluation(results, unmatched)


def _checked_families(metrics: tuple[str, ...] | None) -> tuple[str, ...]:
    """The metric families to compute (None: every available one); fails before any case is read."""
    metrics = available_metric_families() if metrics is None else metrics
    unknown = sorted(set(metrics) - set(METRIC_FAMILIES))
    if unknown or not metrics:
        raise ValueError(f"metrics {list(metrics)}: expected one or more of {list(METRIC_FAMILIES)}")
    if "lesionwise" in metrics:
        from tfbrats.evaluation.lesionwise import require_package

        require_package()  # fail before any case is read when the package is not installed
    return tuple(metrics)


def _read_case(
    case_id: str, pred_path: Path | None, ref_path: Path, labels: LabelMap
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...], np.ndarray]:
    """A case's prediction (all background when missing) and reference in internal classes, with the
    reference's spacing and affine; errors name the case and file."""
    ref, spacing, affine = read_labels(ref_path)
    if pred_path is None:
        pred = np.zeros_like(ref)
    else:
        pred, _, pred_affine = read_labels(pred_path)
        if pred.shape != ref.shape:
            raise ValueError(
                f"case {case_id}: prediction {pred_path} has shape {pred.shape} but reference "
                f"{ref_path} has {ref.shape}; write predictions on the reference grid"
            )
        if not np.allclose(pred_affine, affine, atol=1e-3):
            logger.warning("case %s: prediction affine differs from the reference's", case_id)
    internal = {}
    for what, path, values in (("prediction", pred_path, pred), ("reference", ref_path, ref)):
        try:
            internal[what] = labels.to_internal(values)
        except ValueError as error:
            raise ValueError(
                f"case {case_id}: {what} {path}: {error}; pass --et_label if enhancing tumour is stored "
                "otherwise than in the references"
            ) from None
    return internal["prediction"], internal["reference"], spacing, affine


def _case_values(
    case_id: str, pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], affine: np.ndarray,
    metrics: tuple[str, ...], label_set: LabelSet,
) -> dict[str, float]:
    """The chosen metric families' columns for one case (internal classes in both)."""
    values = {}
    if "legacy" in metrics:
        values |= case_metrics(pred, ref, spacing, label_set)
        values |= group_counts(pred, ref, label_set)
    if "lesionwise" in metrics:
        from tfbrats.evaluation.lesionwise import lesionwise_metrics

        values |= lesionwise_metrics(pred, ref, spacing, affine, case_id, label_set)
    return values
