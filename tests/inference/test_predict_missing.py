"""Prediction of incomplete cases (sidecar, warning) and of region models."""

import json
import logging

import nibabel as nib
import numpy as np
import pytest

from tfbrats.data import find_cases
from tfbrats.data.synthetic import write_synthetic_dataset
from tfbrats.inference.model import load_model, override_contract
from tfbrats.inference.predict import predict_cases
from tfbrats.models import AlbuNet2D


@pytest.fixture(scope="module")
def incomplete_case(tmp_path_factory):
    """A case folder without its T2 file (the other files of a synthetic case)."""
    root = tmp_path_factory.mktemp("incomplete")
    folder = write_synthetic_dataset(root, cases=1, shape=(40, 44, 12), seed=5)[0]
    next(folder.glob("*_t2.nii.gz")).unlink()
    return folder


def _run_folder(path, num_classes: int, bias=None, **config):
    """A run folder holding a random model and the config.json a training run would write.

    With `bias`, the final layer outputs exactly that bias at every voxel.
    """
    path.mkdir()
    model = AlbuNet2D(num_classes=num_classes)
    if bias is not None:
        kernel, _ = model.get_layer("final").get_weights()
        model.get_layer("final").set_weights([np.zeros_like(kernel), np.asarray(bias, np.float32)])
    model.save(path / "final.keras")
    (path / "config.json").write_text(json.dumps({"model": "albunet2d", "patch_size": [1, 32, 32], **config}))
    return path


def _predict(case_folder, model_path, output):
    cases = find_cases(case_folder).cases
    loaded = load_model(model_path)
    contract = override_contract(loaded.contract, patch_size=(1, 32, 32), steps=(1, 32, 32), batch_size=8)
    summary = predict_cases(cases, loaded, output, contract, progress=False)
    assert not summary.failed, summary.failed
    case_id = cases[0].case_id
    image = nib.load(output / f"{case_id}.nii.gz")
    assert image.shape == nib.load(cases[0].images["flair"]).shape and image.get_data_dtype() == np.uint8
    return np.asarray(image.dataobj), json.loads((output / f"{case_id}.json").read_text())


@pytest.mark.parametrize("recorded", [False, True], ids=["bare_keras_file", "run_without_dropout"])
def test_a_model_without_dropout_warns_in_the_log_and_the_sidecar(incomplete_case, tmp_path, caplog, recorded):
    if recorded:
        model_path = _run_folder(tmp_path / "run", 4, target="classes", modality_dropout=0.0)
    else:
        model_path = tmp_path / "model.keras"
        AlbuNet2D(num_classes=4).save(model_path)
    with caplog.at_level(logging.WARNING, logger="tfbrats.inference.predict"):
        labels, sidecar = _predict(incomplete_case, model_path, tmp_path / "out")
    assert set(np.unique(labels)) <= {0, 1, 2, 4}
    assert sidecar["missing"] == ["t2"] and sidecar["channels"] == ["flair", "t1ce", "t2"]
    assert sidecar["fill"].startswith("0 ") and sidecar["trained_with_modality_dropout"] is False
    assert "modality dropout" in sidecar["warning"] and "['t2']" in sidecar["warning"]
    assert "unreliable" in sidecar["warning"] and ("config.json records none" in sidecar["warning"]) == recorded
    messages = [r.getMessage() for r in caplog.records]
    assert any("missing modalities ['t2']" in m for m in messages), messages
    assert any("unreliable" in m for m in messages), messages


def test_a_model_with_dropout_records_the_missing_modality_without_warning(incomplete_case, tmp_path, caplog):
    run = _run_folder(tmp_path / "run", 4, target="classes", modality_dropout=0.25)
    with caplog.at_level(logging.WARNING, logger="tfbrats.inference.predict"):
        _, sidecar = _predict(incomplete_case, run, tmp_path / "out")
    assert sidecar["missing"] == ["t2"] and sidecar["warning"] is None
    assert sidecar["trained_with_modality_dropout"] is True and sidecar["model_modality_dropout"] == 0.25
    assert not any("unreliable" in r.getMessage() for r in caplog.records)


def test_a_complete_case_gets_a_sidecar_with_nothing_missing(tmp_path):
    folder = write_synthetic_dataset(tmp_path / "data", cases=1, shape=(40, 44, 12), seed=6)[0]
    model_file = tmp_path / "model.keras"
    AlbuNet2D(num_classes=4).save(model_file)
    _, sidecar = _predict(folder, model_file, tmp_path / "out")
    assert sidecar["missing"] == [] and sidecar["fill"] is None and sidecar["warning"] is None


def test_a_region_model_writes_nested_dataset_labels(incomplete_case, tmp_path):
    # Region logits +9 everywhere: every voxel is WT, TC and ET, so the labels are ET (4 in BraTS 2020).
    run = _run_folder(tmp_path / "all", 3, bias=[9.0, 9.0, 9.0], target="regions", modality_dropout=0.25)
    assert load_model(run).target.name == "regions"
    labels, sidecar = _predict(incomplete_case, run, tmp_path / "out_all")
    assert sidecar["contract"]["target"]["name"] == "regions"
    assert set(np.unique(labels)) <= {0, 4} and (labels == 4).any()
    # WT and TC without ET is the core label 1; ET without TC is ignored.
    run = _run_folder(tmp_path / "core", 3, bias=[9.0, 9.0, -9.0], target="regions")
    labels, _ = _predict(incomplete_case, run, tmp_path / "out_core")
    assert set(np.unique(labels)) <= {0, 1} and (labels == 1).any()
    run = _run_folder(tmp_path / "edema", 3, bias=[9.0, -9.0, 9.0], target="regions")
    labels, _ = _predict(incomplete_case, run, tmp_path / "out_edema")
    assert set(np.unique(labels)) <= {0, 2} and (labels == 2).any()


def test_a_region_config_with_a_class_model_is_refused(tmp_path):
    run = _run_folder(tmp_path / "run", 4, target="regions")
    with pytest.raises(ValueError, match="but the model has 4 outputs"):
        load_model(run)
