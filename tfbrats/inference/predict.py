"""Whole-patient prediction: a model and its contract, preprocessed cases in, NIfTI label maps out.

Every case goes the same way (`segment`): the contract's window (`sliding_window`), then
`tfbrats.contract.finish_segmentation` (the target's labels, the brain mask, the post-processing),
then back to the original grid. A JSON sidecar ``<case_id>.json`` beside each prediction records
the model (path and weights fingerprint), the contract applied, and any missing modalities
(filled with zeros, the z-scored brain mean, with a warning when the model was not trained with
modality dropout). A rerun recomputes a case whose sidecar names another model or contract.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tfbrats.contract import SegmentationContract, brain_region, finish_segmentation
from tfbrats.data import MISSING_FILL, Case, LabelMap, PreprocessedCase, load_case, uncrop, write_labels_nifti
from tfbrats.data.brain import brain_extent
from tfbrats.files import write_json
from tfbrats.inference.model import LoadedModel, make_predictor
from tfbrats.inference.sliding_window import sliding_window

log = logging.getLogger(__name__)


def window_probabilities(image: np.ndarray, predictor: Callable[[np.ndarray], np.ndarray],
                         contract: SegmentationContract) -> np.ndarray:
    """The network's probabilities (D, H, W, outputs) over a preprocessed image, by the contract's window."""
    window = contract.window
    return sliding_window(image, predictor, patch_size=window.patch_size, steps=window.steps,
                          batch_size=window.batch_size, blend=window.blend, mirror_tta=window.mirror_tta,
                          num_classes=contract.target.num_outputs)


def segment(case: PreprocessedCase, predictor: Callable[[np.ndarray], np.ndarray],
            contract: SegmentationContract) -> np.ndarray:
    """Segments one preprocessed case: internal labels 0..3 on its original (D, H, W) grid.

    Raises:
        tfbrats.contract.OutputError: The network's probabilities are not finite or not in [0, 1];
            the message names the case.

    Example:
        >>> predictor = make_predictor(loaded.model, loaded.target)  # doctest: +SKIP
        >>> labels = segment(load_case(case), predictor, loaded.contract)  # doctest: +SKIP
    """
    probabilities = window_probabilities(case.image, predictor, contract)
    return uncrop(finish_segmentation(probabilities, case.image, contract, case.meta.case_id), case.meta)


@dataclasses.dataclass
class PredictionSummary:
    """What a folder prediction did: files written, cases skipped as done, cases redone, cases that failed.

    `recomputed` lists cases whose earlier output was made by another model or contract.
    """

    written: list[Path] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    recomputed: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)


def prediction_record(case_id: str, channels: Sequence[str], missing: Sequence[str], loaded: LoadedModel,
                      contract: SegmentationContract, orientation: Sequence[Sequence[float]] | None = None) -> dict:
    """The JSON sidecar of one prediction: model, contract, missing modalities and a warning.

    `orientation` is the case's voxel-axis transform to BraTS' orientation (see
    `tfbrats.data.orientation`), recorded so a reader knows the input was permuted or flipped.
    The warning is set when modalities are missing and the model's run records no modality
    dropout: such a model never saw a zero-filled channel, so its result is unreliable.

    Example:
        >>> record = prediction_record("c1", ("flair", "t1ce", "t2"), ("t2",), loaded,  # doctest: +SKIP
        ...                            loaded.contract)
        >>> record["warning"]  # doctest: +SKIP
        'model runs/demo/best.keras was trained without modality dropout (its config.json records none): ...'
    """
    warning = None
    if missing and not loaded.modality_dropout:
        why = (
            "was trained without modality dropout (its config.json records none)" if loaded.run_config
            else "has no config.json beside it, so nothing says it was trained with modality dropout"
        )
        warning = (
            f"model {loaded.path} {why}: its segmentation of case {case_id}, missing {list(missing)} (filled with "
            "zeros), is unreliable; use a model trained with --modality_dropout (e.g. 0.25) for incomplete cases"
        )
    return {
        "case_id": case_id,
        "model": str(loaded.path),
        "model_sha256": loaded.fingerprint,
        "contract": contract.to_json(),
        "postprocessing": contract.postprocessing.describe(),
        "orientation_transform": [list(row) for row in orientation] if orientation is not None else None,
        "channels": list(channels),
        "missing": list(missing),
        "fill": f"{MISSING_FILL:g} (the z-scored brain mean), every voxel of a missing channel" if missing else None,
        "model_modality_dropout": loaded.modality_dropout,
        "trained_with_modality_dropout": loaded.modality_dropout > 0,
        "warning": warning,
    }


def check_brain_extent(preprocessed: PreprocessedCase) -> dict:
    """Logs a warning when a case's nonzero region looks like a whole head; returns the measurements.

    Example:
        >>> check_brain_extent(load_case(case, allow_missing=True))["whole_head"]  # doctest: +SKIP
        False
    """
    meta = preprocessed.meta
    extent = brain_extent(brain_region(preprocessed.image), meta.spacing, int(np.prod(meta.original_shape)))
    warning = extent.warning(meta.case_id)
    if warning:
        log.warning("%s", warning)
    return {**extent.to_json(), "warning": warning}


def _made_by(sidecar: Path, loaded: LoadedModel, contract: SegmentationContract) -> str | None:
    """Why an existing prediction is stale (another model or contract), or None when it is current."""
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return f"its sidecar {sidecar.name} is missing or unreadable"
    if record.get("model_sha256") != loaded.fingerprint:
        return f"it was made by another model ({record.get('model')}, weights {str(record.get('model_sha256'))[:12]})"
    if record.get("contract") != contract.to_json():
        return "it was made with another segmentation contract (window or post-processing)"
    return None


def predict_cases(
    cases: Sequence[Case],
    loaded: LoadedModel,
    output_dir: str | Path,
    contract: SegmentationContract | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> PredictionSummary:
    """Predicts every case into `output_dir/<case_id>.nii.gz`; a failing case does not stop the others.

    A case whose prediction exists is skipped when its sidecar names the same model (weights
    fingerprint) and contract, and recomputed (and logged) otherwise. A case may lack some
    modalities (not all): they are filled with zeros, logged, and listed in the sidecar.

    Args:
        cases: Cases to segment (segmentations, if any, are ignored).
        loaded: The model (see `tfbrats.inference.load_model`).
        output_dir: Where the NIfTI files and their JSON sidecars go.
        contract: The contract to apply; None applies the model's own (`loaded.contract`).
        overwrite: Recompute every case, current or not.
        progress: Show progress over cases: a bar on a terminal, one plain line per case otherwise
            (a log file gets no carriage returns or colour codes).

    Example:
        >>> cases = find_cases("data/val").cases  # doctest: +SKIP
        >>> summary = predict_cases(cases, load_model("runs/demo"), "predictions")  # doctest: +SKIP
    """
    import keras

    contract = contract or loaded.contract
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    predictor = make_predictor(loaded.model, contract.target)
    summary = PredictionSummary()
    bar = keras.utils.Progbar(len(cases), unit_name="case") if progress and sys.stdout.isatty() else None
    for number, case in enumerate(cases, start=1):
        target = output_dir / f"{case.case_id}.nii.gz"
        sidecar = output_dir / f"{case.case_id}.json"
        stale = _made_by(sidecar, loaded, contract) if target.exists() and not overwrite else None
        if target.exists() and not overwrite and stale is None:
            summary.skipped.append(case.case_id)
        else:
            if stale:
                log.warning("case %s: recomputing %s: %s", case.case_id, target, stale)
                summary.recomputed.append(case.case_id)
            try:
                image_only = dataclasses.replace(case, seg=None)
                preprocessed = load_case(image_only, input_channels=len(contract.channels), allow_missing=True)
                meta = preprocessed.meta
                report = prediction_record(case.case_id, meta.channels, meta.missing, loaded, contract,
                                           meta.orientation)
                if meta.missing:
                    log.warning("case %s: missing modalities %s, filled with zeros (model trained with modality "
                                "dropout %g)", case.case_id, list(meta.missing), loaded.modality_dropout)
                if report["warning"]:
                    log.warning("case %s: %s", case.case_id, report["warning"])
                report["brain_extent"] = check_brain_extent(preprocessed)
                labels = segment(preprocessed, predictor, contract)
                if contract.label_values:
                    values = contract.label_values
                    meta = dataclasses.replace(meta, labels=LabelMap(values[1], values[2], values[3]))
                # The sidecar first: the NIfTI marks a finished case, so a rerun never skips a case without one.
                write_json(sidecar, report)
                summary.written.append(write_labels_nifti(labels, meta, target))
            except Exception as error:  # one bad case must not stop a folder of hundreds
                log.error("case %s failed: %s", case.case_id, error)
                summary.failed[case.case_id] = f"{type(error).__name__}: {error}"
        if bar is not None:
            bar.update(number)
        elif progress:
            state = ("failed" if case.case_id in summary.failed
                     else "skipped" if case.case_id in summary.skipped else "done")
            print(f"case {number}/{len(cases)} {case.case_id}: {state}", flush=True)
    return summary
