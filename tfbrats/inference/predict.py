"""Whole-patient prediction: a model and its contract, preprocessed cases in, NIfTI label maps out.

Every case goes the same way (`segment`): the contract's window (`sliding_window`), then
`tfbrats.contract.finish_segmentation` (the target's labels, the brain mask, the post-processing),
then back to the original grid. A JSON sidecar ``<case_id>.json`` beside each prediction records
the model (path and weights fingerprint), the contract applied, and any missing modalities
(filled with zeros, the z-scored brain mean, with a warning when the model was not trained with
modality dropout). A rerun recomputes a case whose sidecar names another model or contract.

Two rules keep prediction from destroying what it did not write:

- the output folder (`check_output_folder`, before any case is computed): a folder, writable,
  neither holding any input file of the cases nor lying inside a folder that holds one (a
  dataset's ``imagesTr``/``labelsTr``, a case folder);
- a file at ``<case_id>.nii.gz`` or ``<case_id>.json`` (`existing_prediction`): replaced only when
  the sidecar says tfbrats' prediction wrote it (``"written_by": "tfbrats.predict"``); anything
  else fails that case, naming the file, and is left untouched, ``overwrite`` or not.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tfbrats.contract import SegmentationContract, brain_region, finish_segmentation
from tfbrats.data import MISSING_FILL, Case, LabelMap, PreprocessedCase, load_case, uncrop, write_labels_nifti
from tfbrats.data.brain import brain_extent
from tfbrats.files import output_file, write_json
from tfbrats.inference.model import LoadedModel, make_predictor
from tfbrats.inference.sliding_window import sliding_window

log = logging.getLogger(__name__)

# What a prediction's sidecar says under "written_by": the mark of a file tfbrats may replace.
PREDICTION_WRITER = "tfbrats.predict"


def written_label_map(contract: SegmentationContract, dataset_labels: LabelMap) -> LabelMap:
    """The label values a segmentation is written with: the contract's when it names them, else the dataset's.

    A model with a resection cavity writes it with the dataset's value, BraTS 2024's 4 where the
    dataset names none (`LabelMap.covering`).

    Example:
        >>> from tfbrats.data import BRATS2020_LABELS
        >>> written_label_map(SegmentationContract(), BRATS2020_LABELS).values
        (0, 1, 2, 4)
        >>> written_label_map(SegmentationContract(label_values={1: 1, 2: 2, 3: 3}), BRATS2020_LABELS).values
        (0, 1, 2, 3)
    """
    if contract.label_values:
        values = contract.label_values
        dataset_labels = LabelMap(values[1], values[2], values[3], values.get(4))
    return dataset_labels.covering(contract.target.label_set)


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
        With a trained model, ``segment(load_case(case), make_predictor(loaded.model, loaded.target),
        loaded.contract)``. The predictor is any callable from windows to probabilities; here a
        stand-in that calls every voxel of bright FLAIR necrosis:

        >>> import tempfile
        >>> from tfbrats.contract import Window
        >>> from tfbrats.data import find_cases
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(tmp.name, cases=1, shape=(48, 48, 32))
        >>> def predictor(windows):  # (B, D, H, W, C) -> (B, D, H, W, 4)
        ...     bright = windows[..., 0] > 2.0
        ...     return np.stack([~bright, bright, 0 * bright, 0 * bright], axis=-1).astype(np.float32)
        >>> contract = SegmentationContract(window=Window(patch_size=(8, 32, 32), steps=(8, 32, 32)))
        >>> labels = segment(load_case(find_cases(tmp.name).cases[0]), predictor, contract)
        >>> labels.shape, labels.dtype.name, np.unique(labels).tolist()  # the original grid, (D, H, W)
        ((32, 48, 48), 'uint8', [0, 1])
        >>> tmp.cleanup()
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
        >>> from tfbrats.contract import SegmentationContract
        >>> loaded = LoadedModel(None, Path("runs/demo/best.keras"), SegmentationContract(), {}, "ab" * 32)  # no run
        >>> record = prediction_record("c1", ("flair", "t1ce", "t2"), ("t2",), loaded, loaded.contract)
        >>> record["missing"], record["trained_with_modality_dropout"]
        (['t2'], False)
        >>> print(record["warning"])  # doctest: +ELLIPSIS
        model runs/demo/best.keras has no config.json beside it, so nothing says it was trained with modality ...
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
        "written_by": PREDICTION_WRITER,
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
        >>> import tempfile
        >>> from tfbrats.data import find_cases
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(f"{tmp.name}/Task01", cases=2, shape=(48, 48, 32), layout="decathlon")
        >>> extent = check_brain_extent(load_case(find_cases(f"{tmp.name}/Task01").cases[0], allow_missing=True))
        >>> extent["volume_ml"], extent["whole_head"]
        (17.5, False)
        >>> tmp.cleanup()
    """
    meta = preprocessed.meta
    extent = brain_extent(brain_region(preprocessed.image), meta.spacing, int(np.prod(meta.original_shape)))
    warning = extent.warning(meta.case_id)
    if warning:
        log.warning("%s", warning)
    return {**extent.to_json(), "warning": warning}


def check_output_folder(output_dir: str | Path, cases: Sequence[Case]) -> Path:
    """Creates the output folder of a prediction and checks it may receive every case's files.

    Run before any case is computed, so a bad folder costs nothing. Refused: a path that is a
    file; a folder that is, or lies inside, the folder of any input file of the cases (a dataset's
    image or label folder, a case folder), or that holds any input file below it (a dataset root);
    a folder this process cannot create or write into. Links are followed on both sides.

    Args:
        output_dir: Where the predictions are to go.
        cases: The cases to predict (their images and segmentations are the inputs).

    Raises:
        ValueError: The folder is refused; the message names it and the input file it would
            endanger.

    Example:
        >>> import tempfile
        >>> from tfbrats.data import find_cases
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(f"{tmp.name}/Task01", cases=2, shape=(48, 48, 32), layout="decathlon")
        >>> cases = find_cases(f"{tmp.name}/Task01").cases
        >>> check_output_folder(f"{tmp.name}/predictions", cases).name  # outside the dataset: fine
        'predictions'
        >>> check_output_folder(f"{tmp.name}/Task01/imagesTr", cases)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: output folder .../Task01/imagesTr holds input file .../BRATS_001.nii.gz of case BRATS_001; ...
        >>> tmp.cleanup()
    """
    output = Path(output_dir).expanduser()
    if output.exists() and not output.is_dir():
        raise ValueError(f"output folder {output} is a file; give a folder for the <case_id>.nii.gz predictions")
    real = Path(os.path.realpath(output))
    for case in cases:
        for source in (*case.images.values(), *((case.seg,) if case.seg is not None else ())):
            listed = Path(os.path.realpath(source.parent)) / source.name
            for where in (listed, Path(os.path.realpath(source))):  # the file as listed, and where a link leads
                if where.is_relative_to(real) or real.is_relative_to(where.parent):
                    place = "holds" if where.is_relative_to(real) else "lies in the folder of"
                    link = "" if where == listed else f" (a link to {where})"
                    raise ValueError(
                        f"output folder {output} {place} input file {source}{link} of case {case.case_id}; "
                        "predictions are never written among a dataset's images or labels: choose a folder "
                        "outside the dataset")
    try:
        output.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".tfbrats-write-check-", dir=output)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise ValueError(f"output folder {output} cannot be written into ({error.strerror or error}); choose "
                         "a writable folder") from error
    return output


def _written_by_tfbrats(record: object, case_id: str) -> bool:
    """Whether a parsed sidecar is tfbrats' prediction record of the case (older records lack "written_by")."""
    if not isinstance(record, dict) or record.get("case_id") != case_id:
        return False
    legacy = "written_by" not in record and {"model_sha256", "contract"} <= set(record)
    return record.get("written_by") == PREDICTION_WRITER or legacy


def existing_prediction(case_id: str, target: Path, sidecar: Path) -> dict | None:
    """The sidecar record of tfbrats' prediction of a case at `target`, or None when neither file exists.

    The one rule for replacing a file: ``<case_id>.nii.gz`` and ``<case_id>.json`` are tfbrats'
    to replace only when the sidecar is a JSON record of this case that says tfbrats' prediction
    wrote it (``"written_by": "tfbrats.predict"``; a sidecar written before that field existed says
    so by the weights fingerprint and contract only tfbrats records).

    Args:
        case_id: The case.
        target: Its prediction, ``<output>/<case_id>.nii.gz``.
        sidecar: Its sidecar, ``<output>/<case_id>.json``.

    Raises:
        FileExistsError: `target` exists without such a sidecar (an input image or label, another
            tool's output), or `sidecar` exists and is not such a record; neither is touched.

    Example:
        >>> import json, tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> folder = Path(tmp.name)
        >>> existing_prediction("c1", folder / "c1.nii.gz", folder / "c1.json") is None  # nothing there yet
        True
        >>> _ = (folder / "c1.nii.gz").write_bytes(b"")
        >>> existing_prediction("c1", folder / "c1.nii.gz", folder / "c1.json")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileExistsError: .../c1.nii.gz exists without a sidecar c1.json saying tfbrats wrote it ...
        >>> _ = (folder / "c1.json").write_text(json.dumps({"written_by": "tfbrats.predict", "case_id": "c1"}))
        >>> existing_prediction("c1", folder / "c1.nii.gz", folder / "c1.json")
        {'written_by': 'tfbrats.predict', 'case_id': 'c1'}
        >>> tmp.cleanup()
    """
    advice = "it is left untouched: move it away or choose another output folder"
    if sidecar.is_symlink() or sidecar.exists():
        try:
            record = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            record = None
        if not _written_by_tfbrats(record, case_id):
            raise FileExistsError(f"{sidecar} is not the sidecar tfbrats writes for case {case_id} (no "
                                  f'"written_by": "{PREDICTION_WRITER}"); {advice}')
        return record
    if target.is_symlink() or target.exists():
        raise FileExistsError(f"{target} exists without a sidecar {sidecar.name} saying tfbrats wrote it (an input "
                              f"image or label, another tool's output?); {advice}")
    return None


def _made_by(record: dict, loaded: LoadedModel, contract: SegmentationContract) -> str | None:
    """Why an existing prediction is stale (another model or contract), or None when it is current."""
    if record.get("model_sha256") != loaded.fingerprint:
        return f"it was made by another model ({record.get('model')}, weights {str(record.get('model_sha256'))[:12]})"
    if record.get("contract") != contract.to_json():
        return "it was made with another segmentation contract (window or post-processing)"
    return None


def _predict_case(case: Case, loaded: LoadedModel, contract: SegmentationContract,
                  predictor: Callable[[np.ndarray], np.ndarray], target: Path, sidecar: Path) -> Path:
    """Segments one case and writes its sidecar, then its prediction; returns the prediction's path."""
    image_only = dataclasses.replace(case, seg=None)
    preprocessed = load_case(image_only, input_channels=len(contract.channels), allow_missing=True)
    meta = preprocessed.meta
    report = prediction_record(case.case_id, meta.channels, meta.missing, loaded, contract, meta.orientation)
    if meta.missing:
        log.warning("case %s: missing modalities %s, filled with zeros (model trained with modality "
                    "dropout %g)", case.case_id, list(meta.missing), loaded.modality_dropout)
    if report["warning"]:
        log.warning("case %s: %s", case.case_id, report["warning"])
    report["brain_extent"] = check_brain_extent(preprocessed)
    labels = segment(preprocessed, predictor, contract)
    meta = dataclasses.replace(meta, labels=written_label_map(contract, meta.labels))
    # The sidecar first: the NIfTI marks a finished case, so a rerun never skips a case without one.
    write_json(sidecar, report)
    return write_labels_nifti(labels, meta, target)


def predict_cases(
    cases: Sequence[Case],
    loaded: LoadedModel,
    output_dir: str | Path,
    contract: SegmentationContract | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> PredictionSummary:
    """Predicts every case into `output_dir/<case_id>.nii.gz`; a failing case does not stop the others.

    The output folder is checked first (`check_output_folder`): one that holds or lies among the
    cases' input files, a file, or a folder that cannot be written is refused before any case is
    computed. A case whose prediction exists is skipped when its sidecar names the same model
    (weights fingerprint) and contract, and recomputed (and logged) otherwise; a file there that
    tfbrats did not write fails the case and is left untouched (`existing_prediction`). A case may
    lack some modalities (not all): they are filled with zeros, logged, and listed in the sidecar.

    Args:
        cases: Cases to segment (segmentations, if any, are ignored).
        loaded: The model (see `tfbrats.inference.load_model`).
        output_dir: Where the NIfTI files and their JSON sidecars go.
        contract: The contract to apply; None applies the model's own (`loaded.contract`).
        overwrite: Recompute every case tfbrats predicted before, current or not (files tfbrats did
            not write are never replaced).
        progress: Show progress over cases: a bar on a terminal, one plain line per case otherwise
            (a log file gets no carriage returns or colour codes).

    Raises:
        ValueError: The output folder is refused (nothing is computed).

    Example: two synthetic cases segmented by a small untrained model saved with its contract.

        >>> import shutil
        >>> import tempfile
        >>> from tfbrats.contract import SegmentationContract, Window
        >>> from tfbrats.data import find_cases
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> from tfbrats.inference.model import load_model, save_with_contract
        >>> from tfbrats.models import AlbuNet3D
        >>> tmp = Path(tempfile.mkdtemp())
        >>> _ = write_synthetic_dataset(tmp / "val", cases=2, shape=(48, 48, 32))
        >>> contract = SegmentationContract(window=Window.for_patch((32, 32, 32)))
        >>> _ = save_with_contract(AlbuNet3D(num_classes=4, num_filters=2), contract, tmp / "run" / "best.keras")
        >>> cases, loaded = find_cases(tmp / "val").cases, load_model(tmp / "run")
        >>> summary = predict_cases(cases, loaded, tmp / "predictions", progress=False)
        >>> [path.name for path in summary.written], summary.failed
        (['BraTS20_Training_001.nii.gz', 'BraTS20_Training_002.nii.gz'], {})
        >>> predict_cases(cases, loaded, tmp / "predictions", progress=False).skipped  # done before: kept
        ['BraTS20_Training_001', 'BraTS20_Training_002']
        >>> shutil.rmtree(tmp)
    """
    import keras

    contract = contract or loaded.contract
    output_dir = check_output_folder(output_dir, cases)
    predictor = make_predictor(loaded.model, contract.target)
    summary = PredictionSummary()
    bar = keras.utils.Progbar(len(cases), unit_name="case") if progress and sys.stdout.isatty() else None
    for number, case in enumerate(cases, start=1):
        try:
            _predict_or_keep(case, loaded, contract, predictor, output_dir, overwrite, summary)
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


def _predict_or_keep(case: Case, loaded: LoadedModel, contract: SegmentationContract, predictor, output_dir: Path,
                     overwrite: bool, summary: PredictionSummary) -> None:
    """Predicts one case into `output_dir`, or keeps the prediction there when it is current; noted in `summary`."""
    target = output_file(output_dir, case.case_id, ".nii.gz")
    sidecar = output_file(output_dir, case.case_id, ".json")
    record = existing_prediction(case.case_id, target, sidecar)
    done_before = record is not None and target.exists() and not overwrite
    stale = _made_by(record, loaded, contract) if done_before else None
    if done_before and stale is None:
        summary.skipped.append(case.case_id)
        return
    if stale:
        log.warning("case %s: recomputing %s: %s", case.case_id, target, stale)
        summary.recomputed.append(case.case_id)
    summary.written.append(_predict_case(case, loaded, contract, predictor, target, sidecar))
