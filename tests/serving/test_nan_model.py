"""A model whose final kernel is NaN, through every door: each refuses the case, none writes a label map.

Argmax of NaN probabilities is class 0 and a NaN never exceeds a threshold, so without a check such
a model segments every case as confident background. `python -m tfbrats.predict`, the Python API,
the SavedModel's `segment` signature (gRPC, REST, tools/serving_client.py), `serving_default` with
the window in the client, and the ONNX export must each say the probabilities are not finite.
"""

import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.serving.conftest import ROOT, run_tool
from tests.serving.standin_server import StandInModel, start_grpc, start_rest
from tfbrats.contract import OutputError, SegmentationContract, Window
from tfbrats.data import find_cases, load_case, write_synthetic_dataset
from tfbrats.inference.model import load_model, make_predictor, save_with_contract
from tfbrats.inference.predict import segment
from tfbrats.models import AlbuNet2D
from tfbrats.serving.client import GrpcPredictClient, RestPredictClient, ServingError, segment_volume
from tfbrats.serving.export import export_onnx, export_saved_model
from tfbrats.serving.onnx import OnnxSegmenter

pytestmark = pytest.mark.slow
CONTRACT = SegmentationContract(window=Window(patch_size=(1, 32, 32), steps=(1, 32, 32), batch_size=8))
NAN_PROBABILITIES = r"NaN or infinite"


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory):
    (folder,) = write_synthetic_dataset(tmp_path_factory.mktemp("case"), cases=1, shape=(40, 44, 12), seed=4)
    return folder


@pytest.fixture(scope="module")
def nan_model():
    keras.utils.set_random_seed(0)
    model = AlbuNet2D(num_classes=4)
    final = model.get_layer("final")
    kernel, bias = final.get_weights()
    final.set_weights([np.full_like(kernel, np.nan), bias])
    return model


@pytest.fixture(scope="module")
def run(tmp_path_factory, nan_model):
    folder = tmp_path_factory.mktemp("run")
    save_with_contract(nan_model, CONTRACT, folder / "best.keras")
    return folder


@pytest.fixture(scope="module")
def servers(tmp_path_factory, nan_model):
    served = StandInModel(export_saved_model(nan_model, tmp_path_factory.mktemp("saved") / "m", 1, CONTRACT), "m")
    grpc_server, grpc_port = start_grpc(served)
    rest_server, rest_port = start_rest(served)
    yield {"grpc": f"127.0.0.1:{grpc_port}", "rest": f"127.0.0.1:{rest_port}"}
    grpc_server.stop(grace=None)
    rest_server.shutdown()
    rest_server.server_close()


def test_predict_lists_the_case_as_failed_and_writes_nothing(run, case_dir, tmp_path):
    done = subprocess.run([sys.executable, "-m", "tfbrats.predict", f"--model={run}", f"--input={case_dir}",
                           f"--output={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"case {case_dir.name}: the network's probabilities hold" in done.stdout + done.stderr
    assert not list(tmp_path.glob("*.nii.gz")) and not list(tmp_path.glob("*.json"))


def test_the_python_api_raises_naming_the_case(run, case_dir):
    loaded = load_model(run)
    case = load_case(find_cases(case_dir).cases[0])
    with pytest.raises(OutputError, match=rf"^case {case_dir.name}: the network's probabilities hold \d+ "
                                          rf"{NAN_PROBABILITIES}"):
        segment(case, make_predictor(loaded.model, loaded.target), loaded.contract)


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_the_segment_signature_refuses_the_request(servers, case_dir, transport):
    image = load_case(find_cases(case_dir).cases[0]).image
    client = (GrpcPredictClient if transport == "grpc" else RestPredictClient)(servers[transport], "m")
    with pytest.raises(ServingError, match=r"\[network probabilities:\] \[\d+\] \[values are NaN, infinite"):
        segment_volume(client, image)


def test_serving_default_with_the_window_in_the_client_refuses_the_case(servers, case_dir):
    image = load_case(find_cases(case_dir).cases[0]).image
    with GrpcPredictClient(servers["grpc"], "m") as client:
        with pytest.raises(ServingError, match=rf"the network's probabilities hold \d+ {NAN_PROBABILITIES}"):
            segment_volume(client, image, "serving_default", CONTRACT)


def test_the_serving_client_tool_reports_the_case_and_writes_nothing(servers, case_dir, tmp_path):
    done = run_tool("serving_client.py", f"--server={servers['grpc']}", "--grpc", f"--case={case_dir}",
                    f"--output={tmp_path / 'out'}", "--model_name=m")
    assert done.returncode == 1
    error = done.stderr.strip().splitlines()[-1]  # after TensorFlow's start-up lines
    assert error.startswith(f"error: case {case_dir.name}: gRPC Predict"), done.stderr[-2000:]
    assert "values are NaN, infinite or outside [0, 1]" in error
    assert not (tmp_path / "out").exists()


def test_the_onnx_segmenter_refuses_the_case(tmp_path, nan_model, case_dir):
    pytest.importorskip("onnxruntime")
    segmenter = OnnxSegmenter(export_onnx(nan_model, tmp_path / "onnx", 1, CONTRACT))
    with pytest.raises(OutputError, match=rf"the network's probabilities hold \d+ {NAN_PROBABILITIES}"):
        segmenter.segment(load_case(find_cases(case_dir).cases[0]).image)
