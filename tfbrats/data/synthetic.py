"""Synthetic brain tumor cases for the demo and the tests, in any layout tfbrats reads.

Usage (the command is `tfbrats.cli.synthetic`; ``python -m tfbrats.data.synthetic`` runs it too):
    tfbrats-synthetic --out=demo_data --cases=8 --shape=96,96,64 --seed=0
    tfbrats-synthetic --out=Task01_BrainTumour --cases=8 --layout=decathlon --test_cases=2

``--layout`` (`write_synthetic_dataset`'s ``layout``) chooses how the cases are stored (int16
modalities, uint8 labels, 1 mm voxels, BraTS' affine in every layout):

- ``brats2020`` (default): ``<id>/<id>_{t1,t1ce,t2,flair,seg}.nii.gz``, labels 1 necrosis,
  2 edema, 4 enhancing tumor
- ``brats2023``: ``<id>/<id>-{t1n,t1c,t2w,t2f,seg}.nii.gz``, enhancing tumor 3
- ``brats2025``: BraTS 2024/2025 glioma, the same names, pre-treatment cases (even numbers, ids
  ``BraTS-GLI-00002-000``) mixed with post-treatment ones (odd numbers, ``BraTS-GLI-00001-100``)
  whose tumor was resected: labels 1 NETC, 2 SNFH, 3 ET, 4 resection cavity
- ``decathlon``: Task01_BrainTumour, ``dataset.json`` and ``imagesTr/BRATS_001.nii.gz`` holding
  FLAIR, T1w, T1gd, T2w as one 4-D image, ``labelsTr/`` with 1 edema, 2 non-enhancing tumor,
  3 enhancing tumor, test cases in ``imagesTs/``
- ``nnunet``: an nnU-Net raw dataset, ``dataset.json`` and ``imagesTr/BraTS_001_0000.nii.gz`` ...
  (channels FLAIR, T1, T1ce, T2), labels 1 edema, 2 necrosis, 3 enhancing tumor declared as
  nnU-Net's regions (whole tumor, tumor core, enhancing tumor), test cases in ``imagesTs/``

The same seed writes the same cases (voxels and labels) in every layout. Each case shows a
skull-stripped head: white matter, cortex and ventricles that look different in T1, T1c, T2 and
FLAIR, and a tumor whose necrotic core, enhancing rim (absent in every fourth case) and
surrounding edema have the contrasts of real glioma (edema bright in FLAIR and T2, the rim
bright in T1c), under a smooth bias field and Gaussian noise. A post-treatment case
(`synthetic_case`'s ``post_treatment``) has, where the tumor's core was, a fluid-filled resection
cavity (dark in T1 and T1c, bright in T2, dark in FLAIR but for a faint smooth haze), a residual
tumor nodule on one side of its wall (enhancing with a necrotic centre, or non-enhancing in cases
without enhancing tumor) and FLAIR hyperintensity around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import scipy.ndimage

from tfbrats.data.records import BRATS2020_LABELS, BRATS2023_LABELS, BRATS2024_LABELS, DECATHLON_LABELS, LabelMap
from tfbrats.files import atomic_path, write_json

# Tissue classes of the generator and their intensities (arbitrary units) per modality.
_BACKGROUND, _CSF, _GREY, _WHITE, _NECROSIS, _EDEMA, _ENHANCING, _NONENHANCING, _CAVITY = range(9)
_INTENSITY = {
    #          bg   CSF   grey  white necr. edema enh.  non-enh. cavity
    "t1": (0, 250, 550, 750, 300, 450, 520, 420, 200),
    "t1ce": (0, 260, 580, 760, 280, 480, 1250, 430, 210),
    "t2": (0, 1500, 820, 550, 1400, 1250, 900, 1050, 1700),
    "flair": (0, 150, 650, 500, 750, 1350, 1000, 1100, 260),
}
# Tissue class -> internal class (0 background, 1 NETC, 2 SNFH, 3 ET, 4 resection cavity).
_CLASS = np.array([0, 0, 0, 0, 1, 2, 3, 1, 4], dtype=np.uint8)


def _smooth_field(rng: np.random.Generator, shape: Sequence[int], grid: int = 6) -> np.ndarray:
    """A smooth random field of unit-order amplitude over `shape`.

    A coarse ``grid**3`` normal field is upsampled cubically to a quarter of `shape`, then
    linearly to `shape` (a full-size cubic zoom costs ~6 s at 240x240x155, this ~0.8 s).
    """
    coarse = rng.normal(size=(grid, grid, grid)).astype(np.float32)
    quarter = [max(grid, s // 4) for s in shape]
    middle = scipy.ndimage.zoom(coarse, [q / grid for q in quarter], order=3, mode="nearest")
    full = scipy.ndimage.zoom(middle, [s / m for s, m in zip(shape, middle.shape)], order=1, mode="nearest")
    return full[: shape[0], : shape[1], : shape[2]]


def synthetic_case(
    shape: Sequence[int], rng: np.random.Generator, enhancing: bool = True, post_treatment: bool = False
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Makes one synthetic case in nibabel's ``(x, y, z)`` order.

    Args:
        shape: ``(X, Y, Z)`` voxels (1 mm each).
        rng: The random generator.
        enhancing: Give the tumor an enhancing rim (ET); otherwise its core is non-enhancing.
        post_treatment: Replace the tumor's core by a resection cavity with a residual tumor
            nodule on its wall (BraTS 2024/2025's post-treatment cases).

    Returns:
        (modalities ``{t1, t1ce, t2, flair}`` as int16, seg as uint8): labels 0/1/2/4 (BraTS
        2020's values) for a pre-treatment case, 0/1/2/3/4 (BraTS 2024's, 4 the cavity) for a
        post-treatment one.

    Example:
        >>> images, seg = synthetic_case((64, 64, 48), np.random.default_rng(0))
        >>> images["flair"].dtype, sorted(np.unique(seg).tolist())
        (dtype('int16'), [0, 1, 2, 4])
        >>> sorted(np.unique(synthetic_case((64, 64, 48), np.random.default_rng(0), post_treatment=True)[1]).tolist())
        [0, 1, 2, 3, 4]
    """
    shape = tuple(int(s) for s in shape)
    axes = [np.linspace(-1.0, 1.0, s, dtype=np.float32) for s in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    tissue, radii = _head(rng, shape, x, y, z)
    brain = tissue != _BACKGROUND
    # Tumor: irregular nested regions (edema > core > necrosis) in one hemisphere.
    centre = np.array(
        [rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.4), rng.uniform(-0.35, 0.35), rng.uniform(-0.3, 0.3)]
    )
    core_radius = rng.uniform(0.12, 0.22)
    shape_noise = 1.0 + 0.18 * _smooth_field(rng, shape, grid=8)
    offsets = (x - centre[0], y - centre[1], z - centre[2])
    distance = np.sqrt(sum(o**2 for o in offsets)) * shape_noise
    edema = (distance < core_radius * rng.uniform(1.6, 2.2)) & brain
    core = (distance < core_radius) & brain
    necrosis = (distance < core_radius * rng.uniform(0.35, 0.6)) & brain
    tissue[edema] = _EDEMA
    if post_treatment:
        _resect(tissue, rng, core, distance, offsets, shape_noise, core_radius, enhancing)
    elif enhancing:
        tissue[core] = _ENHANCING
        tissue[necrosis] = _NECROSIS
    else:
        tissue[core] = _NONENHANCING
    internal = _CLASS[tissue]
    seg = (BRATS2024_LABELS if post_treatment else BRATS2020_LABELS).to_dataset(internal)
    images = {}
    texture = 1.0 + 0.04 * _smooth_field(rng, shape, grid=16)
    # A resection cavity's fluid is suppressed in FLAIR, not always fully: a faint smooth haze.
    haze = 1.0
    if post_treatment:  # (drawn only here: pre-treatment cases keep their voxels)
        haze = np.where(tissue == _CAVITY, 1.0 + 0.5 * np.abs(_smooth_field(rng, shape, grid=4)), 1.0)
    for name, values in _INTENSITY.items():
        clean = np.asarray(values, dtype=np.float32)[tissue] * (haze if name == "flair" else 1.0)
        clean = scipy.ndimage.gaussian_filter(clean * texture, sigma=0.6)
        bias = np.exp(0.15 * _smooth_field(rng, shape, grid=3))
        noisy = clean * bias + rng.normal(0.0, 15.0, size=shape)
        images[name] = np.where(brain, np.clip(np.rint(noisy), 1, 32000), 0).astype(np.int16)
    return images, seg


def _head(rng: np.random.Generator, shape: tuple[int, ...], x: np.ndarray, y: np.ndarray,
          z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tissue classes of a skull-stripped head (CSF rim, cortex, white matter, ventricles) and its radii."""
    radii = rng.uniform(0.72, 0.85, size=3) * np.array([0.92, 1.0, 0.95])
    radius = np.sqrt((x / radii[0]) ** 2 + (y / radii[1]) ** 2 + (z / radii[2]) ** 2)
    radius = radius * (1.0 + 0.04 * _smooth_field(rng, shape))
    tissue = np.full(shape, _BACKGROUND, dtype=np.uint8)
    tissue[radius < 1.0] = _CSF
    folds = 0.05 * _smooth_field(rng, shape, grid=12)
    tissue[radius < 0.96] = _GREY
    tissue[radius < 0.80 + folds] = _WHITE
    for side in (-1.0, 1.0):
        ventricle = ((x - side * 0.12 * radii[0]) / 0.08) ** 2 + (y / 0.3) ** 2 + ((z - 0.05) / 0.15) ** 2
        tissue[ventricle < 1.0] = _CSF
    return tissue, radii


def _resect(tissue: np.ndarray, rng: np.random.Generator, core: np.ndarray, distance: np.ndarray,
            offsets: tuple[np.ndarray, ...], shape_noise: np.ndarray, core_radius: float, enhancing: bool) -> None:
    """Turns the tumor's core into a fluid cavity with a residual tumor nodule on its wall (in place).

    The residual tumor is nodular, never a thin line along the wall: BraTS 2024's post-treatment
    annotation counts thick or nodular enhancement as enhancing tumor and leaves out thin, linear
    enhancement along a resection cavity. The nodule sits on one side of the cavity, bulging into it;
    an enhancing nodule has a necrotic (non-enhancing) centre.
    """
    cavity = core & (distance < core_radius * rng.uniform(0.8, 0.95))
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    radius = core_radius * rng.uniform(0.6, 0.8)
    # The nodule's centre lies a third of its radius outside the cavity's wall (taken at 0.875 core
    # radii, the middle of the cavity's range).
    centre = direction * (core_radius * 0.875 + radius / 3.0)
    from_centre = np.sqrt(sum((o - c) ** 2 for o, c in zip(offsets, centre))) * shape_noise
    nodule = (from_centre < radius) & (tissue != _BACKGROUND)
    tissue[cavity] = _CAVITY
    tissue[nodule] = _ENHANCING if enhancing else _NONENHANCING
    if enhancing:
        tissue[nodule & (from_centre < radius * rng.uniform(0.45, 0.6))] = _NONENHANCING


def has_enhancing_tumor(number: int) -> bool:
    """Whether synthetic case `number` (1-based) has an enhancing rim: all but every fourth.

    BraTS, too, holds cases without enhancing tumor (mostly lower-grade gliomas), and they are
    scored apart from the rest: any predicted ET there is ET Dice 0.

    Example:
        >>> [n for n in range(1, 13) if not has_enhancing_tumor(n)]
        [4, 8, 12]
    """
    return number % 4 != 0


def is_post_treatment(number: int, layout: str) -> bool:
    """Whether synthetic case `number` (1-based) of `layout` is post-treatment: the odd ones of ``brats2025``.

    Example:
        >>> [n for n in range(1, 7) if is_post_treatment(n, "brats2025")], is_post_treatment(1, "brats2023")
        ([1, 3, 5], False)
    """
    return layout == "brats2025" and number % 2 == 1


def _affine(shape: Sequence[int]) -> np.ndarray:
    """BraTS' affine for 1 mm voxels: x and y flipped (LPS-like storage), origin at a corner."""
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[1, 3] = shape[1] - 1
    return affine


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Writes one NIfTI volume (or 4-D image) atomically, with millimetre units and scanner qform/sform."""
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    with atomic_path(path) as partial:
        image.to_filename(partial)


LAYOUTS = ("brats2020", "brats2023", "brats2025", "decathlon", "nnunet")
_BRATS_LAYOUTS = ("brats2020", "brats2023", "brats2025")
# Per layout: the file name of each modality (BraTS layouts) or the channel names in order.
_BRATS2023_FILES = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}
_DECATHLON_CHANNELS = (("flair", "FLAIR"), ("t1", "T1w"), ("t1ce", "t1gd"), ("t2", "T2w"))
_NNUNET_CHANNELS = (("flair", "FLAIR"), ("t1", "T1"), ("t1ce", "T1ce"), ("t2", "T2"))
_LAYOUT_LABELS = {
    "brats2020": BRATS2020_LABELS,
    "brats2023": BRATS2023_LABELS,
    "brats2025": BRATS2024_LABELS,
    "decathlon": DECATHLON_LABELS,
    "nnunet": LabelMap(necrosis=2, edema=1, enhancing=3),  # nnU-Net's BraTS convention
}


def _dataset_json(layout: str, training: list[str], test: list[str]) -> dict:
    """The ``dataset.json`` of a synthetic Decathlon or nnU-Net raw dataset."""
    if layout == "decathlon":
        return {
            "name": "BRATS",
            "description": "tfbrats synthetic phantoms in the Medical Segmentation Decathlon's Task01 layout",
            "tensorImageSize": "4D",
            "modality": {str(i): name for i, (_, name) in enumerate(_DECATHLON_CHANNELS)},
            "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
            "numTraining": len(training),
            "numTest": len(test),
            "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in training],
            "test": [f"./imagesTs/{c}.nii.gz" for c in test],
        }
    return {
        "name": "BraTSSynthetic",
        "description": "tfbrats synthetic phantoms as an nnU-Net raw dataset (region-based labels)",
        "channel_names": {str(i): name for i, (_, name) in enumerate(_NNUNET_CHANNELS)},
        "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]},
        "regions_class_order": [1, 2, 3],
        "numTraining": len(training),
        "file_ending": ".nii.gz",
    }


def _write_case(
    out: Path, layout: str, number: int, images: dict[str, np.ndarray], seg: np.ndarray | None, affine: np.ndarray
) -> tuple[str, Path]:
    """Writes one case in `layout`; returns its id and its folder (BraTS) or its first image file."""
    if layout in _BRATS_LAYOUTS:
        visit = "100" if is_post_treatment(number, layout) else "000"
        case_id = f"BraTS20_Training_{number:03d}" if layout == "brats2020" else f"BraTS-GLI-{number:05d}-{visit}"
        sep, names = ("_", {k: k for k in images}) if layout == "brats2020" else ("-", _BRATS2023_FILES)
        folder = out / case_id
        folder.mkdir(parents=True, exist_ok=True)
        for name, volume in images.items():
            _save(volume, affine, folder / f"{case_id}{sep}{names[name]}.nii.gz")
        if seg is not None:
            _save(seg, affine, folder / f"{case_id}{sep}seg.nii.gz")
        return case_id, folder
    images_dir = out / ("imagesTr" if seg is not None else "imagesTs")
    if layout == "decathlon":
        case_id = f"BRATS_{number:03d}"
        stacked = np.stack([images[key] for key, _ in _DECATHLON_CHANNELS], axis=-1)
        _save(stacked, affine, images_dir / f"{case_id}.nii.gz")
    else:
        case_id = f"BraTS_{number:03d}"
        for channel, (key, _) in enumerate(_NNUNET_CHANNELS):
            _save(images[key], affine, images_dir / f"{case_id}_{channel:04d}.nii.gz")
    if seg is not None:
        _save(seg, affine, out / "labelsTr" / f"{case_id}.nii.gz")
    return case_id, images_dir / (f"{case_id}.nii.gz" if layout == "decathlon" else f"{case_id}_0000.nii.gz")


def write_synthetic_dataset(
    out: str | Path,
    cases: int,
    shape: Sequence[int] = (240, 240, 155),
    seed: int = 0,
    layout: str = "brats2020",
    test_cases: int = 0,
) -> list[Path]:
    """Writes synthetic cases in one of `LAYOUTS`.

    Every fourth case (the 4th, 8th, ...) has no enhancing tumor (`has_enhancing_tumor`). Case `n`
    holds the same voxels and tumor in every layout; only the file names and the label values differ,
    except in ``brats2025``, whose odd cases are post-treatment (`is_post_treatment`).

    Args:
        out: The dataset folder (created if needed).
        cases: How many cases in all.
        shape: ``(X, Y, Z)`` of every volume.
        seed: The random seed; the same seed writes the same data.
        layout: ``brats2020``, ``brats2023``, ``brats2025``, ``decathlon`` or ``nnunet``.
        test_cases: How many of the cases (the last ones) are test cases without labels
            (``imagesTs/`` in the Decathlon and nnU-Net layouts, no seg file in BraTS').

    Returns:
        Per case, its folder (BraTS layouts, e.g. ``out/BraTS20_Training_001``), its 4-D image
        (Decathlon, ``out/imagesTr/BRATS_001.nii.gz``) or its first channel's file (nnU-Net,
        ``out/imagesTr/BraTS_001_0000.nii.gz``).

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> folders = write_synthetic_dataset(tmp.name, cases=2, shape=(48, 48, 32))
        >>> [folder.name for folder in folders]
        ['BraTS20_Training_001', 'BraTS20_Training_002']
        >>> sorted(path.name for path in folders[0].iterdir())[:2]
        ['BraTS20_Training_001_flair.nii.gz', 'BraTS20_Training_001_seg.nii.gz']
        >>> tmp.cleanup()
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} is not one of {LAYOUTS}")
    if not 0 <= test_cases <= cases:
        raise ValueError(f"test_cases must lie in [0, cases={cases}]; got {test_cases}")
    out = Path(out)
    labels = _LAYOUT_LABELS[layout]
    written, training, test = [], [], []
    for number in range(1, cases + 1):
        rng = np.random.default_rng([seed, number])
        post = is_post_treatment(number, layout)
        images, seg = synthetic_case(shape, rng, enhancing=has_enhancing_tumor(number), post_treatment=post)
        has_labels = number <= cases - test_cases
        source = BRATS2024_LABELS if post else BRATS2020_LABELS
        stored = labels.to_dataset(source.to_internal(seg)) if has_labels else None
        case_id, path = _write_case(out, layout, number, images, stored, _affine(shape))
        (training if has_labels else test).append(case_id)
        written.append(path)
    if layout in ("decathlon", "nnunet"):
        write_json(out / "dataset.json", _dataset_json(layout, training, test))
    return written


if __name__ == "__main__":
    import sys

    from tfbrats.cli.synthetic import main

    sys.exit(main())
