"""Whole-patient prediction: NIfTI outputs in the input's geometry, reruns, failures, CLI."""

import subprocess
import sys
from pathlib import Path

import keras
import nibabel as nib
import numpy as np
import pytest

from tfbrats.contract import SegmentationContract, Window, relabel_small_enhancing
from tfbrats.data import find_cases
from tfbrats.data.synthetic import write_synthetic_dataset
from tfbrats.inference.model import load_model, override_contract
from tfbrats.inference.predict import predict_cases
from tfbrats.models import AlbuNet2D

REPO = Path(__file__).parents[2]


def small_windows(loaded):
    """The model's contract with 1x32x32 windows (fast on tiny cases)."""
    return override_contract(loaded.contract, patch_size=(1, 32, 32), steps=(1, 32, 32), batch_size=8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cases")
    write_synthetic_dataset(root, cases=3, shape=(40, 44, 12), seed=3)
    return root


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "albunet2d.keras"
    AlbuNet2D(num_classes=4).save(path)
    return path


def test_predictions_keep_geometry_and_dataset_labels(dataset, model_file, tmp_path):
    cases = find_cases(dataset).cases
    loaded = load_model(model_file)
    summary = predict_cases(cases, loaded, tmp_path, small_windows(loaded), progress=False)
    assert not summary.failed and len(summary.written) == 3
    for case in cases:
        source = nib.load(case.images["flair"])
        out = nib.load(tmp_path / f"{case.case_id}.nii.gz")
        assert out.shape == source.shape
        np.testing.assert_array_equal(out.affine, source.affine)
        assert out.get_data_dtype() == np.uint8
        labels = np.asarray(out.dataobj)
        assert set(np.unique(labels)) <= {0, 1, 2, 4}
        brain = sum(np.asarray(nib.load(path).dataobj) != 0 for path in case.images.values()) > 0
        box = tuple(slice(idx.min(), idx.max() + 1) for idx in np.nonzero(brain))
        outside = np.ones(labels.shape, bool)
        outside[box] = False
        assert not labels[outside].any(), "outside the brain's bounding box nothing is labelled"


def test_rerun_skips_finished_cases_and_a_bad_case_does_not_stop_the_others(dataset, model_file, tmp_path):
    cases = find_cases(dataset).cases
    loaded = load_model(model_file)
    out = tmp_path / "out"
    predict_cases(cases[:1], loaded, out, small_windows(loaded), progress=False)
    broken = tmp_path / "corrupt" / "broken_flair.nii.gz"
    broken.parent.mkdir()
    broken.write_bytes(cases[2].images["flair"].read_bytes()[:300])
    bad_case = type(cases[2])(cases[2].case_id, {**cases[2].images, "flair": broken}, None, 4)
    summary = predict_cases([cases[0], cases[1], bad_case], loaded, out, small_windows(loaded), progress=False)
    assert summary.skipped == [cases[0].case_id]
    assert [p.name for p in summary.written] == [f"{cases[1].case_id}.nii.gz"]
    assert list(summary.failed) == [cases[2].case_id]
    assert "broken_flair" in summary.failed[cases[2].case_id]
    assert not (out / f"{cases[2].case_id}.nii.gz").exists()
    assert not list(out.glob(".*")), "no partial files are left behind"


def test_a_model_with_nan_weights_fails_every_case_and_writes_no_label_map(dataset, tmp_path):
    """argmax of NaN probabilities is background: without a check every case would be written empty."""
    model = AlbuNet2D(num_classes=4)
    kernel, bias = model.get_layer("final").get_weights()
    model.get_layer("final").set_weights([np.full_like(kernel, np.nan), bias])
    model.save(tmp_path / "nan.keras")
    loaded = load_model(tmp_path / "nan.keras")
    cases = find_cases(dataset).cases[:2]
    summary = predict_cases(cases, loaded, tmp_path / "out", small_windows(loaded), progress=False)
    assert list(summary.failed) == [case.case_id for case in cases] and not summary.written
    for case in cases:
        assert summary.failed[case.case_id].startswith(
            f"OutputError: case {case.case_id}: the network's probabilities hold "), summary.failed[case.case_id]
    assert not list((tmp_path / "out").iterdir())


def test_small_enhancing_tumor_becomes_necrosis():
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[0, 0, :3] = 3
    labels[1] = 2
    cleaned = keras.ops.convert_to_numpy(relabel_small_enhancing(labels, min_voxels=4))
    assert cleaned.dtype == np.uint8
    assert not (cleaned == 3).any() and (cleaned == 1).sum() == 3 and (cleaned == 2).sum() == 16
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(relabel_small_enhancing(labels, min_voxels=3)), labels)


def test_load_model_reports_a_folder_without_models(tmp_path):
    with pytest.raises(FileNotFoundError, match="best.keras or final.keras"):
        load_model(tmp_path)


def test_load_model_names_a_file_that_is_not_a_model(tmp_path):
    import zipfile

    (tmp_path / "notes.keras").write_text("weights of the best epoch\n")
    with pytest.raises(ValueError, match=f"model file {tmp_path / 'notes.keras'} is not a Keras model"):
        load_model(tmp_path / "notes.keras")
    with zipfile.ZipFile(tmp_path / "archive.keras", "w") as archive:
        archive.writestr("readme.txt", "no model here")
    with pytest.raises(ValueError, match=f"model file {tmp_path / 'archive.keras'} cannot be loaded as a Keras model "
                                         r"\(KeyError: .*config.json"):
        load_model(tmp_path / "archive.keras")


@pytest.mark.slow
def test_predict_cli_on_a_single_case_folder(dataset, model_file, tmp_path):
    case_dir = sorted(p for p in dataset.iterdir() if p.is_dir())[0]
    command = [sys.executable, "-m", "tfbrats.predict", f"--model={model_file}", f"--input={case_dir}",
               f"--output={tmp_path}", "--patch_size=1,32,32", "--full_volume"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote 1 predictions" in result.stdout
    assert (tmp_path / f"{case_dir.name}.nii.gz").is_file()


def test_bfloat16_prediction_agrees_with_float32(model_file):
    import keras

    full = load_model(model_file)
    half = load_model(model_file, precision="mixed_bfloat16")
    assert keras.mixed_precision.global_policy().name == "float32", "the global policy is left as it was"
    assert half.model.get_layer("stem_conv").compute_dtype == "bfloat16"
    x = np.random.default_rng(0).normal(size=(1, 1, 64, 64, 3)).astype("float32")
    a, b = np.asarray(full.model(x)), np.asarray(half.model(x))
    assert b.dtype == np.float32
    np.testing.assert_allclose(b, a, atol=0.1 * np.abs(a).max())


def test_voxels_outside_the_brain_are_background():
    from tfbrats.data import CaseMeta, PreprocessedCase
    from tfbrats.inference.predict import segment

    image = np.zeros((2, 32, 32, 3), np.float32)
    image[:, 8:20, 8:20] = 1.0
    meta = CaseMeta("c", ((0, 2), (0, 32), (0, 32)), (2, 32, 32), np.eye(4), None, (1.0, 1.0, 1.0), 4, ("flair",))

    def everywhere_edema(batch):
        out = np.zeros((*batch.shape[:-1], 4), np.float32)
        out[..., 2] = 1.0
        return out

    contract = SegmentationContract(window=Window((1, 32, 32), (1, 32, 32)))
    labels = segment(PreprocessedCase(image, None, meta), everywhere_edema, contract)
    np.testing.assert_array_equal(labels, np.where(image[..., 0] > 0, 2, 0))
