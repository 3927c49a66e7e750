"""Rigid co-registration (Mattes mutual information), 1 mm resampling and masking with SimpleITK."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class RegistrationSettings:
    """The knobs of `register_rigid`; every one is recorded in the sidecar.

    Args:
        histogram_bins: Mattes mutual information histogram bins.
        sampling_percentage: fraction of fixed-image voxels sampled (random, seeded) per iteration.
        seed: sampling seed (at least 1: SimpleITK reads 0 as "seed from the clock"), so a run
            is reproducible, whatever the number of threads.
        shrink_factors: multi-resolution pyramid, coarse to fine.
        smoothing_sigmas_mm: Gaussian smoothing per pyramid level, in millimetres.
        learning_rate: regular-step gradient descent initial step (scaled by physical shift).
        min_step: the optimizer stops when its step falls below this.
        iterations: maximum iterations per level.

    Example:
        >>> RegistrationSettings(iterations=50).histogram_bins
        32
    """

    histogram_bins: int = 32
    sampling_percentage: float = 0.25
    seed: int = 1
    shrink_factors: tuple[int, ...] = (2, 1)
    smoothing_sigmas_mm: tuple[float, ...] = (2.0, 0.0)
    learning_rate: float = 1.0
    min_step: float = 1e-4
    iterations: int = 200

    def __post_init__(self) -> None:
        if self.seed < 1:
            raise ValueError(
                f"RegistrationSettings.seed is {self.seed}; it must be at least 1 (SimpleITK takes 0 as "
                "'seed from the clock', and runs would differ)"
            )


@dataclass
class RegistrationResult:
    """A fitted rigid transform (fixed -> moving points) and how the optimisation went."""

    transform: sitk.Euler3DTransform
    metric_initial: float
    metric_final: float
    iterations: int  # of the last (finest) pyramid level
    stop_condition: str
    settings: RegistrationSettings = field(default_factory=RegistrationSettings)

    def to_json(self) -> dict:
        """A JSON-ready record: metric values, optimiser state and the transform (LPS, mm, rad).

        Example:
            >>> image = sitk.GetImageFromArray(np.pad(np.ones((8, 8, 8), np.float32), 12))
            >>> result = register_rigid(image, image)
            >>> result.to_json()["transform"]["type"]
            'Euler3DTransform'
        """
        return {
            "metric": "MattesMutualInformation (negative: lower is better)",
            "metric_initial": self.metric_initial,
            "metric_final": self.metric_final,
            "iterations_last_level": self.iterations,
            "stop_condition": self.stop_condition,
            "settings": {k: list(v) if isinstance(v, tuple) else v
                         for k, v in vars(self.settings).items()},
            "transform": transform_to_json(self.transform),
        }


def transform_to_json(transform: sitk.Euler3DTransform) -> dict:
    """Describe a rigid transform: Euler angles, translation, centre and the 4x4 LPS matrix.

    The transform maps points of the reference (fixed) image to the moving image, as SimpleITK's
    resampler uses it.

    Args:
        transform: a SimpleITK Euler3DTransform.

    Example:
        >>> transform_to_json(sitk.Euler3DTransform())["rotation_degrees"]
        0.0
    """
    matrix = np.eye(4)
    matrix[:3, :3] = np.array(transform.GetMatrix()).reshape(3, 3)
    center = np.array(transform.GetCenter())
    matrix[:3, 3] = np.array(transform.GetTranslation()) + center - matrix[:3, :3] @ center
    return {
        "type": "Euler3DTransform",
        "angles_rad": list(transform.GetParameters()[:3]),
        "translation_mm": list(transform.GetTranslation()),
        "center_mm": list(center),
        "matrix_lps_fixed_to_moving": matrix.tolist(),
        "rotation_degrees": rotation_angle_degrees(matrix[:3, :3]),
    }


def rotation_angle_degrees(rotation: np.ndarray) -> float:
    """The angle of a 3x3 rotation matrix about its axis, in degrees.

    Args:
        rotation: a proper rotation matrix.

    Example:
        >>> rotation_angle_degrees(np.eye(3))
        0.0
    """
    cosine = np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(cosine)))


def _physical_center(image: sitk.Image) -> tuple[float, float, float]:
    """World position of the centre of an image's voxel grid."""
    return image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in image.GetSize()])


def register_rigid(fixed: sitk.Image, moving: sitk.Image, fixed_mask: sitk.Image | None = None,
                   settings: RegistrationSettings | None = None) -> RegistrationResult:
    """Rigidly register `moving` to `fixed` by maximising Mattes mutual information.

    Scans of one session share the scanner's frame of reference, so the search starts from the
    identity (rotation about the fixed image's centre), not from a centre-of-mass guess that a
    different field of view would bias.

    Args:
        fixed: the reference scan (any resolution and orientation).
        moving: the scan to align (any modality; mutual information handles the contrast).
        fixed_mask: optional brain mask on any grid; only voxels inside it drive the metric.
        settings: optimiser and metric knobs (defaults suit brain MRI at 1-3 mm).

    Returns:
        The transform that maps fixed-image world points to moving-image world points.

    Example:
        >>> volume = np.zeros((32, 32, 32), np.float32)
        >>> volume[8:24, 10:22, 6:26], volume[12:18, 12:16, 10:14] = 1.0, 2.0
        >>> t1c = sitk.GetImageFromArray(volume)
        >>> shift = sitk.Euler3DTransform((15.5, 15.5, 15.5), 0.0, 0.0, 0.05, (1.5, 0.0, 0.0))
        >>> flair = sitk.Resample(t1c, t1c, shift, sitk.sitkLinear)  # the same head, moved
        >>> result = register_rigid(t1c, flair)
        >>> [round(abs(value), 1) for value in result.transform.GetTranslation()]  # mm
        [1.5, 0.1, 0.0]
        >>> resample_to_grid(flair, brats_grid(t1c), result.transform).GetSize()
        (32, 32, 32)
    """
    settings = settings or RegistrationSettings()
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    initial = sitk.Euler3DTransform()
    initial.SetCenter(_physical_center(fixed))

    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.histogram_bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(settings.sampling_percentage, settings.seed)
    if fixed_mask is not None:
        method.SetMetricFixedMask(resample_to_grid(fixed_mask, fixed, interpolator="nearest") > 0)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=settings.learning_rate, minStep=settings.min_step,
        numberOfIterations=settings.iterations, relaxationFactor=0.5)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(settings.shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(settings.smoothing_sigmas_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=True)
    metric_initial = method.MetricEvaluate(fixed, moving)
    method.Execute(fixed, moving)
    return RegistrationResult(
        transform=initial,
        metric_initial=float(metric_initial),
        metric_final=float(method.GetMetricValue()),
        iterations=int(method.GetOptimizerIteration()),
        stop_condition=method.GetOptimizerStopConditionDescription(),
        settings=settings,
    )


def brats_grid(reference: sitk.Image, spacing_mm: float = 1.0) -> sitk.Image:
    """An empty axis-aligned (identity direction, LPS) grid at `spacing_mm` over the reference's extent.

    The grid covers the reference's footprint (its outer voxel faces), `round(size * spacing /
    spacing_mm)` voxels per axis for a reference in BraTS orientation; an oblique reference gets the
    axis-aligned box around its footprint.

    Args:
        reference: the reference scan, preferably after `to_brats_orientation`.
        spacing_mm: isotropic output voxel size.

    Example:
        >>> ref = sitk.Image(40, 48, 32, sitk.sitkFloat32)
        >>> ref.SetSpacing((0.9, 1.1, 2.5))
        >>> brats_grid(ref).GetSize()
        (36, 53, 80)
    """
    size = np.array(reference.GetSize())
    corners = np.array([reference.TransformContinuousIndexToPhysicalPoint(
        [float(c) for c in (np.array(bits) * (size - 1))]) for bits in np.ndindex(2, 2, 2)])
    low = corners.min(axis=0)
    high = corners.max(axis=0)
    # The footprint reaches half a voxel beyond the outer voxel centres.
    half_voxel = np.abs(np.array(reference.GetDirection()).reshape(3, 3)) @ (
        np.array(reference.GetSpacing()) / 2.0)
    extent = high - low + 2 * half_voxel
    new_size = [max(1, round(float(e) / spacing_mm)) for e in extent]
    grid = sitk.Image(new_size, sitk.sitkUInt8)
    grid.SetSpacing((spacing_mm,) * 3)
    grid.SetOrigin(tuple(low - half_voxel + spacing_mm / 2.0))
    grid.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return grid


def resample_to_grid(image: sitk.Image, grid: sitk.Image,
                     transform: sitk.Transform | None = None,
                     interpolator: str = "linear") -> sitk.Image:
    """Resample `image` onto `grid` through `transform` (grid points -> image points).

    Args:
        image: the image to resample.
        grid: an image whose size, spacing, origin and direction define the output grid.
        transform: e.g. `RegistrationResult.transform`; identity when None.
        interpolator: "linear" or "bspline" for scans, "nearest" for masks and labels.

    Returns:
        float32 for "linear"/"bspline", the input's pixel type for "nearest"; 0 outside the image.

    Example:
        >>> t1c = sitk.GetImageFromArray(np.ones((20, 30, 40), np.float32))  # 40 x 30 x 20 voxels of 1 mm
        >>> t2 = sitk.GetImageFromArray(np.ones((10, 15, 20), np.float32))
        >>> t2.SetSpacing((2.0, 2.0, 2.0))  # the same extent at 2 mm
        >>> t2_on_grid = resample_to_grid(t2, brats_grid(t1c), sitk.Euler3DTransform())
        >>> t2_on_grid.GetSize(), t2_on_grid.GetSpacing()
        ((40, 30, 20), (1.0, 1.0, 1.0))
    """
    choices = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline, "nearest": sitk.sitkNearestNeighbor}
    if interpolator not in choices:
        raise ValueError(f"interpolator {interpolator!r} is not one of {sorted(choices)}.")
    if interpolator != "nearest":
        image = sitk.Cast(image, sitk.sitkFloat32)
    return sitk.Resample(image, grid, transform or sitk.Transform(), choices[interpolator], 0.0,
                         image.GetPixelID())


def apply_mask(image: sitk.Image, mask: sitk.Image) -> sitk.Image:
    """Set every voxel of `image` outside the mask (mask value 0) to 0.

    The mask is resampled (nearest neighbour, world coordinates) onto the image's grid first, so a
    mask on another grid or orientation works.

    Args:
        image: a scan.
        mask: a brain mask, nonzero inside.

    Example:
        >>> scan = sitk.GetImageFromArray(np.full((4, 4, 4), 5.0, np.float32))
        >>> mask = sitk.GetImageFromArray(np.pad(np.ones((2, 2, 2), np.uint8), 1))
        >>> float(sitk.GetArrayFromImage(apply_mask(scan, mask)).sum())  # 8 voxels of 5 kept
        40.0
    """
    inside = resample_to_grid(mask, image, interpolator="nearest") != 0
    return sitk.Mask(image, sitk.Cast(inside, sitk.sitkUInt8), outsideValue=0)
