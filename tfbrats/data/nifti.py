"""Reading and writing NIfTI files, with errors that name the case and file.

Axes: nibabel returns arrays indexed ``(x, y, z)``; tfbrats works in ``(D, H, W)`` =
``(z, y, x)``, i.e. ``np.transpose(a, (2, 1, 0))`` (`xyz_to_dhw`), so D is the axial slice axis.

No header is believed: every case file (`load_header`) and every label map evaluation reads
(`open_image`) goes through `check_declared_size` before any voxel is read, so the size a header
declares must fit the bytes the file holds and a limit on voxels per image (`max_voxels`, raised
with the environment variable ``TFBRATS_MAX_VOXELS``).

`write_labels_nifti` writes a prediction back in the input's own geometry: the voxel order,
affine and header that `tfbrats.data.preprocess.load_case` recorded in the case's `CaseMeta`.
"""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np

from tfbrats.data.orientation import undo_reorient
from tfbrats.files import atomic_path
from tfbrats.limits import MAX_VOXELS_VARIABLE, max_voxels

if TYPE_CHECKING:  # preprocess reads through this module; the writer only needs CaseMeta's fields
    from tfbrats.data.preprocess import CaseMeta

# Deflate emits at least 2 bits (a length and a distance code of 1 bit each) per 258 bytes it
# repeats, so no gzip stream inflates more than 1032-fold (all zeros at level 9: 1028.6-fold).
GZIP_MAX_RATIO = 1032
# nibabel opens these by name with gzip (".mgz" is FreeSurfer's gzipped MGH) or another codec.
GZIP_SUFFIXES = (".gz", ".mgz")
OTHER_COMPRESSED_SUFFIXES = (".bz2", ".zst")


class CaseError(ValueError):
    """A case cannot be used; the message names the case, the file and what was expected."""


def check_declared_size(image: nib.spatialimages.SpatialImage, described: str) -> None:
    """Checks, from the header alone, that an opened image's voxels can be read: before any is allocated.

    Two checks, in this order:

    - the file can hold what the header declares: an uncompressed file needs the data offset
      plus voxels x bytes per voxel; a gzip file (``.gz``) needs at least 1/1032 of that, as
      deflate never inflates more than 1032-fold (gzip's own size field holds the size modulo
      4 GiB, so it cannot say more). A file compressed otherwise (``.bz2``, ``.zst``) is
      bounded by the next check alone;
    - the image declares at most `max_voxels` voxels (the product of its whole shape).

    A gzip file that passes yet lacks data fails when read, with memory bounded by the limit.

    Args:
        image: An image opened by nibabel (voxels not yet read).
        described: The file as errors name it (e.g. "case c1: flair file c1/c1_flair.nii.gz").

    Raises:
        CaseError: One line naming the file, the declared shape and dtype, and what was found.

    Example:
        >>> image = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4))
        >>> check_declared_size(image, "in memory")  # nothing on disk to compare: the limit alone
    """
    proxy = image.dataobj
    shape = tuple(int(n) for n in proxy.shape)
    voxels = math.prod(shape)
    dtype = np.dtype(getattr(proxy, "dtype", image.get_data_dtype()))
    declared = f"{described} declares shape {shape} {dtype} ({voxels} voxels)"
    data_file = getattr(proxy, "file_like", None)
    if isinstance(data_file, (str, os.PathLike)) and os.path.isfile(data_file):
        size = os.path.getsize(data_file)
        needed = int(getattr(proxy, "offset", 0)) + voxels * dtype.itemsize
        name = str(data_file).lower()
        if name.endswith(GZIP_SUFFIXES) and needed > size * GZIP_MAX_RATIO:
            raise CaseError(f"{declared}, {needed} bytes uncompressed, but the file holds {size} gzip bytes, which "
                            f"inflate to at most {size * GZIP_MAX_RATIO}; the file is truncated or its header is "
                            "wrong: copy it again from the original dataset")
        if not name.endswith(GZIP_SUFFIXES + OTHER_COMPRESSED_SUFFIXES) and needed > size:
            raise CaseError(f"{declared}, {needed} bytes with its header, but the file holds {size} bytes; the file "
                            "is truncated or its header is wrong: copy it again from the original dataset")
    limit = max_voxels()
    if voxels > limit:
        raise CaseError(f"{declared}, more than the limit of {limit} voxels per image; if the image is real, "
                        f"raise the limit: {MAX_VOXELS_VARIABLE}={voxels}")


def open_image(path: Path, described: str | None = None) -> nib.spatialimages.SpatialImage:
    """Opens a NIfTI file with nibabel (header only) and checks its declared size (`check_declared_size`).

    Args:
        path: The file.
        described: The file as errors name it; default: its path.

    Raises:
        CaseError: The header declares more than the file holds or than `max_voxels`.
        nibabel.filebasedimages.ImageFileError, OSError, EOFError, zlib.error, ValueError: nibabel
            cannot read the header.

    Example:
        >>> import tempfile
        >>> import nibabel
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = Path(tmp.name) / "c1_flair.nii.gz"
        >>> nibabel.save(nibabel.Nifti1Image(np.ones((6, 5, 4), np.float32), np.eye(4)), path)
        >>> open_image(path).shape
        (6, 5, 4)
        >>> tmp.cleanup()
    """
    image = nib.load(path)
    check_declared_size(image, described or str(path))
    return image


def xyz_to_dhw(array: np.ndarray) -> np.ndarray:
    """Reorders a nibabel ``(x, y, z, ...)`` array to tfbrats' ``(D, H, W, ...)``.

    Example:
        >>> xyz_to_dhw(np.zeros((240, 240, 155))).shape
        (155, 240, 240)
    """
    return np.swapaxes(array, 0, 2)


def dhw_to_xyz(array: np.ndarray) -> np.ndarray:
    """Reorders a tfbrats ``(D, H, W, ...)`` array back to nibabel's ``(x, y, z, ...)``.

    Example:
        >>> dhw_to_xyz(np.zeros((155, 240, 240))).shape
        (240, 240, 155)
    """
    return np.swapaxes(array, 0, 2)


def load_header(case_id: str, path: Path, what: str, volume: int | None = None) -> nib.Nifti1Image:
    """Opens a NIfTI file (header only; the voxels are read later by `read_voxels`).

    Args:
        case_id: The case, for error messages.
        path: The file.
        what: What the file is (``flair``, ``seg``, ...), for error messages.
        volume: For a modality stored in a 4-D file (the Decathlon), its index along the 4th
            axis; None for a 3-D file.

    Raises:
        CaseError: The file is missing, is not a readable NIfTI image, declares more voxels than
            it holds or than `max_voxels` allows, or has the wrong number of dimensions (or too
            few volumes).

    Example:
        >>> import tempfile
        >>> import nibabel
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = Path(tmp.name) / "c1_flair.nii.gz"
        >>> nibabel.save(nibabel.Nifti1Image(np.ones((6, 5, 4), np.float32), np.eye(4)), path)
        >>> load_header("c1", path, "flair").shape
        (6, 5, 4)
        >>> load_header("c1", path, "flair", volume=0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tfbrats.data.nifti.CaseError: case c1: flair file .../c1_flair.nii.gz has shape (6, 5, 4); expected ...
        >>> tmp.cleanup()
    """
    if not path.is_file():
        raise CaseError(f"case {case_id}: {what} file {path} does not exist; restore it or drop the case")
    try:
        image = nib.load(path)
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, zlib.error, ValueError) as error:
        raise CaseError(
            f"case {case_id}: cannot read {what} file {path} as NIfTI ({type(error).__name__}: {error}); "
            "the file is corrupt or truncated: copy it again from the original dataset"
        ) from error
    check_declared_size(image, f"case {case_id}: {what} file {path}")
    if volume is None and len(image.shape) != 3:
        raise CaseError(f"case {case_id}: {what} file {path} has shape {image.shape}; expected a 3-D volume (x, y, z)")
    if volume is not None and (len(image.shape) != 4 or not 0 <= volume < image.shape[3]):
        raise CaseError(
            f"case {case_id}: {what} file {path} has shape {image.shape}; expected a 4-D image (x, y, z, "
            f"channel) with at least {volume + 1} channels, {what} being channel {volume}"
        )
    return image


def read_voxels(
    case_id: str, path: Path, image: nib.Nifti1Image, what: str, volume: int | None = None
) -> np.ndarray:
    """Reads the voxels of an opened NIfTI image as float32, checking they are finite.

    Args:
        case_id: The case, for error messages.
        path: The file the image came from.
        image: The image returned by `load_header`.
        what: What the file is, for error messages.
        volume: The channel to read from a 4-D image (see `load_header`); None for a 3-D one.

    Raises:
        CaseError: The data are truncated/corrupt or hold NaN or infinite values.

    Example:
        >>> import tempfile
        >>> import nibabel
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = Path(tmp.name) / "c1_flair.nii.gz"
        >>> nibabel.save(nibabel.Nifti1Image(np.ones((6, 5, 4), np.float32), np.eye(4)), path)
        >>> voxels = read_voxels("c1", path, load_header("c1", path, "flair"), "flair")
        >>> voxels.shape, voxels.dtype.name, float(voxels.sum())
        ((6, 5, 4), 'float32', 120.0)
        >>> tmp.cleanup()
    """
    try:
        with np.errstate(over="ignore"):  # scaling past float32 gives infinities, counted below
            data = np.asarray(image.dataobj if volume is None else image.dataobj[..., volume], dtype=np.float32)
    except (OSError, EOFError, zlib.error, ValueError) as error:
        raise CaseError(
            f"case {case_id}: the voxels of {what} file {path} cannot be read ({type(error).__name__}: "
            f"{error}); the file is corrupt or truncated: copy it again from the original dataset"
        ) from error
    if not np.all(np.isfinite(data)):
        count = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise CaseError(
            f"case {case_id}: {what} file {path} holds {count} NaN or infinite voxels; "
            "expected finite intensities: fix or drop the case"
        )
    return data


def write_labels_nifti(labels: np.ndarray, meta: CaseMeta, path: str | Path) -> Path:
    """Writes internal labels ``(D, H, W)`` in the original grid as a NIfTI file, atomically.

    The file gets the input's voxel order (the reorientation of `load_case` undone), affine and
    (3-D) header, uint8 data and the dataset's own label values; it is written atomically
    (`tfbrats.files.atomic_path`), so readers never see a half-written file.

    Args:
        labels: Internal classes 0..3 on the original ``(D, H, W)`` grid (see `uncrop`).
        meta: The case's metadata.
        path: The output file (``.nii.gz`` or ``.nii``).

    Example:
        >>> import tempfile
        >>> from tfbrats.data import find_cases, load_case, uncrop
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(tmp.name, cases=1, shape=(48, 48, 32))
        >>> case = load_case(find_cases(tmp.name).cases[0])
        >>> path = write_labels_nifti(uncrop(case.label, case.meta), case.meta, f"{tmp.name}/out/case.nii.gz")
        >>> import nibabel
        >>> image = nibabel.load(path)
        >>> image.shape, np.unique(image.get_fdata()).astype(int).tolist()  # (x, y, z), BraTS 2020's values
        ((48, 48, 32), [0, 1, 2, 4])
        >>> tmp.cleanup()
    """
    if tuple(labels.shape) != tuple(meta.original_shape):
        raise ValueError(
            f"case {meta.case_id}: labels of shape {labels.shape} do not match the original grid "
            f"{meta.original_shape}; uncrop them first"
        )
    data = undo_reorient(dhw_to_xyz(meta.labels.to_dataset(labels)), meta.orientation)
    header = meta.header.copy()
    header.set_data_dtype(np.uint8)
    image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    image = image_class(np.ascontiguousarray(data), meta.affine, header)
    image.header.set_slope_inter(1, 0)
    with atomic_path(path) as temporary:
        image.to_filename(temporary)
    return Path(path)
