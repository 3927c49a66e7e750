"""Draws a case like the paper's Fig. 1: T1, T1c, T2, FLAIR and the segmentation on one slice.

    python tools/visualize.py --case_dir=/data/BraTS2020/BraTS20_Training_001 --out=case.png
    python tools/visualize.py --case_dir=... --pred=predictions/<case_id>.nii.gz --out=...

The slice is the one with most tumour (in the reference, or in the prediction when the case has no
segmentation). Labels are drawn over FLAIR: edema orange, necrotic/non-enhancing core white,
enhancing tumour red, resection cavity blue; with `--pred`, reference and prediction side by side.
The file names say what a value means: in a BraTS 2023+ case (`-t1n`, ...) 3 is enhancing tumour
and 4 the resection cavity (BraTS 2024/2025), in a BraTS 2018-2021 case (`_t1`, ...) 4 is
enhancing tumour. Needs matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from absl import app, flags

from tfbrats.data.records import BRATS2020_LABELS, BRATS2024_LABELS, LabelMap

# Modality -> file name endings in BraTS 2018-2021 and BraTS 2023+ case folders.
MODALITY_SUFFIXES = {
    "T1": ("_t1", "-t1n"),
    "T1c": ("_t1ce", "-t1c"),
    "T2": ("_t2", "-t2w"),
    "FLAIR": ("_flair", "-t2f"),
    "seg": ("_seg", "-seg"),
}
# Internal class -> RGB: core 1 white, edema 2 orange, enhancing tumour 3 red, resection cavity 4 blue.
LABEL_COLOURS = {1: (1.0, 1.0, 1.0), 2: (1.0, 0.55, 0.0), 3: (0.9, 0.0, 0.0), 4: (0.1, 0.45, 1.0)}
LEGEND = {"edema": 2, "necrotic / non-enhancing core": 1, "enhancing tumour": 3, "resection cavity": 4}

_CASE_DIR = flags.DEFINE_string("case_dir", None, "Case folder with the four modalities (and seg).")
_PRED = flags.DEFINE_string("pred", None, "Optional predicted segmentation of the case (NIfTI).")
_OUT = flags.DEFINE_string("out", None, "PNG file to write.")
_SLICE = flags.DEFINE_integer("slice", None, "Axial slice to draw (default: most tumour).")
flags.mark_flags_as_required(["case_dir", "out"])


def find_case_files(case_dir: Path) -> dict[str, Path]:
    """Finds the modality and segmentation files of a BraTS case folder, keyed by display name.

    Args:
        case_dir: folder with `<id>_t1.nii.gz`, ... (or the BraTS 2023+ `-t1n.nii.gz`, ...).

    Returns:
        dict of the keys of `MODALITY_SUFFIXES` found -> path.

    Example:
        find_case_files(Path("BraTS20_Training_001"))
        # -> {'T1': PosixPath('BraTS20_Training_001/BraTS20_Training_001_t1.nii.gz'), ...}
    """
    found = {}
    for path in sorted(case_dir.iterdir()):
        stem = path.name.removesuffix(".gz").removesuffix(".nii")
        for name, suffixes in MODALITY_SUFFIXES.items():
            if stem != path.name and stem.endswith(suffixes):
                found[name] = path
    if not any(name in found for name in ("T1", "T1c", "T2", "FLAIR")):
        raise FileNotFoundError(
            f"no modality files (*_t1, *_t1ce, *_t2, *_flair or *-t1n, *-t1c, *-t2w, *-t2f .nii.gz) in {case_dir}"
        )
    return found


def case_label_map(files: dict[str, Path]) -> LabelMap:
    """The label values of a case from its file names: BraTS 2023+ (4 = resection cavity) or 2018-2021 (4 = ET).

    Example:
        >>> case_label_map({"T1": Path("BraTS-GLI-00001-100-t1n.nii.gz")}).cavity
        4
        >>> case_label_map({"T1": Path("BraTS20_Training_001_t1.nii.gz")}).enhancing
        4
    """
    modern = any(path.name.removesuffix(".gz").removesuffix(".nii").endswith(MODALITY_SUFFIXES[name][1])
                 for name, path in files.items())
    return BRATS2024_LABELS if modern else BRATS2020_LABELS


def read_classes(path: Path, label_map: LabelMap) -> np.ndarray:
    """A segmentation in RAS as internal classes; a value the case's labels do not have is an error naming the file."""
    try:
        return label_map.to_internal(load_canonical(path))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error


def load_canonical(path: Path) -> np.ndarray:
    """Reads a NIfTI volume reoriented to RAS, so axis 2 is the axial (inferior->superior) axis."""
    return np.asarray(nib.as_closest_canonical(nib.load(path)).dataobj)


def tumour_slice(labels: np.ndarray) -> int:
    """Index of the axial slice (last axis) with most labelled voxels.

    Args:
        labels: label map `(x, y, z)`.

    Returns:
        the slice index.

    Example:
        >>> labels = np.zeros((4, 4, 3), np.uint8); labels[1:3, 1:3, 2] = 2
        >>> tumour_slice(labels)
        2
    """
    counts = (labels > 0).sum(axis=(0, 1))
    if not counts.any():
        raise ValueError("the segmentation is empty: pass --slice to choose the slice")
    return int(np.argmax(counts))


def label_overlay(labels: np.ndarray, alpha: float = 0.8) -> np.ndarray:
    """RGBA image of a 2-D map of internal classes in `LABEL_COLOURS`, transparent where it is 0."""
    rgba = np.zeros(labels.shape + (4,), np.float32)
    for value, colour in LABEL_COLOURS.items():
        rgba[labels == value] = colour + (alpha,)
    return rgba


def draw_case(
    images: dict[str, np.ndarray],
    segmentations: dict[str, np.ndarray],
    z: int,
    path: Path,
    title: str = "",
) -> Path:
    """Writes one row of panels: each image, then FLAIR with each segmentation overlaid.

    Args:
        images: display name -> volume `(x, y, z)` in RAS.
        segmentations: panel title (e.g. "reference", "prediction") -> volume of internal classes
            `(x, y, z)` (0 background, 1 core, 2 edema, 3 enhancing tumour, 4 resection cavity).
        z: the axial slice to draw.
        path: the PNG file to write.
        title: figure title.

    Returns:
        the path written.

    Example:
        draw_case({"FLAIR": flair}, {"reference": seg}, 70, Path("case.png"))
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    background = images.get("FLAIR", next(iter(images.values())))
    panels = len(images) + len(segmentations)
    fig = Figure(figsize=(2.6 * panels, 3.2), dpi=120, layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    for ax, (name, volume) in zip(axes, images.items()):
        ax.imshow(_windowed(volume[:, :, z]).T, cmap="gray", origin="lower")
        ax.set_title(name)
    for ax, (name, labels) in zip(axes[len(images) :], segmentations.items()):
        ax.imshow(_windowed(background[:, :, z]).T, cmap="gray", origin="lower")
        ax.imshow(label_overlay(labels[:, :, z]).transpose(1, 0, 2), origin="lower")
        ax.set_title(name)
    for ax in axes:
        ax.set_axis_off()
    drawn = {value for labels in segmentations.values() for value in np.unique(labels[:, :, z]).tolist()}
    handles = [Patch(color=LABEL_COLOURS[value], label=name) for name, value in LEGEND.items()
               if value < 4 or value in drawn]  # the cavity's entry only where a cavity is drawn
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), facecolor="0.85")
    fig.suptitle(f"{title} (axial slice {z})" if title else f"axial slice {z}")
    fig.savefig(path)
    return path


def _windowed(image: np.ndarray) -> np.ndarray:
    """Scales intensities to 0..1 between the 1st and 99th percentile of the nonzero voxels."""
    image = image.astype(np.float32)
    nonzero = image[image != 0]
    if nonzero.size == 0:
        return image
    low, high = np.percentile(nonzero, (1, 99))
    return np.clip((image - low) / max(high - low, 1e-6), 0.0, 1.0)


def main(argv: list[str]) -> None:
    """Draws `--case_dir` (and `--pred`) into `--out`."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    case_dir = Path(_CASE_DIR.value)
    files = find_case_files(case_dir)
    images = {name: load_canonical(files[name]) for name in ("T1", "T1c", "T2", "FLAIR") if name in files}
    label_map, segmentations = case_label_map(files), {}
    if "seg" in files:
        segmentations["reference"] = read_classes(files["seg"], label_map)
    if _PRED.value:
        segmentations["prediction"] = read_classes(Path(_PRED.value), label_map)
    if not segmentations:
        raise app.UsageError(f"case {case_dir} has no segmentation: pass --pred")
    shape = next(iter(images.values())).shape
    for name, volume in {**images, **segmentations}.items():
        if volume.shape != shape:
            raise ValueError(f"case {case_dir}: {name} has shape {volume.shape}, images {shape}")
    z = _SLICE.value if _SLICE.value is not None else tumour_slice(next(iter(segmentations.values())))
    if not 0 <= z < shape[2]:
        raise ValueError(f"--slice={z} is outside the case's {shape[2]} axial slices")
    out = draw_case(images, segmentations, z, Path(_OUT.value), title=case_dir.name)
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
