"""Finding BraTS cases on disk and splitting them into folds.

Supported layouts under a root folder (`find_cases` reports which one it found):

- ``brats2020``: BraTS 2018-2020, ``<id>/<id>_{t1,t1ce,t2,flair,seg}.nii.gz`` (ET stored as 4)
- ``brats2021``: the same names with ids ``BraTS2021_00000`` (ET stored as 4)
- ``brats2023``: BraTS 2023, ``<id>/<id>-{t1n,t1c,t2w,t2f,seg}.nii.gz`` (ET stored as 3)
- ``brats2025``: BraTS 2024/2025 glioma, the same names, with post-treatment cases: labels 1 NETC,
  2 SNFH, 3 ET and 4 resection cavity (RC). A dataset in these names is read as ``brats2025``
  when any case id ends in a post-treatment visit (``BraTS-GLI-00000-100``: a last number other
  than ``000``); then every case, pre-treatment ones (``-000``) too, has the label values
  1/2/3/4 and the label set with the cavity (`tfbrats.labels.BRATS_POST_TREATMENT`), so a mixed
  pre/post-treatment dataset is one dataset. Only pre-treatment ids read as ``brats2023``; a
  label 4 in one of them is refused, naming the case (list such cases in a manifest with
  ``cavity_label`` 4)
- ``manifest``: a CSV file (the root itself, or ``manifest.csv`` inside it) with the columns
  ``case_id,t1,t1ce,t2,flair,seg`` and optionally ``et_label`` and ``cavity_label`` (the
  value of the resection cavity; empty or missing: none); relative paths are taken
  from the CSV's folder, and an empty ``seg`` or a missing column means "no reference"; each
  ``case_id`` must be a file name (`tfbrats.files.check_file_name`), or the row is refused
- ``case``: the root is a single case folder in any of the first three layouts
- ``decathlon``: the Medical Segmentation Decathlon's Task01_BrainTumour (``dataset.json``,
  ``imagesTr/<id>.nii.gz`` 4-D, ``labelsTr/``, ``imagesTs/``); see `tfbrats.data.layouts`
- ``nnunet``: an nnU-Net raw dataset (``dataset.json``, ``imagesTr/<id>_<cccc>.nii.gz``,
  ``labelsTr/``, ``imagesTs/``); see `tfbrats.data.layouts`

Validation and test cases have no ``seg`` file; their `Case.seg` is None. A file a layout names
that is a broken or self-referencing link is listed (`tfbrats.data.layouts.visible_files`), so
reading it fails with its name instead of the case lacking that modality. `Case` and the label
values (`LabelMap`) are defined in `tfbrats.data.records`, which both discovery modules use.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfbrats.conventions import MODALITIES
from tfbrats.data.layouts import DATASET_JSON, find_dataset_json_cases, visible_files
from tfbrats.data.records import BRATS2023_LABELS, BRATS2024_LABELS, Case, LabelMap

MANIFEST_NAME = "manifest.csv"
_SUFFIXES = (".nii.gz", ".nii")
# BraTS 2023+ file suffixes -> tfbrats modality keys.
_BRATS2023_NAMES = {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair", "seg": "seg"}
_BRATS2020_NAMES = {name: name for name in (*MODALITIES, "seg")}
# A BraTS 2024/2025 id ends in the visit: -000 pre-treatment, -100, -101, ... post-treatment.
_POST_TREATMENT_ID = re.compile(r"^.+-(?!000$)\d{3}$")
_FILE_PATTERN = re.compile(
    r"^(?P<id>.+?)(?P<sep>[_-])(?P<key>t1ce|t1n|t1c|t2w|t2f|t1|t2|flair|seg)(?:\.nii\.gz|\.nii)$"
)


@dataclasses.dataclass(frozen=True)
class DatasetIndex:
    """The cases found under a root folder and the layout they were found in.

    Args:
        layout: One of ``brats2020``, ``brats2021``, ``brats2023``, ``brats2025``, ``manifest``, ``case``,
            ``decathlon``, ``nnunet``.
        cases: The cases, sorted by id.

    Example:
        >>> import tempfile
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(tmp.name, cases=2, shape=(48, 48, 32))
        >>> index = find_cases(tmp.name)
        >>> index.layout, len(index.cases)
        ('brats2020', 2)
        >>> tmp.cleanup()
    """

    layout: str
    cases: list[Case]


def _case_from_folder(folder: Path) -> tuple[str, Case] | None:
    """Reads one case folder; returns (layout, Case) or None when it holds no BraTS files."""
    files: dict[str, Path] = {}
    ids: set[str] = set()
    layouts: set[str] = set()
    for path in visible_files(folder):
        match = _FILE_PATTERN.match(path.name)
        if not match:
            continue
        key, sep = match["key"], match["sep"]
        if sep == "-" and key in _BRATS2023_NAMES:
            layout, name = "brats2023", _BRATS2023_NAMES[key]
        elif sep == "_" and key in _BRATS2020_NAMES:
            layout = "brats2021" if match["id"].startswith("BraTS2021_") else "brats2020"
            name = _BRATS2020_NAMES[key]
        else:
            continue
        if name in files:
            raise ValueError(
                f"case folder {folder}: two files for modality '{name}' ({files[name].name} and "
                f"{path.name}); keep one (.nii.gz or .nii) and rerun"
            )
        files[name] = path
        ids.add(match["id"])
        layouts.add(layout)
    if not files:
        return None
    if len(layouts) > 1 or len(ids) > 1:
        raise ValueError(
            f"case folder {folder}: file names mix case ids {sorted(ids)} or layouts {sorted(layouts)};"
            " each case folder must hold the files of one case in one naming scheme"
        )
    layout = layouts.pop()
    seg = files.pop("seg", None)
    return layout, Case(ids.pop(), files, seg, 3 if layout == "brats2023" else 4)


def _read_manifest(path: Path) -> list[Case]:
    """Reads a CSV manifest ``case_id,t1,t1ce,t2,flair,seg[,et_label,cavity_label]`` into cases."""
    cases = []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or ())
        if "case_id" not in columns or not columns & set(MODALITIES):
            raise ValueError(
                f"manifest {path}: header {sorted(columns)} lacks 'case_id' or any modality column; "
                f"expected the columns case_id,{','.join(MODALITIES)},seg"
            )
        for row_number, row in enumerate(reader, start=2):
            case_id = (row.get("case_id") or "").strip()
            if not case_id:
                raise ValueError(f"manifest {path}, line {row_number}: empty case_id")

            def resolve(value: str | None) -> Path | None:
                value = (value or "").strip()
                if not value:
                    return None
                candidate = Path(value).expanduser()
                return candidate if candidate.is_absolute() else path.parent / candidate

            images = {key: p for key in MODALITIES if (p := resolve(row.get(key))) is not None}
            et_text = (row.get("et_label") or "4").strip()
            cavity_text = (row.get("cavity_label") or "").strip()
            if et_text not in ("3", "4") or not (cavity_text == "" or cavity_text.isdigit()):
                raise ValueError(
                    f"manifest {path}, line {row_number} (case {case_id}): et_label is {et_text!r}, cavity_label "
                    f"{cavity_text!r}; use et_label 4 (BraTS 2018-2021) or 3 (BraTS 2023+), and cavity_label 4 "
                    "(BraTS 2024/2025) or empty"
                )
            try:
                labels = LabelMap(1, 2, int(et_text), int(cavity_text) if cavity_text else None)
                cases.append(Case(case_id, images, resolve(row.get("seg")), labels))
            except ValueError as error:
                raise ValueError(f"manifest {path}, line {row_number}: {error}") from None
    ids = [case.case_id for case in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"manifest {path}: case ids appear more than once: {duplicates}")
    return sorted(cases, key=lambda case: case.case_id)


def find_cases(root: str | Path) -> DatasetIndex:
    """Finds the cases under `root` and the layout they are stored in.

    Args:
        root: A dataset folder (BraTS 2018-2020, 2021 or 2023+ layout), a single case folder,
            a CSV manifest, a folder holding ``manifest.csv``, or a Decathlon / nnU-Net raw
            dataset root (a folder holding ``dataset.json``).

    Returns:
        The layout name and the cases sorted by id.

    Raises:
        FileNotFoundError: `root` does not exist or holds no cases.
        ValueError: Cases in different layouts, a malformed manifest or ``dataset.json``.

    Example:
        >>> import tempfile
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(tmp.name, cases=2, shape=(48, 48, 32), layout="brats2023")
        >>> index = find_cases(tmp.name)
        >>> index.layout, index.cases[0].case_id, sorted(index.cases[0].images), index.cases[0].labels.enhancing
        ('brats2023', 'BraTS-GLI-00001-000', ['flair', 't1', 't1ce', 't2'], 3)
        >>> tmp.cleanup()
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data folder {root} does not exist; pass the folder holding the cases")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise ValueError(f"{root} is a file but not a CSV manifest; pass a folder or a .csv manifest")
        return DatasetIndex("manifest", _read_manifest(root))
    if (root / MANIFEST_NAME).is_file():
        return DatasetIndex("manifest", _read_manifest(root / MANIFEST_NAME))
    if (root / DATASET_JSON).is_file():

        return DatasetIndex(*find_dataset_json_cases(root))
    single = _case_from_folder(root)
    if single is not None:
        return _post_treatment(DatasetIndex("case", [single[1]]))
    found = [c for sub in sorted(root.iterdir()) if sub.is_dir() and (c := _case_from_folder(sub))]
    if not found:
        raise FileNotFoundError(
            f"no BraTS cases under {root}: expected case folders like <id>/<id>_flair.nii.gz "
            f"(2018-2021), <id>/<id>-t2f.nii.gz (2023-2025), a {MANIFEST_NAME}, or a {DATASET_JSON} with "
            "imagesTr/ (Decathlon, nnU-Net raw)"
        )
    layouts = sorted({layout for layout, _ in found})
    if len(layouts) > 1:
        raise ValueError(
            f"{root} mixes case layouts {layouts}; put each dataset release in its own folder "
            "or list the cases in a manifest.csv"
        )
    return _post_treatment(DatasetIndex(layouts[0], sorted((c for _, c in found), key=lambda c: c.case_id)))


def _post_treatment(index: DatasetIndex) -> DatasetIndex:
    """A ``brats2023``-named dataset with any post-treatment case id as ``brats2025``: every case gets the cavity.

    Example:
        >>> case = Case("BraTS-GLI-00001-100", {}, None, 3)
        >>> found = _post_treatment(DatasetIndex("brats2023", [case]))
        >>> found.layout, found.cases[0].labels.cavity
        ('brats2025', 4)
    """
    if index.layout not in ("brats2023", "case") or index.cases[0].labels != BRATS2023_LABELS:
        return index
    if not any(_POST_TREATMENT_ID.match(case.case_id) for case in index.cases):
        return index
    cases = [dataclasses.replace(case, labels=BRATS2024_LABELS) for case in index.cases]
    return DatasetIndex("brats2025" if index.layout == "brats2023" else index.layout, cases)


def split_cases(
    cases: Sequence[Case],
    fold: int = 0,
    num_folds: int = 5,
    seed: int = 0,
    *,
    val_ids: Sequence[str] | None = None,
) -> tuple[list[Case], list[Case]]:
    """Splits cases by patient into training and validation, deterministically.

    The ids are sorted, shuffled with `seed`, and dealt into `num_folds` folds; fold `fold`
    is the validation set. The result does not depend on the order of `cases`.

    Args:
        cases: The cases to split.
        fold: The validation fold, 0 <= fold < num_folds.
        num_folds: The number of folds.
        seed: The shuffling seed.
        val_ids: An explicit list of validation case ids; overrides the folds.

    Returns:
        (train, val), each sorted by case id.

    Example:
        >>> from tfbrats.data.records import Case
        >>> cases = [Case(f"case{number:02d}", {}, None) for number in range(10)]
        >>> train, val = split_cases(cases, fold=0, num_folds=5, seed=0)
        >>> [case.case_id for case in val], len(train)
        (['case04', 'case05'], 8)
    """
    ordered = sorted(cases, key=lambda case: case.case_id)
    if val_ids is not None:
        known = {case.case_id for case in ordered}
        unknown = sorted(set(val_ids) - known)
        if unknown:
            raise ValueError(f"validation case ids not found among the cases: {unknown}")
        chosen = set(val_ids)
    else:
        if not 0 <= fold < num_folds:
            raise ValueError(f"fold must be in [0, {num_folds}); got {fold}")
        order = np.random.default_rng(seed).permutation(len(ordered))
        chosen = {ordered[i].case_id for rank, i in enumerate(order) if rank % num_folds == fold}
    train = [case for case in ordered if case.case_id not in chosen]
    val = [case for case in ordered if case.case_id in chosen]
    return train, val
