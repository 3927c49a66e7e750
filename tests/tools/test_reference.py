"""``tools/benchmark.py reference``: the published PyTorch AlbuNet3D it times, and its figures.

torch is in the test extra (the ``torch`` extra), so these tests run in ``make test``; where torch
is absent the model tests skip, and the benchmark's own refusal is tested either way.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from benchmarks import reference

from tfbrats.models import AlbuNet3D

BENCHMARK = Path(__file__).resolve().parents[2] / "tools" / "benchmark.py"


def _counts(model) -> tuple[int, int]:
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return trainable, sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)


def test_published_model_has_the_parameters_of_the_keras_albunet3d():
    pytest.importorskip("torch", reason="the published model needs torch (the torch extra)")
    from benchmarks.torch_albunet import albunet3d

    trainable, statistics = _counts(AlbuNet3D(num_classes=4))
    plain = albunet3d(encoder_bias=False)
    assert sum(p.numel() for p in plain.parameters()) == trainable == 26_673_172
    assert sum(b.numel() for name, b in plain.named_buffers() if "running_" in name) == statistics == 20_288
    # As published, the encoder's 36 convolutions carry biases: one per output channel.
    published = sum(p.numel() for p in albunet3d().parameters())
    assert published - trainable == 64 + 2 * (3 * 64 + 4 * 128 + 6 * 256 + 3 * 512) + 128 + 256 + 512 == 8_512


def test_published_model_and_the_keras_albunet3d_compute_the_same_logits(tmp_path):
    torch = pytest.importorskip("torch", reason="the published model needs torch (the torch extra)")
    from benchmarks.torch_albunet import albunet3d

    model = albunet3d(seed=3).eval()
    state = model.state_dict()
    assert len(state) == 341 and "conv2_0.downsample.1.running_var" in state and "dec5.block.1.weight" in state
    torch.save(state, tmp_path / "published.pth")
    keras_model = AlbuNet3D.from_reference_checkpoint(tmp_path / "published.pth", num_classes=4)
    x = np.random.default_rng(1).normal(size=(1, 5, 64, 96, 3)).astype("float32")  # odd depth: depth layers' edges
    with torch.inference_mode():
        expected = model(torch.from_numpy(x).permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1).numpy()
    got = np.asarray(keras_model(x, training=False))
    assert got.shape == expected.shape == (1, 5, 64, 96, 4)
    assert np.abs(got - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())
    assert np.abs(expected).max() > 0.05  # the logits are not all near zero


def test_reference_without_torch_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    parser = reference.argparse.ArgumentParser()
    reference.add_arguments(parser)
    with pytest.raises(reference.TorchMissing, match=r"needs torch.*pip install -e '\.\[torch\]'"):
        reference.run(parser.parse_args(["--later_cases", "1"]))


def test_case_copies_hold_the_same_voxels_under_new_ids(tmp_path):
    cases = reference.case_copies(tmp_path, (48, 40, 16), 3)
    assert [c.case_id for c in cases] == ["BraTS20_Training_001", "BraTS20_Training_001_copy1",
                                          "BraTS20_Training_001_copy2"]
    for copy in cases[1:]:
        for modality, path in cases[0].images.items():
            assert copy.images[modality].name.startswith(copy.case_id)
            assert np.array_equal(nib.load(copy.images[modality]).get_fdata(), nib.load(path).get_fdata())


@pytest.mark.slow
def test_reference_prints_both_figures_and_their_ratio():
    pytest.importorskip("torch", reason="the published model needs torch (the torch extra)")
    command = [sys.executable, str(BENCHMARK), "reference", "--shape=64,64,40", "--later_cases=2", "--window=2,64,64",
               "--repeats=1"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=900, check=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    figures = json.loads(finished.stdout)
    published, case = figures["published_model"], figures["tfbrats_predict"]
    assert published["window"] == [2, 64, 64] and published["seconds_per_pass"] > 0
    assert figures["budget_seconds"] == pytest.approx(12 * published["seconds_per_pass"], abs=2e-3)
    assert case["case_shape"] == [64, 64, 40] and case["cases_in_folder"] == 3
    assert case["window"]["patch_size"] == [8, 64, 64]  # the random model's contract: the demo's patch
    assert case["seconds_per_case"] == pytest.approx((case["folder_seconds"] - case["first_case_seconds"]) / 2,
                                                     abs=2e-3)
    assert figures["ratio_case_to_budget"] == pytest.approx(case["seconds_per_case"] / figures["budget_seconds"],
                                                            abs=2e-3)
    assert figures["within_budget"] == (case["seconds_per_case"] <= figures["budget_seconds"])
    assert figures["stack"]["torch"] and figures["lscpu"]["Model name"] and figures["machine"]["commit"]
    assert 0.0 <= case["wt_dice_vs_paper_windows"] <= 1.0


@pytest.mark.slow
def test_agreement_with_the_paper_windows_is_one_for_a_model_that_uses_them_and_numpy_dice_otherwise(tmp_path):
    from tfbrats.data import find_cases, load_case, write_synthetic_dataset
    from tfbrats.inference.model import load_model, make_predictor, save_with_contract
    from tfbrats.inference.modes import InferenceMode
    from tfbrats.inference.predict import segment

    write_synthetic_dataset(tmp_path / "case", 1, (64, 64, 40), seed=0)
    case = find_cases(tmp_path / "case").cases[0]
    own = load_model(reference._random_model(tmp_path / "own.keras"))  # the demo's 8x64x64 window
    paper = InferenceMode("paper_windows").apply(own.contract)
    assert reference.agreement_with_paper_windows(
        save_with_contract(own.model, paper, tmp_path / "paper.keras"), load_model(tmp_path / "paper.keras"),
        case) == 1.0
    image = load_case(case)
    labels = [segment(image, make_predictor(own.model, own.contract.target), contract) > 0
              for contract in (own.contract, paper)]
    total = labels[0].sum() + labels[1].sum()
    expected = 1.0 if total == 0 else 2 * np.logical_and(*labels).sum() / total
    assert reference.agreement_with_paper_windows(own.path, own, case) == pytest.approx(expected, abs=1e-6)
