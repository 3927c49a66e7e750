"""Training ends by choosing the post-processing and the inference mode on its validation cases; tfbrats.tune
redoes it for a run."""

import csv
import json

import numpy as np
import pytest

from tests.training.conftest import run_python, tiny_flags
from tfbrats.contract import Window, finish_segmentation
from tfbrats.evaluation.mode_tuning import reference_window, tune_mode
from tfbrats.inference.model import load_model, make_predictor
from tfbrats.inference.modes import InferenceMode
from tfbrats.inference.predict import window_probabilities
from tfbrats.labels import REGIONS, region_masks
from tfbrats.training import Run, load_validation_cases

MODES = [InferenceMode(name) for name in ("contract", "paper_windows", "no_overlap", "full_volume")]


@pytest.fixture(scope="module")
def trained_run(tiny_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tuned") / "run"
    done = run_python(["-m", "tfbrats.train", *tiny_flags(tiny_data, run_dir)])
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir, done.stdout


def _numpy_dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total


def _labels_of(mode: InferenceMode, loaded, cases, reference: Window) -> list[np.ndarray]:
    contract = mode.apply(loaded.contract, reference)
    predictor = make_predictor(loaded.model, loaded.contract.target)
    return [finish_segmentation(window_probabilities(case.image, predictor, contract), case.image, contract)
            for case in cases]


def _mean_dice(labels: list[np.ndarray], truths: list[np.ndarray]) -> dict[str, float]:
    """Each region's mean Dice, recomputed here from numpy masks."""
    scores = {region: [] for region in REGIONS}
    for predicted, truth in zip(labels, truths):
        predicted, truth = region_masks(predicted), region_masks(truth)
        for region in REGIONS:
            scores[region].append(_numpy_dice(predicted[region], truth[region]))
    return {region: float(np.mean(values)) for region, values in scores.items()}


@pytest.mark.slow
def test_training_writes_the_tuned_contract_and_tune_reruns_it(trained_run, tmp_path):
    run_dir, stdout = trained_run
    assert "post-processing chosen on 2 validation cases" in stdout and "inference mode: " in stdout
    validation = load_validation_cases(Run(run_dir).config)
    with open(run_dir / "tuning.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["case_id"] for row in rows) == sorted(case.meta.case_id for case in validation)
    record = json.loads((run_dir / "tuning.json").read_text())
    loaded = load_model(run_dir)
    assert loaded.contract.postprocessing.to_json() == record["chosen"]
    assert loaded.contract.chosen_by.startswith("validation: 2 cases")
    assert record["model_sha256"] == loaded.fingerprint  # tuning re-saved the same weights
    # The mode: the fastest of those within 0.005 of the training patch's Dice in every region whose
    # whole-tumor labels agree with the paper's windows' at 0.995 (the training patch if none does).
    mode = loaded.contract.inference_mode
    assert record["contract"]["inference_mode"] == mode and mode["reference_window"]["patch_size"] == [1, 32, 32]
    agreement = mode["agreement"]["mean_dice"]
    assert mode["agreement"]["with"] == "paper_windows" and agreement["paper_windows"] == 1.0
    ours = {name: all(d[r] >= mode["mean_dice"]["contract"][r] - 0.005 for r in REGIONS) and agreement[name] >= 0.995
            for name, d in mode["mean_dice"].items()}
    # A candidate whose output cannot become labels is refused unmeasured (measured: bfloat16 full passes
    # of this model give NaN on a 2-core Xeon with AMX, TensorFlow 2.21).
    unmeasured = {name: why for name, why in mode["refused"].items() if name not in mode["seconds"]}
    assert all(why.startswith("its network output failed the checks") for why in unmeasured.values())
    assert set(mode["refused"]) - set(unmeasured) == {name for name, ok in ours.items() if not ok}
    accepted = [name for name, ok in ours.items() if ok] or ["contract"]
    assert mode["seconds"][mode["mode"]] == min(mode["seconds"][name] for name in accepted)
    assert loaded.contract.window == InferenceMode.from_name(mode["mode"]).window_for(
        Window.from_json(mode["reference_window"]))

    again = run_python(["-m", "tfbrats.tune", f"--model={run_dir}", "--component_candidates=0",
                        "--et_candidates=0,100000", "--inference_modes=none"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "post-processing chosen on 2 validation cases" in again.stdout and "inference mode" not in again.stdout
    retuned = load_model(run_dir).contract
    assert retuned.postprocessing.min_component_voxels == 0
    # Back to the window the modes were measured against, with no mode recorded.
    assert retuned.window.to_json() == mode["reference_window"] and retuned.inference_mode is None
    missing = run_python(["-m", "tfbrats.tune", f"--model={tmp_path / 'nowhere'}"])
    assert missing.returncode == 2 and "nowhere" in missing.stderr
    bad = run_python(["-m", "tfbrats.tune", f"--model={run_dir}", "--inference_modes=contract,quarter_windows"])
    assert bad.returncode != 0 and "quarter_windows" in bad.stderr


@pytest.mark.slow
def test_a_mode_that_costs_dice_is_refused_on_the_validation_cases(trained_run):
    """Dice recomputed here per mode; with the tolerance below the largest drop, that mode is refused."""
    run_dir, _ = trained_run
    loaded = load_model(run_dir, "float32")
    cases = load_validation_cases(Run(run_dir).config)
    reference = reference_window(loaded.contract)  # the training patch, however the run was last tuned
    contract = loaded.contract.replace(window=reference, inference_mode=None)
    labels = {mode.name: _labels_of(mode, loaded, cases, reference) for mode in MODES}
    dice = {name: _mean_dice(mode_labels, [case.label for case in cases]) for name, mode_labels in labels.items()}
    drops = {name: max(dice["contract"][r] - d[r] for r in REGIONS) for name, d in dice.items()}
    worst = max(drops, key=drops.get)
    assert drops[worst] > 0, f"no mode loses Dice on these cases: {dice}"
    tolerance = drops[worst] / 2
    tuned = tune_mode(cases, run_dir, contract, MODES, tolerance, min_agreement=0.0)
    record = tuned.inference_mode
    for name in dice:
        np.testing.assert_allclose([record["mean_dice"][name][r] for r in REGIONS], [dice[name][r] for r in REGIONS],
                                   atol=1e-5)
        agreement = np.mean([_numpy_dice(ours > 0, paper > 0) for ours, paper in zip(labels[name],
                                                                                     labels["paper_windows"])])
        assert record["agreement"]["mean_dice"][name] == pytest.approx(agreement, abs=1e-5)
    assert worst in record["refused"] and record["mode"] != worst
    accepted = [name for name, drop in drops.items() if drop <= tolerance]
    assert record["mode"] == min(accepted, key=lambda name: record["seconds"][name])
    assert tuned.window == InferenceMode.from_name(record["mode"]).window_for(reference)
