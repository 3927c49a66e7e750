"""Prepare one clinical study as a BraTS 2020 case: read, reorient, register, resample, mask, write.

Steps, each recorded with its parameters in `<case_id>_clinical.json`: read (DICOM or NIfTI),
reorient to BraTS storage order, rigid Mattes-MI registration of every scan to the reference,
resampling to an axis-aligned `spacing_mm` isotropic grid over the reference (scans linear, the
mask nearest neighbour), the brain mask, masking, T1c copied into the T1 slot when T1 is
missing, and an atomic write (the case folder appears complete or not at all).

The brain mask is the given `mask`, or else computed automatically (deepbet, the `brainmask`
extra) from the registered T1 (T1c when there is no T1); it is written beside the scans as
`<case_id>_brainmask.nii.gz`, with the unmasked scan it is checked against (the mask's input,
or the reference for a given mask) as `<case_id>_head.nii.gz`, and every voxel of the four
scans outside it is set to 0. With `skull_stripped` the scans are taken as already stripped
and written unmasked. With neither a mask, the extractor nor `skull_stripped`, it raises
`BrainMaskUnavailable` before reading anything.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from tfbrats.clinical.brainmask import DEFAULT_THRESHOLD, choose_input, extract_brain_mask, extractor_version
from tfbrats.clinical.dicom import READERS, dicom_reader_version, image_affine, read_dicom_series
from tfbrats.clinical.orient import (
    obliquity_degrees,
    orientation_code,
    to_brats_orientation,
)
from tfbrats.clinical.register import (
    RegistrationSettings,
    apply_mask,
    brats_grid,
    register_rigid,
    resample_to_grid,
)
from tfbrats.conventions import MODALITIES, REQUIRED_MODALITIES
from tfbrats.files import atomic_folder, output_file, write_json

# Reference preference when several scans share the finest voxel size.
_REFERENCE_ORDER = ("t1ce", "t1", "t2", "flair")


def read_scan(path: str | Path, *, dicom_reader: str = READERS[0]) -> tuple[sitk.Image, dict]:
    """Read a DICOM series folder or a NIfTI file as a float32 3-D image (world in LPS mm).

    Args:
        path: a folder holding one DICOM series, or a `.nii`/`.nii.gz` file.
        dicom_reader: the DICOM pixel decoder, "pydicom" or "tfio" (see `read_dicom_series`).

    Returns:
        `(image, info)` with `info` describing the source for the sidecar.

    Example:
        >>> import tempfile
        >>> import nibabel
        >>> tmp = tempfile.TemporaryDirectory()
        >>> x, y, z = np.mgrid[:24, :24, :18]
        >>> head = (100 * np.exp(-((x - 12) ** 2 + (y - 12) ** 2 + (z - 9) ** 2) / 40.0)).astype(np.float32)
        >>> for modality in ("t1ce", "t2", "flair"):  # 2 mm NIfTI scans (DICOM folders work alike)
        ...     nibabel.save(nibabel.Nifti1Image(head, np.diag([2.0, 2.0, 2.0, 1.0])), f"{tmp.name}/{modality}.nii.gz")
        >>> image, info = read_scan(f"{tmp.name}/flair.nii.gz")
        >>> image.GetSize(), info["format"], info["orientation"]
        ((24, 24, 18), 'nifti', 'RAS')
        >>> tmp.cleanup()
    """
    path = Path(path)
    if path.is_dir():
        image, info = read_dicom_series(path, reader=dicom_reader)
        info = {"format": "dicom", **info}
    elif path.is_file():
        image = sitk.ReadImage(str(path), sitk.sitkFloat32)
        info = {"format": "nifti"}
    else:
        raise FileNotFoundError(f"{path}: no such file or folder; pass a DICOM series folder or a NIfTI file.")
    if image.GetDimension() != 3:
        raise ValueError(f"{path}: image has {image.GetDimension()} dimensions, expected 3; "
                         "pass one 3-D volume (split 4-D series first).")
    return image, {"path": str(path), **info, **geometry(image)}


def geometry(image: sitk.Image) -> dict:
    """JSON-ready grid description: size, spacing, origin, direction, orientation, NIfTI affine.

    Args:
        image: a 3-D SimpleITK image.

    Example:
        >>> geometry(sitk.Image(2, 3, 4, sitk.sitkUInt8))["size"]
        [2, 3, 4]
    """
    return {
        "size": list(image.GetSize()),
        "spacing_mm": list(image.GetSpacing()),
        "origin_lps_mm": list(image.GetOrigin()),
        "direction": list(image.GetDirection()),
        "orientation": orientation_code(image),
        "obliquity_degrees": obliquity_degrees(image),
        "affine_ras": image_affine(image).tolist(),
    }


def choose_reference(images: dict[str, sitk.Image]) -> str:
    """The modality with the smallest voxel volume (highest resolution); ties prefer t1ce, t1, t2.

    Args:
        images: modality name -> image.

    Example:
        >>> fine, coarse = sitk.Image(8, 8, 8, sitk.sitkUInt8), sitk.Image(4, 4, 4, sitk.sitkUInt8)
        >>> coarse.SetSpacing((2, 2, 2))
        >>> choose_reference({"t1ce": coarse, "flair": fine})
        'flair'
    """
    order = [m for m in _REFERENCE_ORDER if m in images]
    return min(order, key=lambda m: (round(float(np.prod(images[m].GetSpacing())), 6), order.index(m)))


def prepare_case(scans: dict[str, str | Path | None], case_id: str, out_dir: str | Path, *,
                 mask: str | Path | None = None, skull_stripped: bool = False,
                 mask_input: str | None = None, mask_threshold: float = DEFAULT_THRESHOLD,
                 reference: str | None = None, spacing_mm: float = 1.0, overwrite: bool = False,
                 settings: RegistrationSettings | None = None, dicom_reader: str = READERS[0]) -> Path:
    """Turn a study's scans into `<out_dir>/<case_id>/<case_id>_{t1,t1ce,t2,flair}.nii.gz`.

    The steps, the brain mask and the sidecar are described in the module's docstring.

    Args:
        scans: modality ("t1", "t1ce", "t2", "flair") -> DICOM series folder or NIfTI file;
            t1 may be missing or None.
        case_id: the case name, a file name (`tfbrats.files.check_file_name`: no path separators,
            not starting with '.').
        out_dir: dataset root; created when missing.
        mask: brain mask (NIfTI or DICOM) in the reference scan's world coordinates; None to
            compute one.
        skull_stripped: the scans are already skull-stripped: no mask is given or computed.
        mask_input: the modality the automatic mask is computed from (default t1, else t1ce).
        mask_threshold: the automatic extractor's probability threshold.
        reference: modality whose space all scans are registered to; default the highest-resolution.
        spacing_mm: isotropic output voxel size.
        overwrite: replace an existing case folder.
        settings: registration knobs.
        dicom_reader: the DICOM pixel decoder, "pydicom" (default) or "tfio" (tensorflow-io, only
            where it loads: TensorFlow 2.16); checked before anything is read.

    Returns:
        The case folder.

    Example:
        >>> import tempfile
        >>> import nibabel
        >>> tmp = tempfile.TemporaryDirectory()
        >>> x, y, z = np.mgrid[:24, :24, :18]
        >>> head = (100 * np.exp(-((x - 12) ** 2 + (y - 12) ** 2 + (z - 9) ** 2) / 40.0)).astype(np.float32)
        >>> for modality in ("t1ce", "t2", "flair"):  # 2 mm NIfTI scans (DICOM folders work alike)
        ...     nibabel.save(nibabel.Nifti1Image(head, np.diag([2.0, 2.0, 2.0, 1.0])), f"{tmp.name}/{modality}.nii.gz")
        >>> scans = {modality: f"{tmp.name}/{modality}.nii.gz" for modality in ("t1ce", "t2", "flair")}
        >>> case = prepare_case(scans, "P001", f"{tmp.name}/prepared", skull_stripped=True, spacing_mm=2.0)
        >>> sorted(path.name for path in case.iterdir())  # no T1: T1c stands in
        ['P001_clinical.json', 'P001_flair.nii.gz', 'P001_t1.nii.gz', 'P001_t1ce.nii.gz', 'P001_t2.nii.gz']
        >>> tmp.cleanup()
    """
    request = _checked_request(scans, case_id, out_dir, mask=mask, skull_stripped=skull_stripped,
                               mask_input=mask_input, mask_threshold=mask_threshold, reference=reference,
                               spacing_mm=spacing_mm, overwrite=overwrite,
                               settings=settings or RegistrationSettings(), dicom_reader=dicom_reader)
    started = time.time()
    record = _Record()
    images, mask_image = _read_scans(request, record)
    record.reference = _reference_step(images, request.reference, record)
    fixed = images[record.reference]
    grid = brats_grid(fixed, request.spacing_mm)
    given_on_grid = None if mask_image is None else _given_mask_on_grid(mask_image, grid, request.mask)
    outputs = _register_and_resample(images, fixed, grid, mask_image, request, record)
    outputs = _mask_scans(outputs, given_on_grid, grid, request, record)
    if "t1" not in outputs:
        outputs["t1"] = sitk.Image(outputs["t1ce"])
        record.steps.append({"step": "substitute", "missing": "t1", "copied_from": "t1ce",
                             "reason": "no T1 given; the paper used T1c where T1 was missing"})
    _write_case(outputs, request, record, time.time() - started)
    return request.case_dir


@dataclasses.dataclass(frozen=True)
class _Request:
    """A checked `prepare_case` call: where the case goes and how each step runs."""

    case_id: str
    case_dir: Path
    present: dict[str, Path]
    mask: str | Path | None
    skull_stripped: bool
    mask_input: str | None
    mask_threshold: float
    reference: str | None
    spacing_mm: float
    overwrite: bool
    settings: RegistrationSettings
    dicom_reader: str


@dataclasses.dataclass
class _Record:
    """What the steps found and did, for the sidecar, and the mask and head images to write."""

    steps: list[dict] = dataclasses.field(default_factory=list)
    inputs: dict[str, dict] = dataclasses.field(default_factory=dict)
    reference: str = ""
    brain_mask: dict = dataclasses.field(default_factory=dict)
    mask_on_grid: sitk.Image | None = None
    head: sitk.Image | None = None


def _checked_request(scans: dict[str, str | Path | None], case_id: str, out_dir: str | Path, *,
                     mask: str | Path | None, skull_stripped: bool, mask_input: str | None,
                     mask_threshold: float, reference: str | None, spacing_mm: float, overwrite: bool,
                     settings: RegistrationSettings, dicom_reader: str) -> _Request:
    """Checks every argument of `prepare_case` before anything is read; each error says what to change."""
    unknown = sorted(set(scans) - set(MODALITIES))
    missing = [m for m in REQUIRED_MODALITIES if scans.get(m) is None]
    if unknown or missing:
        raise ValueError(f"scans has unknown modalities {unknown} and lacks {missing}; "
                         f"give {list(REQUIRED_MODALITIES)} and optionally t1.")
    case_dir = output_file(out_dir, case_id, what="case_id")
    present = {m: Path(p) for m, p in scans.items() if p is not None}
    if reference is not None and reference not in present:
        raise ValueError(f"reference {reference!r} is not among the given scans {sorted(present)}.")
    if mask is not None and skull_stripped:
        raise ValueError(f"a brain mask ({mask}) was given for scans said to be skull-stripped already; "
                         "give one or the other (--mask or --no_mask).")
    dicom_reader_version(dicom_reader)  # fails here, before any work, when the reader cannot load
    if mask is None and not skull_stripped:
        extractor_version()  # fails here, before any work, when the extractor is not installed
        mask_input = choose_input(present, mask_input)
        if not 0.0 < mask_threshold < 1.0:
            raise ValueError(f"brain mask threshold {mask_threshold} must lie strictly between 0 and 1.")
    elif mask_input is not None:
        raise ValueError(f"a brain mask input ({mask_input}) only applies to the automatic mask, not with "
                         f"{'--mask' if mask is not None else '--no_mask'}; drop one of them.")
    if case_dir.exists() and not overwrite:
        raise FileExistsError(f"{case_dir} already exists; choose another --out or --case_id, "
                              "or pass --overwrite.")
    return _Request(case_id, case_dir, present, mask, skull_stripped, mask_input, mask_threshold, reference,
                    spacing_mm, overwrite, settings, dicom_reader)


def _read_scans(request: _Request, record: _Record) -> tuple[dict[str, sitk.Image], sitk.Image | None]:
    """Reads every scan (and a given mask) in BraTS storage order, recording each reorientation."""
    images: dict[str, sitk.Image] = {}
    for modality, path in request.present.items():
        image, record.inputs[modality] = read_scan(path, dicom_reader=request.dicom_reader)
        images[modality] = to_brats_orientation(image)
        record.steps.append({"step": "reorient", "modality": modality, "from": orientation_code(image),
                             "to": orientation_code(images[modality]),
                             "interpolation": "none (axis permutation/flip)"})
    mask_image = None
    if request.mask is not None:
        mask_image, record.inputs["mask"] = read_scan(request.mask, dicom_reader=request.dicom_reader)
        mask_image = to_brats_orientation(mask_image)
    return images, mask_image


def _reference_step(images: dict[str, sitk.Image], given: str | None, record: _Record) -> str:
    """The modality every scan is registered to: the given one, or the highest-resolution one."""
    reference = given or choose_reference(images)
    record.steps.append({"step": "choose_reference", "reference": reference,
                         "rule": "highest resolution (smallest voxel volume)" if given is None else "given",
                         "voxel_volumes_mm3": {m: float(np.prod(i.GetSpacing())) for m, i in images.items()}})
    return reference


def _register_and_resample(images: dict[str, sitk.Image], fixed: sitk.Image, grid: sitk.Image,
                           mask_image: sitk.Image | None, request: _Request,
                           record: _Record) -> dict[str, sitk.Image]:
    """Every scan registered rigidly to the reference (itself: identity) and resampled onto `grid`."""
    outputs: dict[str, sitk.Image] = {}
    for modality, image in images.items():
        if modality == record.reference:
            transform = sitk.Euler3DTransform()
            record.steps.append({"step": "register", "modality": modality, "fixed": record.reference,
                                 "result": "identity (reference scan)"})
        else:
            result = register_rigid(fixed, image, fixed_mask=mask_image, settings=request.settings)
            transform = result.transform
            record.steps.append({"step": "register", "modality": modality, "fixed": record.reference,
                                 "metric_fixed_mask": request.mask is not None, **result.to_json()})
        outputs[modality] = resample_to_grid(image, grid, transform, interpolator="linear")
    record.steps.append({"step": "resample", "modalities": sorted(outputs), "interpolator": "linear",
                         "outside_value": 0.0, "grid": geometry(grid)})
    return outputs


def _mask_scans(outputs: dict[str, sitk.Image], given_on_grid: sitk.Image | None, grid: sitk.Image,
                request: _Request, record: _Record) -> dict[str, sitk.Image]:
    """The scans with every voxel outside the brain mask set to 0 (unchanged for stripped scans)."""
    record.mask_on_grid, record.brain_mask = _brain_mask(
        given_on_grid, request.mask, request.skull_stripped, outputs, request.mask_input,
        request.mask_threshold, request.case_id)
    if record.mask_on_grid is None:
        return outputs
    record.head = outputs[record.brain_mask.get("input", record.reference)]  # unmasked, to check the mask against
    inside = int(np.count_nonzero(sitk.GetArrayViewFromImage(record.mask_on_grid)))
    record.steps.append({"step": "mask", "source": record.brain_mask["source"], "interpolator": "nearest",
                         "outside_value": 0.0, "voxels_inside": inside,
                         "voxels_total": int(np.prod(grid.GetSize()))})
    return {m: apply_mask(image, record.mask_on_grid) for m, image in outputs.items()}


def _write_case(outputs: dict[str, sitk.Image], request: _Request, record: _Record, seconds: float) -> None:
    """Writes the scans, the mask and head (when masked) and the sidecar into the case folder, atomically."""
    case_id, brain_mask = request.case_id, record.brain_mask
    with atomic_folder(request.case_dir, replace=request.overwrite) as stage:
        files = {}
        for modality in MODALITIES:
            name = f"{case_id}_{modality}.nii.gz"
            sitk.WriteImage(outputs[modality], str(stage / name), useCompression=True)
            files[modality] = name
        if record.mask_on_grid is not None:
            files["brainmask"] = brain_mask["file"] = f"{case_id}_brainmask.nii.gz"
            sitk.WriteImage(record.mask_on_grid, str(stage / files["brainmask"]), useCompression=True)
            files["head"] = brain_mask["head_file"] = f"{case_id}_head.nii.gz"
            brain_mask["head_modality"] = brain_mask.get("input", record.reference)
            sitk.WriteImage(record.head, str(stage / files["head"]), useCompression=True)
        sidecar = {
            "tool": "python -m tfbrats.clinical",
            "case_id": case_id,
            "layout": "brats2020",
            "inputs": record.inputs,
            "reference": record.reference,
            "spacing_mm": request.spacing_mm,
            "t1_substituted": "t1" not in request.present,
            "brain_mask": brain_mask,
            "steps": record.steps,
            "outputs": files,
            "seconds": round(seconds, 2),
        }
        write_json(stage / f"{case_id}_clinical.json", sidecar)


def _given_mask_on_grid(given: sitk.Image, grid: sitk.Image, path: str | Path | None) -> sitk.Image:
    """A given brain mask resampled onto the output grid as uint8 0/1; an error when it misses the grid."""
    mask = sitk.Cast(resample_to_grid(given, grid, interpolator="nearest") != 0, sitk.sitkUInt8)
    if not sitk.GetArrayViewFromImage(mask).any():
        raise ValueError(f"the brain mask {path} has no voxel inside the case's grid; it must be "
                         "nonzero in the brain and lie in the reference scan's world coordinates.")
    return mask


def _brain_mask(given: sitk.Image | None, given_path: str | Path | None, skull_stripped: bool,
                outputs: dict[str, sitk.Image], mask_input: str | None,
                threshold: float, case_id: str) -> tuple[sitk.Image | None, dict]:
    """The brain mask on the output grid (None for stripped scans) and its sidecar record."""
    if given is not None:
        return given, {"source": "given", "path": str(given_path), "interpolator": "nearest"}
    if skull_stripped:
        return None, {"source": "none", "reason": "--no_mask: the scans were declared skull-stripped; "
                                                  "nothing was masked"}
    mask_input = mask_input or choose_input(set(outputs))
    mask, record = extract_brain_mask(outputs[mask_input], threshold, name=f"{mask_input} of {case_id}")
    return mask, {**record, "input": mask_input, "input_stage": "registered and resampled to the case grid"}
