"""What the serving client makes of bad answers and slow servers: one `ServingError`, never a bad label map.

Each test runs a real HTTP (or gRPC) server in a thread (tests/serving/faulty_server.py) that
answers what a broken or hostile server might: malformed JSON, a bare number, short or misshapen
outputs, labels that are not labels, NaN probabilities, or its answer a byte at a time.
"""

import re
import time

import numpy as np
import pytest

from tests.serving.conftest import run_tool
from tests.serving.faulty_server import ScriptedRestServer, start_stalled_grpc
from tfbrats.contract import SegmentationContract, Window
from tfbrats.data import find_cases, load_case, write_synthetic_dataset
from tfbrats.serving.client import RestPredictClient, ServingError, segment_volume

IMAGE = np.ones((2, 3, 4, 3), np.float32)
SHAPE = list(IMAGE.shape[:3])


def _segment_answer(labels, steps=(1, 0, 0)) -> dict:
    return {"outputs": {"labels": labels, "client_postprocessing": list(steps)}}


def _labels(value) -> list:
    return np.full(SHAPE, value).tolist()


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b'{"outputs": {"labels": [[[0, 1', r"answered 30 bytes that are not JSON"),
        (b"42", r"answered a JSON int; expected an object with 'outputs'"),
        ({"predictions": []}, r"answered keys \['predictions'\]; expected an object with 'outputs'"),
        (_segment_answer(_labels(0), steps=(1, 0)),
         r"client_postprocessing: post-processing steps are 3, 4 or 5 whole numbers .*; got \[1, 0\]"),
        (_segment_answer(_labels(0), steps=(1, 0.5, 0)), r"client_postprocessing: .*got \[1.0, 0.5, 0.0\]"),
        (_segment_answer([[[0]]]), r"labels of shape \(1, 1, 1\) for an image of shape \(2, 3, 4, 3\)"),
        (_segment_answer([[0, 1], [2]]), r"output 'labels' that is not an array"),
        (_segment_answer("labels"), r"output 'labels' of dtype <U6"),
        (_segment_answer(_labels(3.7)), r"labels hold 24 voxels of values \[3.7\], which are not labels \[0, 1, 2, 3\]"
                                        r"; expected whole numbers"),
        (_segment_answer(_labels(300)), r"labels hold 24 voxels of values \[300\], which are not labels"),
        (_segment_answer(_labels(-1)), r"values \[-1\], which are not labels"),
    ],
)
def test_a_bad_segment_answer_is_one_serving_error(body, match):
    with ScriptedRestServer(body) as server:
        with pytest.raises(ServingError, match=match) as raised:
            segment_volume(RestPredictClient(server.address, "m", timeout=10), IMAGE)
    message = str(raised.value)
    assert "\n" not in message and f"POST http://{server.address}/v1/models/m:predict" in message


def test_labels_outside_the_contract_s_target_are_refused():
    contract = SegmentationContract(window=Window((1, 32, 32), (1, 32, 32)))
    two_classes = contract.replace(target=type(contract.target)(num_classes=2))
    with ScriptedRestServer(_segment_answer(_labels(3))) as server:
        client = RestPredictClient(server.address, "m", timeout=10)
        assert segment_volume(client, IMAGE, contract=contract).max() == 3
        with pytest.raises(ServingError, match=r"values \[3\], which are not labels \[0, 1\]"):
            segment_volume(client, IMAGE, contract=two_classes)


def test_a_cavity_without_the_contract_asks_for_it_and_with_it_is_kept():
    from tfbrats.labels import BRATS_POST_TREATMENT, get_target

    post = SegmentationContract(window=Window((1, 32, 32), (1, 32, 32)),
                                target=get_target("classes", label_set=BRATS_POST_TREATMENT))
    answer = np.zeros(SHAPE, int)
    answer[0, :2, :3] = 4
    answer[1, 1, 1] = 3
    with ScriptedRestServer(_segment_answer(answer.tolist())) as server:
        client = RestPredictClient(server.address, "m", timeout=10)
        with pytest.raises(ServingError, match=r"answered 6 voxels of label 4, the resection cavity of a "
                                               r"post-treatment model .* give it .*--metadata"):
            segment_volume(client, IMAGE)
        np.testing.assert_array_equal(segment_volume(client, IMAGE, contract=post), answer)
        with pytest.raises(ServingError, match=r"values \[4\], which are not labels \[0, 1, 2, 3\]"):
            segment_volume(client, IMAGE, contract=SegmentationContract(window=Window((1, 32, 32), (1, 32, 32))))


def test_the_cavity_step_a_segment_answer_leaves_to_the_client_relabels_a_stray_speck():
    from tfbrats.labels import BRATS_POST_TREATMENT, get_target

    post = SegmentationContract(window=Window((1, 32, 32), (1, 32, 32)),
                                target=get_target("classes", label_set=BRATS_POST_TREATMENT))
    answer = np.zeros(SHAPE, int)
    answer[0, 0, :2] = 4  # a 2-voxel cavity
    answer[1, 2, 3] = 4  # a 1-voxel speck apart from it, in the background
    expected = answer.copy()
    expected[1, 2, 3] = 0
    with ScriptedRestServer(_segment_answer(answer.tolist(), steps=(0, 0, 0, 0, 2))) as server:
        client = RestPredictClient(server.address, "m", timeout=10)
        np.testing.assert_array_equal(segment_volume(client, IMAGE, contract=post), expected)
    with ScriptedRestServer(_segment_answer(answer.tolist(), steps=(0, 0, 0, 0, 3))) as server:
        client = RestPredictClient(server.address, "m", timeout=10)
        assert not (segment_volume(client, IMAGE, contract=post) == 4).any()


@pytest.mark.parametrize(
    ("probabilities", "match"),
    [
        (np.nan, r"the network's probabilities hold 96 NaN or infinite values of 96"),
        (7.5, r"probabilities range over \[7.5, 7.5\] \(96 values outside \[0, 1\]\)"),
    ],
)
def test_bad_probabilities_over_serving_default_are_refused(probabilities, match):
    contract = SegmentationContract(window=Window((2, 32, 32), (2, 32, 32), batch_size=1))
    answer = {"outputs": np.full((1, 2, 32, 32, 4), probabilities).tolist()}
    with ScriptedRestServer(answer) as server, pytest.raises(ServingError, match=match):
        segment_volume(RestPredictClient(server.address, "m", timeout=10), IMAGE, "serving_default", contract)


def test_probabilities_of_the_wrong_shape_are_refused():
    contract = SegmentationContract(window=Window((2, 32, 32), (2, 32, 32), batch_size=1))
    with ScriptedRestServer({"outputs": np.zeros((1, 2, 32, 32, 3)).tolist()}) as server:
        with pytest.raises(ServingError, match=r"probabilities of shape \(1, 2, 32, 32, 3\) for windows "
                                               r"\(1, 2, 32, 32, 3\); expected \(1, 2, 32, 32, 4\)"):
            segment_volume(RestPredictClient(server.address, "m", timeout=10), IMAGE, "serving_default", contract)


def test_an_http_error_keeps_the_server_s_message():
    with ScriptedRestServer({"error": "Servable not found"}, status=404) as server:
        with pytest.raises(ServingError, match="HTTP 404: Servable not found"):
            segment_volume(RestPredictClient(server.address, "m", timeout=10), IMAGE)


@pytest.mark.parametrize("stall", [False, True], ids=["drips", "stalls"])
def test_the_timeout_is_a_deadline_for_the_whole_request(stall):
    """A byte every 0.3 s (headers included) never trips a per-read timeout; the deadline still holds."""
    with ScriptedRestServer(_segment_answer(_labels(0)), byte_pause=0.3, stall=stall) as server:
        started = time.monotonic()
        with pytest.raises(ServingError, match=r"no complete answer within the timeout of 1.5 s"):
            segment_volume(RestPredictClient(server.address, "m", timeout=1.5), IMAGE)
        # The whole answer drips for over 40 s: ending well before proves the deadline (with room for a loaded CPU).
        assert time.monotonic() - started < 10.0


def test_a_slow_answer_within_the_deadline_is_read():
    with ScriptedRestServer(_segment_answer(_labels(2)), byte_pause=0.001) as server:
        labels = segment_volume(RestPredictClient(server.address, "m", timeout=30), IMAGE)
    np.testing.assert_array_equal(labels, np.full(SHAPE, 2))


@pytest.mark.slow
def test_a_stalled_grpc_server_gives_a_serving_error_at_the_deadline():
    from tfbrats.serving.client import GrpcPredictClient

    server, port, release = start_stalled_grpc()
    try:
        started = time.monotonic()
        with GrpcPredictClient(f"127.0.0.1:{port}", "m", timeout=1.5) as client:
            with pytest.raises(ServingError, match=r"no complete answer within the timeout of 1.5 s"):
                segment_volume(client, IMAGE)
        # The whole answer drips for over 40 s: ending well before proves the deadline (with room for a loaded CPU).
        assert time.monotonic() - started < 10.0
    finally:
        release.set()
        server.stop(grace=None)


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory):
    (folder,) = write_synthetic_dataset(tmp_path_factory.mktemp("case"), cases=1, shape=(40, 44, 12), seed=1)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize(("answer", "pause", "match"), [
    ("labels 300", 0.0, r"labels hold \d+ voxels of values \[300\]"),
    ("drip", 0.5, r"no complete answer within the timeout of 2 s"),
])
def test_the_tool_reports_the_case_writes_nothing_and_exits_1(case_dir, tmp_path, answer, pause, match):
    shape = load_case(find_cases(case_dir).cases[0]).image.shape[:3]
    body = _segment_answer(np.full(shape, 300 if answer == "labels 300" else 0).tolist())
    with ScriptedRestServer(body, byte_pause=pause) as server:
        started = time.monotonic()
        done = run_tool("serving_client.py", f"--server={server.address}", "--rest", f"--case={case_dir}",
                        f"--output={tmp_path / 'out'}", "--model_name=m", "--timeout=2")
    assert done.returncode == 1, done.stderr[-2000:]
    error = done.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"error: case {case_dir.name}: POST http://"), done.stderr
    assert re.search(match, error[0]), error[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    if answer == "drip":  # the whole answer would take minutes at 0.5 s a byte
        assert time.monotonic() - started < 60
