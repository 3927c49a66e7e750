"""Tuning a training run's post-processing and inference mode: its validation cases in, the tuned model file out.

`tune_run` is what ``python -m tfbrats.tune`` and the end of ``python -m tfbrats.train`` call.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path

from tfbrats.contract import PostProcessing, finish_segmentation
from tfbrats.data import PreprocessedCase
from tfbrats.evaluation.mode_tuning import describe, reference_window, tune_mode
from tfbrats.evaluation.tuning import (
    COMPONENT_CANDIDATES,
    DUST_CANDIDATES,
    ET_CANDIDATES,
    choose_postprocessing,
    tune_contract,
)
from tfbrats.files import write_json, write_text
from tfbrats.inference.model import load_model, make_predictor, save_with_contract
from tfbrats.inference.modes import DICE_TOLERANCE, InferenceMode
from tfbrats.inference.predict import window_probabilities

TUNING_JSON = "tuning.json"
TUNING_CSV = "tuning.csv"


def validation_cases(run_dir: str | Path, data_dir: str | None = None) -> list[PreprocessedCase]:
    """The labelled validation cases of a run: its fold of its data, preprocessed as training did."""
    from tfbrats.training import Run, load_validation_cases

    config = Run(run_dir).config
    if data_dir is not None:
        config = dataclasses.replace(config, data_dir=data_dir, cache_dir=None)
    return load_validation_cases(config)


def tune_run(
    run_dir: str | Path,
    data_dir: str | None = None,
    component_candidates: Sequence[int] = COMPONENT_CANDIDATES,
    et_candidates: Sequence[int] = ET_CANDIDATES,
    cases: Sequence[PreprocessedCase] | None = None,
    dust_candidates: Sequence[int] = DUST_CANDIDATES,
    modes: Sequence[InferenceMode] | None = None,
    mode_tolerance: float = DICE_TOLERANCE,
) -> str:
    """Chooses the post-processing and the inference mode of a run on its validation cases, into its model.

    The post-processing is chosen with the model's own window (the reference); then the inference
    mode (`tfbrats.evaluation.mode_tuning.tune_mode`) with that post-processing.

    Args:
        run_dir: The training run folder.
        data_dir: The run's data if it moved (default: where `config.json` says).
        component_candidates, et_candidates, dust_candidates: The thresholds to try (voxels).
        cases: Validation cases to use instead of the run's own (preprocessed, labelled).
        modes: The inference modes to choose from (default: every mode this CPU runs; empty:
            keep the window).
        mode_tolerance: The largest mean Dice drop in any region a mode may cost.

    Returns:
        A short summary: the choice, what it rests on (and, when that is little, a plain
        statement of it), and the mean validation Dice before and after.

    Example:
        >>> print(tune_run("runs/demo"))  # doctest: +SKIP
        post-processing chosen on 4 validation cases (1 without enhancing tumor, 1 of them given stray ET ...
    """
    run_dir = Path(run_dir)
    loaded = load_model(run_dir, "float32")
    cases = list(cases) if cases is not None else validation_cases(run_dir, data_dir)
    contract = loaded.contract.replace(window=reference_window(loaded.contract), inference_mode=None)
    baseline = PostProcessing(brain_mask=contract.postprocessing.brain_mask)
    raw_contract = contract.replace(postprocessing=baseline)
    predictor = make_predictor(loaded.model, contract.target)

    def segment_raw(case: PreprocessedCase):
        return finish_segmentation(window_probabilities(case.image, predictor, contract), case.image, raw_contract)

    result = choose_postprocessing(cases, segment_raw, baseline, component_candidates, et_candidates, dust_candidates)
    described = f"validation: {result.evidence.describe()}, of run {run_dir} (tfbrats.tune)"
    tuned = tune_contract(contract, result, described)
    if modes is None or len(modes):
        tuned = tune_mode(cases, loaded.path, tuned, modes, mode_tolerance)
    write_json(run_dir / TUNING_JSON, {"model": str(loaded.path), "model_sha256": loaded.fingerprint,
                                       "contract": tuned.to_json(), **result.to_json()})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(result.per_case[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.per_case)
    write_text(run_dir / TUNING_CSV, buffer.getvalue())
    save_with_contract(loaded.model, tuned, loaded.path)

    def mean(prefix: str, region: str) -> float:
        return sum(row[f"{prefix}_Dice_{region}"] for row in result.per_case) / len(result.per_case)

    before = ", ".join(f"{r} {mean('baseline', r):.4f}" for r in ("WT", "TC", "ET"))
    after = ", ".join(f"{r} {mean('chosen', r):.4f}" for r in ("WT", "TC", "ET"))
    evidence = result.evidence
    little = "".join(f"\n  little evidence: {warning}" for warning in evidence.warnings())
    chosen_mode = (f"\n  inference mode: {tuned.inference_mode['mode']} (fastest within {mode_tolerance} of "
                   f"{tuned.inference_mode['reference']}'s mean Dice in every region)\n"
                   f"{describe(tuned.inference_mode)}" if tuned.inference_mode else "")
    return (f"post-processing chosen on {evidence.cases} validation cases ({evidence.cases_without_et} without "
            f"enhancing tumor, {evidence.cases_without_et_given_et} of them given stray ET by the network): "
            f"{result.chosen.describe()}{little}\n"
            f"  mean Dice before: {before}\n  mean Dice after:  {after}{chosen_mode}\n"
            f"  written into {loaded.path}; table in {run_dir / TUNING_CSV}")
