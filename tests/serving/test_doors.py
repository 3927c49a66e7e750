"""One segmentation through every door: tfbrats.predict, the Python API, the SavedModel, TF Serving clients, ONNX,
OpenVINO.

For a classes and a regions model whose contract removes small components, ET dust and stray
enhancing tumor, on a case where the bare network paints tumor outside the brain and small ET components,
every door must write exactly the labels of `python -m tfbrats.predict`'s output file.
"""

import dataclasses
import subprocess
import sys

import keras
import nibabel as nib
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from tests.serving.conftest import ROOT, run_tool
from tests.serving.standin_server import StandInModel, start_grpc, start_rest
from tfbrats.contract import PostProcessing, SegmentationContract, Window, brain_region, postprocess
from tfbrats.data import find_cases, labels_to_dataset, load_case, uncrop, write_synthetic_dataset, xyz_to_dhw
from tfbrats.inference.model import load_model, make_predictor, save_with_contract
from tfbrats.inference.predict import segment, window_probabilities
from tfbrats.labels import get_target
from tfbrats.models import AlbuNet2D
from tfbrats.serving.client import GrpcPredictClient, RestPredictClient, segment_volume
from tfbrats.serving.onnx import OnnxSegmenter
from tfbrats.serving.openvino import OpenVinoSegmenter

pytestmark = pytest.mark.slow
WINDOW = Window(patch_size=(1, 32, 32), steps=(1, 16, 16), batch_size=4)
# classes: components removed and ET dust relabelled, so the client runs those steps and the ET
# threshold after them; regions: the ET threshold alone, which runs inside the graph.
POSTPROCESSING = {"classes": PostProcessing(min_component_voxels=4, min_et_voxels=10**6, min_et_component_voxels=20),
                  "regions": PostProcessing(min_et_voxels=10**6)}


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory):
    (folder,) = write_synthetic_dataset(tmp_path_factory.mktemp("case"), cases=1, shape=(56, 48, 10), seed=2)
    return folder


def _model(target: str) -> AlbuNet2D:
    keras.utils.set_random_seed(7)
    model = AlbuNet2D(num_classes=get_target(target).num_outputs)
    final = model.get_layer("final")
    kernel, bias = final.get_weights()
    # Biases that leave a third (classes) or a quarter (regions) of the case tumor, in many components.
    bias = np.array([0.0, 0.0, 0.0, 0.5] if target == "classes" else [-1.0, 0.0, 0.0], np.float32)
    final.set_weights([kernel * 40.0, bias])
    return model


@pytest.fixture(scope="module", params=["classes", "regions"])
def door_setup(request, tmp_path_factory, case_dir):
    target = request.param
    work = tmp_path_factory.mktemp(target)
    contract = SegmentationContract(get_target(target), window=WINDOW, postprocessing=POSTPROCESSING[target])
    run = work / "run"
    save_with_contract(_model(target), contract, run / "best.keras")
    predicted = work / "predicted"
    done = subprocess.run([sys.executable, "-m", "tfbrats.predict", f"--model={run}", f"--input={case_dir}",
                           f"--output={predicted}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    case = load_case(find_cases(case_dir).cases[0])
    expected = np.asarray(nib.load(predicted / f"{case.meta.case_id}.nii.gz").dataobj)
    export = work / "saved_models" / "albunet"
    done = run_tool("export.py", f"--model={run}", f"--output={export}", "--version=1")
    assert done.returncode == 0, done.stderr[-2000:]
    onnx_export = work / "onnx_models" / "albunet"
    done = run_tool("export.py", f"--model={run}", f"--output={onnx_export}", "--version=1", "--format=onnx")
    assert done.returncode == 0, done.stderr[-2000:]
    openvino_export = work / "openvino_models" / "albunet"
    done = run_tool("export.py", f"--model={run}", f"--output={openvino_export}", "--version=1",
                    "--format=openvino")
    assert done.returncode == 0, done.stderr[-2000:]
    return {"target": target, "run": run, "case": case, "expected": expected, "contract": contract,
            "saved_model": export / "1", "onnx": onnx_export / "1",
            "openvino": openvino_export / "1", "work": work}


def _as_written(labels_cropped: np.ndarray, case) -> np.ndarray:
    """Internal labels on the cropped grid -> the dataset's values on nibabel's (x, y, z) grid."""
    return np.transpose(labels_to_dataset(uncrop(labels_cropped, case.meta), case.meta.et_label), (2, 1, 0))


def test_the_case_needs_the_post_processing(door_setup):
    """The bare network paints tumor outside the brain and ET; the contract's labels differ from it."""
    case, contract = door_setup["case"], door_setup["contract"]
    loaded = load_model(door_setup["run"])
    probabilities = window_probabilities(case.image, make_predictor(loaded.model, loaded.target), contract)
    bare = contract.target.to_labels_numpy(probabilities)
    assert (bare[~brain_region(case.image)] > 0).any(), "tumor outside the brain"
    assert (bare == 3).any(), "enhancing tumor"
    post = contract.postprocessing
    if post.min_component_voxels:
        components, _ = ndimage.label(np.where(brain_region(case.image), bare, 0) > 0, np.ones((3, 3, 3)))
        assert (np.bincount(components.ravel())[1:] < post.min_component_voxels).any()
    if post.min_et_component_voxels:  # the dust takes the class around it, not the threshold's necrosis
        without_dust = dataclasses.replace(post, min_et_component_voxels=0)
        assert not np.array_equal(postprocess(bare, case.image, post), postprocess(bare, case.image, without_dust))
    expected = xyz_to_dhw(door_setup["expected"])
    assert not np.array_equal(_as_written(bare, case), door_setup["expected"])
    assert (expected > 0).any() and not (expected == case.meta.et_label).any()


def test_python_api(door_setup):
    loaded = load_model(door_setup["run"])
    labels = segment(door_setup["case"], make_predictor(loaded.model, loaded.target), loaded.contract)
    full = np.transpose(labels_to_dataset(labels, door_setup["case"].meta.et_label), (2, 1, 0))
    np.testing.assert_array_equal(full, door_setup["expected"])


def test_saved_model_segment_signature(door_setup):
    case = door_setup["case"]
    served = tf.saved_model.load(str(door_setup["saved_model"])).signatures["segment"](volume=tf.constant(case.image))
    remaining = served["client_postprocessing"].numpy().tolist()
    post = door_setup["contract"].postprocessing
    in_client = post.min_component_voxels or post.min_et_component_voxels
    assert remaining == (dataclasses.replace(post, brain_mask=False).to_integers() if in_client else [0, 0, 0, 0])
    steps = PostProcessing.from_integers(remaining)
    labels = postprocess(served["labels"].numpy().astype(np.uint8), case.image, steps)
    np.testing.assert_array_equal(_as_written(labels, case), door_setup["expected"])


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_serving_client_tool(door_setup, transport, case_dir, tmp_path):
    model = StandInModel(door_setup["saved_model"], "albunet")
    server, port = (start_grpc if transport == "grpc" else start_rest)(model)
    try:
        out = tmp_path / "client"
        done = run_tool("serving_client.py", f"--server=127.0.0.1:{port}", f"--{transport}", f"--case={case_dir}",
                        f"--output={out}", "--model_name=albunet")
        assert done.returncode == 0, done.stderr[-2000:]
        written = np.asarray(nib.load(out / f"{door_setup['case'].meta.case_id}.nii.gz").dataobj)
        np.testing.assert_array_equal(written, door_setup["expected"])
        if transport == "grpc":  # the window in the client over serving_default, as for a TF-TRT conversion
            with GrpcPredictClient(f"127.0.0.1:{port}", "albunet") as client:
                labels = segment_volume(client, door_setup["case"].image, "serving_default", door_setup["contract"])
            np.testing.assert_array_equal(_as_written(labels, door_setup["case"]), door_setup["expected"])
        else:
            labels = segment_volume(RestPredictClient(f"127.0.0.1:{port}", "albunet"), door_setup["case"].image)
            np.testing.assert_array_equal(_as_written(labels, door_setup["case"]), door_setup["expected"])
    finally:
        if transport == "grpc":
            server.stop(grace=None)
        else:
            server.shutdown()
            server.server_close()


def test_onnx_export(door_setup):
    segmenter = OnnxSegmenter(door_setup["onnx"])
    assert segmenter.contract == door_setup["contract"]
    labels = segmenter.segment(door_setup["case"].image)
    np.testing.assert_array_equal(_as_written(labels, door_setup["case"]), door_setup["expected"])


def test_openvino_export(door_setup):
    segmenter = OpenVinoSegmenter(door_setup["openvino"])
    assert segmenter.contract == door_setup["contract"]
    labels = segmenter.segment(door_setup["case"].image)
    np.testing.assert_array_equal(_as_written(labels, door_setup["case"]), door_setup["expected"])
