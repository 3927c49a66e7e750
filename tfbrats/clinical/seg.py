"""A segmentation on the reference series' grid as a DICOM Segmentation (highdicom) that a PACS keeps.

The SEG references the reference series' instances frame by frame, holds one segment per tumor
class of the model's label set, coded in SNOMED CT as DICOM recommends (category "Morphologically
Altered Structure"; types necrosis, edema, neoplasm), names the algorithm (tfbrats' version and the
model's weights fingerprint), copies the patient and study from the source (highdicom does), and
gets new series and instance UIDs. It is read back with `highdicom.seg.segread`, 3D Slicer's DICOM
browser or OHIF.

highdicom and pynetdicom are the `clinical` extra (`pip install 'tfbrats[clinical]'`); importing this
module without them raises an ImportError that says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

import tfbrats
from tfbrats.clinical.dicom import is_dicom_file
from tfbrats.files import atomic_path
from tfbrats.labels import CLASS_NAMES

try:
    import highdicom as hd
except ImportError as error:  # pragma: no cover - exercised where the extra is missing
    raise ImportError(f"writing DICOM Segmentations needs highdicom ({error}); "
                      "pip install 'tfbrats[clinical]'") from error

BRAIN = hd.sr.CodedConcept("12738006", "SCT", "Brain")
ALTERED_STRUCTURE = hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure")
# Internal class -> (segment label, SNOMED CT segmented property type, display colour CIELab).
SEGMENT_TYPES: dict[int, tuple[str, hd.sr.CodedConcept, tuple[float, float, float]]] = {
    1: (CLASS_NAMES[1], hd.sr.CodedConcept("6574001", "SCT", "Necrosis"), (45.0, 60.0, 40.0)),
    2: (CLASS_NAMES[2], hd.sr.CodedConcept("79654002", "SCT", "Edema"), (85.0, -20.0, 75.0)),
    3: (CLASS_NAMES[3], hd.sr.CodedConcept("108369006", "SCT", "Neoplasm"), (55.0, -50.0, 45.0)),
}
SEG_SERIES_NUMBER = 9000
SEG_SERIES_DESCRIPTION = "tfbrats tumor segmentation"


class DicomSegError(ValueError):
    """The reference series cannot carry a DICOM Segmentation (not DICOM, frames do not match)."""


def read_series_datasets(folder: str | Path) -> list[pydicom.Dataset]:
    """Every DICOM instance of one series folder (pixels not read), in file name order.

    Example:
        >>> import shutil, tempfile
        >>> from pydicom import examples
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = shutil.copy(examples.get_path("mr"), f"{tmp.name}/IM0001")
        >>> [dataset.Modality for dataset in read_series_datasets(tmp.name)]
        ['MR']
        >>> tmp.cleanup()
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_dicom_file(p))
    if not files:
        raise DicomSegError(f"{folder}: no DICOM files; the DICOM Segmentation references the reference series' "
                            "instances, so the reference scan must be a DICOM series folder")
    return [pydicom.dcmread(path, stop_before_pixels=True) for path in files]


def frame_index(datasets: Sequence[pydicom.Dataset], grid: sitk.Image, where: str = "reference series") -> list[int]:
    """The slice index of `grid` (the series as read) at which each instance lies.

    Each instance's ImagePositionPatient must be a voxel centre of slice k of the grid and its
    ImageOrientationPatient the grid's row and column directions; anything else is a `DicomSegError`.

    Example:
        >>> import tempfile
        >>> import pydicom
        >>> from pydicom import examples
        >>> from pydicom.uid import generate_uid
        >>> from tfbrats.clinical.dicom import read_dicom_series
        >>> tmp = tempfile.TemporaryDirectory()
        >>> series = Path(tmp.name) / "T1C"
        >>> series.mkdir()
        >>> dataset = pydicom.dcmread(examples.get_path("mr"))  # one 64 x 64 slice: a series of 3 from it
        >>> for k in range(3):
        ...     dataset.SOPInstanceUID, dataset.InstanceNumber = generate_uid(), k + 1
        ...     dataset.ImagePositionPatient[2] = 5.0 * k
        ...     dataset.save_as(series / f"IM{k}")
        >>> grid, _ = read_dicom_series(series)
        >>> frame_index(read_series_datasets(series), grid)
        [0, 1, 2]
        >>> tmp.cleanup()
    """
    direction = np.array(grid.GetDirection()).reshape(3, 3)
    spacing = np.array(grid.GetSpacing())
    origin = np.array(grid.GetOrigin())
    indices = []
    for ds in datasets:
        orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
        offset = (np.array([float(v) for v in ds.ImagePositionPatient]) - origin) @ direction / spacing
        k = int(round(float(offset[2])))
        off_grid = not np.allclose(offset, [0.0, 0.0, k], atol=1e-2) or not 0 <= k < grid.GetSize()[2]
        if off_grid or not np.allclose(orientation, np.r_[direction[:, 0], direction[:, 1]], atol=1e-4):
            raise DicomSegError(f"{where}: instance {ds.SOPInstanceUID} lies off the series' grid (position "
                                f"{list(ds.ImagePositionPatient)}); was the series changed since it was read?")
        indices.append(k)
    if sorted(indices) != list(range(grid.GetSize()[2])):
        raise DicomSegError(f"{where}: its {len(datasets)} instances do not fill the {grid.GetSize()[2]} slices of "
                            "the grid it was read on, one each")
    return indices


def segment_descriptions(classes: Sequence[int], algorithm: hd.AlgorithmIdentificationSequence
                         ) -> list[hd.seg.SegmentDescription]:
    """One coded segment per tumor class (segment numbers 1, 2, ... in class order).

    Example:
        >>> algorithm = hd.AlgorithmIdentificationSequence("tfbrats", hd.sr.CodedConcept("123110", "DCM",
        ...     "Artificial Intelligence"), "0.1.0")
        >>> [d.SegmentLabel for d in segment_descriptions((1, 3), algorithm)]
        ['necrotic/non-enhancing core', 'enhancing tumor']
    """
    descriptions = []
    for number, label in enumerate(classes, start=1):
        name, kind, colour = SEGMENT_TYPES[label]
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=name, segmented_property_category=ALTERED_STRUCTURE,
            segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm, anatomic_regions=[BRAIN],
            display_color=hd.color.CIELabColor(*colour)))
    return descriptions


def algorithm_identification(model_name: str, fingerprint: str) -> hd.AlgorithmIdentificationSequence:
    """tfbrats' version and the model's weights fingerprint (SHA-256), as the SEG names its algorithm.

    Example:
        >>> algorithm_identification("demo", "ab" * 32)[0].AlgorithmVersion
        '0.1.0 weights ababababababababab'
    """
    return hd.AlgorithmIdentificationSequence(
        name="tfbrats", family=hd.sr.CodedConcept("123110", "DCM", "Artificial Intelligence"),
        version=f"{tfbrats.__version__} weights {fingerprint[:18]}",
        parameters={"model": model_name[:60], "model_sha256": fingerprint})


def write_dicom_seg(labels: sitk.Image, reference_folder: str | Path, path: str | Path, *,
                    classes: Sequence[int], model_name: str, fingerprint: str) -> Path:
    """Writes internal labels on the reference series' grid as a DICOM Segmentation, atomically.

    Args:
        labels: internal classes on the grid the reference series was read on (`native.labels_to_grid`).
        reference_folder: the reference series' DICOM folder (the instances the SEG references).
        path: the `.dcm` file to write.
        classes: the model's tumor classes (its target's labels without 0): one segment each, even
            when empty, so every SEG of a model has the same segments.
        model_name: what the algorithm identification calls the model.
        fingerprint: the model's weights SHA-256.

    Returns:
        `path`.

    Example:
        >>> import tempfile
        >>> import pydicom
        >>> from pydicom import examples
        >>> from pydicom.uid import generate_uid
        >>> from tfbrats.clinical.dicom import read_dicom_series
        >>> tmp = tempfile.TemporaryDirectory()
        >>> series = Path(tmp.name) / "T1C"
        >>> series.mkdir()
        >>> dataset = pydicom.dcmread(examples.get_path("mr"))  # one 64 x 64 slice: a series of 3 from it
        >>> for k in range(3):
        ...     dataset.SOPInstanceUID, dataset.InstanceNumber = generate_uid(), k + 1
        ...     dataset.ImagePositionPatient[2] = 5.0 * k
        ...     dataset.save_as(series / f"IM{k}")
        >>> grid, _ = read_dicom_series(series)
        >>> volume = np.zeros((3, 64, 64), np.uint8)  # (slices, rows, columns)
        >>> volume[1, 20:30, 20:30], volume[1, 23:26, 23:26] = 2, 3
        >>> labels = sitk.GetImageFromArray(volume)
        >>> labels.CopyInformation(grid)
        >>> path = write_dicom_seg(labels, series, f"{tmp.name}/seg.dcm", classes=(1, 2, 3),
        ...                        model_name="runs/demo", fingerprint="ab" * 32)
        >>> pydicom.dcmread(path).Modality, len(pydicom.dcmread(path).SegmentSequence)
        ('SEG', 3)
        >>> tmp.cleanup()
    """
    unknown = sorted(set(classes) - set(SEGMENT_TYPES))
    if unknown:
        raise DicomSegError(f"no DICOM segment type for classes {unknown}; known: {sorted(SEGMENT_TYPES)}")
    datasets = read_series_datasets(reference_folder)
    order = frame_index(datasets, labels, where=str(reference_folder))
    volume = sitk.GetArrayFromImage(labels)  # (slices, rows, columns)
    numbers = np.zeros(max(SEGMENT_TYPES) + 1, np.uint8)
    numbers[list(classes)] = np.arange(1, len(classes) + 1)
    frames = numbers[np.clip(volume, 0, len(numbers) - 1)][order]
    algorithm = algorithm_identification(model_name, fingerprint)
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=frames, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(classes, algorithm), series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=1, manufacturer="tfbrats",
        manufacturer_model_name=model_name[:64], software_versions=tfbrats.__version__,
        device_serial_number=fingerprint[:16], series_description=SEG_SERIES_DESCRIPTION,
        content_label="TUMOR", content_description="brain tumor segmentation", omit_empty_frames=False)
    with atomic_path(path) as temporary:
        seg.save_as(temporary)
    return Path(path)


def read_seg_labels(path: str | Path, source_uids: Sequence[str]) -> np.ndarray:
    """The segment numbers of a DICOM Segmentation on the given source instances, `(len(uids), rows, columns)`.

    Example:
        >>> import tempfile
        >>> import pydicom
        >>> from pydicom import examples
        >>> from pydicom.uid import generate_uid
        >>> from tfbrats.clinical.dicom import read_dicom_series
        >>> tmp = tempfile.TemporaryDirectory()
        >>> series = Path(tmp.name) / "T1C"
        >>> series.mkdir()
        >>> dataset = pydicom.dcmread(examples.get_path("mr"))  # one 64 x 64 slice: a series of 3 from it
        >>> for k in range(3):
        ...     dataset.SOPInstanceUID, dataset.InstanceNumber = generate_uid(), k + 1
        ...     dataset.ImagePositionPatient[2] = 5.0 * k
        ...     dataset.save_as(series / f"IM{k}")
        >>> grid, _ = read_dicom_series(series)
        >>> volume = np.zeros((3, 64, 64), np.uint8)  # (slices, rows, columns)
        >>> volume[1, 20:30, 20:30], volume[1, 23:26, 23:26] = 2, 3
        >>> labels = sitk.GetImageFromArray(volume)
        >>> labels.CopyInformation(grid)
        >>> path = write_dicom_seg(labels, series, f"{tmp.name}/seg.dcm", classes=(1, 2, 3),
        ...                        model_name="runs/demo", fingerprint="ab" * 32)
        >>> segments = read_seg_labels(path, [ds.SOPInstanceUID for ds in read_series_datasets(series)])
        >>> segments.shape, int(segments.max()), int((segments > 0).sum())  # segment 3 is class 3 here
        ((3, 64, 64), 3, 100)
        >>> tmp.cleanup()
    """
    seg = hd.seg.segread(path)
    return seg.get_pixels_by_source_instance(source_uids, combine_segments=True,
                                             assert_missing_frames_are_empty=True).astype(np.uint8)
