"""Datasets described by a ``dataset.json``: the Medical Segmentation Decathlon and nnU-Net raw.

Two layouts share the same folders (``dataset.json``, ``imagesTr/``, ``labelsTr/``, ``imagesTs/``)
and differ in how a case's channels are stored:

- ``decathlon`` (Task01_BrainTumour): one 4-D NIfTI per case, ``imagesTr/BRATS_001.nii.gz``,
  its channels named by ``dataset.json``'s ``modality`` (``{"0": "FLAIR", "1": "T1w", "2": "t1gd",
  "3": "T2w"}``) and its labels by ``labels`` (``{"0": "background", "1": "edema", "2":
  "non-enhancing tumor", "3": "enhancing tumour"}``).
- ``nnunet`` (an nnU-Net raw ``DatasetXXX_Name`` folder, or a v1 ``TaskXXX_Name`` folder): one
  3-D file per channel, ``imagesTr/<case>_0000.nii.gz`` ..., the channel number naming the
  channel in ``channel_names`` (v2) or ``modality`` (v1), and labels by ``labels`` in either
  direction (v2 ``{"background": 0, "edema": 1, ...}``), or as nnU-Net's region-based
  definition (``{"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing
  tumor": [3]}`` with ``regions_class_order``).

Cases under ``imagesTr`` take their segmentation from ``labelsTr/<case>.nii.gz``; cases under
``imagesTs`` have none. Channel names map onto tfbrats' modalities (``FLAIR``/``T2f`` -> flair,
``T1w``/``T1n`` -> t1, ``T1gd``/``T1ce``/``T1c`` -> t1ce, ``T2w``/``T2`` -> t2), label names
(or the nesting of regions) onto the internal classes, giving the case's `LabelMap`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tfbrats.data.records import Case, LabelMap

DATASET_JSON = "dataset.json"

# Normalised channel name (lower case, letters and digits only) -> tfbrats modality key.
CHANNEL_NAMES = {
    "flair": "flair",
    "t2flair": "flair",
    "t2f": "flair",
    "t1": "t1",
    "t1w": "t1",
    "t1n": "t1",
    "t1native": "t1",
    "t1ce": "t1ce",
    "t1c": "t1ce",
    "t1gd": "t1ce",
    "t1wgd": "t1ce",
    "t1gad": "t1ce",
    "t1post": "t1ce",
    "t1contrast": "t1ce",
    "t2": "t2",
    "t2w": "t2",
}
_EDEMA_NAMES = {"ed", "edema", "oedema", "snfh", "peritumoraledema"}
_NECROSIS_NAMES = {"ncr", "net", "netc", "ncrnet", "necrosis", "necrotic", "tumorcore", "necroticcore"}
_ENHANCING_NAMES = {"et", "enhancing", "enhancingtumor", "enhancingtumour"}
_CAVITY_NAMES = {"rc", "cavity", "resectioncavity", "surgicalcavity", "resection"}
_CHANNEL_FILE = re.compile(r"^(?P<id>.+)_(?P<channel>\d{4})$")


def _normalised(name: str) -> str:
    """Lower case with everything but letters and digits removed: ``"T1-Gd"`` -> ``"t1gd"``."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _label_class(name: str) -> int | None:
    """The internal class (1 necrosis, 2 edema, 3 enhancing, 4 resection cavity) a label name means, or None."""
    n = _normalised(name)
    if n in _CAVITY_NAMES or "cavity" in n:
        return 4
    if n in _EDEMA_NAMES or "edema" in n:
        return 2
    if n in _NECROSIS_NAMES or n.startswith("nonenhancing") or "necro" in n:
        return 1
    if n in _ENHANCING_NAMES or n.startswith("enhancing"):
        return 3
    return None


def read_dataset_json(root: Path) -> dict[str, Any]:
    """Reads ``root/dataset.json``, with an error naming the file when it is not a JSON object.

    Example:
        >>> import tempfile
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(tmp.name, cases=2, shape=(48, 48, 32), layout="decathlon")
        >>> read_dataset_json(Path(tmp.name))["name"]
        'BRATS'
        >>> tmp.cleanup()
    """
    path = root / DATASET_JSON
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot be read as JSON ({error}); expected the dataset's description") from error
    if not isinstance(values, dict):
        raise ValueError(f"{path}: holds a {type(values).__name__}; expected a JSON object")
    return values


def dataset_channels(values: dict[str, Any], path: Path) -> dict[int, str]:
    """Channel number -> tfbrats modality key, from ``channel_names`` (nnU-Net v2) or ``modality``.

    Args:
        values: The parsed ``dataset.json``.
        path: The file, for error messages.

    Example:
        >>> dataset_channels({"modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}}, Path("dataset.json"))
        {0: 'flair', 1: 't1', 2: 't1ce', 3: 't2'}
    """
    names = values.get("channel_names", values.get("modality"))
    if not isinstance(names, dict) or not names:
        raise ValueError(f"{path}: no 'channel_names' (nnU-Net v2) or 'modality' (Decathlon) entry naming the channels")
    channels: dict[int, str] = {}
    for number, name in names.items():
        key = CHANNEL_NAMES.get(_normalised(str(name)))
        if not str(number).isdigit() or key is None:
            raise ValueError(
                f"{path}: channel {number!r} is named {name!r}; expected a channel number and one of the MRI "
                f"sequences tfbrats reads ({', '.join(sorted(set(CHANNEL_NAMES)))})"
            )
        if key in channels.values():
            raise ValueError(f"{path}: two channels are {key} ({names}); each modality may appear once")
        channels[int(number)] = key
    return dict(sorted(channels.items()))


def _region_label_map(labels: dict[str, Any], order: list[int] | None, path: Path) -> LabelMap:
    """The `LabelMap` of a region-based ``labels`` entry: three nested regions WT > TC > ET."""
    regions = [
        (name, {int(v) for v in (value if isinstance(value, list) else [value])})
        for name, value in labels.items()
        if _normalised(name) != "background"
    ]
    ordered = sorted(regions, key=lambda item: -len(item[1]))
    sets = [values for _, values in ordered]
    nested = len(sets) == 3 and sets[2] < sets[1] < sets[0]
    differences = [sets[0] - sets[1], sets[1] - sets[2], sets[2]] if nested else []
    if not nested or any(len(d) != 1 for d in differences):
        raise ValueError(
            f"{path}: region-based labels {labels} are not three nested regions (whole tumor > tumor core > "
            "enhancing tumor) that each add one label value, e.g. {'whole tumor': [1, 2, 3], 'tumor core': "
            "[2, 3], 'enhancing tumor': [3]}"
        )
    edema, necrosis, enhancing = (next(iter(d)) for d in differences)
    result = LabelMap(necrosis=necrosis, edema=edema, enhancing=enhancing)
    if order is not None:
        # nnU-Net writes region i's voxels as order[i], inner regions last: the written values must be these.
        position = {name: i for i, (name, _) in enumerate(regions)}
        written = [order[position[name]] for name, _ in ordered] if len(order) == len(regions) else None
        if written != [edema, necrosis, enhancing]:
            raise ValueError(
                f"{path}: regions_class_order {order} would write whole tumor / tumor core / enhancing tumor as "
                f"{written}, but the regions' own values are {[edema, necrosis, enhancing]}; tfbrats writes "
                "predictions with the regions' values, so make them agree"
            )
    return result


def dataset_labels(values: dict[str, Any], path: Path) -> LabelMap:
    """The dataset's `LabelMap` from ``dataset.json``'s ``labels``, in any of its three forms.

    Args:
        values: The parsed ``dataset.json``.
        path: The file, for error messages.

    Example:
        >>> dataset_labels({"labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor",
        ...                            "3": "enhancing tumour"}}, Path("dataset.json"))
        LabelMap(necrosis=2, edema=1, enhancing=3)
        >>> dataset_labels({"labels": {"background": 0, "NETC": 1, "SNFH": 2, "ET": 3, "RC": 4}},
        ...                Path("dataset.json")).cavity
        4
    """
    labels = values.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise ValueError(f"{path}: no 'labels' entry naming the label values")
    if any(isinstance(v, list) for v in labels.values()) or "regions_class_order" in values:
        return _region_label_map(labels, values.get("regions_class_order"), path)
    if all(str(k).isdigit() for k in labels):  # Decathlon and nnU-Net v1: value -> name
        by_name = {str(name): int(value) for value, name in labels.items()}
    else:  # nnU-Net v2: name -> value
        by_name = {str(name): int(value) for name, value in labels.items()}
    classes: dict[int, int] = {}
    for name, value in by_name.items():
        if value == 0:
            continue
        internal = _label_class(name)
        if internal is None or internal in classes:
            raise ValueError(
                f"{path}: label {value} is named {name!r}, which "
                + ("is not a tumor class tfbrats knows" if internal is None else "names a class already given")
                + "; expected one each of edema, necrotic/non-enhancing tumor and enhancing tumor (and "
                "optionally resection cavity)"
            )
        classes[internal] = value
    if sorted(classes) not in ([1, 2, 3], [1, 2, 3, 4]):
        raise ValueError(
            f"{path}: labels {labels} do not name all of edema, necrotic/non-enhancing tumor and enhancing tumor"
        )
    return LabelMap(necrosis=classes[1], edema=classes[2], enhancing=classes[3], cavity=classes.get(4))


def _named(path: Path) -> bool:
    """Whether `path` is a file or a link (even one that leads nowhere: reading it then names it)."""
    return path.is_symlink() or path.is_file()


def visible_files(folder: Path, ending: str = "") -> list[Path]:
    """The visible files of `folder` with the given ending, sorted (macOS ``._*`` shadows are skipped).

    A symbolic link is listed whether or not it leads to a file: a broken or self-referencing link
    is a file the dataset names but that cannot be read, so reading it fails with its name, rather
    than the case silently lacking that modality.

    Example:
        >>> import tempfile
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(tmp.name, cases=2, shape=(48, 48, 32), layout="decathlon")
        >>> [path.name for path in visible_files(Path(tmp.name) / "imagesTr", ".nii.gz")]
        ['BRATS_001.nii.gz', 'BRATS_002.nii.gz']
        >>> tmp.cleanup()
    """
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.name.endswith(ending) and not p.name.startswith(".") and _named(p))


def _is_split_per_channel(root: Path, ending: str, channels: dict[int, str]) -> bool:
    """Whether the images are stored one file per channel (``<case>_0000``), as nnU-Net stores them."""
    files = visible_files(root / "imagesTr", ending) + visible_files(root / "imagesTs", ending)
    matches = [_CHANNEL_FILE.match(p.name[: -len(ending)]) for p in files]
    return bool(files) and all(m is not None and int(m["channel"]) in channels for m in matches)


def find_dataset_json_cases(root: Path) -> tuple[str, list[Case]]:
    """Reads a Decathlon or nnU-Net raw dataset root; returns (layout, cases sorted by id).

    Args:
        root: The folder holding ``dataset.json``, ``imagesTr/`` and optionally ``labelsTr/``
            and ``imagesTs/``.

    Returns:
        ``("decathlon" | "nnunet", cases)``; training cases carry their ``labelsTr`` file (if it
        exists), test cases none.

    Raises:
        ValueError: ``dataset.json`` lacks or misnames channels or labels, a file names an
            unknown channel, or case ids repeat.
        FileNotFoundError: No image under ``imagesTr/`` or ``imagesTs/``.

    Example:
        >>> import tempfile
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(tmp.name, cases=2, shape=(48, 48, 32), layout="decathlon")
        >>> layout, cases = find_dataset_json_cases(Path(tmp.name))
        >>> layout, cases[0].case_id, cases[0].volumes
        ('decathlon', 'BRATS_001', {'flair': 0, 't1': 1, 't1ce': 2, 't2': 3})
        >>> tmp.cleanup()
    """
    path = root / DATASET_JSON
    values = read_dataset_json(root)
    channels = dataset_channels(values, path)
    labels = dataset_labels(values, path)
    ending = str(values.get("file_ending", ".nii.gz"))
    split = "channel_names" in values or _is_split_per_channel(root, ending, channels)
    cases: list[Case] = []
    for folder, has_labels in (("imagesTr", True), ("imagesTs", False)):
        files = visible_files(root / folder, ending)
        if split:
            cases += _cases_from_channel_files(root, folder, files, ending, channels, labels, has_labels)
        else:
            for image in files:
                case_id = image.name[: -len(ending)]
                seg = root / "labelsTr" / image.name
                volumes = {key: number for number, key in channels.items()}
                images = dict.fromkeys(volumes, image)
                cases.append(Case(case_id, images, seg if has_labels and _named(seg) else None, labels, volumes))
    if not cases:
        raise FileNotFoundError(f"{root}: {DATASET_JSON} found but no *{ending} image under imagesTr/ or imagesTs/")
    ids = [case.case_id for case in cases]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"{root}: case ids {repeated} appear in both imagesTr/ and imagesTs/; each case needs one id")
    return ("nnunet" if split else "decathlon"), sorted(cases, key=lambda case: case.case_id)


def _cases_from_channel_files(
    root: Path,
    folder: str,
    files: list[Path],
    ending: str,
    channels: dict[int, str],
    labels: LabelMap,
    has_labels: bool,
) -> list[Case]:
    """Groups nnU-Net's ``<case>_<cccc>`` files of one folder into cases (listing the channels found)."""
    grouped: dict[str, dict[str, Path]] = {}
    for image in files:
        match = _CHANNEL_FILE.match(image.name[: -len(ending)])
        if match is None:
            raise ValueError(f"{image}: not named <case>_<cccc>{ending} as nnU-Net raw images are")
        number = int(match["channel"])
        if number not in channels:
            raise ValueError(f"{image}: channel {number} is not among {root / DATASET_JSON}'s channels {channels}")
        grouped.setdefault(match["id"], {})[channels[number]] = image
    cases = []
    for case_id, images in sorted(grouped.items()):
        seg = root / "labelsTr" / f"{case_id}{ending}"
        cases.append(Case(case_id, images, seg if has_labels and _named(seg) else None, labels))
    return cases
