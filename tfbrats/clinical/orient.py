"""Reorient volumes to the BraTS storage orientation: axial slices along the third index axis.

BraTS NIfTI files have the nibabel axis codes ('L', 'P', 'S'): the first index runs to the patient's
left, the second to posterior, the third to superior. In SimpleITK's LPS world that is the identity
direction matrix, which DICOM calls 'LPS'.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from tfbrats.conventions import STORAGE_ORIENTATION


def orientation_code(image: sitk.Image) -> str:
    """The three-letter DICOM orientation of an image's index axes (closest anatomical axes).

    Args:
        image: a 3-D SimpleITK image.

    Example:
        >>> orientation_code(sitk.Image(2, 2, 2, sitk.sitkUInt8))
        'LPS'
    """
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def obliquity_degrees(image: sitk.Image) -> float:
    """Largest angle between an index axis and the anatomical axis closest to it, in degrees.

    Args:
        image: a 3-D SimpleITK image.

    Example:
        >>> obliquity_degrees(sitk.Image(2, 2, 2, sitk.sitkUInt8))
        0.0
    """
    direction = np.array(image.GetDirection()).reshape(3, 3)
    cosines = np.clip(np.abs(direction).max(axis=0), 0.0, 1.0)
    return float(np.degrees(np.arccos(cosines)).max())


def to_brats_orientation(image: sitk.Image) -> sitk.Image:
    """Permute and flip the index axes (no interpolation) so the image is stored as BraTS stores it.

    Every voxel keeps its value and its world position; only the order in which voxels are stored
    changes. An oblique image stays oblique (its axes become the closest to L, P, S); the resampling
    onto the axis-aligned output grid removes the rest.

    Args:
        image: a 3-D SimpleITK image in any orientation (e.g. LAS, RAS, sagittal or coronal slices).

    Returns:
        The reoriented image; `orientation_code(result) == "LPS"`.

    Example:
        >>> flipped = sitk.Image(4, 5, 6, sitk.sitkFloat32)
        >>> flipped.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
        >>> to_brats_orientation(flipped).GetDirection()
        (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    """
    return sitk.DICOMOrient(image, STORAGE_ORIENTATION)
