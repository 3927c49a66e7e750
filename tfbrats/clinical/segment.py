"""Segment a prepared clinical case and bring the result back to the reference series (NIfTI, DICOM SEG).

`segment_case(case_dir, loaded)` runs the model on the case `prepare_case` wrote, exactly as
`tfbrats.predict` does (`tfbrats.inference.predict.segment`: the contract's window, the target's
labels, the post-processing), then maps the labels onto the reference series' own grid
(`native.labels_to_grid`) and writes, beside the case's scans:

- `<case>_seg_native.nii.gz`: the labels on the reference series' grid, in the model's label values
  (BraTS 2020's 1, 2, 4 unless its contract says otherwise);
- `<case>_seg.dcm`: a DICOM Segmentation referencing the reference series' instances (`seg`), when
  the reference is a DICOM series;
- the tumor volumes per region (ml) and the model's record, under `segmentation` in
  `<case>_clinical.json` (rewritten last, atomically: the mark of a finished segmentation).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from tfbrats.clinical.native import grid_from_record, labels_to_grid, region_volumes_ml
from tfbrats.clinical.pipeline import prepare_case
from tfbrats.conventions import MODALITIES
from tfbrats.data import BRATS2020_LABELS, BRATS2024_LABELS, Case, LabelMap, load_case, write_labels_nifti
from tfbrats.files import atomic_folder, atomic_path, output_file, write_json
from tfbrats.inference.model import LoadedModel, make_predictor
from tfbrats.inference.predict import prediction_record, segment, written_label_map
from tfbrats.labels import CLASS_NAMES

SEG_NATIVE_SUFFIX = "_seg_native.nii.gz"
SEG_DICOM_SUFFIX = "_seg.dcm"


@dataclasses.dataclass
class CaseSegmentation:
    """What `segment_case` wrote and measured.

    Args:
        native: `<case>_seg_native.nii.gz`, labels on the reference series' grid.
        dicom: `<case>_seg.dcm`, or None when the reference scan was not DICOM.
        volumes_ml: volume of each region (WT, TC, ET; RC for a post-treatment model) in millilitres.
        record: what `<case>_clinical.json` now holds under `segmentation`.
    """

    native: Path
    dicom: Path | None
    volumes_ml: dict[str, float]
    record: dict


def read_sidecar(case_dir: str | Path) -> dict:
    """The `<case>_clinical.json` of a case folder `python -m tfbrats.clinical` wrote.

    Example:
        >>> import tempfile
        >>> import nibabel
        >>> from tfbrats.clinical.pipeline import prepare_case
        >>> tmp = tempfile.TemporaryDirectory()
        >>> head = np.zeros((24, 24, 18), np.float32)
        >>> head[6:18, 6:18, 4:14] = 100.0
        >>> for modality in ("t1ce", "t2", "flair"):
        ...     nibabel.save(nibabel.Nifti1Image(head, np.diag([2.0, 2.0, 2.0, 1.0])), f"{tmp.name}/{modality}.nii.gz")
        >>> scans = {modality: f"{tmp.name}/{modality}.nii.gz" for modality in ("t1ce", "t2", "flair")}
        >>> case = prepare_case(scans, "P001", f"{tmp.name}/cases", skull_stripped=True, spacing_mm=2.0)
        >>> read_sidecar(case)["reference"]
        't1ce'
        >>> tmp.cleanup()
    """
    case_dir = Path(case_dir)
    path = case_dir / f"{case_dir.name}_clinical.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; segment a case folder written by python -m tfbrats.clinical")
    return json.loads(path.read_text())


def output_label_map(loaded: LoadedModel) -> LabelMap:
    """The label values the model's segmentations are written with (`tfbrats.inference.predict.written_label_map`):
    its contract's, else BraTS 2020's, or BraTS 2024's (1, 2, 3, 4) for a model with a resection cavity."""
    cavity = loaded.contract.target.label_set == BRATS2024_LABELS.label_set
    return written_label_map(loaded.contract, BRATS2024_LABELS if cavity else BRATS2020_LABELS)


def labels_on_case_grid(case_dir: Path, loaded: LoadedModel) -> tuple[np.ndarray, sitk.Image, dict]:
    """The model's internal labels on the prepared case: `(array (D, H, W), image in world, prediction record)`."""
    case_id = case_dir.name
    case = Case(case_id, {m: case_dir / f"{case_id}_{m}.nii.gz" for m in MODALITIES}, None)
    contract = loaded.contract
    preprocessed = load_case(case, input_channels=len(contract.channels), allow_missing=True)
    labels = segment(preprocessed, make_predictor(loaded.model, contract.target), contract)
    meta = preprocessed.meta
    record = prediction_record(case_id, meta.channels, meta.missing, loaded, contract, meta.orientation)
    # Written with values 1, 2, 3, 4 (= the internal classes) and read back: the file's world geometry,
    # the reorientation of `load_case` undone by the one function that writes predictions.
    with tempfile.TemporaryDirectory(prefix="tfbrats-seg-") as folder:
        path = write_labels_nifti(labels, dataclasses.replace(meta, labels=BRATS2024_LABELS),
                                  Path(folder) / "labels.nii.gz")
        image = sitk.ReadImage(str(path), sitk.sitkUInt8)
    return labels, image, record


def segment_case(case_dir: str | Path, loaded: LoadedModel) -> CaseSegmentation:
    """Segments a prepared case with `loaded`'s contract and writes the result on the reference's grid.

    Args:
        case_dir: a case folder written by `prepare_case` (its sidecar names the reference series).
        loaded: the model (`tfbrats.inference.load_model`).

    Returns:
        The files written and the region volumes.

    Example: three NIfTI scans prepared (`prepare_case`), then segmented by an untrained AlbuNet3D
    saved with its contract (a trained run's `load_model("runs/demo")` is used the same way).

        >>> import tempfile
        >>> import nibabel
        >>> tmp = tempfile.TemporaryDirectory()
        >>> head = np.zeros((24, 24, 18), np.float32)
        >>> head[6:18, 6:18, 4:14] = 100.0
        >>> for modality in ("t1ce", "t2", "flair"):
        ...     nibabel.save(nibabel.Nifti1Image(head, np.diag([2.0, 2.0, 2.0, 1.0])), f"{tmp.name}/{modality}.nii.gz")
        >>> scans = {modality: f"{tmp.name}/{modality}.nii.gz" for modality in ("t1ce", "t2", "flair")}
        >>> case = prepare_case(scans, "P001", f"{tmp.name}/cases", skull_stripped=True, spacing_mm=2.0)
        >>> from tfbrats.contract import SegmentationContract, Window
        >>> from tfbrats.inference.model import load_model, save_with_contract
        >>> from tfbrats.models import AlbuNet3D
        >>> contract = SegmentationContract(window=Window.for_patch((32, 32, 32)))
        >>> model_file = save_with_contract(AlbuNet3D(num_classes=4, num_filters=2), contract, f"{tmp.name}/m.keras")
        >>> result = segment_case(case, load_model(model_file))
        >>> result.native.name, result.dicom, sorted(result.volumes_ml)
        ('P001_seg_native.nii.gz', None, ['ET', 'TC', 'WT'])
        >>> read_sidecar(case)["segmentation"]["volumes_ml"] == result.volumes_ml
        True
        >>> tmp.cleanup()
    """
    case_dir = Path(case_dir)
    labels, on_grid, prediction = labels_on_case_grid(case_dir, loaded)
    return write_segmentation(case_dir, labels, on_grid, label_map=output_label_map(loaded),
                              classes=tuple(c for c in loaded.contract.target.labels if c != 0),
                              model_name=str(loaded.path), fingerprint=loaded.fingerprint, prediction=prediction)


def prepare_and_segment(scans: dict[str, str | Path | None], case_id: str, out_dir: str | Path, loaded: LoadedModel,
                        *, overwrite: bool = False, **prepare_options) -> tuple[Path, CaseSegmentation]:
    """`prepare_case` then `segment_case`, as one step: the case folder appears with its segmentation or not at all.

    The case is prepared and segmented in a hidden scratch folder inside `out_dir` and moved into
    place (`tfbrats.files.atomic_folder`) only when both succeeded; a failure leaves no case folder
    (and an existing one untouched).

    Args:
        scans, case_id, out_dir: as for `prepare_case`.
        loaded: the model (`tfbrats.inference.load_model`).
        overwrite: replace an existing case folder.
        **prepare_options: the other keyword arguments of `prepare_case` (mask, skull_stripped, ...).

    Returns:
        The case folder and what `segment_case` wrote (paths inside the case folder).

    Example: scans may be DICOM series folders or NIfTI files (here NIfTI); the model is an
    untrained AlbuNet3D saved with its contract, loaded as a trained run's would be.

        >>> import tempfile
        >>> import nibabel
        >>> tmp = tempfile.TemporaryDirectory()
        >>> head = np.zeros((24, 24, 18), np.float32)
        >>> head[6:18, 6:18, 4:14] = 100.0
        >>> for modality in ("t1ce", "t2", "flair"):
        ...     nibabel.save(nibabel.Nifti1Image(head, np.diag([2.0, 2.0, 2.0, 1.0])), f"{tmp.name}/{modality}.nii.gz")
        >>> scans = {modality: f"{tmp.name}/{modality}.nii.gz" for modality in ("t1ce", "t2", "flair")}
        >>> from tfbrats.contract import SegmentationContract, Window
        >>> from tfbrats.inference.model import load_model, save_with_contract
        >>> from tfbrats.models import AlbuNet3D
        >>> contract = SegmentationContract(window=Window.for_patch((32, 32, 32)))
        >>> model_file = save_with_contract(AlbuNet3D(num_classes=4, num_filters=2), contract, f"{tmp.name}/m.keras")
        >>> case_dir, result = prepare_and_segment(scans, "P001", f"{tmp.name}/cases", load_model(model_file),
        ...                                        skull_stripped=True, spacing_mm=2.0)
        >>> case_dir.name, result.native.relative_to(case_dir).as_posix()
        ('P001', 'P001_seg_native.nii.gz')
        >>> tmp.cleanup()
    """
    case_dir = output_file(out_dir, case_id, what="case_id")
    if case_dir.exists() and not overwrite:
        raise FileExistsError(f"{case_dir} already exists; choose another --out or --case_id, or pass --overwrite.")
    case_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{case_id}.scratch-", dir=case_dir.parent) as scratch:
        staged = prepare_case(scans, case_id, scratch, **prepare_options)
        result = segment_case(staged, loaded)
        with atomic_folder(case_dir, replace=overwrite) as stage:
            for path in staged.iterdir():
                os.replace(path, stage / path.name)
    return case_dir, dataclasses.replace(result, native=case_dir / result.native.name,
                                         dicom=case_dir / result.dicom.name if result.dicom else None)


def write_segmentation(case_dir: str | Path, labels: np.ndarray, on_grid: sitk.Image, *, label_map: LabelMap,
                       classes: tuple[int, ...], model_name: str, fingerprint: str,
                       prediction: dict | None = None) -> CaseSegmentation:
    """Writes internal labels on a prepared case's grid back onto its reference series (NIfTI, DICOM SEG).

    Args:
        case_dir: the case folder (`prepare_case`'s); its sidecar names the reference and its grid.
        labels: internal classes 0..3 (0..4 with the resection cavity) on the case's grid,
            `(D, H, W)` (what the volumes count).
        on_grid: the same labels as an image in world coordinates (`labels_on_case_grid`).
        label_map: the values the native NIfTI is written with; its label set names the regions
            measured (RC too when it has a cavity value).
        classes: the model's tumor classes: one DICOM segment each.
        model_name: the model, as the SEG's algorithm identification names it.
        fingerprint: the model's weights SHA-256.
        prediction: the prediction record (`tfbrats.inference.predict.prediction_record`) for the sidecar.

    Example: a cube of edema (internal class 2, 64 voxels of 2 mm) on a prepared case's grid.

        >>> import tempfile
        >>> import nibabel
        >>> tmp = tempfile.TemporaryDirectory()
        >>> head = np.zeros((24, 24, 18), np.float32)
        >>> head[6:18, 6:18, 4:14] = 100.0
        >>> for modality in ("t1ce", "t2", "flair"):
        ...     nibabel.save(nibabel.Nifti1Image(head, np.diag([2.0, 2.0, 2.0, 1.0])), f"{tmp.name}/{modality}.nii.gz")
        >>> scans = {modality: f"{tmp.name}/{modality}.nii.gz" for modality in ("t1ce", "t2", "flair")}
        >>> case = prepare_case(scans, "P001", f"{tmp.name}/cases", skull_stripped=True, spacing_mm=2.0)
        >>> grid = sitk.ReadImage(str(case / "P001_t1ce.nii.gz"))
        >>> labels = np.zeros(sitk.GetArrayFromImage(grid).shape, np.uint8)
        >>> labels[2:6, 2:6, 2:6] = 2
        >>> on_grid = sitk.GetImageFromArray(labels)
        >>> on_grid.CopyInformation(grid)
        >>> result = write_segmentation(case, labels, on_grid, label_map=BRATS2020_LABELS, classes=(1, 2, 3),
        ...                             model_name="runs/demo", fingerprint="ab" * 32)
        >>> result.native.name, result.volumes_ml
        ('P001_seg_native.nii.gz', {'WT': 0.512, 'TC': 0.0, 'ET': 0.0})
        >>> tmp.cleanup()
    """
    case_dir = Path(case_dir)
    case_id = case_dir.name
    sidecar = read_sidecar(case_dir)
    reference = sidecar["reference"]
    source = sidecar["inputs"][reference]
    volumes = region_volumes_ml(labels, (float(sidecar["spacing_mm"]),) * 3, label_map.label_set)
    native = labels_to_grid(on_grid, grid_from_record(source))

    native_path = case_dir / f"{case_id}{SEG_NATIVE_SUFFIX}"
    written = sitk.GetImageFromArray(label_map.to_dataset(sitk.GetArrayFromImage(native)).astype(np.uint8))
    written.CopyInformation(native)
    with atomic_path(native_path) as temporary:
        sitk.WriteImage(written, str(temporary), useCompression=True)
    dicom_path = None
    if source.get("format") == "dicom":
        from tfbrats.clinical.seg import write_dicom_seg

        dicom_path = write_dicom_seg(native, source["path"], case_dir / f"{case_id}{SEG_DICOM_SUFFIX}",
                                     classes=classes, model_name=model_name, fingerprint=fingerprint)
    figure = _draw_figure(case_dir, sidecar, on_grid)
    record = {
        **(prediction or {"model": model_name, "model_sha256": fingerprint}),
        "written_by": "tfbrats.clinical",
        "reference": reference,
        "label_values": dict(zip(("necrosis", "edema", "enhancing", "cavity"), label_map.values[1:])),
        "volumes_ml": volumes,
        "volumes_grid": f"the prepared case's {sidecar['spacing_mm']} mm grid (where the model segmented)",
        "native_file": native_path.name,
        "native_grid": "the reference series as read (nearest-neighbour resampling of the labels)",
        "dicom_seg_file": dicom_path.name if dicom_path else None,
        "dicom_seg_segments": {CLASS_NAMES[c]: n for n, c in enumerate(classes, start=1)} if dicom_path else None,
        "figure": figure,
    }
    if dicom_path is None:
        record["dicom_seg_reason"] = (f"the reference scan {source['path']} is {source.get('format')}, not a DICOM "
                                      "series: a DICOM Segmentation must reference DICOM instances")
    write_json(case_dir / f"{case_id}_clinical.json", {**sidecar, "segmentation": record})
    return CaseSegmentation(native_path, dicom_path, volumes, record)


def _draw_figure(case_dir: Path, sidecar: dict, on_grid: sitk.Image) -> str | None:
    """Draws `<case>_seg.png` (the labels over the prepared reference scan); None without matplotlib."""
    try:
        from tfbrats.clinical.figure import draw_segmentation_check
    except ImportError:
        return None
    case_id = case_dir.name
    scan = sitk.ReadImage(str(case_dir / f"{case_id}_{sidecar['reference']}.nii.gz"))
    if scan.GetSize() != on_grid.GetSize():
        raise ValueError(f"{case_dir}: the labels' grid {on_grid.GetSize()} is not the case's {scan.GetSize()}")

    def ras(image: sitk.Image) -> np.ndarray:  # the case grid is LPS-stored (identity direction)
        return np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))[::-1, ::-1, :]

    try:
        path = draw_segmentation_check(ras(scan), ras(on_grid), scan.GetSpacing(), case_dir / f"{case_id}_seg.png",
                                       title=f"{case_id} on {sidecar['reference']}")
    except ImportError:
        return None
    return path.name
