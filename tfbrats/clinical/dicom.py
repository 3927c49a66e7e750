"""Read one DICOM series folder into a SimpleITK image with tensorflow-io's DCMTK decoder.

World coordinates are DICOM's patient frame (LPS, millimetres), as in SimpleITK. Slices are sorted
along the slice normal (the cross product of the two ImageOrientationPatient directions), never by
file name or InstanceNumber.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

# Relative tolerance on slice gaps and pixel spacings before a series is called inconsistent.
_SPACING_TOLERANCE = 0.01
# Distance (mm) a slice may lie off the line through the first slice along the normal.
_TILT_TOLERANCE_MM = 0.05


class DicomSeriesError(ValueError):
    """A DICOM folder that cannot be assembled into one volume (the message says why and what to do)."""


@dataclass(frozen=True)
class DicomSlice:
    """The tags of one single-frame DICOM file that the volume assembly needs."""

    path: Path
    series_uid: str
    position: np.ndarray  # ImagePositionPatient, (3,) mm
    row_direction: np.ndarray  # direction of increasing column index, (3,)
    column_direction: np.ndarray  # direction of increasing row index, (3,)
    pixel_spacing: tuple[float, float]  # (between rows, between columns) mm
    rows: int
    columns: int
    signed: bool
    bits_stored: int
    slope: float
    intercept: float

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal, row direction x column direction."""
        n = np.cross(self.row_direction, self.column_direction)
        return n / np.linalg.norm(n)


def _numbers(text: str, count: int, tag: str, path: Path) -> np.ndarray:
    """Parse a backslash-separated DICOM multi-value string into `count` floats."""
    parts = [p for p in text.replace("\\\\", "\\").split("\\") if p.strip()]
    if len(parts) != count:
        raise DicomSeriesError(
            f"{path}: tag {tag} is {text!r}, expected {count} numbers; the file is not an image slice "
            "with patient geometry: remove it from the series folder.")
    return np.array([float(p) for p in parts], dtype=np.float64)


def _optional_float(text: str, default: float) -> float:
    """A DICOM decimal string, or `default` when the tag is empty or absent."""
    text = text.strip()
    return float(text) if text else default


def is_dicom_file(path: Path) -> bool:
    """True when `path` carries the DICOM Part 10 preamble magic `DICM` at byte 128.

    Args:
        path: any file.

    Example:
        >>> is_dicom_file(Path("study/T1C/IM0001"))  # doctest: +SKIP
        True
    """
    with open(path, "rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_slice_tags(path: Path) -> DicomSlice:
    """Decode the geometry, identity and pixel-encoding tags of one DICOM file with tensorflow-io."""
    import tensorflow as tf
    import tensorflow_io as tfio

    t = tfio.image.dicom_tags
    names = ["SeriesInstanceUID", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
             "Rows", "Columns", "PixelRepresentation", "BitsStored", "RescaleSlope",
             "RescaleIntercept"]
    tags = tf.constant([getattr(t, n) for n in names], dtype=tf.uint32)
    values = tfio.image.decode_dicom_data(tf.io.read_file(str(path)), tags).numpy()
    v = dict(zip(names, (x.decode("utf-8", "replace").strip() for x in values)))
    for required in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows"):
        if not v[required]:
            raise DicomSeriesError(
                f"{path}: tag {required} is missing; this file is not a slice of an MR/CT volume "
                "(e.g. a localizer, report or secondary capture): remove it from the series folder.")
    orientation = _numbers(v["ImageOrientationPatient"], 6, "ImageOrientationPatient", path)
    spacing = _numbers(v["PixelSpacing"], 2, "PixelSpacing", path)
    return DicomSlice(
        path=path,
        series_uid=v["SeriesInstanceUID"],
        position=_numbers(v["ImagePositionPatient"], 3, "ImagePositionPatient", path),
        row_direction=orientation[:3] / np.linalg.norm(orientation[:3]),
        column_direction=orientation[3:] / np.linalg.norm(orientation[3:]),
        pixel_spacing=(float(spacing[0]), float(spacing[1])),
        rows=int(v["Rows"]),
        columns=int(v["Columns"]),
        signed=v["PixelRepresentation"] == "1",
        bits_stored=int(v["BitsStored"] or 16),
        slope=_optional_float(v["RescaleSlope"], 1.0),
        intercept=_optional_float(v["RescaleIntercept"], 0.0),
    )


def _dcmtk_output_bits(low: float, high: float) -> int:
    """Bits DCMTK uses for the output of a modality value range [low, high] (signed when low < 0)."""
    if low < 0:
        magnitude = max(-math.floor(low), math.ceil(high) + 1)
        return max(1, math.ceil(math.log2(magnitude))) + 1
    return max(1, math.ceil(math.log2(math.ceil(high) + 1)))


def _decode_pixels(s: DicomSlice) -> np.ndarray:
    """Pixel values of one slice as float32 `(rows, columns)` after RescaleSlope/Intercept.

    tensorflow-io returns DCMTK's output data: the modality values (stored * slope + intercept)
    mapped linearly from their possible range onto 0 .. 2**bits - 1. Measured with 0.37.1: int16
    without rescale reads as value + 32768; with a slope other than 1 DCMTK rounds internally, so the
    values come back within about 2 stored units (slope 0.5: within 1.0).
    """
    import tensorflow as tf
    import tensorflow_io as tfio

    out = tfio.image.decode_dicom_image(
        tf.io.read_file(str(s.path)), dtype=tf.float64, on_error="strict", scale="preserve").numpy()
    if out.ndim != 4 or out.shape[0] != 1 or out.shape[3] != 1:
        raise DicomSeriesError(
            f"{s.path}: decoded pixel array has shape {out.shape}; only single-frame grayscale slices "
            "are supported: convert multi-frame or colour files (e.g. with dcmtk or dicom2nifti) first.")
    stored_low = -(2 ** (s.bits_stored - 1)) if s.signed else 0
    stored_high = 2 ** (s.bits_stored - 1) - 1 if s.signed else 2**s.bits_stored - 1
    ends = sorted((stored_low * s.slope + s.intercept, stored_high * s.slope + s.intercept))
    bits = _dcmtk_output_bits(*ends)
    values = ends[0] + out[0, :, :, 0] * (ends[1] - ends[0]) / (2**bits - 1)
    return values.astype(np.float32)


def _check_same(slices: list[DicomSlice], attribute: str, folder: Path, rtol: float = 0.0) -> None:
    """Raise when an attribute that must be constant over a series differs between files."""
    first = slices[0]
    for s in slices[1:]:
        a, b = np.asarray(getattr(first, attribute)), np.asarray(getattr(s, attribute))
        if a.shape != b.shape or not np.allclose(a, b, rtol=rtol, atol=1e-4):
            raise DicomSeriesError(
                f"{folder}: {attribute} differs within the series: {first.path.name} has "
                f"{getattr(first, attribute)}, {s.path.name} has {getattr(s, attribute)}; "
                "the folder mixes acquisitions: keep one acquisition per folder.")


def _sorted_slices(slices: list[DicomSlice], folder: Path) -> tuple[list[DicomSlice], float]:
    """Slices sorted along the normal, and the slice spacing; gaps and uneven spacing raise."""
    for attribute in ("row_direction", "column_direction", "rows", "columns"):
        _check_same(slices, attribute, folder)
    _check_same(slices, "pixel_spacing", folder, rtol=_SPACING_TOLERANCE)
    normal = slices[0].normal
    ordered = sorted(slices, key=lambda s: float(s.position @ normal))
    if len(ordered) < 2:
        raise DicomSeriesError(
            f"{folder}: the series has {len(ordered)} slice ({ordered[0].path.name}); a volume needs at "
            "least 2: check that the whole series was exported.")
    heights = np.array([s.position @ normal for s in ordered])
    gaps = np.diff(heights)
    for a, b, gap in zip(ordered, ordered[1:], gaps):
        if gap < 1e-3:
            raise DicomSeriesError(
                f"{folder}: {a.path.name} and {b.path.name} lie at the same position "
                f"{b.position.tolist()} (duplicate slice or two acquisitions in one series): "
                "remove the duplicates or split the folder.")
    spacing = float(np.median(gaps))
    for a, b, gap in zip(ordered, ordered[1:], gaps):
        if abs(gap - spacing) > _SPACING_TOLERANCE * spacing:
            missing = round(gap / spacing) - 1
            what = (f"{missing} slice(s) appear to be missing" if missing >= 1
                    else "the slice spacing is inconsistent")
            raise DicomSeriesError(
                f"{folder}: {what} between {a.path.name} and {b.path.name}: gap {gap:.4g} mm, "
                f"the series' spacing is {spacing:.4g} mm; re-export the complete series "
                "(variable slice spacing is not supported).")
    for s, h in zip(ordered, heights):
        off_axis = s.position - ordered[0].position - (h - heights[0]) * normal
        if np.linalg.norm(off_axis) > _TILT_TOLERANCE_MM:
            raise DicomSeriesError(
                f"{folder}: {s.path.name} lies {np.linalg.norm(off_axis):.3g} mm off the slice normal "
                "(gantry tilt or sheared stack), which is not supported: resample the series "
                "to an orthogonal grid first.")
    return ordered, spacing


def read_dicom_series(folder: str | Path) -> tuple[sitk.Image, dict]:
    """Assemble the single DICOM series in `folder` into a 3-D float32 image in world (LPS) space.

    Args:
        folder: a folder holding the files of exactly one series (non-DICOM files, hidden files
            and DICOMDIR are ignored).

    Returns:
        `(image, info)`: the SimpleITK image (index order x = columns, y = rows, z = slices along the
        normal) and a JSON-ready dict with the series UID, file count, slice spacing and file order.

    Raises:
        DicomSeriesError: no DICOM files, several SeriesInstanceUIDs, missing or duplicate slices,
            inconsistent spacing or orientation; the message names the files and values.

    Example:
        >>> image, info = read_dicom_series("study/T1C")  # doctest: +SKIP
        >>> image.GetSpacing(), info["series_uid"]  # doctest: +SKIP
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DicomSeriesError(f"{folder}: not a folder; pass the folder that holds one DICOM series.")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.name.upper() != "DICOMDIR"
                   and is_dicom_file(p))
    if not files:
        raise DicomSeriesError(
            f"{folder}: no DICOM files (Part 10, 'DICM' at byte 128) found; pass a series folder "
            "or a NIfTI file.")
    slices = [_read_slice_tags(p) for p in files]
    series = Counter(s.series_uid for s in slices)
    if len(series) > 1:
        listing = "; ".join(
            f"{uid or '<empty>'}: {n} files, e.g. {next(s.path.name for s in slices if s.series_uid == uid)}"
            for uid, n in series.most_common())
        raise DicomSeriesError(
            f"{folder}: holds {len(series)} series (SeriesInstanceUID {listing}); "
            "move each series into its own folder and pass the one you mean.")
    ordered, slice_spacing = _sorted_slices(slices, folder)
    first = ordered[0]
    volume = np.stack([_decode_pixels(s) for s in ordered])  # (z, y, x)
    image = sitk.GetImageFromArray(volume)
    image.SetOrigin(tuple(first.position))
    image.SetSpacing((first.pixel_spacing[1], first.pixel_spacing[0], slice_spacing))
    direction = np.column_stack([first.row_direction, first.column_direction, first.normal])
    image.SetDirection(tuple(direction.ravel()))
    info = {
        "series_uid": first.series_uid,
        "files": len(ordered),
        "slice_spacing_mm": slice_spacing,
        "first_file": first.path.name,
        "last_file": ordered[-1].path.name,
        "rescale": {"slope": first.slope, "intercept": first.intercept},
    }
    return image, info


def image_affine(image: sitk.Image) -> np.ndarray:
    """The NIfTI (RAS, nibabel) 4x4 affine of a SimpleITK image, for index order (x, y, z).

    Args:
        image: a 3-D SimpleITK image (LPS world coordinates).

    Example:
        >>> image_affine(sitk.Image(2, 2, 2, sitk.sitkUInt8))[:3, :3].diagonal().tolist()
        [-1.0, -1.0, 1.0]
    """
    direction = np.array(image.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.array(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
