"""Automatic brain extraction with deepbet (the optional extra `pip install 'tfbrats[brainmask]'`).

deepbet (MIT) ships its two networks inside its wheel (nothing is downloaded at run time) and runs
on the CPU with PyTorch. It was trained on T1-weighted scans, so the mask is computed from the
native T1 when the study has one, otherwise from T1c; it runs on the scan after registration and
resampling, so the one mask is on the case's grid and serves every modality.
"""

from __future__ import annotations

import importlib.metadata
import time
import warnings
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from tfbrats.clinical.dicom import image_affine

EXTRACTOR = "deepbet"
# Modalities the extractor reads best first (deepbet was trained on T1-weighted scans).
INPUT_PREFERENCE = ("t1", "t1ce")
DEFAULT_THRESHOLD = 0.5


class BrainMaskUnavailable(RuntimeError):
    """No brain mask was given and the automatic extractor cannot run (the message says what to do)."""


def how_to_mask(reason: str) -> str:
    """The message for a study that cannot be masked: the reason, then the three ways forward.

    Args:
        reason: what failed, e.g. the import error.

    Example:
        >>> "--no_mask" in how_to_mask("deepbet is not installed")
        True
    """
    return (f"no brain mask: {reason}. The model was trained on skull-stripped brains; give one of: "
            "--mask=BRAIN_MASK (NIfTI or DICOM, in the reference scan's world coordinates); the automatic "
            "extractor, installed with pip install 'tfbrats[brainmask]' (deepbet and torch, CPU is enough); "
            "or --no_mask if the scans are already skull-stripped.")


def extractor_version() -> str:
    """The installed deepbet's version; raises `BrainMaskUnavailable` when it cannot be imported.

    Example:
        >>> extractor_version()  # the `brainmask` extra
        '1.0.2'
    """
    try:
        import deepbet  # noqa: F401 (the import is the check: it loads torch and the networks' code)
    except ImportError as error:
        raise BrainMaskUnavailable(how_to_mask(f"the brain extractor {EXTRACTOR} cannot be imported ({error})")) \
            from error
    return importlib.metadata.version(EXTRACTOR)


def choose_input(present: set[str] | list[str] | tuple[str, ...], requested: str | None = None) -> str:
    """The modality the mask is computed from: `requested`, else T1 when present, else T1c.

    Args:
        present: modalities of the study.
        requested: a modality the user chose, or None.

    Example:
        >>> choose_input({"t1ce", "t2", "flair"}), choose_input({"t1", "t1ce", "t2", "flair"})
        ('t1ce', 't1')
    """
    if requested is not None:
        if requested not in present:
            raise ValueError(f"brain mask input {requested!r} is not among the given scans {sorted(present)}.")
        return requested
    for modality in INPUT_PREFERENCE:
        if modality in present:
            return modality
    raise ValueError(f"none of {list(INPUT_PREFERENCE)} is among the scans {sorted(present)}; "
                     "name the brain mask's input scan.")


def extract_brain_mask(image: sitk.Image, threshold: float = DEFAULT_THRESHOLD,
                       name: str = "scan") -> tuple[sitk.Image, dict[str, Any]]:
    """Compute a brain mask of `image` with deepbet, on the image's own grid.

    Args:
        image: a 3-D head scan (any orientation and spacing), ideally T1-weighted.
        threshold: probability above which a voxel is brain.
        name: what the scan is (for messages), e.g. "t1ce of P001".

    Returns:
        `(mask, record)`: a uint8 image (1 brain, 0 outside) with `image`'s geometry, and a JSON-ready
        record of the tool, its version, the threshold, the mask's size and the time taken.

    Example:
        >>> mask, record = extract_brain_mask(t1ce_on_grid)  # doctest: +SKIP
        >>> record["tool"], record["version"]  # doctest: +SKIP
        ('deepbet', '1.0.2')
    """
    version = extractor_version()
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"brain mask threshold {threshold} must lie strictly between 0 and 1.")
    import torch
    from deepbet import BrainExtraction

    started = time.time()
    voxels = sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkFloat32))  # (z, y, x)
    scan = nib.Nifti1Image(np.ascontiguousarray(voxels.transpose(2, 1, 0)), image_affine(image))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's notice that torch.jit.load is deprecated
        extractor = BrainExtraction(no_gpu=True)
    try:
        _, mask_image, _ = extractor.run(scan, threshold=threshold)
    except (AssertionError, ValueError) as error:
        raise ValueError(f"brain extraction of the {name} failed ({error}); check that it is a head scan, "
                         "or pass --mask.") from error
    inside = np.asarray(mask_image.dataobj).transpose(2, 1, 0) > 0
    if not inside.any():
        raise ValueError(f"brain extraction found no brain in the {name}; check that it is a head scan, "
                         "or pass --mask.")
    mask = sitk.GetImageFromArray(inside.astype(np.uint8))
    mask.CopyInformation(image)
    count = int(np.count_nonzero(inside))
    return mask, {
        "source": "automatic",
        "tool": EXTRACTOR,
        "version": version,
        "torch": torch.__version__,
        "device": "cpu",
        "threshold": threshold,
        "postprocessing": "largest connected component, holes filled (deepbet's own)",
        "voxels_inside": count,
        "volume_ml": round(count * float(np.prod(image.GetSpacing())) / 1000.0, 1),
        "seconds": round(time.time() - started, 2),
    }
