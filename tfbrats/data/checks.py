"""Checking cases before any long work starts: their headers, labels and voxel values.

`check_case` reads headers only (files present, one grid, one affine). `check_case_values` also
reads what can hold a bad value: every segmentation (labels must be {0, 1, 2, ET}) and every image
that can hold a non-finite value (voxels must be finite). An image stored as integers whose scaling
(``scl_slope``, ``scl_inter``) keeps every storable value within float32 cannot hold NaN or
infinity, so its voxels are not read; one whose scaling could overflow float32 (tfbrats reads voxels
as float32) is read. `check_cases` runs this for a list of cases on a thread pool (nibabel's gzip
decompression releases the GIL) and reports every bad case in one error.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np

from tfbrats.conventions import channels_for
from tfbrats.data.nifti import CaseError, load_header, read_voxels
from tfbrats.data.records import Case, LabelMap, label_map

AFFINE_TOLERANCE = 1e-3

# Half float32's largest value: a scaled value below it stays finite through float32 rounding.
_FLOAT32_SAFE = float(np.finfo(np.float32).max) / 2


def check_case(case: Case, input_channels: int = 3, allow_missing: bool = False) -> dict[str, nib.Nifti1Image]:
    """Checks a case's files from their headers: present, 3-D, same shape and affine.

    Cheap (only headers are read), so run it on every case before any long work.

    Args:
        case: The case.
        input_channels: 3 or 4; T1 is required only for 4.
        allow_missing: Accept a case that lacks some of the modalities (at least one must be
            there), as prediction does; training needs them all.

    Returns:
        The opened images keyed by ``flair``, ``t1ce``, ``t2`` (``t1``) and ``seg`` if present;
        a missing modality has no entry.

    Raises:
        CaseError: A required modality is missing, or shapes/affines disagree.

    Example:
        >>> import tempfile
        >>> from tfbrats.data import find_cases
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(tmp.name, cases=1, shape=(48, 48, 32))
        >>> images = check_case(find_cases(tmp.name).cases[0])
        >>> sorted(images), images["flair"].shape
        (['flair', 'seg', 't1ce', 't2'], (48, 48, 32))
        >>> tmp.cleanup()
    """
    channels = channels_for(input_channels)
    missing = [key for key in channels if key not in case.images]
    if missing and (not allow_missing or len(missing) == len(channels)):
        raise CaseError(
            f"case {case.case_id}: no file for modality {missing} (found {sorted(case.images)}); "
            f"input_channels={input_channels} needs "
            + (f"at least one of {list(channels)}" if allow_missing else f"{list(channels)}")
        )
    present = [key for key in channels if key in case.images]
    paths: dict[str, Path] = {key: case.images[key] for key in present}
    if case.seg is not None:
        paths["seg"] = case.seg
    images = {key: load_header(case.case_id, path, key, case.volumes.get(key)) for key, path in paths.items()}
    reference_key = present[0]
    reference = images[reference_key]
    for key, image in images.items():
        if image.shape[:3] != reference.shape[:3]:
            raise CaseError(
                f"case {case.case_id}: {key} file {paths[key]} has shape {image.shape[:3]} but "
                f"{reference_key} has {reference.shape[:3]}; all files of a case must share one grid"
            )
        difference = float(np.max(np.abs(image.affine - reference.affine)))
        if difference > AFFINE_TOLERANCE:
            raise CaseError(
                f"case {case.case_id}: {key} file {paths[key]} has an affine that differs from "
                f"{reference_key}'s by {difference:.4g} (> {AFFINE_TOLERANCE}); co-register the "
                "modalities to one grid first"
            )
    return images


def check_labels(case_id: str, path: Path, seg: np.ndarray, labels: LabelMap | int) -> None:
    """Checks that a segmentation holds only the dataset's label values.

    Args:
        case_id: The case, for error messages.
        path: The segmentation file, for error messages.
        seg: The segmentation voxels.
        labels: The dataset's `LabelMap`, or BraTS' ET value (4 or 3).

    Raises:
        CaseError: A value outside the dataset's values (``{0, 1, 2, 4}`` for BraTS 2020).

    Example:
        >>> check_labels("c1", Path("seg.nii.gz"), np.array([0, 1, 2, 4]), 4)
    """
    labels = label_map(labels)
    allowed: Sequence[int] = labels.values
    values = np.unique(seg)
    unexpected = [int(v) if v == round(v) else float(v) for v in values if v not in allowed]
    if unexpected:
        cavity = f", resection cavity {labels.cavity}" if labels.cavity is not None else ""
        hint = ("; a 4 in BraTS 2023+ names is BraTS 2024/2025's resection cavity, which tfbrats reads when the "
                "dataset holds post-treatment case ids (-100, ...) or a manifest gives cavity_label 4"
                if labels.cavity is None and labels.enhancing == 3 and 4 in unexpected else "")
        raise CaseError(
            f"case {case_id}: seg file {path} holds label values {unexpected}; expected only "
            f"{list(allowed)} (necrosis {labels.necrosis}, edema {labels.edema}, enhancing tumor "
            f"{labels.enhancing}{cavity}); check the case's label values or the file{hint}"
        )


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
