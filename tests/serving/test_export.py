"""tools/export.py: the SavedModel's two signatures equal the Keras model and tfbrats' numpy prediction."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.serving.conftest import BATCH, CONTRACT, PATCH, STEPS, run_tool
from tfbrats.contract import Window
from tfbrats.inference import sliding_window
from tfbrats.inference.model import make_predictor
from tfbrats.labels import get_target
from tfbrats.serving.export import export_saved_model, read_metadata

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def signatures(exported):
    return tf.saved_model.load(str(exported)).signatures


def test_serving_default_equals_the_keras_model(signatures, model):
    rng = np.random.default_rng(2)
    for shape in [(2,) + PATCH + (3,), (1, 6, 64, 32, 3)]:  # any patch with H, W multiples of 32
        patches = rng.normal(size=shape).astype(np.float32)
        served = signatures["serving_default"](image=tf.constant(patches))
        assert set(served) == {"probabilities"}
        np.testing.assert_allclose(served["probabilities"].numpy(), model(patches).numpy(), rtol=0, atol=1e-5)


def test_segment_labels_equal_numpy_sliding_window(signatures, model, volume):
    served = signatures["segment"](volume=tf.constant(volume))
    assert set(served) == {"labels", "client_postprocessing"}
    assert served["client_postprocessing"].numpy().tolist() == [0, 0, 0, 0]  # nothing is left to the client
    labels = served["labels"].numpy()
    assert labels.dtype == np.int32 and labels.shape == volume.shape[:3]
    probabilities = sliding_window(volume, make_predictor(model, get_target("classes")), PATCH, STEPS, BATCH)
    np.testing.assert_array_equal(labels, probabilities.argmax(-1))
    assert len(np.unique(labels)) > 1  # a constant map would prove little


def test_segment_pads_a_volume_smaller_than_the_window(signatures, model):
    small = np.random.default_rng(3).normal(size=(3, 20, 70, 3)).astype(np.float32)
    labels = signatures["segment"](volume=tf.constant(small))["labels"].numpy()
    expected = sliding_window(small, make_predictor(model, get_target("classes")), PATCH, STEPS, BATCH).argmax(-1)
    np.testing.assert_array_equal(labels, expected)


def test_each_weight_is_stored_once(exported, model):
    reader = tf.train.load_checkpoint(str(exported / "variables" / "variables"))
    shapes = reader.get_variable_to_shape_map()
    stored = sum(int(np.prod(shape)) for name, shape in shapes.items() if name != "_CHECKPOINTABLE_OBJECT_GRAPH")
    assert stored == model.count_params()


def test_metadata_records_the_window_and_the_run(exported, run_dir):
    metadata = read_metadata(exported)
    assert metadata["format"] == "saved_model"
    assert metadata["contract"] == CONTRACT.to_json()
    assert metadata["contract"]["window"] == {"patch_size": list(PATCH), "steps": list(STEPS), "batch_size": BATCH,
                                              "blend": "mean", "mirror_tta": False}
    assert metadata["input_channels"] == 3 and metadata["channels"] == ["flair", "t1ce", "t2"]
    assert len(metadata["outputs"]) == 4 and metadata["model"]["class"] == "AlbuNet3D"
    assert metadata["postprocessing_in_graph"] == "brain mask" and metadata["postprocessing_in_client"] == "none"
    assert metadata["source"] == str(run_dir / "best.keras")
    assert metadata["run_config"]["patch_size"] == list(PATCH)
    assert set(metadata["signatures"]) == {"serving_default", "segment"}


def test_saved_model_cli_lists_both_signatures(exported):
    cli = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable)) or shutil.which("saved_model_cli")
    assert cli, "saved_model_cli (installed with tensorflow) not found"
    shown = subprocess.run([cli, "show", "--dir", str(exported), "--all"], capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "signature_def['serving_default']" in text and "signature_def['segment']" in text
    segment = text.split("signature_def['segment']")[1].split("signature_def[")[0]
    assert "inputs['volume']" in segment and "shape: (-1, -1, -1, 3)" in segment
    assert "outputs['labels']" in segment and "DT_INT32" in segment
    default = text.split("signature_def['serving_default']")[1].split("signature_def[")[0]
    assert "inputs['image']" in default and "shape: (-1, -1, -1, -1, 3)" in default
    assert "outputs['probabilities']" in default and "shape: (-1, -1, -1, -1, 4)" in default


def test_cli_refuses_to_overwrite_a_version(exported, run_dir):
    before = (exported / "saved_model.pb").stat().st_mtime_ns
    done = run_tool("export.py", f"--model={run_dir}", f"--output={exported.parent}", "--version=1")
    assert done.returncode == 1
    assert "already exists" in done.stderr and str(exported) in done.stderr
    assert (exported / "saved_model.pb").stat().st_mtime_ns == before
    assert sorted(p.name for p in exported.parent.iterdir()) == ["1"]


def test_library_refuses_to_overwrite_a_version(tmp_path: Path, model):
    (tmp_path / "3").mkdir()
    with pytest.raises(FileExistsError, match="export as version 4"):
        export_saved_model(model, tmp_path, 3, CONTRACT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3"]


def test_a_failed_export_leaves_nothing(tmp_path: Path, model):
    # H = 33 is no multiple of 32: tracing `segment` fails inside the temporary folder.
    with pytest.raises(ValueError, match="multiple of 32"):
        export_saved_model(model, tmp_path, 1, CONTRACT.replace(window=Window((4, 33, 32), STEPS)))
    assert list(tmp_path.iterdir()) == []
