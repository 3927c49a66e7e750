"""One segmentation through every door for a model with the resection cavity (5 classes, BraTS 2024/2025).

On a post-treatment case in the BraTS 2025 layout, a classes model over the label set
`BRATS_POST_TREATMENT` whose contract removes small components and relabels cavity dust:
tfbrats.predict writes labels 0..4 (the cavity as 4), and the Python API, the SavedModel's segment
signature (the cavity step among the integers it leaves to the client), the serving client tool
over a stand-in server and the ONNX and OpenVINO exports give exactly those labels.
"""

import dataclasses
import subprocess
import sys

import keras
import nibabel as nib
import numpy as np
import pytest
import tensorflow as tf

from tests.serving.conftest import ROOT, run_tool
from tests.serving.standin_server import StandInModel, start_rest
from tfbrats.contract import PostProcessing, SegmentationContract, Window, postprocess
from tfbrats.data import find_cases, load_case, uncrop, write_synthetic_dataset
from tfbrats.inference.model import load_model, make_predictor, save_with_contract
from tfbrats.inference.predict import segment, window_probabilities
from tfbrats.labels import BRATS_POST_TREATMENT, get_target
from tfbrats.models import AlbuNet2D
from tfbrats.serving.onnx import OnnxSegmenter
from tfbrats.serving.openvino import OpenVinoSegmenter

pytestmark = pytest.mark.slow
WINDOW = Window(patch_size=(1, 32, 32), steps=(1, 16, 16), batch_size=4)
POSTPROCESSING = PostProcessing(min_component_voxels=4, min_rc_component_voxels=30)


def _model() -> AlbuNet2D:
    keras.utils.set_random_seed(7)
    model = AlbuNet2D(num_classes=BRATS_POST_TREATMENT.num_classes)
    final = model.get_layer("final")
    kernel, _ = final.get_weights()
    # Biases that leave every class, the cavity included, somewhere in the case, in many components.
    final.set_weights([kernel * 40.0, np.array([0.0, 0.0, 0.0, 0.3, 0.3], np.float32)])
    return model


@pytest.fixture(scope="module")
def doors(tmp_path_factory):
    root = tmp_path_factory.mktemp("doors")
    write_synthetic_dataset(root / "data", cases=1, shape=(56, 48, 10), seed=2, layout="brats2025")
    (case_dir,) = sorted((root / "data").iterdir())
    contract = SegmentationContract(get_target("classes", label_set=BRATS_POST_TREATMENT), window=WINDOW,
                                    postprocessing=POSTPROCESSING)
    run = root / "run"
    save_with_contract(_model(), contract, run / "best.keras")
    done = subprocess.run([sys.executable, "-m", "tfbrats.predict", f"--model={run}", f"--input={case_dir}",
                           f"--output={root / 'predicted'}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    case = load_case(find_cases(case_dir).cases[0])
    expected = np.asarray(nib.load(root / "predicted" / f"{case.meta.case_id}.nii.gz").dataobj)
    for fmt in ("saved_model", "onnx", "openvino"):
        done = run_tool("export.py", f"--model={run}", f"--output={root / fmt / 'albunet'}", "--version=1",
                        f"--format={fmt}")
        assert done.returncode == 0, done.stderr[-2000:]
    return {"run": run, "case": case, "case_dir": case_dir, "expected": expected, "contract": contract,
            "saved_model": root / "saved_model" / "albunet" / "1", "onnx": root / "onnx" / "albunet" / "1",
            "openvino": root / "openvino" / "albunet" / "1"}


def _as_written(labels_cropped: np.ndarray, case) -> np.ndarray:
    return np.transpose(case.meta.labels.to_dataset(uncrop(labels_cropped, case.meta)), (2, 1, 0))


def test_predict_writes_the_cavity_and_post_processing_matters(doors):
    case, contract = doors["case"], doors["contract"]
    assert case.meta.case_id.endswith("-100") and case.meta.labels.cavity == 4
    written = set(np.unique(doors["expected"]).tolist())
    assert {0, 3, 4} <= written <= {0, 1, 2, 3, 4}, written  # the cavity (4) among tumor classes
    loaded = load_model(doors["run"])
    assert loaded.contract == contract and loaded.contract.to_json()["version"] == 4
    bare = contract.target.to_labels_numpy(window_probabilities(case.image, make_predictor(loaded.model,
                                                                                          loaded.target), contract))
    assert not np.array_equal(_as_written(bare, case), doors["expected"])
    # The cavity step changes this case: without it, its cavity components below 30 voxels would stay.
    allowed = BRATS_POST_TREATMENT.labels
    without = postprocess(bare, case.image, dataclasses.replace(POSTPROCESSING, min_rc_component_voxels=0),
                          allowed=allowed)
    with_step = postprocess(bare, case.image, POSTPROCESSING, allowed=allowed)
    assert (with_step == 4).sum() < (without == 4).sum() and (with_step == 4).any()


def test_python_api(doors):
    loaded = load_model(doors["run"])
    labels = segment(doors["case"], make_predictor(loaded.model, loaded.target), loaded.contract)  # original grid
    full = np.transpose(doors["case"].meta.labels.to_dataset(labels), (2, 1, 0))
    np.testing.assert_array_equal(full, doors["expected"])


def test_saved_model_segment_signature(doors):
    case = doors["case"]
    served = tf.saved_model.load(str(doors["saved_model"])).signatures["segment"](volume=tf.constant(case.image))
    remaining = served["client_postprocessing"].numpy().tolist()
    assert remaining == [0, 4, 0, 0, 30]  # the components steps, the cavity's the fifth integer
    steps = PostProcessing.from_integers(remaining)
    labels = postprocess(served["labels"].numpy().astype(np.uint8), case.image, steps,
                         allowed=BRATS_POST_TREATMENT.labels)
    np.testing.assert_array_equal(_as_written(labels, case), doors["expected"])


def test_serving_client_tool(doors, tmp_path):
    server, port = start_rest(StandInModel(doors["saved_model"], "albunet"))
    try:
        done = run_tool("serving_client.py", f"--server=127.0.0.1:{port}", "--rest", f"--case={doors['case_dir']}",
                        f"--output={tmp_path}", "--model_name=albunet", f"--metadata={doors['saved_model']}")
        assert done.returncode == 0, done.stderr[-2000:]
    finally:
        server.shutdown()
        server.server_close()
    written = np.asarray(nib.load(tmp_path / f"{doors['case'].meta.case_id}.nii.gz").dataobj)
    np.testing.assert_array_equal(written, doors["expected"])


def test_onnx_export(doors):
    segmenter = OnnxSegmenter(doors["onnx"])
    assert segmenter.contract == doors["contract"]
    np.testing.assert_array_equal(_as_written(segmenter.segment(doors["case"].image), doors["case"]),
                                  doors["expected"])


def test_openvino_export(doors):
    segmenter = OpenVinoSegmenter(doors["openvino"])
    assert segmenter.contract == doors["contract"]
    np.testing.assert_array_equal(_as_written(segmenter.segment(doors["case"].image), doors["case"]),
                                  doors["expected"])
