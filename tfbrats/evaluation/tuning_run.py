"""Tuning a training run's post-processing and inference mode: its validation cases in, the tuned model file out.

`tune_run` is what ``python -m tfbrats.tune`` and the end of ``python -m tfbrats.train`` call.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tfbrats.contract import PostProcessing, finish_segmentation
from tfbrats.data import PreprocessedCase
from tfbrats.evaluation.mode_tuning import describe, mode_rule, reference_window, tune_mode
from tfbrats.evaluation.tuning import (
    CAVITY_CANDIDATES,
    COMPONENT_CANDIDATES,
    DUST_CANDIDATES,
    ET_CANDIDATES,
    choose_postprocessing,
    tune_contract,
)
from tfbrats.files import write_json, write_text
from tfbrats.inference.model import load_model, make_predictor, save_with_contract
from tfbrats.inference.modes import DICE_TOLERANCE, MIN_AGREEMENT, InferenceMode
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


def _folds(run_dir, other_folds, cases, data_dir) -> tuple[list[Path], list, list, list[list[PreprocessedCase]]]:
    """Each fold's run folder, loaded model (float32), reference contract and validation cases."""
    from tfbrats.training import Run
    from tfbrats.training.folds import check_folds

    run_dirs = [Path(run_dir), *(Path(folder) for folder in other_folds)]
    if other_folds:
        check_folds([Run(folder).config for folder in run_dirs], run_dirs)
    models = [load_model(folder, "float32") for folder in run_dirs]
    references = [loaded.contract.replace(window=reference_window(loaded.contract), inference_mode=None)
                  for loaded in models]
    fold_cases = [list(cases) if cases is not None else validation_cases(run_dirs[0], data_dir)]
    fold_cases += [validation_cases(folder, data_dir) for folder in run_dirs[1:]]
    return run_dirs, models, references, fold_cases


def _raw_segmenter(model, contract) -> Callable[[PreprocessedCase], np.ndarray]:
    """Case -> a model's internal labels after its target and brain mask, before any tuned step."""
    raw_contract = contract.replace(postprocessing=PostProcessing(brain_mask=contract.postprocessing.brain_mask))
    predictor = make_predictor(model, contract.target)

    def segment_raw(case: PreprocessedCase) -> np.ndarray:
        return finish_segmentation(window_probabilities(case.image, predictor, contract), case.image, raw_contract)

    return segment_raw


def tune_run(
    run_dir: str | Path,
    data_dir: str | None = None,
    component_candidates: Sequence[int] = COMPONENT_CANDIDATES,
    et_candidates: Sequence[int] = ET_CANDIDATES,
    cases: Sequence[PreprocessedCase] | None = None,
    dust_candidates: Sequence[int] = DUST_CANDIDATES,
    other_folds: Sequence[str | Path] = (),
    modes: Sequence[InferenceMode] | None = None,
    mode_tolerance: float = DICE_TOLERANCE,
    mode_agreement: float = MIN_AGREEMENT,
    cavity_candidates: Sequence[int] = CAVITY_CANDIDATES,
) -> str:
    """Chooses the post-processing and the inference mode of a run on its validation cases, into its model.

    The post-processing is chosen with the model's own window (the reference); then the inference
    mode (`tfbrats.evaluation.mode_tuning.tune_mode`) with that post-processing.

    With `other_folds` (the runs of the other folds of the same split, `tfbrats.training.folds`),
    the post-processing rests on every fold's validation cases, each segmented by the model that
    never trained on it (out-of-fold), and is written into every fold's model; each fold's
    inference mode is chosen on its own validation cases.

    Args:
        run_dir: The training run folder.
        data_dir: The run's data if it moved (default: where `config.json` says).
        component_candidates, et_candidates, dust_candidates, cavity_candidates: The thresholds to
            try (voxels; the cavity's for a model with the resection cavity only).
        cases: Validation cases of `run_dir` to use instead of its own (preprocessed, labelled).
        other_folds: Run folders of other folds of the same data, fold count and seed.
        modes: The inference modes to choose from (default: every mode this CPU runs; empty:
            keep the window).
        mode_tolerance, mode_agreement: The mode rule's largest mean Dice drop in any region and
            least whole-tumor agreement with the paper's windows (`tfbrats.inference.modes`).

    Returns:
        A short summary: the choice, what it rests on (and, when that is little, a plain
        statement of it), and the mean validation Dice before and after.

    Raises:
        ValueError: `other_folds` are not distinct folds of the run's split.

    Example: an untrained AlbuNet3D tuned on one synthetic validation case; ``modes=()`` keeps the window.

        >>> import tempfile
        >>> from tfbrats.contract import SegmentationContract, Window
        >>> from tfbrats.data import find_cases, load_case, write_synthetic_dataset
        >>> from tfbrats.models import AlbuNet3D
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(f"{tmp.name}/val", cases=1, shape=(40, 40, 32))
        >>> cases = [load_case(case) for case in find_cases(f"{tmp.name}/val").cases]
        >>> contract = SegmentationContract(window=Window.for_patch((32, 32, 32)))
        >>> model = AlbuNet3D(num_classes=4, num_filters=2)  # untrained; its decoder kept small
        >>> model_file = save_with_contract(model, contract, f"{tmp.name}/run/best.keras")
        >>> summary = tune_run(f"{tmp.name}/run", cases=cases, modes=())
        >>> summary.splitlines()[0].startswith("post-processing chosen on 1 validation cases")
        True
        >>> sorted(p.name for p in Path(tmp.name, "run").iterdir()), load_model(model_file).contract.chosen_by[:19]
        (['best.keras', 'tuning.csv', 'tuning.json'], 'validation: 1 cases')
        >>> tmp.cleanup()
    """
    run_dirs, models, references, fold_cases = _folds(run_dir, other_folds, cases, data_dir)
    segmenters = _segmenters_by_case(models, references, fold_cases)
    all_cases = [case for group in fold_cases for case in group]
    baseline = PostProcessing(brain_mask=references[0].postprocessing.brain_mask)
    label_set = references[0].target.label_set
    result = choose_postprocessing(all_cases, lambda case: segmenters[id(case)](case), baseline, component_candidates,
                                   et_candidates, dust_candidates, label_set, cavity_candidates)
    source = (f"out-of-fold validation of {len(run_dirs)} folds: {result.evidence.describe()}, of runs "
              f"{', '.join(map(str, run_dirs))}" if other_folds else
              f"validation: {result.evidence.describe()}, of run {run_dirs[0]}")
    tuned_contracts = []
    for folder, loaded, contract, group in zip(run_dirs, models, references, fold_cases):
        tuned = tune_contract(contract, result, f"{source} (tfbrats.tune)")
        if modes is None or len(modes):
            tuned = tune_mode(group, loaded.path, tuned, modes, mode_tolerance, mode_agreement)
        _write_tuning(folder, loaded, tuned, result)
        save_with_contract(loaded.model, tuned, loaded.path)
        tuned_contracts.append(tuned)
    return _summary(result, label_set.regions, run_dirs, models, tuned_contracts)


def _segmenters_by_case(models: Sequence, references: Sequence, fold_cases: Sequence) -> dict[int, Callable]:
    """Each validation case's raw segmenter (by `id`): its own fold's model with its window."""
    segmenters = {}
    for loaded, contract, group in zip(models, references, fold_cases):
        segment_raw = _raw_segmenter(loaded.model, contract)
        segmenters.update((id(case), segment_raw) for case in group)
    return segmenters


def _write_tuning(run_dir: Path, loaded, tuned, result) -> None:
    """`tuning.json` (the choice, every candidate, the evidence) and `tuning.csv` (per case) of a run."""
    write_json(run_dir / TUNING_JSON, {"model": str(loaded.path), "model_sha256": loaded.fingerprint,
                                       "contract": tuned.to_json(), **result.to_json()})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(result.per_case[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.per_case)
    write_text(run_dir / TUNING_CSV, buffer.getvalue())


def _summary(result, regions: Sequence[str], run_dirs: Sequence[Path], models: Sequence, tuned: Sequence) -> str:
    """What `tune_run` prints: the choice, its evidence, the mean Dice before and after, each mode, the files."""

    def mean(prefix: str, region: str) -> float:
        return sum(row[f"{prefix}_Dice_{region}"] for row in result.per_case) / len(result.per_case)

    before = ", ".join(f"{r} {mean('baseline', r):.4f}" for r in regions)
    after = ", ".join(f"{r} {mean('chosen', r):.4f}" for r in regions)
    evidence = result.evidence
    little = "".join(f"\n  little evidence: {warning}" for warning in evidence.warnings())
    folds = f" of {len(run_dirs)} folds (out-of-fold)" if len(run_dirs) > 1 else ""
    modes = "".join(
        f"\n  inference mode{f' of {folder}' if len(run_dirs) > 1 else ''}: {contract.inference_mode['mode']} "
        f"({mode_rule(contract.inference_mode)})\n{describe(contract.inference_mode)}"
        for folder, contract in zip(run_dirs, tuned) if contract.inference_mode)
    cavity = (f"; {evidence.cases_without_rc} without a resection cavity, {evidence.cases_without_rc_given_rc} of "
              "them given stray cavity voxels" if evidence.cases_without_rc is not None else "")
    return (f"post-processing chosen on {evidence.cases} validation cases{folds} ({evidence.cases_without_et} "
            f"without enhancing tumor, {evidence.cases_without_et_given_et} of them given stray ET by the network"
            f"{cavity}): "
            f"{result.chosen.describe()}{little}\n"
            f"  mean Dice before: {before}\n  mean Dice after:  {after}{modes}\n"
            f"  written into {', '.join(str(loaded.path) for loaded in models)}; table in "
            f"{', '.join(str(folder / TUNING_CSV) for folder in run_dirs)}")
