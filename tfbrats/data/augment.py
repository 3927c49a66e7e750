"""Data augmentation of image/label patches, reproducible under a seed.

Geometry comes from the libraries: volumentations-3d for 3-D patches (elastic deformation,
rotation, scaling; its transforms are called with parameters drawn here from a
`numpy.random.Generator`, because the library otherwise draws from Python's global `random`,
which threads of a tf.data map would share) and albumentations for 2-D patches (``d == 1``,
a `Compose` seeded per patch). Images are interpolated linearly, labels by nearest neighbour
and cast back to integers. Flips are plain numpy. The intensity transforms (gamma,
brightness/contrast, Gaussian noise, Gaussian blur) are done here in numpy/scipy for both:
the libraries assume images in [0, 1] (gamma of a negative z-score is NaN, and albumentations
clips floats to [0, 1]), and volumentations' ``Blur`` is broken (NameError).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.ndimage


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run, each with its probability per patch, and their ranges.

    Args:
        elastic: Probability of an elastic deformation.
        elastic_strength: 3-D: volumentations' deformation limit (sigma = strength x size);
            2-D: albumentations' ``alpha`` for a ``sigma`` of 10 pixels.
        flip: Probability of a flip, drawn independently for each of the three axes.
        rotate: Probability of a rotation.
        rotate_degrees: Largest in-plane rotation (about the D axis), in degrees.
        rotate_degrees_through_plane: Largest 3-D rotation about the H and W axes.
        scale: Probability of a scaling (zoom about the centre, same output shape).
        scale_range: Range of the scale factor.
        gamma: Probability of a gamma change (on intensities rescaled to [0, 1] per channel).
        gamma_range: Range of the exponent.
        brightness: Probability of a brightness/contrast change.
        brightness_shift: Largest added offset (in z-score units).
        contrast_range: Range of the multiplicative contrast factor.
        noise: Probability of additive Gaussian noise.
        noise_std: Range of the noise's standard deviation (z-score units).
        blur: Probability of a Gaussian blur.
        blur_sigma: Range of the blur's sigma in voxels (in-plane; through-plane in 3-D too).

    Example:
        >>> AugmentConfig(elastic=0.0, flip=0.5).flip
        0.5
    """

    elastic: float = 0.2
    elastic_strength: float = 0.15
    flip: float = 0.5
    rotate: float = 0.3
    rotate_degrees: float = 15.0
    rotate_degrees_through_plane: float = 0.0
    scale: float = 0.3
    scale_range: tuple[float, float] = (0.85, 1.15)
    gamma: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    brightness: float = 0.3
    brightness_shift: float = 0.1
    contrast_range: tuple[float, float] = (0.9, 1.1)
    noise: float = 0.2
    noise_std: tuple[float, float] = (0.0, 0.1)
    blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 1.0)

    def __post_init__(self) -> None:
        """Checks that every probability lies in [0, 1]."""
        for name in ("elastic", "flip", "rotate", "scale", "gamma", "brightness", "noise", "blur"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{name} is a probability and must lie in [0, 1]; got {value}")


def _fit_shape(array: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Centre-crops or zero-pads the first three axes of `array` to `shape`."""
    out = np.zeros(shape + array.shape[3:], dtype=array.dtype)
    source, target = [], []
    for have, want in zip(array.shape[:3], shape):
        if have >= want:
            start = (have - want) // 2
            source.append(slice(start, start + want))
            target.append(slice(0, want))
        else:
            start = (want - have) // 2
            source.append(slice(0, have))
            target.append(slice(start, start + have))
    out[tuple(target)] = array[tuple(source)]
    return out


def _geometry_3d(
    image: np.ndarray, mask: np.ndarray, config: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Elastic deformation, rotation and scaling of a ``(D, H, W, C)`` patch with volumentations."""
    import volumentations  # imported on first use: it is slow to import and prediction never needs it

    shape = image.shape[:3]
    if rng.random() < config.elastic:
        deformation = rng.uniform(0.0, config.elastic_strength)
        sigmas = [deformation * size for size in shape]
        params = {
            "sigmas": sigmas,
            "alphas": [rng.uniform(s / 8, s / 2) for s in sigmas],
            "random_state": int(rng.integers(2**31)),
        }
        elastic = volumentations.ElasticTransform()
        image, mask = elastic.apply(image, **params), elastic.apply_to_mask(mask, **params)
    if rng.random() < config.rotate:
        # volumentations' x angle turns the plane of axes 1 and 2, i.e. (H, W) here.
        through = config.rotate_degrees_through_plane
        angles = {
            "x": rng.uniform(-config.rotate_degrees, config.rotate_degrees),
            "y": rng.uniform(-through, through),
            "z": rng.uniform(-through, through),
        }
        rotate = volumentations.Rotate()
        image, mask = rotate.apply(image, **angles), rotate.apply_to_mask(mask, **angles)
    if rng.random() < config.scale:
        factor = rng.uniform(*config.scale_range)
        scale = volumentations.RandomScale()
        image = _fit_shape(scale.apply(image, factor), shape)
        mask = _fit_shape(scale.apply_to_mask(mask, factor), shape)
    return image, mask


def _geometry_2d(
    image: np.ndarray, mask: np.ndarray, config: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Elastic deformation, rotation and scaling of a ``(1, H, W, C)`` patch with albumentations."""
    import albumentations  # imported on first use: it is slow to import and prediction never needs it

    low, high = config.scale_range
    compose = albumentations.Compose(
        [
            albumentations.ElasticTransform(alpha=config.elastic_strength * 100, sigma=10, p=config.elastic),
            albumentations.Affine(rotate=(-config.rotate_degrees, config.rotate_degrees), p=config.rotate),
            albumentations.Affine(scale=(low, high), p=config.scale),
        ],
        seed=int(rng.integers(2**31)),
    )
    result = compose(image=np.ascontiguousarray(image[0]), mask=np.ascontiguousarray(mask[0]))
    return result["image"][None], np.asarray(result["mask"])[None]


def _intensity(image: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Gamma, brightness/contrast, noise and blur on a ``(D, H, W, C)`` float32 patch."""
    if rng.random() < config.gamma:
        gamma = rng.uniform(*config.gamma_range)
        low = image.min(axis=(0, 1, 2), keepdims=True)
        span = np.maximum(image.max(axis=(0, 1, 2), keepdims=True) - low, 1e-6)
        image = np.power((image - low) / span, gamma) * span + low
    if rng.random() < config.brightness:
        contrast = rng.uniform(*config.contrast_range)
        shift = rng.uniform(-config.brightness_shift, config.brightness_shift)
        image = image * contrast + shift
    if rng.random() < config.noise:
        image = image + rng.normal(0.0, rng.uniform(*config.noise_std), image.shape)
    if rng.random() < config.blur:
        sigma = rng.uniform(*config.blur_sigma)
        depth_sigma = sigma if image.shape[0] > 1 else 0.0
        image = scipy.ndimage.gaussian_filter(image, sigma=(depth_sigma, sigma, sigma, 0.0))
    return image


def augment_patch(
    image: np.ndarray, label: np.ndarray, config: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Augments one patch and its labels with the same random geometry.

    A patch with ``d == 1`` is treated as 2-D (albumentations), otherwise as 3-D
    (volumentations-3d). The output has the input's shape.

    Args:
        image: ``(d, h, w, C)`` float32.
        label: ``(d, h, w)`` integer labels 0..3.
        config: The probabilities and ranges.
        rng: The random generator; the same generator state gives the same result.

    Returns:
        ``(image float32 (d, h, w, C), label int32 (d, h, w))``, labels still in 0..3.

    Example:
        >>> image = np.random.default_rng(1).normal(size=(8, 32, 32, 3)).astype(np.float32)
        >>> label = np.zeros((8, 32, 32), np.int32)
        >>> label[2:5, 10:20, 10:20] = 1
        >>> x, y = augment_patch(image, label, AugmentConfig(), np.random.default_rng(0))
        >>> x.shape, x.dtype.name, y.shape, y.dtype.name, np.unique(y).tolist()
        ((8, 32, 32, 3), 'float32', (8, 32, 32), 'int32', [0, 1])
    """
    image = np.asarray(image, dtype=np.float32)
    mask = np.asarray(label, dtype=np.float32)[..., None]
    if image.shape[0] == 1:
        image, mask = _geometry_2d(image, mask, config, rng)
    else:
        image, mask = _geometry_3d(image, mask, config, rng)
    for axis in range(3):
        if rng.random() < config.flip:
            image, mask = np.flip(image, axis), np.flip(mask, axis)
    image = _intensity(image, config, rng)
    labels = np.rint(np.reshape(mask, image.shape[:3])).astype(np.int32)
    return np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(labels)
