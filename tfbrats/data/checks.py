"""Checking the voxel values of many cases at once, before any long work starts.

`check_case` reads headers only. `check_case_values` also reads what can hold a bad value: every
segmentation (labels must be {0, 1, 2, ET}) and every image that can hold a non-finite value
(voxels must be finite). An image stored as integers whose scaling (``scl_slope``, ``scl_inter``)
keeps every storable value within float32 cannot hold NaN or infinity, so its voxels are not read;
one whose scaling could overflow float32 (tfbrats reads voxels as float32) is read. `check_cases`
runs this for a list of cases on a thread pool (nibabel's gzip decompression releases the GIL) and
reports every bad case in one error.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import nibabel as nib
import numpy as np

from tfbrats.data.io import CaseError, check_case, check_labels, read_voxels
from tfbrats.data.records import Case

# Half float32's largest value: a scaled value below it stays finite through float32 rounding.
_FLOAT32_SAFE = float(np.finfo(np.float32).max) / 2


def _always_finite(image: nib.Nifti1Image) -> bool:
    """True when every value a NIfTI image can store is finite once scaled and read as float32.

    Integers are; the scaling ``value * scl_slope + scl_inter`` keeps them so when slope and
    intercept are finite and the largest storable magnitude, scaled, stays well within float32.
    nibabel moves the file's scaling from the header to the voxel proxy when it opens a file, so
    the proxy's is the one reading applies.
    """
    dtype = image.get_data_dtype()
    if not np.issubdtype(dtype, np.integer):
        return False
    slope = float(getattr(image.dataobj, "slope", 1.0))
    intercept = float(getattr(image.dataobj, "inter", 0.0))
    info = np.iinfo(dtype)
    largest = abs(slope) * max(abs(float(info.min)), abs(float(info.max))) + abs(intercept)
    return bool(np.isfinite(largest)) and largest < _FLOAT32_SAFE


def check_case_values(case: Case, input_channels: int = 3) -> list[str]:
    """Checks one case's headers and the values that can be wrong: finite intensities, known labels.

    Args:
        case: The case (from `find_cases`).
        input_channels: 3 or 4, as in `check_case`; every modality of these must be present.

    Returns:
        The keys (``seg``, ``flair``, ...) of the files whose voxels were read: the segmentation
        and any image stored as floating point or scaled beyond float32's range.

    Raises:
        CaseError: A header problem (see `check_case`: a declared size the file cannot hold is
            one), a NaN or infinite voxel in an image (a stored integer scaled past float32
            too), or a label outside {0, 1, 2, ET} in the segmentation; the message names case
            and file.

    Example:
        >>> import tempfile
        >>> from tfbrats.data import find_cases
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(tmp.name, cases=1, shape=(48, 48, 32))
        >>> check_case_values(find_cases(tmp.name).cases[0])
        ['seg']
        >>> tmp.cleanup()
    """
    images = check_case(case, input_channels)
    paths = dict(case.images, **({"seg": case.seg} if case.seg is not None else {}))
    read = []
    for key, image in images.items():
        if key == "seg":
            check_labels(case.case_id, paths[key], read_voxels(case.case_id, paths[key], image, key), case.labels)
        elif _always_finite(image):
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
        >>> import tempfile
        >>> from tfbrats.data import find_cases
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(tmp.name, cases=2, shape=(48, 48, 32))
        >>> check_cases(find_cases(tmp.name).cases, workers=1)
        >>> tmp.cleanup()
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
