"""Training for missing modalities: a sample transform that drops whole input channels.

A lost channel is filled with `MISSING_FILL`, 0, which after z-scoring is the brain's mean
intensity (and the background's value): `load_case(..., allow_missing=True)` fills a modality
that has no file the same way, so a model trained with dropout has seen at training time exactly
what it gets at inference.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# The value of a missing channel: the z-scored brain mean, also the background value.
MISSING_FILL = 0.0


@dataclasses.dataclass(frozen=True)
class ModalityDropout:
    """Drops each channel of a patch with probability `probability`, never all of them.

    A `make_dataset` sample transform ``(image, label, rng) -> (image, label)``: the draws come
    from the patch's seeded generator, so a patch loses the same channels on every run. When
    every channel is drawn as lost, one of them, chosen uniformly, is kept.

    Args:
        probability: The chance that a channel is lost, in [0, 1]; 0 leaves patches unchanged.

    Example:
        >>> image = np.ones((1, 2, 2, 3), "float32")
        >>> dropped, _ = ModalityDropout(0.5)(image, np.zeros((1, 2, 2), "int32"), np.random.default_rng(0))
        >>> dropped.max(axis=(0, 1, 2)).tolist()
        [1.0, 0.0, 0.0]
    """

    probability: float

    def __post_init__(self) -> None:
        """Checks that the probability lies in [0, 1]."""
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"modality dropout is a probability and must lie in [0, 1]; got {self.probability}")

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Returns the patch with its lost channels set to `MISSING_FILL`, and the label unchanged."""
        channels = image.shape[-1]
        lost = rng.random(channels) < self.probability
        if lost.all():
            lost[rng.integers(channels)] = False
        if not lost.any():
            return image, label
        image = image.copy()
        image[..., lost] = MISSING_FILL
        return image, label
