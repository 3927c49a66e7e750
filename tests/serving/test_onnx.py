"""tools/export.py --format=onnx: onnxruntime gives the Keras model's probabilities and labels."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.serving.conftest import BATCH, CONTRACT, PATCH, STEPS, run_tool
from tfbrats.inference import sliding_window
from tfbrats.inference.model import make_predictor, save_with_contract
from tfbrats.labels import get_target
from tfbrats.models import AlbuNet3D
from tfbrats.serving.export import read_metadata

onnxruntime = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory: pytest.TempPathFactory, model) -> Path:
    """The session's model with a logits head (as training saves it), exported to ONNX by the CLI."""
    logits_model = AlbuNet3D(head="logits")
    logits_model.set_weights(model.get_weights())
    run = tmp_path_factory.mktemp("run_logits")
    save_with_contract(logits_model, CONTRACT, run / "final.keras")
    (run / "config.json").write_text(json.dumps({"patch_size": list(PATCH)}))
    base = tmp_path_factory.mktemp("onnx_models") / "albunet3d"
    done = run_tool("export.py", f"--model={run}", f"--output={base}", "--version=1", "--format=onnx")
    assert done.returncode == 0, done.stderr
    return base / "1"


@pytest.fixture(scope="module")
def session(onnx_export: Path):
    return onnxruntime.InferenceSession(str(onnx_export / "model.onnx"), providers=["CPUExecutionProvider"])


@pytest.mark.slow
def test_onnxruntime_probabilities_equal_keras(session, model):
    (image,), (probabilities,) = session.get_inputs(), session.get_outputs()
    assert image.name == "image" and image.shape[1:] == [*PATCH, 3]
    assert probabilities.name == "probabilities" and probabilities.shape[1:] == [*PATCH, 4]
    patches = np.random.default_rng(4).normal(size=(2, *PATCH, 3)).astype(np.float32)
    (result,) = session.run(None, {"image": patches})
    # The export added the softmax that the logits model lacks.
    np.testing.assert_allclose(result, model(patches).numpy(), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_onnxruntime_in_the_sliding_window_gives_the_same_labels(session, model, volume):
    def onnx_predictor(windows: np.ndarray) -> np.ndarray:
        return session.run(None, {"image": windows})[0]

    labels = sliding_window(volume, onnx_predictor, PATCH, STEPS, BATCH).argmax(-1)
    expected = sliding_window(volume, make_predictor(model, get_target("classes")), PATCH, STEPS, BATCH).argmax(-1)
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.slow
def test_onnx_metadata_travels_inside_the_model(onnx_export):
    assert [p.name for p in onnx_export.iterdir()] == ["model.onnx"]
    metadata = read_metadata(onnx_export)
    assert metadata["format"] == "onnx" and metadata["model"]["head"] == "logits"
    assert metadata["contract"] == CONTRACT.to_json()


def test_window_steps_are_refused_for_onnx(tmp_path: Path):
    done = run_tool("export.py", f"--model={tmp_path}", f"--output={tmp_path / 'out'}", "--version=1",
                    "--format=onnx", "--steps=2,16,16")
    assert done.returncode == 2 and "--steps" in done.stderr
    assert not (tmp_path / "out").exists()
