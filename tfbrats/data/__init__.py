"""Brain tumor data: finding cases, reading and preprocessing them, a cache, patches, augmentation, tf.data.

Layouts: BraTS 2018-2023+, a CSV manifest, the Decathlon's Task01_BrainTumour and nnU-Net raw.
Axes: nibabel arrays are ``(x, y, z)``; tfbrats arrays are ``(D, H, W)`` = ``(z, y, x)`` and
images ``(D, H, W, C)`` with channels FLAIR, T1c, T2 (and T1). Labels inside tfbrats are the
classes 0..3 (ET = 3); `Case.labels` (a `LabelMap`) holds the dataset's own values of each class.

`make_dataset` is imported lazily (on first use) so that `tfbrats.data` and the tools built on
it (``tfbrats-prepare``, ``tfbrats-synthetic``) do not load TensorFlow; `AugmentConfig` and
`augment_patch` too, so that prediction, which never augments, does not load SciPy's image
filters at start-up.

Example:
    >>> import tempfile
    >>> from tfbrats import data
    >>> from tfbrats.data.synthetic import write_synthetic_dataset
    >>> tmp = tempfile.TemporaryDirectory()
    >>> _ = write_synthetic_dataset(tmp.name, cases=5, shape=(48, 48, 32))
    >>> index = data.find_cases(tmp.name)
    >>> train, val = data.split_cases(index.cases, fold=0, num_folds=5)
    >>> len(train), len(val)
    (4, 1)
    >>> images, labels = next(iter(data.make_dataset(train, (8, 32, 32), 2)))
    >>> tuple(images.shape), tuple(labels.shape)
    ((2, 8, 32, 32, 3), (2, 8, 32, 32))
    >>> tmp.cleanup()
"""

from typing import Any

from tfbrats.conventions import channels_for
from tfbrats.data.cache import list_cached_cases, load_cache, load_cached_case, prepare_cache
from tfbrats.data.cases import DatasetIndex, find_cases, split_cases
from tfbrats.data.checks import check_case, check_case_values, check_cases
from tfbrats.data.modalities import MISSING_FILL, ModalityDropout
from tfbrats.data.nifti import CaseError, dhw_to_xyz, write_labels_nifti, xyz_to_dhw
from tfbrats.data.preprocess import (
    CaseMeta,
    PreprocessedCase,
    crop,
    labels_to_dataset,
    labels_to_internal,
    load_case,
    nonzero_box,
    uncrop,
    zscore_nonzero,
)
from tfbrats.data.records import (
    BRATS2020_LABELS,
    BRATS2023_LABELS,
    BRATS2024_LABELS,
    DECATHLON_LABELS,
    Case,
    LabelMap,
    dataset_label_set,
)
from tfbrats.data.sampling import pad_to_patch, patch_corner, sample_patch

__all__ = [
    "BRATS2020_LABELS",
    "BRATS2023_LABELS",
    "BRATS2024_LABELS",
    "DECATHLON_LABELS",
    "MISSING_FILL",
    "AugmentConfig",
    "Case",
    "CaseError",
    "CaseMeta",
    "DatasetIndex",
    "LabelMap",
    "dataset_label_set",
    "ModalityDropout",
    "PreprocessedCase",
    "augment_patch",
    "channels_for",
    "check_case",
    "check_case_values",
    "check_cases",
    "crop",
    "dhw_to_xyz",
    "find_cases",
    "labels_to_dataset",
    "labels_to_internal",
    "list_cached_cases",
    "load_cache",
    "load_cached_case",
    "load_case",
    "make_dataset",
    "nonzero_box",
    "pad_to_patch",
    "patch_corner",
    "prepare_cache",
    "sample_patch",
    "split_cases",
    "uncrop",
    "write_labels_nifti",
    "write_synthetic_dataset",
    "xyz_to_dhw",
    "zscore_nonzero",
]


def __getattr__(name: str) -> Any:
    """Loads `make_dataset` (and TensorFlow), augmentation and `write_synthetic_dataset` on first access.

    The synthetic generator is also the `python -m tfbrats.data.synthetic` entry, which must not be
    imported by its own package before it runs.
    """
    if name == "make_dataset":
        from tfbrats.data.pipeline import make_dataset

        return make_dataset
    if name in ("AugmentConfig", "augment_patch"):
        from tfbrats.data import augment

        return getattr(augment, name)
    if name == "write_synthetic_dataset":
        from tfbrats.data.synthetic import write_synthetic_dataset

        return write_synthetic_dataset
    raise AttributeError(f"module 'tfbrats.data' has no attribute {name!r}")
