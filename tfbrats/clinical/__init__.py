"""Clinical data preparation: DICOM or NIfTI studies to BraTS 2020 cases (`python -m tfbrats.clinical`).

DICOM series are read with pydicom; tensorflow-io (optional, TensorFlow 2.16 only) is imported only
when it is asked for as the pixel decoder, and deepbet (torch) only when a brain mask is computed, so
importing this package loads neither TensorFlow nor torch.
"""

from tfbrats.clinical.brainmask import BrainMaskUnavailable, choose_input, extract_brain_mask
from tfbrats.clinical.dicom import (
    DicomReaderUnavailable,
    DicomSeriesError,
    dicom_reader_version,
    image_affine,
    read_dicom_series,
)
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
    "BrainMaskUnavailable",
    "DicomReaderUnavailable",
    "DicomSeriesError",
    "RegistrationResult",
    "RegistrationSettings",
    "apply_mask",
    "brats_grid",
    "choose_input",
    "choose_reference",
    "dicom_reader_version",
    "extract_brain_mask",
    "image_affine",
    "orientation_code",
    "prepare_case",
    "read_dicom_series",
    "read_scan",
    "register_rigid",
    "resample_to_grid",
    "to_brats_orientation",
]
