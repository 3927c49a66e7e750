"""The brain mask figure: outline, centre, and the PNG drawn from a prepared case."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from tfbrats.cli.mask_figure import main
from tfbrats.clinical.figure import draw_case_mask, mask_centre, outline


def _ellipsoid(shape, centre, axes):
    grid = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, axes)) < 1.0


def test_outline_is_the_mask_minus_its_erosion():
    rng = np.random.default_rng(0)
    mask = ndimage.binary_opening(rng.random((40, 30)) > 0.35)
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(2, 1), border_value=0)
    np.testing.assert_array_equal(outline(mask), mask & ~eroded)


def test_mask_centre_is_the_centre_of_mass():
    mask = _ellipsoid((40, 50, 30), (17.0, 30.0, 12.0), (8.0, 10.0, 6.0))
    assert mask_centre(mask) == (17, 30, 12)
    with pytest.raises(ValueError, match="the brain mask is empty"):
        mask_centre(np.zeros((3, 3, 3), bool))


def test_a_case_figure_shows_the_red_outline_on_three_planes(tmp_path):
    matplotlib_image = pytest.importorskip("matplotlib.image")
    case_dir = tmp_path / "P7"
    case_dir.mkdir()
    shape = (60, 70, 50)
    brain = _ellipsoid(shape, (30, 35, 25), (20, 25, 15))
    head = np.where(_ellipsoid(shape, (30, 35, 25), (27, 32, 22)), 60.0, 2.0) + 40.0 * brain
    affine = np.diag([-1.5, -1.5, 2.0, 1.0])
    nib.save(nib.Nifti1Image(head.astype(np.float32), affine), case_dir / "P7_head.nii.gz")
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), affine), case_dir / "P7_brainmask.nii.gz")
    out = draw_case_mask(case_dir)
    assert out == case_dir / "P7_brainmask.png"
    pixels = matplotlib_image.imread(out)
    assert pixels.shape == (440, 1155, 4)  # 10.5 x 4.0 inches at 110 dpi
    red = (pixels[..., 0] > 0.8) & (pixels[..., 1] < 0.3) & (pixels[..., 2] < 0.3)
    thirds = np.array_split(red, 3, axis=1)
    assert all(np.count_nonzero(part) > 50 for part in thirds)  # an outline in every plane

    (case_dir / "P7_head.nii.gz").unlink()
    assert main([f"--case_dir={case_dir}"]) == 1
    with pytest.raises(FileNotFoundError, match="P7_head.nii.gz is missing"):
        draw_case_mask(case_dir)
