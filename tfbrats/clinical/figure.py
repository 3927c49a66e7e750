"""A figure to check a case's brain mask: its outline over the unmasked scan on three planes.

    tfbrats-mask-figure --case_dir=clinical_cases/P001 [--out=P001_brainmask.png]

(the command is `tfbrats.cli.mask_figure`; ``python -m tfbrats.clinical.figure`` runs it too).
Reads `<id>_head.nii.gz` (the unmasked scan the mask was made from or checked against) and
`<id>_brainmask.nii.gz`, both written by ``tfbrats-clinical``, and draws axial, coronal
and sagittal slices through the mask's centre with the mask's outline in red. Needs matplotlib
(`pip install 'tfbrats[plots]'`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from tfbrats.files import atomic_path

# Plane name -> the RAS array axis it is perpendicular to.
PLANES = {"axial": 2, "coronal": 1, "sagittal": 0}


def outline(mask: np.ndarray) -> np.ndarray:
    """The mask voxels of a 2-D mask that touch a voxel outside it (4-neighbourhood, edges outside).

    Args:
        mask: 2-D boolean array.

    Example:
        >>> outline(np.ones((3, 3), bool)).astype(int).tolist()
        [[1, 1, 1], [1, 0, 1], [1, 1, 1]]
    """
    mask = np.asarray(mask, dtype=bool)
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def mask_centre(mask: np.ndarray) -> tuple[int, int, int]:
    """The voxel nearest the mask's centre of mass (the slices the figure shows).

    Example:
        >>> m = np.zeros((5, 5, 5), bool); m[1:4, 2, 3] = True
        >>> mask_centre(m)
        (2, 2, 3)
    """
    inside = np.argwhere(mask)
    if inside.size == 0:
        raise ValueError("the brain mask is empty: there is nothing to check")
    return tuple(int(round(v)) for v in inside.mean(axis=0))


def _plane(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The slice at `index` along `axis` of an RAS volume, transposed for imshow (origin lower)."""
    return np.take(volume, index, axis=axis).T


def draw_mask_check(scan: np.ndarray, mask: np.ndarray, zooms: tuple[float, float, float], path: str | Path,
                    title: str = "") -> Path:
    """Writes a PNG of `scan` on three planes through the mask's centre, the mask's outline in red.

    Args:
        scan: the unmasked scan `(x, y, z)` in RAS (e.g. `nib.as_closest_canonical`).
        mask: the brain mask on the same grid.
        zooms: voxel sizes of the three axes in mm (for the aspect ratio).
        path: the PNG file to write (atomically).
        title: figure title.

    Returns:
        the path written.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> x, y, z = np.mgrid[:24, :24, :16]
        >>> head = np.exp(-((x - 12) ** 2 + (y - 12) ** 2 + (z - 8) ** 2) / 40.0).astype(np.float32)
        >>> draw_mask_check(head, (head > 0.3).astype(np.uint8), (1.0, 1.0, 1.0), f"{tmp.name}/P001_brainmask.png").name
        'P001_brainmask.png'
        >>> tmp.cleanup()
    """
    from matplotlib.figure import Figure

    if scan.shape != mask.shape:
        raise ValueError(f"the scan has shape {scan.shape} and the mask {mask.shape}; they must share one grid")
    mask = np.asarray(mask) > 0
    centre = mask_centre(mask)
    scan = scan.astype(np.float32)
    low, high = np.percentile(scan[mask], (1, 99))
    scaled = np.clip((scan - low) / max(high - low, 1e-6), 0.0, 1.0)
    fig = Figure(figsize=(10.5, 4.0), dpi=110, layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (name, axis) in zip(axes, PLANES.items()):
        shown = [a for a in range(3) if a != axis]
        rgba = np.zeros(_plane(mask, axis, centre[axis]).shape + (4,), np.float32)
        rgba[outline(_plane(mask, axis, centre[axis]))] = (1.0, 0.1, 0.1, 1.0)
        aspect = zooms[shown[1]] / zooms[shown[0]]
        ax.imshow(_plane(scaled, axis, centre[axis]), cmap="gray", origin="lower", aspect=aspect)
        ax.imshow(rgba, origin="lower", aspect=aspect, interpolation="nearest")
        ax.set_title(f"{name} {centre[axis]}")
        ax.set_axis_off()
    volume_ml = np.count_nonzero(mask) * float(np.prod(zooms)) / 1000.0
    fig.suptitle(f"{title}: brain mask {volume_ml:.0f} ml (red outline)" if title
                 else f"brain mask {volume_ml:.0f} ml (red outline)")
    with atomic_path(path) as temporary:
        fig.savefig(temporary, format="png")
    return Path(path)


# Internal class -> RGBA of its fill in the segmentation figure.
CLASS_COLOURS = {1: (0.9, 0.15, 0.1, 0.55), 2: (1.0, 0.85, 0.1, 0.45), 3: (0.1, 0.55, 1.0, 0.6)}


def draw_segmentation_check(scan: np.ndarray, labels: np.ndarray, zooms: tuple[float, float, float],
                            path: str | Path, title: str = "") -> Path:
    """Writes a PNG of `scan` on three planes through the tumor's centre, each class filled in colour.

    Args:
        scan: the reference scan `(x, y, z)` in RAS.
        labels: internal classes 0..3 on the same grid (1 red, 2 yellow, 3 blue; `CLASS_COLOURS`).
        zooms: voxel sizes of the three axes in mm.
        path: the PNG file to write (atomically).
        title: figure title.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> x, y, z = np.mgrid[:24, :24, :16]
        >>> head = np.exp(-((x - 12) ** 2 + (y - 12) ** 2 + (z - 8) ** 2) / 40.0).astype(np.float32)
        >>> labels = np.zeros(head.shape, np.uint8)
        >>> labels[10:14, 10:14, 6:10] = 2
        >>> labels[11:13, 11:13, 7:9] = 3
        >>> draw_segmentation_check(head, labels, (1.0, 1.0, 1.0), f"{tmp.name}/P001_seg.png").name
        'P001_seg.png'
        >>> tmp.cleanup()
    """
    from matplotlib.figure import Figure

    from tfbrats.labels import CLASS_NAMES

    if scan.shape != labels.shape:
        raise ValueError(f"the scan has shape {scan.shape} and the labels {labels.shape}; they must share one grid")
    labels = np.asarray(labels)
    tumor = labels > 0
    centre = mask_centre(tumor) if tumor.any() else tuple(n // 2 for n in labels.shape)
    scan = scan.astype(np.float32)
    low, high = np.percentile(scan[scan != 0] if np.any(scan != 0) else scan, (1, 99))
    scaled = np.clip((scan - low) / max(high - low, 1e-6), 0.0, 1.0)
    fig = Figure(figsize=(10.5, 4.0), dpi=110, layout="constrained")
    for ax, (name, axis) in zip(fig.subplots(1, 3), PLANES.items()):
        shown = [a for a in range(3) if a != axis]
        plane = _plane(labels, axis, centre[axis])
        rgba = np.zeros(plane.shape + (4,), np.float32)
        for label, colour in CLASS_COLOURS.items():
            rgba[plane == label] = colour
        aspect = zooms[shown[1]] / zooms[shown[0]]
        ax.imshow(_plane(scaled, axis, centre[axis]), cmap="gray", origin="lower", aspect=aspect)
        ax.imshow(rgba, origin="lower", aspect=aspect, interpolation="nearest")
        ax.set_title(f"{name} {centre[axis]}")
        ax.set_axis_off()
    legend = ", ".join(f"{CLASS_NAMES[c]} {('red', 'yellow', 'blue')[c - 1]}" for c in CLASS_COLOURS)
    fig.suptitle(f"{title}: {legend}" if title else legend)
    with atomic_path(path) as temporary:
        fig.savefig(temporary, format="png")
    return Path(path)


def draw_case_mask(case_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draws a prepared case's brain mask over its unmasked scan (see `draw_mask_check`).

    Args:
        case_dir: a case folder written by `python -m tfbrats.clinical` with a brain mask.
        out: the PNG file; default `<case_dir>/<id>_brainmask.png`.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> x, y, z = np.mgrid[:24, :24, :16]
        >>> head = np.exp(-((x - 12) ** 2 + (y - 12) ** 2 + (z - 8) ** 2) / 40.0).astype(np.float32)
        >>> case = Path(tmp.name) / "P001"
        >>> case.mkdir()
        >>> nib.save(nib.Nifti1Image(head, np.eye(4)), case / "P001_head.nii.gz")
        >>> nib.save(nib.Nifti1Image((head > 0.3).astype(np.uint8), np.eye(4)), case / "P001_brainmask.nii.gz")
        >>> draw_case_mask(case).relative_to(tmp.name)
        PosixPath('P001/P001_brainmask.png')
        >>> tmp.cleanup()
    """
    case_dir = Path(case_dir)
    case_id = case_dir.name
    files = {name: case_dir / f"{case_id}_{name}.nii.gz" for name in ("head", "brainmask")}
    for name, path in files.items():
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing; a case prepared with --mask or the automatic brain mask has it "
                f"(one prepared with --no_mask has no {name} file to draw).")
    head = nib.as_closest_canonical(nib.load(files["head"]))
    mask = nib.as_closest_canonical(nib.load(files["brainmask"]))
    if not np.allclose(head.affine, mask.affine, atol=1e-4):
        raise ValueError(f"{files['head']} and {files['brainmask']} are on different grids; prepare the case again.")
    out = Path(out) if out is not None else case_dir / f"{case_id}_brainmask.png"
    zooms = tuple(float(z) for z in head.header.get_zooms()[:3])
    return draw_mask_check(np.asarray(head.dataobj), np.asarray(mask.dataobj), zooms, out, title=case_id)


if __name__ == "__main__":
    from tfbrats.cli.mask_figure import main

    sys.exit(main())
