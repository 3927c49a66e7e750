"""Per-case preprocessing (z-score, crop, label mapping) and its inverse for writing predictions.

A case becomes a `PreprocessedCase`: ``image`` ``(D, H, W, C)`` float32 with channels
FLAIR, T1c, T2 (and T1), each z-scored over its nonzero voxels with background kept 0, cropped
to the bounding box of the union of nonzero voxels; ``label`` ``(D, H, W)`` uint8 in the internal
classes 0..3 (ET = 3); and `CaseMeta`, which holds what is needed to write a prediction back in
the original geometry. `tfbrats.data.nifti.write_labels_nifti` is `load_case`'s inverse
(uncropped labels back in the input's voxel order and label values).
"""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from tfbrats.conventions import channels_for
from tfbrats.data.checks import check_case, check_labels
from tfbrats.data.modalities import MISSING_FILL
from tfbrats.data.nifti import CaseError, read_voxels, xyz_to_dhw
from tfbrats.data.orientation import reorient, reoriented_zooms, to_training_transform
from tfbrats.data.records import Case, LabelMap, label_map

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


@dataclasses.dataclass
class CaseMeta:
    """What is needed to undo preprocessing and write a prediction in the input's geometry.

    Args:
        case_id: The case's name.
        box: The crop ``((d0, d1), (h0, h1), (w0, w1))`` in the original ``(D, H, W)`` grid.
        original_shape: The original ``(D, H, W)``.
        affine: The input's 4x4 NIfTI affine.
        header: The input's NIfTI header (of the first present channel's file).
        spacing: Voxel size ``(D, H, W)`` in mm.
        labels: The dataset's label values (`LabelMap`; an integer is BraTS' ET value 4 or 3).
        channels: The modality key of each channel.
        missing: The channels that had no file and were filled with `MISSING_FILL` (see
            `load_case`'s ``allow_missing``); empty for a complete case.
        orientation: The nibabel orientation transform (3 rows of (axis, flip)) that brought the
            input's voxel axes to BraTS' (`tfbrats.data.orientation`); `box`, `original_shape`
            and `spacing` are in that orientation, and writing undoes it.

    Example:
        >>> import tempfile
        >>> from tfbrats.data import find_cases
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(tmp.name, cases=1, shape=(48, 48, 32))
        >>> meta = load_case(find_cases(tmp.name).cases[0]).meta
        >>> meta.original_shape, meta.box, meta.spacing
        ((32, 48, 48), ((4, 29), (4, 43), (5, 41)), (1.0, 1.0, 1.0))
        >>> tmp.cleanup()
    """

    case_id: str
    box: Box
    original_shape: tuple[int, int, int]
    affine: np.ndarray
    header: nib.Nifti1Header
    spacing: tuple[float, float, float]
    labels: LabelMap
    channels: tuple[str, ...]
    missing: tuple[str, ...] = ()
    orientation: tuple[tuple[float, float], ...] = ((0.0, 1.0), (1.0, 1.0), (2.0, 1.0))

    def __post_init__(self) -> None:
        """Turns an integer `labels` (BraTS' ET value) into its `LabelMap`."""
        self.labels = label_map(self.labels)

    @property
    def et_label(self) -> int:
        """The value the dataset stores enhancing tumor as."""
        return self.labels.enhancing

    def to_json(self) -> dict[str, Any]:
        """The metadata as JSON-serialisable values (the header as base64 of its bytes)."""
        return {
            "case_id": self.case_id,
            "box": [list(pair) for pair in self.box],
            "original_shape": list(self.original_shape),
            "affine": np.asarray(self.affine, dtype=float).tolist(),
            "header": base64.b64encode(self.header.binaryblock).decode("ascii"),
            "header_class": type(self.header).__name__,
            "spacing": list(self.spacing),
            "et_label": self.et_label,
            "labels": self.labels.to_json(),
            "channels": list(self.channels),
            "missing": list(self.missing),
            "orientation": [list(row) for row in self.orientation],
        }

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> CaseMeta:
        """Rebuilds the metadata written by `to_json`."""
        header_class = {"Nifti1Header": nib.Nifti1Header, "Nifti2Header": nib.Nifti2Header}
        header = header_class[values["header_class"]](binaryblock=base64.b64decode(values["header"]))
        return cls(
            case_id=values["case_id"],
            box=tuple(tuple(int(v) for v in pair) for pair in values["box"]),
            original_shape=tuple(int(v) for v in values["original_shape"]),
            affine=np.asarray(values["affine"], dtype=np.float64),
            header=header,
            spacing=tuple(float(v) for v in values["spacing"]),
            # a cache JSON without `labels` records only BraTS' ET value
            labels=LabelMap(**values["labels"]) if "labels" in values else int(values["et_label"]),
            channels=tuple(values["channels"]),
            missing=tuple(values.get("missing", ())),  # no `missing`: every modality was present
            # No `orientation`: the cache holds the input's own voxel order (the identity transform).
            orientation=tuple(tuple(float(v) for v in row) for row in values.get("orientation", cls.orientation)),
        )


@dataclasses.dataclass
class PreprocessedCase:
    """A case ready for sampling: normalised, cropped image, internal labels and metadata.

    Args:
        image: ``(D, H, W, C)`` float32, z-scored and cropped.
        label: ``(D, H, W)`` uint8 in 0..3, or None for cases without reference.
        meta: The `CaseMeta` to invert the preprocessing.

    Example:
        >>> import tempfile
        >>> from tfbrats.data import find_cases
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(tmp.name, cases=1, shape=(48, 48, 32))
        >>> case = load_case(find_cases(tmp.name).cases[0])
        >>> case.image.shape, case.label.dtype
        ((25, 39, 36, 3), dtype('uint8'))
        >>> tmp.cleanup()
    """

    image: np.ndarray
    label: np.ndarray | None
    meta: CaseMeta


def zscore_nonzero(volume: np.ndarray) -> np.ndarray:
    """Z-scores a volume over its nonzero voxels; zero (background) voxels stay exactly 0.

    Example:
        >>> zscore_nonzero(np.array([0.0, 1.0, 3.0])).tolist()
        [0.0, -1.0, 1.0]
    """
    volume = np.asarray(volume, dtype=np.float32)
    mask = volume != 0
    out = np.zeros_like(volume)
    if not mask.any():
        return out
    values = volume[mask].astype(np.float64)
    std = values.std()
    out[mask] = (values - values.mean()) / (std if std > 0 else 1.0)
    return out


def nonzero_box(mask: np.ndarray) -> Box:
    """The bounding box ``((d0, d1), (h0, h1), (w0, w1))`` (end exclusive) of a 3-D mask.

    Example:
        >>> m = np.zeros((4, 5, 6), bool); m[1:3, 2, 3:5] = True
        >>> nonzero_box(m)
        ((1, 3), (2, 3), (3, 5))
    """
    if not mask.any():
        raise ValueError("the mask is empty: there is no nonzero voxel to crop to")
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append((int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def crop(array: np.ndarray, box: Box) -> np.ndarray:
    """Crops the first three axes of `array` to `box`.

    Example:
        >>> crop(np.zeros((4, 5, 6, 3)), ((1, 3), (2, 3), (3, 5))).shape
        (2, 1, 2, 3)
    """
    (d0, d1), (h0, h1), (w0, w1) = box
    return array[d0:d1, h0:h1, w0:w1]


def uncrop(array: np.ndarray, meta: CaseMeta) -> np.ndarray:
    """Places a cropped ``(d, h, w, ...)`` array back in the original ``(D, H, W, ...)`` grid, zeros outside.

    Args:
        array: An array of the cropped shape, with optional trailing axes (e.g. classes).
        meta: The case's metadata (box and original shape).

    Example:
        >>> import tempfile
        >>> from tfbrats.data import find_cases
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(tmp.name, cases=1, shape=(48, 48, 32))
        >>> case = load_case(find_cases(tmp.name).cases[0])
        >>> full = uncrop(case.label, case.meta)
        >>> full.shape, int(full.sum()) == int(case.label.sum())
        ((32, 48, 48), True)
        >>> tmp.cleanup()
    """
    expected = tuple(end - start for start, end in meta.box)
    if tuple(array.shape[:3]) != expected:
        raise ValueError(
            f"case {meta.case_id}: array of shape {array.shape} does not match the crop box "
            f"{meta.box} (expected leading shape {expected})"
        )
    out = np.zeros(tuple(meta.original_shape) + tuple(array.shape[3:]), dtype=array.dtype)
    (d0, d1), (h0, h1), (w0, w1) = meta.box
    out[d0:d1, h0:h1, w0:w1] = array
    return out


def labels_to_internal(seg: np.ndarray, labels: LabelMap | int) -> np.ndarray:
    """Maps dataset label values to internal classes 0..3 (uint8).

    Args:
        seg: Label values as the dataset stores them.
        labels: The dataset's `LabelMap`, or BraTS' ET value (4 or 3).

    Example:
        >>> labels_to_internal(np.array([0, 1, 2, 4]), 4).tolist()
        [0, 1, 2, 3]
    """
    return label_map(labels).to_internal(seg)


def labels_to_dataset(labels: np.ndarray, dataset_labels: LabelMap | int) -> np.ndarray:
    """Maps internal classes 0..3 to the dataset's label values (uint8).

    Args:
        labels: Internal classes 0..3.
        dataset_labels: The dataset's `LabelMap`, or BraTS' ET value (4 or 3).

    Example:
        >>> labels_to_dataset(np.array([0, 1, 2, 3]), 4).tolist()
        [0, 1, 2, 4]
    """
    return label_map(dataset_labels).to_dataset(labels)


def load_case(case: Case, input_channels: int = 3, allow_missing: bool = False) -> PreprocessedCase:
    """Reads, checks, normalises and crops one case.

    Args:
        case: The case (from `find_cases`).
        input_channels: 3 (FLAIR, T1c, T2) or 4 (plus T1).
        allow_missing: Accept a case lacking some modalities (at least one must exist): each
            missing channel is filled with `MISSING_FILL` (0, the z-scored brain mean, as
            `ModalityDropout` fills at training) and named in ``meta.missing``; the grid, affine
            and header come from the first present modality.

    Returns:
        The `PreprocessedCase`.

    Raises:
        CaseError: Missing or unreadable files, mismatched grids, non-finite values, unknown
            labels, or an all-zero image; the message names case, file and expectation.

    Example:
        >>> import tempfile
        >>> from tfbrats.data import find_cases
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(tmp.name, cases=1, shape=(48, 48, 32))
        >>> pre = load_case(find_cases(tmp.name).cases[0])
        >>> pre.meta.case_id, pre.meta.channels, np.unique(pre.label).tolist()
        ('BraTS20_Training_001', ('flair', 't1ce', 't2'), [0, 1, 2, 3])
        >>> tmp.cleanup()
    """
    channels = channels_for(input_channels)
    images = check_case(case, input_channels, allow_missing)
    present = [key for key in channels if key in images]
    reference = images[present[0]]
    transform = to_training_transform(reference.affine)

    def read(key: str, path: Path, volume: int | None = None) -> np.ndarray:
        voxels = read_voxels(case.case_id, path, images[key], key, volume)
        return xyz_to_dhw(reorient(voxels, transform))

    volumes = {k: read(k, case.images[k], case.volumes.get(k)) for k in present}
    shape = volumes[present[0]].shape
    brain = np.zeros(shape, dtype=bool)
    for volume in volumes.values():
        brain |= volume != 0
    if not brain.any():
        raise CaseError(
            f"case {case.case_id}: every modality ({present}) is all zeros; expected a "
            "skull-stripped brain with nonzero voxels"
        )
    box = nonzero_box(brain)
    cropped_shape = tuple(end - start for start, end in box)
    image = np.stack(
        [
            crop(zscore_nonzero(volumes[k]), box) if k in volumes else np.full(cropped_shape, MISSING_FILL, np.float32)
            for k in channels
        ],
        axis=-1,
    )
    label = None
    if case.seg is not None:
        seg = read("seg", case.seg)
        check_labels(case.case_id, case.seg, seg, case.labels)
        label = np.ascontiguousarray(crop(labels_to_internal(seg, case.labels), box))
    zooms = reoriented_zooms(reference.header.get_zooms()[:3], transform)
    header = reference.header.copy()
    header.set_data_shape(reference.shape[:3])  # a channel of a 4-D image: predictions are 3-D
    meta = CaseMeta(
        case_id=case.case_id,
        box=box,
        original_shape=tuple(int(v) for v in shape),
        affine=np.asarray(reference.affine, dtype=np.float64),
        header=header,
        spacing=(float(zooms[2]), float(zooms[1]), float(zooms[0])),
        labels=case.labels,
        channels=channels,
        missing=tuple(k for k in channels if k not in volumes),
        orientation=tuple(tuple(float(v) for v in row) for row in transform),
    )
    return PreprocessedCase(np.ascontiguousarray(image, dtype=np.float32), label, meta)
