"""Voxel orientation: every case is read in BraTS' orientation and written back in its own.

AlbuNet's (1, 3, 3) kernels assume that the third voxel axis runs through axial slices, as BraTS
stores its volumes (axis codes L, P, S: x towards the patient's left, y towards posterior, z
towards superior). A volume stored otherwise (a sagittal or coronal acquisition, permuted or
flipped axes) would be convolved over the wrong planes. `load_case` therefore brings each case
to `STORAGE_AXCODES` by an exact permutation and flip of its voxel axes (no interpolation:
nibabel's closest-axis orientation, so an oblique scan is taken to its nearest axes), and
`write_labels_nifti` undoes the same permutation, so a prediction lands in the input's own voxel
order with its own affine and header.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel import orientations

from tfbrats.conventions import STORAGE_AXCODES


def axcodes(affine: np.ndarray) -> str:
    """The closest anatomical axis codes of an affine, e.g. "LPS" for BraTS.

    Example:
        >>> axcodes(np.diag([-1.0, -1.0, 1.0, 1.0]))
        'LPS'
    """
    return "".join(nib.aff2axcodes(affine))


def to_training_transform(affine: np.ndarray) -> np.ndarray:
    """The (3, 2) nibabel orientation transform from an affine's voxel axes to `STORAGE_AXCODES`.

    Example:
        >>> to_training_transform(np.diag([-1.0, -1.0, 1.0, 1.0])).tolist()  # BraTS: nothing to do
        [[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]
    """
    return orientations.ornt_transform(orientations.io_orientation(affine),
                                       orientations.axcodes2ornt(STORAGE_AXCODES))


def is_identity(transform: np.ndarray) -> bool:
    """True when a transform keeps every axis in place and unflipped."""
    return bool(np.array_equal(np.asarray(transform), [[0, 1], [1, 1], [2, 1]]))


def reorient(volume_xyz: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Applies an orientation transform to the first three axes of a voxel array (x, y, z, ...).

    Example:
        >>> reorient(np.arange(6).reshape(1, 2, 3), [[2, 1], [1, -1], [0, 1]]).shape
        (3, 2, 1)
    """
    return np.ascontiguousarray(orientations.apply_orientation(volume_xyz, np.asarray(transform)))


def undo_reorient(volume: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """The inverse of `reorient`: back to the input's voxel order.

    Example:
        >>> a = np.random.default_rng(0).random((2, 3, 4))
        >>> t = [[1, -1], [2, 1], [0, -1]]
        >>> bool(np.array_equal(undo_reorient(reorient(a, t), t), a))
        True
    """
    transform = np.asarray(transform, dtype=float)
    inverse = np.empty_like(transform)
    # Row i of a transform says where input axis i went (and whether it was flipped): send it back.
    for axis, (went_to, flip) in enumerate(transform):
        inverse[int(went_to)] = (axis, flip)
    return np.ascontiguousarray(orientations.apply_orientation(volume, inverse))


def reoriented_zooms(zooms: tuple[float, float, float], transform: np.ndarray) -> tuple[float, float, float]:
    """Voxel sizes (x, y, z) in the reoriented axis order.

    Example:
        >>> reoriented_zooms((1.0, 2.0, 3.0), [[2, 1], [0, 1], [1, 1]])
        (2.0, 3.0, 1.0)
    """
    result = [0.0, 0.0, 0.0]
    for axis, (went_to, _) in enumerate(np.asarray(transform)):
        result[int(went_to)] = float(zooms[axis])
    return tuple(result)
