"""The inference mode chosen on validation: the fastest one on this machine that costs no accuracy.

Every candidate mode (`tfbrats.inference.modes`) segments every validation case through the
contract (its window, the target's labels, the tuned post-processing); each is timed on this
machine (the seconds for all the cases, after one untimed case that builds its graphs) and scored
(mean Dice per region), and its whole-tumor labels are compared with those of the paper's windows
(mean Dice between the two label maps: the agreement). `tfbrats.inference.modes.choose_mode` picks
the fastest whose mean Dice is within the tolerance of the reference's (the model's own window in
float32) in every region and whose agreement is at least the minimum; the contract gets that window
and precision, and the figures of every mode in `inference_mode`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfbrats.contract import OutputError, SegmentationContract, Window, finish_segmentation
from tfbrats.data import PreprocessedCase
from tfbrats.evaluation.tuning import mean_dice
from tfbrats.inference.modes import (
    AGREEMENT_MODE,
    AGREEMENT_REGION,
    DICE_TOLERANCE,
    MIN_AGREEMENT,
    InferenceMode,
    candidate_modes,
    choose_mode,
    refusals,
)

REFERENCE = InferenceMode("contract")


def reference_window(contract: SegmentationContract) -> Window:
    """The window the modes are built on and held to: the one before any mode was chosen, in float32."""
    return Window.from_json({**contract.own_window.to_json(), "precision": "float32"})


def measure_mode(cases: Sequence[PreprocessedCase], predictor: Callable[[np.ndarray], np.ndarray],
                 contract: SegmentationContract) -> tuple[float, list[np.ndarray]]:
    """Seconds to segment every case with `contract` (after one untimed case) and the labels."""
    from tfbrats.inference.predict import window_probabilities

    def segment(case: PreprocessedCase) -> np.ndarray:
        return finish_segmentation(window_probabilities(case.image, predictor, contract), case.image, contract,
                                   case.meta.case_id)

    segment(cases[0])
    started = time.perf_counter()
    labels = [segment(case) for case in cases]
    return time.perf_counter() - started, labels


def tune_mode(
    cases: Sequence[PreprocessedCase],
    model_path: str | Path,
    contract: SegmentationContract,
    modes: Sequence[InferenceMode] | None = None,
    tolerance: float = DICE_TOLERANCE,
    min_agreement: float = MIN_AGREEMENT,
) -> SegmentationContract:
    """`contract` with the inference mode chosen on `cases`, and every mode's figures in `inference_mode`.

    Args:
        cases: Labelled, preprocessed validation cases.
        model_path: The model (`tfbrats.inference.model.load_model`), loaded once per precision.
        contract: The tuned contract (its post-processing applies to every mode).
        modes: The candidates (default: `candidate_modes()`, bfloat16 where the CPU has it); the
            reference mode and the paper's windows (the labels the agreement is measured against)
            are always measured.
        tolerance: The largest mean Dice drop allowed in any region.
        min_agreement: The least mean whole-tumor Dice between a mode's labels and the paper's
            windows' (0 turns the condition off).

    Example: an untrained AlbuNet3D's window against a single pass over the whole volume, on one
    synthetic validation case (a trained run and its validation cases are used the same way).

        >>> import tempfile
        >>> from tfbrats.contract import SegmentationContract, Window
        >>> from tfbrats.data import find_cases, load_case
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> from tfbrats.inference.model import save_with_contract
        >>> from tfbrats.models import AlbuNet3D
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(f"{tmp.name}/val", cases=1, shape=(40, 40, 32))
        >>> cases = [load_case(case) for case in find_cases(f"{tmp.name}/val").cases]
        >>> contract = SegmentationContract(window=Window.for_patch((32, 32, 32)))
        >>> model = AlbuNet3D(num_classes=4, num_filters=2)  # untrained; its decoder kept small
        >>> model_file = save_with_contract(model, contract, f"{tmp.name}/run/best.keras")
        >>> tuned = tune_mode(cases, model_file, contract, modes=[InferenceMode("full_volume")])
        >>> sorted(tuned.inference_mode["seconds"]), tuned.inference_mode["cases"]
        (['contract', 'full_volume', 'paper_windows'], 1)
        >>> record = tuned.inference_mode
        >>> kept = [name for name in record["seconds"] if name not in record["refused"]]
        >>> # the fastest mode that keeps the Dice and the labels, else the reference
        >>> record["mode"] == (min(kept, key=record["seconds"].get) if kept else record["reference"])
        True
        >>> tmp.cleanup()
    """
    if any(case.label is None for case in cases) or not cases:
        raise ValueError("choosing an inference mode needs labelled validation cases (reference labels)")
    base = reference_window(contract)
    always = [REFERENCE, InferenceMode(AGREEMENT_MODE)]
    modes = always + [mode for mode in (candidate_modes() if modes is None else modes) if mode not in always]
    seconds, dice, agreement, failed = _measure_modes(cases, model_path, contract, base, modes)
    rule = (REFERENCE.name, tolerance, agreement, min_agreement)
    chosen = InferenceMode.from_name(choose_mode(seconds, dice, *rule))
    record: dict[str, Any] = {
        "mode": chosen.name, "reference": REFERENCE.name, "reference_window": base.to_json(),
        "tolerance": tolerance, "cases": len(cases), "seconds": seconds, "mean_dice": dice,
        "agreement": {"with": AGREEMENT_MODE, "region": AGREEMENT_REGION, "minimum": min_agreement,
                      "mean_dice": agreement},
        "refused": {**refusals(dice, *rule), **failed}, "measured_on": _machine(),
    }
    return chosen.apply(contract, base).replace(inference_mode=record)


def _measure_modes(cases: Sequence[PreprocessedCase], model_path: str | Path, contract: SegmentationContract,
                   base: Window, modes: Sequence[InferenceMode],
                   ) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, float], dict[str, str]]:
    """Every mode's seconds, mean Dice per region and whole-tumor agreement with the paper's windows.

    `modes` starts with the reference and the paper's windows; labels are kept only until they are
    compared with the paper's windows', so at most two modes' labels of every case are held,
    however many modes are measured. A candidate whose network output cannot become labels (NaN,
    e.g. a bfloat16 kernel that fails on this CPU) is left out with why (the fourth dict); the
    reference and the paper's windows failing is an error.
    """
    from tfbrats.inference.model import load_model, make_predictor

    label_set = contract.target.label_set
    references = [case.label for case in cases]
    predictors: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    seconds: dict[str, float] = {}
    dice: dict[str, dict[str, float]] = {}
    agreement: dict[str, float] = {}
    unscored: dict[str, list[np.ndarray]] = {}
    agreement_labels: list[np.ndarray] | None = None
    failed: dict[str, str] = {}
    for mode in modes:
        if mode.precision not in predictors:
            predictors[mode.precision] = make_predictor(load_model(model_path, mode.precision).model, contract.target)
        try:
            elapsed, unscored[mode.name] = measure_mode(cases, predictors[mode.precision], mode.apply(contract, base))
        except OutputError as error:
            if mode.name in (REFERENCE.name, AGREEMENT_MODE):
                raise
            failed[mode.name] = f"its network output failed the checks: {error}"
            continue
        seconds[mode.name] = round(elapsed, 4)
        scores = mean_dice(unscored[mode.name], references, label_set)
        dice[mode.name] = {region: round(value, 5) for region, value in scores.items()}
        if mode.name == AGREEMENT_MODE:
            agreement_labels = unscored[mode.name]
        if agreement_labels is not None:
            agreement.update({name: round(mean_dice(mode_labels, agreement_labels, label_set)[AGREEMENT_REGION], 5)
                              for name, mode_labels in unscored.items()})
            unscored.clear()
    return seconds, dice, agreement, failed


def describe(record: dict[str, Any]) -> str:
    """One line per mode of an `inference_mode` record: seconds, mean Dice, agreement, chosen or why refused."""
    lines = []
    agreement = record.get("agreement", {}).get("mean_dice", {})
    for name, seconds in record["seconds"].items():
        regions = ", ".join(f"{r} {v:.4f}" for r, v in record["mean_dice"][name].items())
        if name in agreement:
            regions += f", agreement {agreement[name]:.4f}"
        status = "chosen" if name == record["mode"] else record["refused"].get(name, "slower")
        lines.append(f"  {name}: {seconds:.2f} s, {regions} ({status})")
    lines += [f"  {name}: not measured ({why})" for name, why in record["refused"].items()
              if name not in record["seconds"]]
    return "\n".join(lines)


def mode_rule(record: dict[str, Any]) -> str:
    """The rule an `inference_mode` record's choice followed, in words."""
    rule = f"fastest within {record['tolerance']} of {record['reference']}'s mean Dice in every region"
    if "agreement" in record:
        agreement = record["agreement"]
        rule += f", {agreement['region']} labels agreeing with {agreement['with']}'s at >= {agreement['minimum']}"
    return rule


def _machine() -> dict[str, Any]:
    """The CPU the seconds were measured on."""
    import os

    from tfbrats.inference.modes import cpu_has_bfloat16, cpu_info

    return {"cpu_model": cpu_info()[0], "cpu_count": os.cpu_count(), "bfloat16": cpu_has_bfloat16()}
