"""Tuning a training run's post-processing: its validation cases in, the tuned model file out.

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
from tfbrats.evaluation.tuning import (
    COMPONENT_CANDIDATES,
    DUST_CANDIDATES,
    ET_CANDIDATES,
    choose_postprocessing,
    tune_contract,
)
from tfbrats.files import write_json, write_text
from tfbrats.inference.model import load_model, make_predictor, save_with_contract
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
) -> str:
    """Chooses the post-processing of a run on its validation cases and writes it into its model.

    Args:
        run_dir: The training run folder.
        data_dir: The run's data if it moved (default: where `config.json` says).
        component_candidates, et_candidates, dust_candidates: The thresholds to try (voxels).
        cases: Validation cases to use instead of the run's own (preprocessed, labelled).

    Returns:
        A short summary: the choice, what it rests on (and, when that is little, a plain
        statement of it), and the mean validation Dice before and after.

    Example:
        >>> print(tune_run("runs/demo"))  # doctest: +SKIP
        post-processing chosen on 4 validation cases (1 without enhancing tumor, 1 of them given stray ET ...
    """
    run_dir = Path(run_dir)
    loaded = load_model(run_dir)
    cases = list(cases) if cases is not None else validation_cases(run_dir, data_dir)
    contract = loaded.contract
    baseline = PostProcessing(brain_mask=contract.postprocessing.brain_mask)
    raw_contract = contract.replace(postprocessing=baseline)
    predictor = make_predictor(loaded.model, contract.target)

    def segment_raw(case: PreprocessedCase):
        return finish_segmentation(window_probabilities(case.image, predictor, contract), case.image, raw_contract)

    result = choose_postprocessing(cases, segment_raw, baseline, component_candidates, et_candidates, dust_candidates,
                                   contract.target.label_set)
    described = f"validation: {result.evidence.describe()}, of run {run_dir} (tfbrats.tune)"
    tuned = tune_contract(contract, result, described)
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

    regions = contract.target.label_set.regions
    before = ", ".join(f"{r} {mean('baseline', r):.4f}" for r in regions)
    after = ", ".join(f"{r} {mean('chosen', r):.4f}" for r in regions)
    evidence = result.evidence
    little = "".join(f"\n  little evidence: {warning}" for warning in evidence.warnings())
    return (f"post-processing chosen on {evidence.cases} validation cases ({evidence.cases_without_et} without "
            f"enhancing tumor, {evidence.cases_without_et_given_et} of them given stray ET by the network): "
            f"{result.chosen.describe()}{little}\n"
            f"  mean Dice before: {before}\n  mean Dice after:  {after}\n"
            f"  written into {loaded.path}; table in {run_dir / TUNING_CSV}")
