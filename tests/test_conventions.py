"""The BraTS conventions: one definition, and the two spellings of the orientation agree on a file."""

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from tfbrats.conventions import (
    DEFAULT_CHANNELS,
    MODALITIES,
    REQUIRED_MODALITIES,
    SIZE_MULTIPLE,
    STORAGE_AXCODES,
    STORAGE_ORIENTATION,
    channels_for,
)


def test_channels_are_the_paper_s_three_then_t1_and_every_one_is_a_modality():
    assert DEFAULT_CHANNELS == ("flair", "t1ce", "t2") == channels_for(3)
    assert channels_for(4) == (*DEFAULT_CHANNELS, "t1")
    assert set(channels_for(4)) == set(MODALITIES)
    assert REQUIRED_MODALITIES == ("t1ce", "t2", "flair")
    for wrong in (0, 1, 2, 5):
        with pytest.raises(ValueError, match=f"got {wrong}"):
            channels_for(wrong)


def test_an_image_in_the_clinical_storage_orientation_reads_as_the_training_axis_codes(tmp_path):
    from tfbrats.clinical.orient import orientation_code, to_brats_orientation

    image = sitk.Image(4, 5, 6, sitk.sitkFloat32)
    image.SetDirection((0, 0, 1, -1, 0, 0, 0, -1, 0))  # sagittal slices
    stored = to_brats_orientation(image)
    assert orientation_code(stored) == STORAGE_ORIENTATION
    sitk.WriteImage(stored, str(tmp_path / "case.nii.gz"))
    assert nib.aff2axcodes(nib.load(tmp_path / "case.nii.gz").affine) == STORAGE_AXCODES


def test_the_model_the_config_and_the_window_use_the_one_size_multiple():
    from tfbrats.inference.sliding_window import sliding_window
    from tfbrats.models.albunet import check_spatial_shape
    from tfbrats.training.config import round_up

    assert round_up(SIZE_MULTIPLE + 1) == 2 * SIZE_MULTIPLE
    check_spatial_shape((1, 3, SIZE_MULTIPLE, 2 * SIZE_MULTIPLE, 3))
    with pytest.raises(ValueError, match=f"multiple of {SIZE_MULTIPLE}"):
        check_spatial_shape((1, 3, SIZE_MULTIPLE + 8, SIZE_MULTIPLE, 3))
    shapes = []

    def predictor(batch: np.ndarray) -> np.ndarray:
        shapes.append(batch.shape)
        return np.ones(batch.shape[:-1] + (2,), np.float32)

    out = sliding_window(np.ones((3, 40, 70, 1), np.float32), predictor, patch_size=None, num_classes=2)
    assert out.shape == (3, 40, 70, 2)
    assert shapes == [(1, 3, 2 * SIZE_MULTIPLE, 3 * SIZE_MULTIPLE, 1)]
