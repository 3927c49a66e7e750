"""What a case is: its files (`Case`) and the label values its dataset stores (`LabelMap`).

Discovery (`tfbrats.data.cases`, `tfbrats.data.layouts`) makes these; reading, preprocessing and
writing use them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from tfbrats.files import check_file_name


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """The value a dataset stores for each tumor class; tfbrats' internal classes are 0..3.

    Internal class 1 is the necrotic / non-enhancing tumor core, 2 the edema, 3 the enhancing
    tumor; 0 (background) is 0 everywhere.

    Args:
        necrosis: The dataset value of internal class 1.
        edema: The dataset value of internal class 2.
        enhancing: The dataset value of internal class 3.

    Example:
        >>> DECATHLON_LABELS.to_internal(np.array([0, 1, 2, 3])).tolist()
        [0, 2, 1, 3]
    """

    necrosis: int = 1
    edema: int = 2
    enhancing: int = 4

    def __post_init__(self) -> None:
        """Checks that the three values are distinct, positive and fit a uint8 label file."""
        values = (self.necrosis, self.edema, self.enhancing)
        if len(set(values)) != 3 or not all(0 < v < 256 for v in values):
            raise ValueError(
                f"label values (necrosis, edema, enhancing) = {values} must be three distinct integers in 1..255"
            )

    @property
    def values(self) -> tuple[int, int, int, int]:
        """The dataset values of internal classes 0, 1, 2, 3."""
        return (0, self.necrosis, self.edema, self.enhancing)

    def to_internal(self, seg: np.ndarray) -> np.ndarray:
        """Maps dataset values to internal classes 0..3 (uint8); other values are an error.

        Example:
            >>> BRATS2020_LABELS.to_internal(np.array([0, 1, 2, 4])).tolist()
            [0, 1, 2, 3]
        """
        seg = np.asarray(seg)
        lookup = np.full(256, 255, dtype=np.uint8)
        lookup[list(self.values)] = np.arange(4, dtype=np.uint8)
        inside = (seg >= 0) & (seg <= 255) & (seg == np.round(seg))
        out = lookup[np.where(inside, seg, 255).astype(np.int64)]
        if np.any(out == 255):
            unknown = np.unique(seg[out == 255]).tolist()
            raise ValueError(f"label values {unknown} are not among the dataset's {list(self.values)}")
        return out

    def to_dataset(self, labels: np.ndarray) -> np.ndarray:
        """Maps internal classes 0..3 to the dataset's values (uint8).

        Example:
            >>> BRATS2020_LABELS.to_dataset(np.array([0, 1, 2, 3])).tolist()
            [0, 1, 2, 4]
        """
        labels = np.asarray(labels)
        if labels.size and (labels.min() < 0 or labels.max() > 3):
            raise ValueError(f"internal labels must lie in 0..3; got values {np.unique(labels).tolist()}")
        return np.asarray(self.values, dtype=np.uint8)[labels.astype(np.int64)]

    def to_json(self) -> dict[str, int]:
        """The three values by class name, as JSON."""
        return dataclasses.asdict(self)


BRATS2020_LABELS = LabelMap(necrosis=1, edema=2, enhancing=4)  # BraTS 2018-2021
BRATS2023_LABELS = LabelMap(necrosis=1, edema=2, enhancing=3)  # BraTS 2023+
DECATHLON_LABELS = LabelMap(necrosis=2, edema=1, enhancing=3)  # Task01_BrainTumour


def label_map(labels: LabelMap | int) -> LabelMap:
    """A `LabelMap`, or the BraTS one whose enhancing tumor is stored as the given value (4 or 3).

    Example:
        >>> label_map(3) == BRATS2023_LABELS
        True
    """
    if isinstance(labels, LabelMap):
        return labels
    if isinstance(labels, (int, np.integer)) and int(labels) in (3, 4):
        return LabelMap(1, 2, int(labels))
    raise ValueError(f"labels must be a LabelMap or an enhancing-tumor value 4 or 3 (BraTS); got {labels!r}")


@dataclasses.dataclass(frozen=True)
class Case:
    """One patient: the paths of its modalities and of its reference segmentation.

    Args:
        case_id: The case's name, e.g. ``BraTS20_Training_001``; it names the case's output files
            (``<case_id>.nii.gz``), so it must be a file name (`tfbrats.files.check_file_name`).
        images: Modality key (``t1``, ``t1ce``, ``t2``, ``flair``) -> NIfTI path; only the
            files that exist are listed.
        seg: The reference segmentation, or None for validation/test cases.
        labels: The dataset's label values (`LabelMap`); an integer is BraTS' enhancing-tumor
            value, 4 (BraTS 2018-2021) or 3 (BraTS 2023+).
        volumes: Modality key -> index along the 4th axis for modalities stored together in one
            4-D file (the Decathlon); modalities not listed are 3-D files.

    Example:
        >>> Case("c1", {"flair": Path("c1/c1_flair.nii.gz")}, None, 4).et_label
        4
    """

    case_id: str
    images: dict[str, Path]
    seg: Path | None
    labels: LabelMap = BRATS2020_LABELS
    volumes: dict[str, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        """Checks that the id is a file name; turns an integer `labels` (BraTS' ET value) into its `LabelMap`."""
        check_file_name(self.case_id)
        object.__setattr__(self, "labels", label_map(self.labels))

    @property
    def has_seg(self) -> bool:
        """Whether the case has a reference segmentation."""
        return self.seg is not None

    @property
    def et_label(self) -> int:
        """The value the dataset stores enhancing tumor as."""
        return self.labels.enhancing
