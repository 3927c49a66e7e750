"""Labels on the prepared case's grid back onto the reference series' own grid, and tumor volumes.

`python -m tfbrats.clinical` registers every scan to a reference series, then resamples it onto an
axis-aligned 1 mm grid in BraTS orientation. A segmentation of that case lives on the same world
coordinates as the reference (its transform is the identity), so mapping it back is one
nearest-neighbour resampling onto the reference's recorded grid (size, spacing, origin and direction
as read, before reorientation): both the resampling and the reorientation are undone at once, and
every label stays a label.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import SimpleITK as sitk

from tfbrats.labels import BRATS, LabelSet, region_masks


def grid_from_record(record: Mapping) -> sitk.Image:
    """An empty uint8 image on the grid a sidecar's `geometry` record describes (`pipeline.geometry`).

    Args:
        record: a dict with `size`, `spacing_mm`, `origin_lps_mm` and `direction`, as
            `<case>_clinical.json` records each input under `inputs`.

    Example:
        >>> grid = grid_from_record({"size": [4, 5, 6], "spacing_mm": [1, 1, 2],
        ...                          "origin_lps_mm": [0, 0, 0], "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1]})
        >>> grid.GetSize(), grid.GetSpacing()
        ((4, 5, 6), (1.0, 1.0, 2.0))
    """
    missing = [key for key in ("size", "spacing_mm", "origin_lps_mm", "direction") if key not in record]
    if missing:
        raise ValueError(f"the grid record lacks {missing}; it must come from a <case>_clinical.json written by "
                         "python -m tfbrats.clinical (inputs -> the reference modality)")
    grid = sitk.Image([int(n) for n in record["size"]], sitk.sitkUInt8)
    grid.SetSpacing(tuple(float(s) for s in record["spacing_mm"]))
    grid.SetOrigin(tuple(float(o) for o in record["origin_lps_mm"]))
    grid.SetDirection(tuple(float(c) for c in record["direction"]))
    return grid


def labels_to_grid(labels: sitk.Image, grid: sitk.Image) -> sitk.Image:
    """Labels resampled onto another grid of the same world coordinates, nearest neighbour, 0 outside.

    Args:
        labels: an integer label image (e.g. a prediction on the prepared case's 1 mm grid).
        grid: the target grid (e.g. `grid_from_record` of the reference series).

    Returns:
        A uint8 image on `grid` whose every voxel takes the label of the nearest voxel of `labels`.

    Example:
        >>> fine = sitk.Image(4, 4, 4, sitk.sitkUInt8)
        >>> fine[1, 2, 3] = 2
        >>> coarse = sitk.Image(2, 2, 2, sitk.sitkUInt8)
        >>> coarse.SetSpacing((2.0, 2.0, 2.0))
        >>> coarse.SetOrigin((1.0, 2.0, 3.0))
        >>> int(labels_to_grid(fine, coarse)[0, 0, 0])
        2
    """
    resampled = sitk.Resample(labels, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, sitk.sitkUInt8)
    resampled.CopyInformation(grid)
    return resampled


def region_volumes_ml(labels: np.ndarray, spacing_mm: tuple[float, float, float],
                      label_set: LabelSet = BRATS) -> dict[str, float]:
    """Volume of each tumor region of the label set in millilitres (WT, TC, ET; RC for a post-treatment model).

    Args:
        labels: internal classes (0..3, or 0..4 with the resection cavity), any axis order.
        spacing_mm: the voxel size along the three axes.
        label_set: the model's label set: its regions are the ones measured.

    Example:
        >>> region_volumes_ml(np.array([[[0, 1, 2, 3]]]), (10.0, 10.0, 10.0))
        {'WT': 3.0, 'TC': 2.0, 'ET': 1.0}
        >>> from tfbrats.labels import BRATS_POST_TREATMENT
        >>> region_volumes_ml(np.array([[[0, 1, 2, 3, 4, 4]]]), (10.0, 10.0, 10.0), BRATS_POST_TREATMENT)
        {'WT': 3.0, 'TC': 2.0, 'ET': 1.0, 'RC': 2.0}
    """
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    masks = region_masks(np.asarray(labels), label_set.regions)
    return {region: round(float(np.count_nonzero(masks[region])) * voxel_ml, 3) for region in label_set.regions}
