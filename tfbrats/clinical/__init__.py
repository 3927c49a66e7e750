"""Clinical data preparation: DICOM or NIfTI studies to BraTS 2020 cases (`python -m tfbrats.clinical`).

tensorflow-io is imported only when a DICOM series is read, so importing this package is light.
"""

from tfbrats.clinical.dicom import DicomSeriesError, image_affine, read_dicom_series
from tfbrats.clinical.orient import orientation_code, to_brats_orientation
from tfbrats.clinical.pipeline import choose_reference, prepare_case, read_scan
from tfbrats.clinical.register import (
    RegistrationResult,
    RegistrationSettings,
    apply_mask,
    brats_grid,
    register_rigid,
    resample_to_grid,
)

__all__ = [
    "DicomSeriesError",
    "RegistrationResult",
    "RegistrationSettings",
    "apply_mask",
    "brats_grid",
    "choose_reference",
    "image_affine",
    "orientation_code",
    "prepare_case",
    "read_dicom_series",
    "read_scan",
    "register_rigid",
    "resample_to_grid",
    "to_brats_orientation",
]
