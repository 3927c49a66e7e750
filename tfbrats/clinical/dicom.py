"""Read one DICOM series folder into a SimpleITK image.

Tags are read with pydicom. Pixels are decoded with pydicom by default; tensorflow-io's DCMTK
decoder (`reader="tfio"`) is the alternative where tensorflow-io is installed and loads (its last
release, 0.37.1, loads only on TensorFlow 2.16). Both give float32 modality values (stored value x
RescaleSlope + RescaleIntercept). pydicom's are exact. DCMTK holds modality values as integers
truncated toward zero, so tensorflow-io's equal pydicom's wherever those are integers (no rescale,
or integer slope and intercept) and are pydicom's truncated toward zero otherwise.

World coordinates are DICOM's patient frame (LPS, millimetres), as in SimpleITK. Slices are sorted
along the slice normal (the cross product of the two ImageOrientationPatient directions), never by
file name or InstanceNumber.

Before any pixel is decoded, every file's declared pixel data size (Rows x Columns x
SamplesPerPixel x BitsAllocated / 8 x frames) is checked against the bytes the file holds, and
the series' voxel count against a limit (`max_voxels`, default `tfbrats.limits.max_voxels()`:
the environment variable `TFBRATS_MAX_VOXELS`, else 2**28 voxels, 1 GiB as float32), so a damaged or
hostile header cannot make the decoder allocate gigabytes or read past the end of the data.
"""

from __future__ import annotations

import importlib.metadata
import math
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataelem import RawDataElement
from pydicom.multival import MultiValue
from pydicom.pixels import pixel_array

from tfbrats import limits

# Pixel decoders `read_dicom_series` accepts; the first is the default.
READERS = ("pydicom", "tfio")
# Relative tolerance on slice gaps and pixel spacings before a series is called inconsistent.
_SPACING_TOLERANCE = 0.01
# Distance (mm) a slice may lie off the line through the first slice along the normal.
_TILT_TOLERANCE_MM = 0.05
# Largest |cosine| between the row and column directions of ImageOrientationPatient (about 0.6 degrees).
_PERPENDICULAR_TOLERANCE = 0.01
# Elements above this size are left in the file while the header is read (the pixel data above all).
_DEFER_BYTES = 4096
_PIXEL_DATA = 0x7FE00010
_UNDEFINED_LENGTH = 0xFFFFFFFF


class DicomSeriesError(ValueError):
    """A DICOM folder that cannot be assembled into one volume (the message says why and what to do)."""


class DicomReaderUnavailable(ImportError):
    """The requested DICOM pixel decoder cannot be imported or loaded (the message says what to use)."""


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
    photometric: str  # PhotometricInterpretation
    slope: float
    intercept: float

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal, row direction x column direction."""
        n = np.cross(self.row_direction, self.column_direction)
        return n / np.linalg.norm(n)


def dicom_reader_version(reader: str) -> str:
    """The name and version of a DICOM pixel decoder, checking that it imports and loads here.

    Args:
        reader: "pydicom" (always present) or "tfio" (tensorflow-io, loads only on TensorFlow 2.16).

    Raises:
        DicomReaderUnavailable: tensorflow-io is not installed, or its kernels do not load on this
            TensorFlow (it then says so in one line and names the pydicom reader).
        ValueError: an unknown reader name.

    Example:
        >>> dicom_reader_version("pydicom").split()[0]
        'pydicom'
    """
    if reader == "pydicom":
        return f"pydicom {pydicom.__version__}"
    if reader == "tfio":
        _tensorflow_io()
        import tensorflow as tf

        return f"tensorflow-io {importlib.metadata.version('tensorflow-io')} on TensorFlow {tf.__version__}"
    raise ValueError(f"DICOM reader {reader!r} is unknown; use one of {list(READERS)}.")


def _tensorflow_io():
    """The tensorflow_io module with its kernels loaded; DicomReaderUnavailable when it cannot be."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its failed file-system plugin load warns before failing
            import tensorflow_io as tfio
            from tensorflow_io.python.ops import core_ops

            # The kernels load on first use; on a TensorFlow they were not built for (2.17 and later)
            # that fails with undefined symbols, raised as NotImplementedError or NotFoundError.
            _ = core_ops.io_decode_dicom_image
    except Exception as error:  # not installed, or installed for another TensorFlow
        reason = " ".join(str(error).split())[:300]
        raise DicomReaderUnavailable(
            f"the tensorflow-io DICOM reader is unavailable ({type(error).__name__}: {reason}); "
            "tensorflow-io 0.37.1 loads only on TensorFlow 2.16: use the pydicom reader "
            "(--dicom_reader=pydicom, the default).") from error
    return tfio


def _numbers(value, count: int, tag: str, path: Path) -> np.ndarray:
    """A DICOM multi-valued decimal tag as `count` finite floats, or an error naming the file."""
    values = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
    try:
        numbers = np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        numbers = np.array([np.nan])
    if len(numbers) != count or not np.all(np.isfinite(numbers)):
        shown = "\\".join(str(v) for v in values)
        raise DicomSeriesError(
            f"{path}: tag {tag} is {shown!r}, expected {count} numbers; the file is not an image slice "
            "with patient geometry: remove it from the series folder.")
    return numbers


def _optional_float(value, default: float, tag: str, path: Path) -> float:
    """A DICOM decimal tag, or `default` when it is empty or absent."""
    if value is None or str(value).strip() == "":
        return default
    return float(_numbers(value, 1, tag, path)[0])


def _directions(orientation: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The unit row and column directions of ImageOrientationPatient; zero or oblique pairs raise."""
    row, column = orientation[:3], orientation[3:]
    row_norm, column_norm = np.linalg.norm(row), np.linalg.norm(column)
    if row_norm < 1e-6 or column_norm < 1e-6:
        what = "has a zero-length direction, so the slice has no orientation in space"
    elif abs(row @ column) > _PERPENDICULAR_TOLERANCE * row_norm * column_norm:
        what = "has row and column directions that are not perpendicular"
    else:
        return row / row_norm, column / column_norm
    raise DicomSeriesError(
        f"{path}: ImageOrientationPatient {orientation.tolist()} {what}; the file's geometry is "
        "damaged: remove it or re-export the series from the scanner or PACS.")


def _check_pixel_data(ds: pydicom.Dataset, path: Path, max_voxels: int) -> None:
    """Refuse a file whose pixel data is absent, not one grayscale frame, shorter than declared, or too large.

    Only the header is in memory: the length of the pixel data element comes from the header and
    the bytes present from the file's size, so a header claiming gigabytes costs nothing to check.
    """
    element = ds.get_item(_PIXEL_DATA, keep_deferred=True)
    if element is None:
        raise DicomSeriesError(
            f"{path}: the file has no PixelData element; it is not an image slice: remove it from the "
            "series folder.")
    try:
        rows, columns, bits = int(ds.Rows), int(ds.Columns), int(ds.BitsAllocated)
        samples, frames = int(ds.get("SamplesPerPixel") or 1), int(ds.get("NumberOfFrames") or 1)
    except (AttributeError, TypeError, ValueError) as error:
        raise DicomSeriesError(
            f"{path}: the image size tags are missing or unreadable ({error}); the file is not a "
            "readable image slice: remove it from the series folder.") from error
    if frames != 1 or samples != 1:
        raise DicomSeriesError(
            f"{path}: {frames} frame(s) of {samples} sample(s) per pixel; only single-frame grayscale "
            "slices are supported: convert multi-frame or colour files (e.g. with dcmtk or dicom2nifti) "
            "first.")
    if not (isinstance(element, RawDataElement) and element.length == _UNDEFINED_LENGTH):
        # Native (uncompressed) data: its size is fixed by the header. Compressed data is checked
        # by its decoder.
        declared = math.ceil(rows * columns * samples * bits / 8 * frames)
        if isinstance(element, RawDataElement) and element.value is None:  # left in the file
            present = min(element.length, path.stat().st_size - element.value_tell)
        else:
            present = len(element.value or b"")
        if present < declared:
            raise DicomSeriesError(
                f"{path}: pixel data cut short: Rows {rows} x Columns {columns} x {bits} bits declare "
                f"{declared} bytes, the file holds {present}; the file is truncated or damaged: copy it "
                "again from the scanner or PACS.")
    if rows * columns > max_voxels:
        raise DicomSeriesError(
            f"{path}: Rows {rows} x Columns {columns} = {rows * columns} voxels in one slice, more than "
            f"the limit of {max_voxels}; if the image is real, raise the limit with "
            f"{limits.MAX_VOXELS_VARIABLE}={rows * columns * 2}.")


def is_dicom_file(path: Path) -> bool:
    """True when `path` carries the DICOM Part 10 preamble magic `DICM` at byte 128.

    Args:
        path: any file.

    Example:
        >>> from pydicom import examples
        >>> is_dicom_file(Path(examples.get_path("mr"))), is_dicom_file(Path(__file__))
        (True, False)
    """
    with open(path, "rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_slice_tags(path: Path, max_voxels: int) -> DicomSlice:
    """Read the geometry, identity and pixel-encoding tags of one DICOM file, and check its pixel data."""
    try:
        ds = pydicom.dcmread(path, defer_size=_DEFER_BYTES)
    except Exception as error:  # pydicom raises many types on a damaged header
        reason = " ".join(str(error).split())[:300]
        raise DicomSeriesError(
            f"{path}: the DICOM header cannot be read ({type(error).__name__}: {reason}); the file is "
            "damaged: remove it or copy it again from the scanner or PACS.") from error
    for required in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns"):
        if ds.get(required) in (None, ""):
            raise DicomSeriesError(
                f"{path}: tag {required} is missing; this file is not a slice of an MR/CT volume "
                "(e.g. a localizer, report or secondary capture): remove it from the series folder.")
    row_direction, column_direction = _directions(
        _numbers(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", path), path)
    spacing = _numbers(ds.PixelSpacing, 2, "PixelSpacing", path)
    if np.any(spacing <= 0):
        raise DicomSeriesError(
            f"{path}: PixelSpacing {spacing.tolist()} is not positive; the file's geometry is damaged: "
            "remove it or re-export the series.")
    _check_pixel_data(ds, path, max_voxels)
    slope = _optional_float(ds.get("RescaleSlope"), 1.0, "RescaleSlope", path)
    if slope == 0:
        raise DicomSeriesError(
            f"{path}: RescaleSlope is 0, which would make every voxel {ds.get('RescaleIntercept') or 0}; "
            "the file's rescale tags are damaged: re-export the series.")
    return DicomSlice(
        path=path,
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        position=_numbers(ds.ImagePositionPatient, 3, "ImagePositionPatient", path),
        row_direction=row_direction,
        column_direction=column_direction,
        pixel_spacing=(float(spacing[0]), float(spacing[1])),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        signed=ds.get("PixelRepresentation") == 1,
        bits_stored=int(ds.get("BitsStored") or ds.BitsAllocated),
        photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip(),
        slope=slope,
        intercept=_optional_float(ds.get("RescaleIntercept"), 0.0, "RescaleIntercept", path),
    )


def _pydicom_pixels(s: DicomSlice) -> np.ndarray:
    """Pixel values of one slice as float32 `(rows, columns)`: stored value x slope + intercept.

    pydicom returns the stored values themselves (signed when PixelRepresentation is 1, bits above
    BitsStored cleared or sign-extended), so the modality values are exact in float64 before the
    cast to float32.
    """
    try:
        stored = pixel_array(str(s.path))
    except Exception as error:  # pydicom's decoders raise many types; the file name must be in the message
        reason = " ".join(str(error).split())[:400]
        raise DicomSeriesError(
            f"{s.path}: pixel data cannot be decoded ({type(error).__name__}: {reason}); compressed "
            "files need pydicom's decoder plugins (pip install pylibjpeg pylibjpeg-libjpeg "
            "pylibjpeg-openjpeg) or an uncompressed re-export.") from error
    if stored.shape != (s.rows, s.columns):
        raise DicomSeriesError(
            f"{s.path}: decoded pixel array has shape {stored.shape}, the header says "
            f"({s.rows}, {s.columns}); only single-frame grayscale slices are supported.")
    return (stored.astype(np.float64) * s.slope + s.intercept).astype(np.float32)


def _dcmtk_bits(low: float, high: float) -> int:
    """Bits DCMTK gives a modality value range [low, high] (its `DicomImageClass::rangeToBits`)."""
    if low < 0:
        if -low > abs(high):
            return max(int(-low) - 1, 0).bit_length() + 1
        return int(abs(high)).bit_length() + 1
    return int(high).bit_length()


def _dcmtk_modality_values(out: np.ndarray, low: float, high: float) -> np.ndarray:
    """The integer modality values DCMTK held before it stretched them onto its output range.

    DCMTK keeps each modality value (stored * slope + intercept) as an integer truncated toward
    zero, k, and without a VOI window outputs trunc((k - origin) * gradient), gradient =
    (2**bits - 1) / (high - low); origin is `low`, truncated when the mapping goes through a lookup
    table (a 16-bit intermediate and more than 3 pixels per table entry). With a gradient of 1 or
    more (always so for integer slope and intercept) each output value holds one k, recovered
    here. A fractional rescale can leave the gradient just below 1 (slope 0.5: 32767 / 32767.5);
    then the two lowest k share the output 0, read back as the lower one.
    """
    gradient = (2 ** _dcmtk_bits(low, high) - 1) / (high - low)
    sixteen_bits = (low >= -32768 and high <= 32767) if low < 0 else high <= 65535
    through_table = sixteen_bits and out.size > 3 * int(high - low + 1)
    origin = math.trunc(low) if through_table else low
    # The small margin keeps an exact integer from rounding up in floating point.
    return np.ceil(origin + out / gradient - 1e-7)


def _tfio_pixels(s: DicomSlice) -> np.ndarray:
    """Pixel values of one slice as float32 `(rows, columns)` decoded by tensorflow-io (DCMTK).

    tensorflow-io returns DCMTK's output data: the modality values (stored * slope + intercept)
    truncated toward zero to integers, then stretched linearly from their possible range onto
    0 .. 2**bits - 1; this undoes the stretch exactly. So the values equal pydicom's wherever the
    modality values are integers (no rescale, or integer slope and intercept) and are pydicom's
    truncated toward zero otherwise (less than 1 apart).
    """
    import tensorflow as tf

    if s.photometric != "MONOCHROME2":
        raise DicomSeriesError(
            f"{s.path}: PhotometricInterpretation {s.photometric}; tensorflow-io reads only MONOCHROME2 "
            "as stored (it inverts MONOCHROME1 for display): use the pydicom reader.")
    tfio = _tensorflow_io()
    try:
        out = tfio.image.decode_dicom_image(
            tf.io.read_file(str(s.path)), dtype=tf.float64, on_error="strict", scale="preserve").numpy()
    except tf.errors.OpError as error:
        reason = " ".join(str(error.message).split())[:400]
        raise DicomSeriesError(f"{s.path}: tensorflow-io cannot decode the pixel data ({reason}).") from error
    if out.shape != (1, s.rows, s.columns, 1):
        raise DicomSeriesError(
            f"{s.path}: decoded pixel array has shape {out.shape}, the header says ({s.rows}, {s.columns}); "
            "only single-frame grayscale slices are supported.")
    stored_low = -(2 ** (s.bits_stored - 1)) if s.signed else 0
    stored_high = 2 ** (s.bits_stored - 1) - 1 if s.signed else 2**s.bits_stored - 1
    low, high = sorted((stored_low * s.slope + s.intercept, stored_high * s.slope + s.intercept))
    return _dcmtk_modality_values(out[0, :, :, 0], low, high).astype(np.float32)


_DECODERS = {"pydicom": _pydicom_pixels, "tfio": _tfio_pixels}


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


def _one_series(folder: Path, max_voxels: int) -> list[DicomSlice]:
    """The tags of every DICOM file in `folder`, which must hold exactly one series."""
    if not folder.is_dir():
        raise DicomSeriesError(f"{folder}: not a folder; pass the folder that holds one DICOM series.")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.name.upper() != "DICOMDIR"
                   and is_dicom_file(p))
    if not files:
        raise DicomSeriesError(
            f"{folder}: no DICOM files (Part 10, 'DICM' at byte 128) found; pass a series folder "
            "or a NIfTI file.")
    slices = [_read_slice_tags(p, max_voxels) for p in files]
    series = Counter(s.series_uid for s in slices)
    if len(series) > 1:
        listing = "; ".join(
            f"{uid or '<empty>'}: {n} files, e.g. {next(s.path.name for s in slices if s.series_uid == uid)}"
            for uid, n in series.most_common())
        raise DicomSeriesError(
            f"{folder}: holds {len(series)} series (SeriesInstanceUID {listing}); "
            "move each series into its own folder and pass the one you mean.")
    return slices


def read_dicom_series(folder: str | Path, *, reader: str = "pydicom",
                      max_voxels: int | None = None) -> tuple[sitk.Image, dict]:
    """Assemble the single DICOM series in `folder` into a 3-D float32 image in world (LPS) space.

    Args:
        folder: a folder holding the files of exactly one series (non-DICOM files, hidden files
            and DICOMDIR are ignored).
        reader: the pixel decoder: "pydicom" (exact stored values, any TensorFlow or none) or
            "tfio" (tensorflow-io's DCMTK decoder, only where tensorflow-io loads: TensorFlow 2.16).
            Tags are always read with pydicom.
        max_voxels: the largest slice and the largest volume accepted, in voxels; None reads the
            environment variable `TFBRATS_MAX_VOXELS`, else 2**28 (`tfbrats.limits`).

    Returns:
        `(image, info)`: the SimpleITK image (index order x = columns, y = rows, z = slices along the
        normal) and a JSON-ready dict with the series UID, file count, slice spacing, file order,
        rescale and the reader with its version.

    Raises:
        DicomSeriesError: no DICOM files, several SeriesInstanceUIDs, missing or duplicate slices,
            inconsistent spacing or orientation, a damaged orientation or a RescaleSlope of 0, pixel
            data shorter than its header declares, or more voxels than `max_voxels`; the message
            names the files and values.
        DicomReaderUnavailable: `reader` is "tfio" and tensorflow-io does not import or load.
        ValueError: an unknown `reader`, or `TFBRATS_MAX_VOXELS` that is not a positive integer.

    Example:
        A folder of a whole series gives ``(image, info)`` (``image.GetSpacing()`` in mm,
        ``info["series_uid"]``); one slice alone is refused:

        >>> import shutil, tempfile
        >>> from pydicom import examples
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = shutil.copy(examples.get_path("mr"), f"{tmp.name}/IM0001")
        >>> read_dicom_series(tmp.name)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tfbrats.clinical.dicom.DicomSeriesError: ...: the series has 1 slice (IM0001); a volume needs at least 2: ...
        >>> tmp.cleanup()
    """
    folder = Path(folder)
    reader_version = dicom_reader_version(reader)
    max_voxels = limits.max_voxels() if max_voxels is None else max_voxels
    ordered, slice_spacing = _sorted_slices(_one_series(folder, max_voxels), folder)
    first = ordered[0]
    voxels = first.rows * first.columns * len(ordered)
    if voxels > max_voxels:
        raise DicomSeriesError(
            f"{folder}: {len(ordered)} slices of {first.rows} x {first.columns} = {voxels} voxels, more "
            f"than the limit of {max_voxels}; if the series is real, raise the limit with "
            f"{limits.MAX_VOXELS_VARIABLE}={voxels * 2}.")
    decode = _DECODERS[reader]
    volume = np.stack([decode(s) for s in ordered])  # (z, y, x)
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
        "reader": reader_version,
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
