"""tools/serving_client.py against a STAND-IN for TensorFlow Serving (tests/serving/standin_server.py).

The stand-in loads the exported SavedModel and answers TensorFlow Serving's gRPC and REST Predict
APIs; the client's NIfTI must equal tfbrats' own prediction of the case, in the input's geometry.
"""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.serving.conftest import BATCH, CONTRACT, PATCH, STEPS, run_tool
from tests.serving.standin_server import StandInModel, start_grpc, start_rest
from tfbrats.contract import finish_segmentation
from tfbrats.data import find_cases, labels_to_dataset, load_case, uncrop, write_synthetic_dataset, xyz_to_dhw
from tfbrats.inference import sliding_window
from tfbrats.inference.model import make_predictor
from tfbrats.labels import get_target
from tfbrats.serving.client import GrpcPredictClient, RestPredictClient, ServingError, segment_volume

pytestmark = pytest.mark.slow
MODEL_NAME = "albunet3d"


@pytest.fixture(scope="module")
def servers(exported):
    """The stand-in's gRPC and REST ports, serving the export as model "albunet3d" version 1."""
    model = StandInModel(exported, MODEL_NAME)
    grpc_server, grpc_port = start_grpc(model)
    rest_server, rest_port = start_rest(model)
    yield {"grpc": f"127.0.0.1:{grpc_port}", "rest": f"127.0.0.1:{rest_port}"}
    grpc_server.stop(grace=None)
    rest_server.shutdown()
    rest_server.server_close()


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic BraTS 2020 case of 56 x 48 x 10 voxels (cropped to about 8 x 39 x 42)."""
    (folder,) = write_synthetic_dataset(tmp_path_factory.mktemp("cases"), cases=1, shape=(56, 48, 10), seed=0)
    return folder


@pytest.fixture(scope="module")
def case(case_dir: Path):
    return load_case(find_cases(case_dir).cases[0])


@pytest.fixture(scope="module")
def expected_labels(case, model) -> np.ndarray:
    """tfbrats' own prediction of the cropped case with the export's contract."""
    probabilities = sliding_window(case.image, make_predictor(model, get_target("classes")), PATCH, STEPS, BATCH)
    return finish_segmentation(probabilities, case.image, CONTRACT)


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_client_writes_the_tfbrats_prediction(transport, servers, case_dir, case, expected_labels, tmp_path):
    done = run_tool("serving_client.py", f"--server={servers[transport]}", f"--{transport}", f"--case={case_dir}",
                    f"--output={tmp_path}", f"--model_name={MODEL_NAME}")
    assert done.returncode == 0, done.stderr
    written = nib.load(tmp_path / f"{case.meta.case_id}.nii.gz")
    flair = nib.load(next(case_dir.glob("*_flair.nii.gz")))
    np.testing.assert_array_equal(written.affine, flair.affine)
    assert written.shape == flair.shape
    expected = labels_to_dataset(uncrop(expected_labels, case.meta), case.meta.et_label)
    np.testing.assert_array_equal(xyz_to_dhw(np.asarray(written.dataobj)), expected)
    assert len(np.unique(expected_labels)) > 1


def test_window_in_the_client_over_serving_default(servers, case, expected_labels):
    with GrpcPredictClient(servers["grpc"], MODEL_NAME, version=1) as client:
        labels = segment_volume(client, case.image, "serving_default", CONTRACT)
    np.testing.assert_array_equal(labels, expected_labels)


def test_rest_segment_of_a_volume_smaller_than_the_window(servers, model):
    small = np.random.default_rng(5).normal(size=(3, 20, 70, 3)).astype(np.float32)
    labels = segment_volume(RestPredictClient(servers["rest"], MODEL_NAME), small)
    expected = sliding_window(small, make_predictor(model, get_target("classes")), PATCH, STEPS, BATCH).argmax(-1)
    np.testing.assert_array_equal(labels, expected)


def test_server_errors_name_the_problem(servers, case):
    with GrpcPredictClient(servers["grpc"], "no_such_model") as client, pytest.raises(ServingError, match="NOT_FOUND"):
        segment_volume(client, case.image)
    with pytest.raises(ServingError, match="HTTP 404.*no_such_model"):
        segment_volume(RestPredictClient(servers["rest"], "no_such_model"), case.image)
    with GrpcPredictClient(servers["grpc"], MODEL_NAME, version=7) as client:
        with pytest.raises(ServingError, match="version 7"):
            segment_volume(client, case.image)
    with pytest.raises(ServingError, match="cannot reach"):
        segment_volume(RestPredictClient("127.0.0.1:9", MODEL_NAME, timeout=5), case.image)
