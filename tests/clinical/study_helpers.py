"""A synthetic DICOM study for the round-trip tests: T1c 1 mm reference, T2 moved and anisotropic, 4 mm FLAIR.

The phantom's tumor (`clinical_helpers.TUMOR_CENTER`) carries nested truth labels defined in world
coordinates (`truth_labels`), so any grid's truth is the phantom evaluated at its voxel centres.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from clinical_helpers import TUMOR_CENTER, centered_image, grid_points, rigid, write_dicom_series
from pydicom.uid import generate_uid

TUMOR_AXES = np.array([5.0, 5.0, 5.0])
# The reference is stored rotated 180 degrees about the y axis (rows run to the right, slices
# descend), so writing back must undo a reorientation as well as the resampling.
REFERENCE_DIRECTION = np.diag([-1.0, 1.0, -1.0])
SERIES = {  # modality -> (size, spacing, direction, SeriesDescription)
    "t1ce": ((60, 70, 50), (1.0, 1.0, 1.0), REFERENCE_DIRECTION, "T1 AX 3D POST GD"),
    "t2": ((40, 48, 22), (1.4, 1.4, 2.6), None, "AX T2 TSE"),
    "flair": ((60, 70, 13), (1.0, 1.0, 4.0), None, "AX FLAIR 4mm"),
}
T2_MOTION = rigid((0, 0, 1), 4.0, (2.0, -1.5, 1.0), (10.0, -20.0, 30.0))


def truth_labels(points: np.ndarray) -> np.ndarray:
    """Internal labels at world points `(..., 3)`: necrosis inside, enhancing ring, edema outside (nested)."""
    r = np.sqrt((((points - TUMOR_CENTER) / TUMOR_AXES) ** 2).sum(axis=-1))
    return np.select([r < 0.45, r < 0.75, r < 1.0], [1, 3, 2], 0).astype(np.uint8)


def image_truth(image: sitk.Image) -> np.ndarray:
    """Truth labels on an image's voxel centres, array order (z, y, x)."""
    return truth_labels(grid_points(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()))


def write_study(root: Path, *, study_uid: str | None = None, patient_id: str = "TFB-0001",
                series: tuple[str, ...] = ("t1ce", "t2", "flair"), extra: dict[str, str] | None = None,
                ) -> dict[str, Path]:
    """Writes the study's series as DICOM folders `root/<modality>`; returns modality -> folder.

    `extra` adds series: folder name -> the modality whose image it repeats (e.g. a second FLAIR).
    """
    study_uid = study_uid or generate_uid()
    folders = {}
    for number, (name, modality) in enumerate([(m, m) for m in series] + list((extra or {}).items()), start=1):
        size, spacing, direction, description = SERIES[modality]
        transform = T2_MOTION if modality == "t2" else None
        image = centered_image(size, spacing, direction, modality=modality, transform=transform)
        tags = {"PatientID": patient_id, "PatientName": "Phantom^Tumor", "PatientBirthDate": "19700101",
                "PatientSex": "O", "StudyInstanceUID": study_uid, "StudyID": "1", "StudyDate": "20260101",
                "StudyTime": "120000", "AccessionNumber": "A1", "ReferringPhysicianName": "",
                "SeriesNumber": number, "SeriesDescription": description if name == modality else f"{description} 2",
                "Manufacturer": "phantom"}
        folders[name] = root / name
        write_dicom_series(folders[name], image, seed=number, tags=tags)
    return folders


def voxel_model(folder: Path, weights: tuple[float, float, float], threshold: float) -> Path:
    """A run folder holding a per-voxel linear model: enhancing tumor where weights . (FLAIR, T1c, T2) > threshold.

    A stand-in for a trained network that the phantom's contrasts separate: it exercises loading,
    the contract's window, post-processing and the write-back, with labels the truth can check.
    """
    import keras

    inputs = keras.Input((None, None, None, 3))
    layer = keras.layers.Dense(4, name="final")
    model = keras.Model(inputs, layer(inputs))  # logits; the contract's target applies the softmax
    kernel = np.zeros((3, 4), np.float32)
    kernel[:, 3] = np.array(weights) * 10.0
    layer.set_weights([kernel, np.array([0, -100, -100, -10.0 * threshold], np.float32)])
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "best.keras")
    (folder / "config.json").write_text(json.dumps({"patch_size": [8, 32, 32]}))
    return folder


def instance_truth(ds: pydicom.Dataset) -> np.ndarray:
    """Truth labels on one DICOM instance's pixel centres, (rows, columns), from its own tags."""
    orientation = np.array([float(v) for v in ds.ImageOrientationPatient]).reshape(2, 3)
    spacing = [float(v) for v in ds.PixelSpacing]  # between rows, between columns
    rows, columns = np.meshgrid(np.arange(ds.Rows), np.arange(ds.Columns), indexing="ij")
    points = (np.array([float(v) for v in ds.ImagePositionPatient])
              + (columns * spacing[1])[..., None] * orientation[0] + (rows * spacing[0])[..., None] * orientation[1])
    return truth_labels(points)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def check_seg_against_truth(seg_path: Path, reference_folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The SEG's segment numbers and the truth on the reference instances, with its references checked."""
    import highdicom as hd

    from tfbrats.clinical.seg import read_seg_labels, read_series_datasets

    sources = read_series_datasets(reference_folder)
    seg = hd.seg.segread(seg_path)
    source = pydicom.dcmread(next(reference_folder.iterdir()), stop_before_pixels=True)
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID", "AccessionNumber"):
        assert getattr(seg, keyword) == getattr(source, keyword), keyword
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID and seg.Modality == "SEG"
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == source.SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} == {
        ds.SOPInstanceUID for ds in sources}
    # Every frame lies on the instance it derives from.
    positions = {ds.SOPInstanceUID: np.array(ds.ImagePositionPatient, float) for ds in sources}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        np.testing.assert_allclose(np.array(frame.PlanePositionSequence[0].ImagePositionPatient, float),
                                   positions[uid], atol=1e-3)
    labels = read_seg_labels(seg_path, [ds.SOPInstanceUID for ds in sources])
    return labels, np.stack([instance_truth(ds) for ds in sources])
