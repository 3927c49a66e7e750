"""Shared helpers for the clinical tests: an analytic head phantom and a pydicom series writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

# Phantom structures in world (LPS) millimetres: centre, semi-axes.
_HEAD = ((10.0, -20.0, 30.0), (26.0, 32.0, 22.0))
_STRUCTURES = {
    "brain": ((10.0, -20.0, 30.0), (22.0, 28.0, 18.0)),
    "ventricle_left": ((15.0, -24.0, 34.0), (3.0, 8.0, 4.0)),
    "ventricle_right": ((4.0, -22.0, 33.0), (3.0, 7.0, 4.0)),
    "tumor": ((18.0, -10.0, 24.0), (5.0, 5.0, 5.0)),
    "blob": ((-2.0, -6.0, 38.0), (3.0, 3.0, 3.0)),
}
TUMOR_CENTER = np.array(_STRUCTURES["tumor"][0])
# Intensity of scalp and each structure per modality, layered in this order.
_CONTRAST = {
    "t1": {"head": 120, "brain": 80, "ventricle_left": 20, "ventricle_right": 20, "tumor": 70, "blob": 150},
    "t1ce": {"head": 120, "brain": 80, "ventricle_left": 20, "ventricle_right": 20, "tumor": 160, "blob": 150},
    "t2": {"head": 60, "brain": 60, "ventricle_left": 180, "ventricle_right": 180, "tumor": 140, "blob": 30},
    "flair": {"head": 80, "brain": 70, "ventricle_left": 10, "ventricle_right": 10, "tumor": 200, "blob": 100},
}


def _membership(points: np.ndarray, center, axes, edge_mm: float = 1.0) -> np.ndarray:
    """Soft inside-ness (0..1) of points in an ellipsoid, with an edge about `edge_mm` wide."""
    r = np.sqrt((((points - np.array(center)) / np.array(axes)) ** 2).sum(axis=-1))
    return 1.0 / (1.0 + np.exp(-(1.0 - r) * min(axes) / edge_mm))


def phantom(points: np.ndarray, modality: str = "t1ce") -> np.ndarray:
    """Phantom intensity at world points `(..., 3)` (LPS mm) for one MRI contrast."""
    contrast = _CONTRAST[modality]
    value = contrast["head"] * _membership(points, *_HEAD)
    for name, (center, axes) in _STRUCTURES.items():
        m = _membership(points, center, axes)
        value = value * (1 - m) + contrast[name] * m
    return value * (1.0 + 0.004 * (points[..., 0] - 10.0))


def grid_points(size, spacing, origin, direction) -> np.ndarray:
    """World points of every voxel centre, array order (z, y, x, 3)."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    index = np.stack([i, j, k], axis=-1) * np.array(spacing)
    return np.array(origin) + index @ np.array(direction).reshape(3, 3).T


def make_image(size, spacing, origin, direction=None, modality="t1ce",
               transform=None) -> sitk.Image:
    """A float32 SimpleITK image of the phantom; `transform` (4x4) moves the phantom in the world."""
    direction = np.eye(3) if direction is None else direction
    points = grid_points(size, spacing, origin, direction)
    if transform is not None:
        inverse = np.linalg.inv(transform)
        points = points @ inverse[:3, :3].T + inverse[:3, 3]
    image = sitk.GetImageFromArray(phantom(points, modality).astype(np.float32))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    image.SetDirection(tuple(np.array(direction, dtype=float).ravel()))
    return image


def rotation(axis, degrees: float) -> np.ndarray:
    """3x3 rotation matrix about `axis` by `degrees` (Rodrigues)."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.radians(degrees)
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * (k @ k)


def rigid(axis, degrees: float, translation, center) -> np.ndarray:
    """4x4 rigid transform rotating about `center` then translating."""
    r = rotation(axis, degrees)
    matrix = np.eye(4)
    matrix[:3, :3] = r
    matrix[:3, 3] = np.asarray(translation) + np.asarray(center) - r @ np.asarray(center)
    return matrix


def write_dicom_series(folder: Path, image: sitk.Image, *, series_uid: str | None = None,
                       signed: bool = True, slope: float | None = None,
                       intercept: float | None = None, seed: int = 0, tags: dict | None = None) -> list[Path]:
    """Write a 3-D image as single-frame MR DICOM files under shuffled names; returns them in slice order.

    `tags` (keyword -> value) are set on every file last (e.g. PatientID, StudyInstanceUID, SeriesDescription).
    """
    folder.mkdir(parents=True, exist_ok=True)
    volume = sitk.GetArrayFromImage(image).astype(np.float64)
    if slope is not None:
        volume = (volume - intercept) / slope
    stored = np.round(volume).astype(np.int16 if signed else np.uint16)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    spacing = image.GetSpacing()
    series_uid = series_uid or generate_uid()
    names = np.random.default_rng(seed).permutation(len(stored))
    paths = []
    for k, pixels in enumerate(stored):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = "1.2.3.4"
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = "1.2.3.4.5"
        ds.Modality = "MR"
        ds.InstanceNumber = int(names[k]) + 1
        ds.Rows, ds.Columns = pixels.shape
        ds.PixelSpacing = [f"{spacing[1]:.6g}", f"{spacing[0]:.6g}"]
        ds.SliceThickness = f"{spacing[2]:.6g}"
        position = np.array(image.GetOrigin()) + direction[:, 2] * spacing[2] * k
        ds.ImagePositionPatient = [f"{p:.6f}" for p in position]
        ds.ImageOrientationPatient = [f"{c:.8f}" for c in np.r_[direction[:, 0], direction[:, 1]]]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if signed else 0
        if slope is not None:
            ds.RescaleSlope = f"{slope:.6g}"
            ds.RescaleIntercept = f"{intercept:.6g}"
        ds.PixelData = pixels.tobytes()
        for keyword, value in (tags or {}).items():
            setattr(ds, keyword, value)
        path = folder / f"IM{names[k]:04d}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def oblique_direction() -> np.ndarray:
    """Axial-ish directions tilted 15 degrees about x and 10 degrees about z."""
    return rotation((0, 0, 1), 10.0) @ rotation((1, 0, 0), 15.0)


def centered_image(size, spacing, direction=None, modality="t1ce", transform=None) -> sitk.Image:
    """`make_image` on a grid whose centre is the phantom's head centre."""
    direction = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    half = (np.array(size) - 1) * np.array(spacing) / 2.0
    origin = np.array(_HEAD[0]) - direction @ half
    return make_image(size, spacing, origin, direction, modality, transform)


# A life-sized head for brain extraction: a brain (white matter core, grey matter shell, ventricles,
# a tumour with an enhancing rim) wrapped in CSF, the skull's inner table, diploe, outer table,
# scalp fat and skin. Centre and semi-axes in world (LPS) mm; each layer is `thickness` mm thicker
# than the one inside it.
HEAD_CENTER = (0.0, -15.0, 20.0)
BRAIN_AXES = (66.0, 80.0, 56.0)
_HEAD_LAYERS = (("csf", 3.0), ("inner_table", 2.0), ("diploe", 3.0), ("outer_table", 2.0),
                ("fat", 5.0), ("skin", 2.0))
_HEAD_INSIDE = {
    "white_matter": ((0.0, -15.0, 22.0), (56.0, 70.0, 46.0)),
    "ventricle_left": ((8.0, -18.0, 30.0), (5.0, 18.0, 8.0)),
    "ventricle_right": ((-8.0, -18.0, 30.0), (5.0, 18.0, 8.0)),
    "tumor": ((32.0, 10.0, 18.0), (13.0, 13.0, 13.0)),
    "necrosis": ((32.0, 10.0, 18.0), (7.0, 7.0, 7.0)),
}
# Typical relative intensities per sequence (air 0).
_HEAD_CONTRAST = {
    "t1": {"skin": 70, "fat": 170, "outer_table": 15, "diploe": 110, "inner_table": 15, "csf": 30,
           "grey_matter": 85, "white_matter": 130, "ventricle_left": 30, "ventricle_right": 30,
           "tumor": 80, "necrosis": 40},
    "t1ce": {"skin": 75, "fat": 170, "outer_table": 15, "diploe": 115, "inner_table": 15, "csf": 35,
             "grey_matter": 88, "white_matter": 130, "ventricle_left": 30, "ventricle_right": 30,
             "tumor": 175, "necrosis": 40},
    "t2": {"skin": 60, "fat": 130, "outer_table": 15, "diploe": 80, "inner_table": 15, "csf": 200,
           "grey_matter": 100, "white_matter": 70, "ventricle_left": 200, "ventricle_right": 200,
           "tumor": 150, "necrosis": 190},
    "flair": {"skin": 70, "fat": 140, "outer_table": 15, "diploe": 70, "inner_table": 15, "csf": 20,
              "grey_matter": 115, "white_matter": 90, "ventricle_left": 20, "ventricle_right": 20,
              "tumor": 180, "necrosis": 60},
}


def head_brain(points: np.ndarray) -> np.ndarray:
    """True where world points `(..., 3)` (LPS mm) lie inside the head phantom's brain."""
    r = np.sqrt((((points - np.array(HEAD_CENTER)) / np.array(BRAIN_AXES)) ** 2).sum(axis=-1))
    return r < 1.0


def head_phantom(points: np.ndarray, modality: str = "t1ce") -> np.ndarray:
    """Noise-free head intensity at world points `(..., 3)` (LPS mm) for one MRI contrast."""
    contrast = _HEAD_CONTRAST[modality]
    thickness = sum(t for _, t in _HEAD_LAYERS)
    value = np.zeros(points.shape[:-1])
    # Outermost layer first; each inner layer is painted over the one outside it.
    for name, _ in reversed(_HEAD_LAYERS):
        axes = np.array(BRAIN_AXES) + thickness
        m = _membership(points, HEAD_CENTER, axes, edge_mm=0.5)
        value = value * (1 - m) + contrast[name] * m
        thickness -= dict(_HEAD_LAYERS)[name]
    m = _membership(points, HEAD_CENTER, BRAIN_AXES, edge_mm=0.5)
    value = value * (1 - m) + contrast["grey_matter"] * m
    for name, (center, axes) in _HEAD_INSIDE.items():
        m = _membership(points, center, axes, edge_mm=0.7)
        value = value * (1 - m) + contrast[name] * m
    return value


def head_image(size, spacing, modality: str = "t1ce", direction=None, noise: float = 4.0,
               seed: int = 0) -> sitk.Image:
    """A float32 image of the head phantom centred in its grid, with Rician noise of scale `noise`."""
    direction = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    half = (np.array(size) - 1) * np.array(spacing) / 2.0
    origin = np.array(HEAD_CENTER) - direction @ half
    clean = head_phantom(grid_points(size, spacing, origin, direction), modality)
    rng = np.random.default_rng(seed)
    noisy = np.hypot(clean + rng.normal(0, noise, clean.shape), rng.normal(0, noise, clean.shape))
    image = sitk.GetImageFromArray(noisy.astype(np.float32))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    image.SetDirection(tuple(direction.ravel()))
    return image
