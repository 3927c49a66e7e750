"""Does a case's nonzero region look like a skull-stripped brain, or like a whole head?

tfbrats takes the nonzero voxels of a case as its brain: it z-scores over them, crops to them,
and the prediction labels nothing outside them. A case that was never skull-stripped breaks that
silently: scalp, skull, eyes and neck become "brain", and noise in the air makes every voxel of
the image nonzero. Two measurements catch it:

- volume: an adult brain holds 1.0-1.9 litres, and even the whole intracranial volume stays
  below about 2.0 litres; a head out to the skin holds 3.5-5 litres with face and neck (2.5
  litres for a skull-sized ellipsoid alone). More than `MAX_BRAIN_ML` (2.2 litres) is not a brain.
- fill: a stripped brain (roughly an ellipsoid) fills about half of its bounding box and a small
  part of a scanner's field of view; nonzero noise in the air fills all of it. More than
  `MAX_IMAGE_FRACTION` (85 %) of the image nonzero is not a stripped brain at any size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

MAX_BRAIN_ML = 2200.0
MAX_IMAGE_FRACTION = 0.85


@dataclasses.dataclass(frozen=True)
class BrainExtent:
    """The size of a case's nonzero region and whether it looks like a whole head.

    Args:
        volume_ml: Volume of the nonzero voxels in millilitres.
        extent_mm: Size of their bounding box along ``(D, H, W)`` in mm.
        image_fraction: Nonzero voxels over all voxels of the image.

    Example:
        >>> BrainExtent(volume_ml=4100.0, extent_mm=(150.0, 230.0, 190.0), image_fraction=0.4).whole_head
        True
    """

    volume_ml: float
    extent_mm: tuple[float, float, float]
    image_fraction: float

    @property
    def reasons(self) -> list[str]:
        """What exceeds a brain: one sentence per broken rule, empty for a brain-like region."""
        reasons = []
        if self.volume_ml > MAX_BRAIN_ML:
            reasons.append(f"the nonzero region holds {self.volume_ml:.0f} ml, more than any brain "
                           f"({MAX_BRAIN_ML:.0f} ml at most)")
        if self.image_fraction > MAX_IMAGE_FRACTION:
            reasons.append(f"{100 * self.image_fraction:.0f} % of the image is nonzero (a stripped brain "
                           f"fills at most {100 * MAX_IMAGE_FRACTION:.0f} %; noise in the air fills all of it)")
        return reasons

    @property
    def whole_head(self) -> bool:
        """True when the region breaks either rule."""
        return bool(self.reasons)

    def warning(self, case_id: str) -> str | None:
        """The message for a whole-head case (None for a brain): what was found and what to do.

        Example:
            >>> BrainExtent(1400.0, (140.0, 170.0, 140.0), 0.16).warning("c1") is None
            True
        """
        if not self.whole_head:
            return None
        return (f"case {case_id} looks like a whole head, not a skull-stripped brain: "
                f"{'; '.join(self.reasons)}. The model was trained on skull-stripped brains and labels "
                "every nonzero voxel; strip the skull first (python -m tfbrats.clinical does it "
                "automatically, or takes --mask).")

    def to_json(self) -> dict[str, Any]:
        """The measurements and the verdict as JSON-ready values."""
        return {
            "volume_ml": round(self.volume_ml, 1),
            "extent_mm": [round(v, 1) for v in self.extent_mm],
            "image_fraction": round(self.image_fraction, 4),
            "whole_head": self.whole_head,
            "rule": f"volume > {MAX_BRAIN_ML:.0f} ml or more than {100 * MAX_IMAGE_FRACTION:.0f} % of the image "
            "nonzero",
        }


def brain_extent(nonzero: np.ndarray, spacing: Sequence[float], image_voxels: int | None = None) -> BrainExtent:
    """Measures a case's nonzero region against the size of a brain.

    Args:
        nonzero: Boolean ``(D, H, W)`` array of the nonzero voxels (any crop of the image that
            holds all of them).
        spacing: Voxel size ``(D, H, W)`` in mm.
        image_voxels: Number of voxels of the whole image when `nonzero` is a crop of it
            (default: ``nonzero.size``).

    Returns:
        The `BrainExtent`; its ``whole_head`` says whether to warn.

    Example:
        >>> brain_extent(np.ones((155, 240, 240), bool), (1.0, 1.0, 1.0)).whole_head
        True
    """
    nonzero = np.asarray(nonzero, dtype=bool)
    if nonzero.ndim != 3 or len(spacing) != 3:
        raise ValueError(f"expected a (D, H, W) mask and three voxel sizes, got shape {nonzero.shape} "
                         f"and spacing {tuple(spacing)}")
    count = int(np.count_nonzero(nonzero))
    total = int(nonzero.size if image_voxels is None else image_voxels)
    if total < nonzero.size:
        raise ValueError(f"image_voxels {total} is smaller than the mask's {nonzero.size} voxels")
    extent = []
    for axis, size_mm in enumerate(spacing):
        present = np.flatnonzero(nonzero.any(axis=tuple(a for a in range(3) if a != axis)))
        extent.append(float((present[-1] - present[0] + 1) * size_mm) if present.size else 0.0)
    return BrainExtent(
        volume_ml=count * float(np.prod(spacing)) / 1000.0,
        extent_mm=(extent[0], extent[1], extent[2]),
        image_fraction=count / total if total else 0.0,
    )
