"""Region-based training: label <-> region conversion, the region Dice loss, a tiny run with dropout."""

import dataclasses
import json

import keras
import nibabel as nib
import numpy as np
import pytest

from tfbrats.data import find_cases
from tfbrats.inference.model import load_model, override_contract
from tfbrats.inference.predict import predict_cases
from tfbrats.labels import labels_to_regions, regions_to_labels
from tfbrats.losses import RegionDiceLoss
from tfbrats.training import ConfigError, TrainConfig, check_config, train


def _numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def test_labels_to_regions_to_labels_is_the_identity():
    labels = np.random.default_rng(0).integers(0, 4, size=(3, 5, 6)).astype(np.uint8)
    regions = _numpy(labels_to_regions(labels))
    assert regions.shape == (3, 5, 6, 3)
    np.testing.assert_array_equal(regions[..., 0], np.isin(labels, (1, 2, 3)))
    np.testing.assert_array_equal(regions[..., 1], np.isin(labels, (1, 3)))
    np.testing.assert_array_equal(regions[..., 2], labels == 3)
    np.testing.assert_array_equal(_numpy(regions_to_labels(regions)), labels)


def test_any_probabilities_give_nested_labels():
    probabilities = np.random.default_rng(1).random((4, 8, 8, 3)).astype(np.float32)
    labels = _numpy(regions_to_labels(probabilities))
    assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1, 2, 3}
    whole = probabilities[..., 0] > 0.5
    core = whole & (probabilities[..., 1] > 0.5)
    enhancing = core & (probabilities[..., 2] > 0.5)
    np.testing.assert_array_equal(np.isin(labels, (1, 2, 3)), whole)
    np.testing.assert_array_equal(np.isin(labels, (1, 3)), core)
    np.testing.assert_array_equal(labels == 3, enhancing)
    # The regions of the labels are nested: ET inside TC inside WT.
    regions = _numpy(labels_to_regions(labels)).astype(bool)
    assert not (regions[..., 2] & ~regions[..., 1]).any() and not (regions[..., 1] & ~regions[..., 0]).any()


@pytest.mark.parametrize(("smooth", "cross_entropy_weight"), [(1.0, 0.0), (0.0, 0.0), (1.0, 0.6)])
def test_region_dice_loss_equals_numpy(smooth, cross_entropy_weight):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, size=(2, 3, 8, 8))
    logits = rng.normal(size=(2, 3, 8, 8, 3)).astype(np.float32)
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    dices, cross_entropies = [], []
    for region, classes in enumerate(((1, 2, 3), (1, 3), (3,))):
        r = np.isin(labels, classes).astype(np.float64)
        dices.append((2 * np.sum(r * p[..., region]) + smooth) / (np.sum(r) + np.sum(p[..., region]) + smooth))
        cross_entropies.append(-np.mean(r * np.log(p[..., region]) + (1 - r) * np.log(1 - p[..., region])))
    loss = RegionDiceLoss(smooth=smooth, cross_entropy_weight=cross_entropy_weight)
    expected = 1 - np.mean(dices) + cross_entropy_weight * np.mean(cross_entropies)
    np.testing.assert_allclose(float(loss(labels, logits)), expected, rtol=1e-5)
    assert RegionDiceLoss.from_config(loss.get_config()).smooth == smooth


def test_region_dice_loss_rejects_class_logits():
    with pytest.raises(ValueError, match="one logit per region"):
        RegionDiceLoss()(np.zeros((1, 2, 4, 4), "int32"), np.zeros((1, 2, 4, 4, 4), "float32"))


def test_config_rejects_an_unknown_target_and_a_bad_dropout(tiny_data, tmp_path):
    config = TrainConfig(model_dir=str(tmp_path), data_dir=str(tiny_data), target="labels", modality_dropout=1.5)
    with pytest.raises(ConfigError) as error:
        check_config(config)
    assert "target must be one of" in str(error.value) and "modality_dropout is a probability" in str(error.value)


def test_a_run_recorded_before_the_new_settings_resumes(tiny_data, tmp_path):
    config = TrainConfig(model_dir=str(tmp_path), data_dir=str(tiny_data))
    old = {k: v for k, v in config.to_json().items() if k not in ("target", "modality_dropout")}
    (tmp_path / "config.json").write_text(json.dumps(old))
    check_config(config)
    with pytest.raises(ConfigError, match="target"):
        check_config(dataclasses.replace(config, target="regions"))


def test_a_tiny_region_run_with_dropout_records_its_settings(tiny_data, tmp_path):
    config = TrainConfig(model_dir=str(tmp_path), data_dir=str(tiny_data), model="albunet2d", patch_size=(1, 32, 32),
                         batch_size=2, epochs=1, steps_per_epoch=2, num_folds=2, foreground_fraction=0.5,
                         strategy="default", augment=None, target="regions", modality_dropout=0.5)
    result = train(config, echo=lambda message: None)
    assert result.model.output_shape[-1] == 3
    row = result.history[0]
    assert np.isfinite(row["loss"]) and 0 <= row["val_dice_WT"] <= 1
    recorded = json.loads((tmp_path / "config.json").read_text())
    assert (recorded["target"], recorded["modality_dropout"]) == ("regions", 0.5)
    # Its prediction of a case without FLAIR: valid dataset labels and a sidecar without warning.
    case = find_cases(tiny_data).cases[0]
    case = dataclasses.replace(case, images={k: v for k, v in case.images.items() if k != "flair"})
    loaded = load_model(tmp_path)
    contract = override_contract(loaded.contract, patch_size=(1, 32, 32), steps=(1, 32, 32), batch_size=8)
    summary = predict_cases([case], loaded, tmp_path / "predictions", contract, progress=False)
    assert not summary.failed, summary.failed
    labels = np.asarray(nib.load(summary.written[0]).dataobj)
    assert labels.shape == nib.load(case.images["t2"]).shape and set(np.unique(labels)) <= {0, 1, 2, 4}
    sidecar = json.loads((tmp_path / "predictions" / f"{case.case_id}.json").read_text())
    target = sidecar["contract"]["target"]["name"]
    assert (target, sidecar["missing"], sidecar["warning"]) == ("regions", ["flair"], None)
