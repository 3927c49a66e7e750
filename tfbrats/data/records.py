"""What a case is: its files (`Case`) and the label values its dataset stores (`LabelMap`).

Discovery (`tfbrats.data.cases`, `tfbrats.data.layouts`) makes these; reading, preprocessing and
writing use them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from tfbrats.files import check_file_name
from tfbrats.labels import BRATS, BRATS_POST_TREATMENT, LabelSet

# The value BraTS 2024/2025 store the resection cavity as; a cavity predicted for a dataset that
# names none is written with it (when the dataset's other classes leave it free).
CAVITY_VALUE = 4


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """The value a dataset stores for each tumor class; tfbrats' internal classes are 0..3 (0..4 with a cavity).

    Internal class 1 is the necrotic / non-enhancing tumor core, 2 the edema, 3 the enhancing
    tumor, 4 the resection cavity of post-treatment datasets; 0 (background) is 0 everywhere.
    A map with a `cavity` value belongs to the label set `BRATS_POST_TREATMENT`, one without to
    `BRATS` (`label_set`).

    Args:
        necrosis: The dataset value of internal class 1.
        edema: The dataset value of internal class 2.
        enhancing: The dataset value of internal class 3.
        cavity: The dataset value of internal class 4 (resection cavity), or None when the
            dataset has no such class.

    Example:
        >>> DECATHLON_LABELS.to_internal(np.array([0, 1, 2, 3])).tolist()
        [0, 2, 1, 3]
        >>> BRATS2024_LABELS.to_internal(np.array([0, 1, 2, 3, 4])).tolist()
        [0, 1, 2, 3, 4]
    """

    necrosis: int = 1
    edema: int = 2
    enhancing: int = 4
    cavity: int | None = None

    def __post_init__(self) -> None:
        """Checks that the values are distinct, positive and fit a uint8 label file."""
        values = self.values[1:]
        if len(set(values)) != len(values) or not all(0 < v < 256 for v in values):
            names = "necrosis, edema, enhancing" + (", cavity" if self.cavity is not None else "")
            raise ValueError(
                f"label values ({names}) = {values} must be {('three', 'four')[len(values) - 3]} distinct integers "
                "in 1..255"
            )

    def __repr__(self) -> str:
        cavity = f", cavity={self.cavity}" if self.cavity is not None else ""
        return f"LabelMap(necrosis={self.necrosis}, edema={self.edema}, enhancing={self.enhancing}{cavity})"

    @property
    def values(self) -> tuple[int, ...]:
        """The dataset values of internal classes 0, 1, 2, 3 (and 4 with a cavity)."""
        cavity = () if self.cavity is None else (self.cavity,)
        return (0, self.necrosis, self.edema, self.enhancing, *cavity)

    @property
    def label_set(self) -> LabelSet:
        """The internal label set these values map onto: `BRATS_POST_TREATMENT` with a cavity, else `BRATS`."""
        return BRATS if self.cavity is None else BRATS_POST_TREATMENT

    def covering(self, label_set: LabelSet) -> LabelMap:
        """This map, given the cavity value `CAVITY_VALUE` when `label_set` has a cavity and the map has none.

        A post-treatment model's prediction for a dataset that names no cavity (a pre-treatment
        BraTS 2023 folder) is written with BraTS 2024's value 4, unless the dataset uses 4 itself.

        Example:
            >>> BRATS2023_LABELS.covering(BRATS_POST_TREATMENT).cavity
            4
        """
        if label_set.num_classes <= len(self.values):
            return self
        if CAVITY_VALUE in self.values:
            raise ValueError(
                f"the dataset stores {self.values[1:]} (necrosis, edema, enhancing) and names no resection cavity, "
                f"and its value {CAVITY_VALUE} is taken; give the written values explicitly (label_values with "
                "a value for class 4)"
            )
        return dataclasses.replace(self, cavity=CAVITY_VALUE)

    def to_internal(self, seg: np.ndarray) -> np.ndarray:
        """Maps dataset values to internal classes (uint8); other values are an error.

        Example:
            >>> BRATS2020_LABELS.to_internal(np.array([0, 1, 2, 4])).tolist()
            [0, 1, 2, 3]
        """
        seg = np.asarray(seg)
        lookup = np.full(256, 255, dtype=np.uint8)
        lookup[list(self.values)] = np.arange(len(self.values), dtype=np.uint8)
        inside = (seg >= 0) & (seg <= 255) & (seg == np.round(seg))
        out = lookup[np.where(inside, seg, 255).astype(np.int64)]
        if np.any(out == 255):
            unknown = np.unique(seg[out == 255]).tolist()
            raise ValueError(f"label values {unknown} are not among the dataset's {list(self.values)}")
        return out

    def to_dataset(self, labels: np.ndarray) -> np.ndarray:
        """Maps internal classes (0..3, or 0..4 with a cavity) to the dataset's values (uint8).

        Example:
            >>> BRATS2020_LABELS.to_dataset(np.array([0, 1, 2, 3])).tolist()
            [0, 1, 2, 4]
        """
        labels = np.asarray(labels)
        top = len(self.values) - 1
        if labels.size and (labels.min() < 0 or labels.max() > top):
            raise ValueError(f"internal labels must lie in 0..{top} for the dataset's values {list(self.values)}; "
                             f"got values {np.unique(labels).tolist()}")
        return np.asarray(self.values, dtype=np.uint8)[labels.astype(np.int64)]

    def to_json(self) -> dict[str, int]:
        """The values by class name, as JSON (``cavity`` only when the dataset has one)."""
        values = dataclasses.asdict(self)
        if self.cavity is None:
            del values["cavity"]
        return values


BRATS2020_LABELS = LabelMap(necrosis=1, edema=2, enhancing=4)  # BraTS 2018-2021
BRATS2023_LABELS = LabelMap(necrosis=1, edema=2, enhancing=3)  # BraTS 2023
BRATS2024_LABELS = LabelMap(necrosis=1, edema=2, enhancing=3, cavity=4)  # BraTS 2024/2025 glioma (post-treatment)
DECATHLON_LABELS = LabelMap(necrosis=2, edema=1, enhancing=3)  # Task01_BrainTumour


def dataset_label_set(maps: Iterable[LabelMap]) -> LabelSet:
    """The label set of a dataset: `BRATS_POST_TREATMENT` when any case has a cavity value, else `BRATS`.

    The label set is decided over the whole dataset, so pre-treatment cases (no cavity in their
    reference) and post-treatment cases train one model.

    Example:
        >>> dataset_label_set([BRATS2023_LABELS, BRATS2024_LABELS]).name
        'brats_post_treatment'
    """
    return BRATS_POST_TREATMENT if any(labels.cavity is not None for labels in maps) else BRATS


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
