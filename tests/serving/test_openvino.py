"""tools/export.py --format=openvino: OpenVINO gives the Keras model's probabilities, for any window."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from tests.serving.conftest import CONTRACT, PATCH, run_tool
from tfbrats.contract import Window, finish_segmentation
from tfbrats.inference.model import make_predictor, save_with_contract
from tfbrats.inference.predict import window_probabilities
from tfbrats.labels import get_target
from tfbrats.models import AlbuNet3D
from tfbrats.serving.export import read_metadata

openvino = pytest.importorskip("openvino")
from tfbrats.serving.openvino import OpenVinoSegmenter  # noqa: E402


@pytest.fixture(scope="module")
def openvino_export(tmp_path_factory: pytest.TempPathFactory, model) -> Path:
    """The session's model with a logits head (as training saves it), exported to OpenVINO by the CLI."""
    logits_model = AlbuNet3D(head="logits")
    logits_model.set_weights(model.get_weights())
    run = tmp_path_factory.mktemp("run_logits")
    save_with_contract(logits_model, CONTRACT, run / "final.keras")
    (run / "config.json").write_text(json.dumps({"patch_size": list(PATCH)}))
    base = tmp_path_factory.mktemp("openvino_models") / "albunet3d"
    done = run_tool("export.py", f"--model={run}", f"--output={base}", "--version=1", "--format=openvino")
    assert done.returncode == 0, done.stderr
    return base / "1"


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(2, *PATCH, 3), (1, 6, 64, 96, 3)])
def test_openvino_probabilities_equal_keras_for_any_window(openvino_export, model, shape):
    segmenter = OpenVinoSegmenter(openvino_export)
    patches = np.random.default_rng(4).normal(size=shape).astype(np.float32)
    result = segmenter.probabilities(patches)
    assert result.shape == (*shape[:-1], 4) and result.dtype == np.float32
    # The export added the softmax that the logits model lacks.
    np.testing.assert_allclose(result, model(patches).numpy(), rtol=0, atol=1e-3)
    assert list(segmenter._compiled) == [shape]


@pytest.mark.slow
def test_openvino_segments_a_whole_volume_in_one_pass_as_keras_does(openvino_export, model, volume):
    """Another contract (one full-volume pass) through the same export: the labels of the Keras model."""
    whole = dataclasses.replace(CONTRACT, window=Window(patch_size=None))
    labels = OpenVinoSegmenter(openvino_export, contract=whole).segment(volume)
    probabilities = window_probabilities(volume, make_predictor(model, get_target("classes")), whole)
    np.testing.assert_array_equal(labels, finish_segmentation(probabilities, volume, whole))


@pytest.mark.slow
def test_openvino_metadata_travels_inside_the_ir(openvino_export):
    assert sorted(p.name for p in openvino_export.iterdir()) == ["model.bin", "model.xml"]
    metadata = read_metadata(openvino_export)
    assert metadata["format"] == "openvino" and metadata["model"]["head"] == "logits"
    assert metadata["contract"] == CONTRACT.to_json()
    assert metadata["inputs"] == {"image": "float32 (B, D, H, W, 3)"}
    assert OpenVinoSegmenter(openvino_export).contract == CONTRACT


def test_unknown_precision_and_missing_export_are_refused(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="model.xml"):
        OpenVinoSegmenter(tmp_path)
    (tmp_path / "model.xml").write_text("<net/>")
    with pytest.raises(ValueError, match="precision must be one of"):
        OpenVinoSegmenter(tmp_path, precision="int4")


def test_window_steps_are_refused_for_openvino(tmp_path: Path):
    done = run_tool("export.py", f"--model={tmp_path}", f"--output={tmp_path / 'out'}", "--version=1",
                    "--format=openvino", "--batch_size=2")
    assert done.returncode == 2 and "--batch_size" in done.stderr and "openvino" in done.stderr
    assert not (tmp_path / "out").exists()
