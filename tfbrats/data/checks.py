"""Checking the voxel values of many cases at once, before any long work starts.

`check_case` reads headers only. `check_case_values` also reads what can hold a bad value: every
segmentation (labels must be {0, 1, 2, ET}) and every image stored as floating point (voxels
must be finite). An image stored as integers with a finite scaling cannot hold NaN or infinity,
so its voxels are not read. `check_cases` runs this for a list of cases on a thread pool (nibabel's
gzip decompression releases the GIL) and reports every bad case in one error.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import nibabel as nib
import numpy as np

from tfbrats.data.io import CaseError, check_case, check_labels, read_voxels
from tfbrats.data.records import Case


def _integer_and_finite_scaling(image: nib.Nifti1Image) -> bool:
    """True when a NIfTI image's stored values are integers scaled by finite numbers (no NaN possible)."""
    if not np.issubdtype(image.get_data_dtype(), np.integer):
        return False
    slope, intercept = image.header.get_slope_inter()
    return all(value is None or np.isfinite(value) for value in (slope, intercept))


def check_case_values(case: Case, input_channels: int = 3) -> list[str]:
    """Checks one case's headers and the values that can be wrong: finite intensities, known labels.

    Args:
        case: The case (from `find_cases`).
        input_channels: 3 or 4, as in `check_case`; every modality of these must be present.

    Returns:
        The keys (``seg``, ``flair``, ...) of the files whose voxels were read: the segmentation
        and any image stored as floating point.

    Raises:
        CaseError: A header problem (see `check_case`), a NaN or infinite voxel in an image, or a
            label outside {0, 1, 2, ET} in the segmentation; the message names case and file.

    Example:
        >>> check_case_values(find_cases("data").cases[-1])  # doctest: +SKIP
        ['seg']
    """
    images = check_case(case, input_channels)
    paths = dict(case.images, **({"seg": case.seg} if case.seg is not None else {}))
    read = []
    for key, image in images.items():
        if key == "seg":
            check_labels(case.case_id, paths[key], read_voxels(case.case_id, paths[key], image, key), case.et_label)
        elif _integer_and_finite_scaling(image):
            continue
        else:
            read_voxels(case.case_id, paths[key], image, key)
        read.append(key)
    return read


def check_cases(cases: Sequence[Case], input_channels: int = 3, workers: int | None = None) -> None:
    """Checks every case with `check_case_values` in parallel and reports all bad cases together.

    Run it before loading cases for training, so that a NaN voxel or an unknown label in the last
    case fails at once instead of after every other case was loaded.

    Args:
        cases: The cases to check.
        input_channels: 3 or 4, as in `check_case`.
        workers: Threads reading files (default: the number of CPUs, at most 8).

    Raises:
        CaseError: One or more cases are bad; the message has one line per bad case, in the
            order of `cases`, each naming the case, the file and what was expected.

    Example:
        >>> check_cases(find_cases("data/MICCAI_BraTS2020_TrainingData").cases)  # doctest: +SKIP
    """
    workers = workers or min(8, os.cpu_count() or 1)

    def problem(case: Case) -> str | None:
        try:
            check_case_values(case, input_channels)
        except CaseError as error:
            return str(error)
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = [message for message in pool.map(problem, cases) if message is not None]
    if problems:
        raise CaseError(f"{len(problems)} of {len(cases)} case(s) cannot be used:\n" + "\n".join(problems))
