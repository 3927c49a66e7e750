"""Region Dice and HD95: parity with an independent scipy computation and the BraTS empty cases."""

import numpy as np
import pytest
from medpy.metric import binary
from scipy import ndimage

from tfbrats.evaluation import HD95_EMPTY, case_metrics, dice, hd95

SPACING = (2.5, 0.75, 1.2)


def random_mask(shape, seed, threshold=0.6):
    """A random blobby mask: smoothed noise above a threshold (touches the borders at times)."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), 1.5)
    return noise > threshold * noise.std()


def scipy_hd95(pred, ref, spacing):
    """HD95 from first principles: surface voxels by erosion, distances by an anisotropic EDT."""
    structure = ndimage.generate_binary_structure(3, 1)
    pred_surface = pred & ~ndimage.binary_erosion(pred, structure)
    ref_surface = ref & ~ndimage.binary_erosion(ref, structure)
    to_ref = ndimage.distance_transform_edt(~ref_surface, sampling=spacing)[pred_surface]
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=spacing)[ref_surface]
    return np.percentile(np.concatenate([to_ref, to_pred]), 95)


@pytest.mark.parametrize("seed", range(4))
def test_dice_and_hd95_match_scipy_on_random_masks(seed):
    shape = (14, 30, 26)
    pred, ref = random_mask(shape, seed), random_mask(shape, seed + 100)
    assert pred.any() and ref.any()
    expected_dice = 2 * np.sum(pred & ref) / (pred.sum() + ref.sum())
    assert dice(pred, ref) == pytest.approx(expected_dice, rel=1e-12)
    assert hd95(pred, ref, SPACING) == pytest.approx(scipy_hd95(pred, ref, SPACING), rel=1e-12)


def test_hd95_cropping_equals_whole_volume_medpy():
    pred = np.zeros((20, 40, 40), bool)
    ref = np.zeros_like(pred)
    pred[0:6, 10:20, 30:40] = True  # touches two borders of the volume
    ref[3:9, 14:25, 27:36] = True
    whole = binary.hd95(pred, ref, voxelspacing=SPACING)
    assert hd95(pred, ref, SPACING) == pytest.approx(whole, rel=1e-12)
    assert hd95(pred, ref, SPACING) == pytest.approx(scipy_hd95(pred, ref, SPACING), rel=1e-12)


@pytest.mark.parametrize(
    "pred_has_et, ref_has_et, expected_dice, expected_hd95",
    [
        (False, False, 1.0, 0.0),
        (True, False, 0.0, HD95_EMPTY),
        (False, True, 0.0, HD95_EMPTY),
        (True, True, 1.0, 0.0),
    ],
)
def test_empty_region_conventions(pred_has_et, ref_has_et, expected_dice, expected_hd95):
    pred = np.zeros((6, 8, 8), np.uint8)
    ref = np.zeros_like(pred)
    pred[2:4, 2:6, 2:6] = ref[2:4, 2:6, 2:6] = 2
    if pred_has_et:
        pred[3, 3:5, 3:5] = 3
    if ref_has_et:
        ref[3, 3:5, 3:5] = 3
    metrics = case_metrics(pred, ref, SPACING)
    assert metrics["Dice_ET"] == expected_dice
    assert metrics["HD95_ET"] == expected_hd95
    assert metrics["Dice_WT"] == 1.0 and metrics["HD95_WT"] == 0.0


def test_case_metrics_score_the_regions_of_internal_labels_and_refuse_a_dataset_s_et_value():
    ref = np.zeros((4, 6, 6), np.uint8)
    ref[1:3, 1:5, 1:5] = 2
    ref[1:3, 2:4, 2:4] = 1
    ref[2, 2, 2] = 3
    pred = ref.copy()
    pred[1, 1, 1:5] = 0  # 4 edema voxels missed: WT only
    metrics = case_metrics(pred, ref)
    assert list(metrics)[:3] == ["Dice_ET", "Dice_WT", "Dice_TC"]  # BraTS' report order
    assert metrics["Dice_ET"] == metrics["Dice_TC"] == 1.0
    assert metrics["Dice_WT"] == 2 * 28 / (28 + 32)  # |WT| 32 in the reference, 28 predicted
    stored_as_2020 = np.where(ref == 3, 4, ref)
    with pytest.raises(ValueError, match=r"labels \[4\] are not internal labels \[0, 1, 2, 3\]"):
        case_metrics(stored_as_2020, stored_as_2020)


def test_case_metrics_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(4, 4, 4\).*\(4, 4, 5\)"):
        case_metrics(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 5), np.uint8))
