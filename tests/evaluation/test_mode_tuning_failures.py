"""`tune_mode`: a candidate whose network output fails the checks is refused, not fatal."""

from __future__ import annotations

import pytest

from tfbrats.contract import OutputError, SegmentationContract, Window
from tfbrats.data import find_cases, load_case
from tfbrats.data.synthetic import write_synthetic_dataset
from tfbrats.evaluation import mode_tuning
from tfbrats.inference.model import save_with_contract
from tfbrats.inference.modes import InferenceMode
from tfbrats.models import AlbuNet3D


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mode_failures")
    write_synthetic_dataset(root / "val", cases=1, shape=(40, 40, 32))
    cases = [load_case(case) for case in find_cases(root / "val").cases]
    contract = SegmentationContract(window=Window.for_patch((32, 32, 32)))
    model_file = save_with_contract(AlbuNet3D(num_classes=4, num_filters=2), contract, root / "run" / "best.keras")
    return cases, model_file, contract


def _failing_full_pass(monkeypatch, reference_too: bool = False):
    measure = mode_tuning.measure_mode

    def measure_or_fail(cases, predictor, contract):
        if contract.window.patch_size is None or (reference_too and contract.window.patch_size == (32, 32, 32)):
            raise OutputError("case BraTS20_Training_001: the network's probabilities hold 7 NaN values")
        return measure(cases, predictor, contract)

    monkeypatch.setattr(mode_tuning, "measure_mode", measure_or_fail)


def test_a_candidate_whose_output_is_nan_is_refused_with_why_and_never_chosen(small_run, monkeypatch):
    cases, model_file, contract = small_run
    _failing_full_pass(monkeypatch)
    modes = [InferenceMode("full_volume"), InferenceMode("no_overlap")]
    record = mode_tuning.tune_mode(cases, model_file, contract, modes=modes).inference_mode
    assert sorted(record["seconds"]) == ["contract", "no_overlap", "paper_windows"]
    assert record["refused"]["full_volume"] == ("its network output failed the checks: case BraTS20_Training_001: "
                                                "the network's probabilities hold 7 NaN values")
    assert record["mode"] != "full_volume"
    assert "full_volume: not measured (its network output failed the checks" in mode_tuning.describe(record)


def test_the_reference_failing_is_an_error(small_run, monkeypatch):
    cases, model_file, contract = small_run
    _failing_full_pass(monkeypatch, reference_too=True)
    with pytest.raises(OutputError, match="7 NaN values"):
        mode_tuning.tune_mode(cases, model_file, contract, modes=[InferenceMode("full_volume")])
