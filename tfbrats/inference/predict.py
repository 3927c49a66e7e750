"""Whole-patient prediction: a trained model, preprocessed cases in, NIfTI label maps out.

Cases may lack modalities: a missing one is filled with zeros (the z-scored brain mean, as
modality-dropout training fills it), logged, and recorded with a warning when the model was not
trained with modality dropout in a JSON sidecar ``<case_id>.json`` next to each prediction.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tfbrats.data import MISSING_FILL, Case, PreprocessedCase, load_case, uncrop, write_labels_nifti
from tfbrats.data.brain import brain_extent
from tfbrats.inference.sliding_window import sliding_window

log = logging.getLogger(__name__)

MODEL_FILES = ("best.keras", "final.keras")
# The paper's windows: the training patch, steps 24 in depth and 32 in-plane.
DEFAULT_PATCH_3D = (24, 128, 128)
DEFAULT_PATCH_2D = (1, 128, 128)
DEFAULT_STEPS = (24, 32, 32)
TARGETS = ("classes", "regions")


@dataclasses.dataclass(frozen=True)
class WindowSettings:
    """How a volume is tiled: window size, steps, batch, blending, test-time mirroring.

    `patch_size=None` is the single full-volume pass.
    """

    patch_size: tuple[int, int, int] | None = DEFAULT_PATCH_3D
    steps: tuple[int, int, int] = DEFAULT_STEPS
    batch_size: int = 2
    blend: str = "mean"
    mirror_tta: bool = False


@dataclasses.dataclass
class LoadedModel:
    """A Keras model with what its training run recorded (`config.json`), if anything."""

    model: object
    path: Path
    run_config: dict

    @property
    def patch_size(self) -> tuple[int, int, int]:
        if "patch_size" in self.run_config:
            return tuple(int(v) for v in self.run_config["patch_size"])
        return DEFAULT_PATCH_3D if getattr(self.model, "depth_layers", True) else DEFAULT_PATCH_2D

    @property
    def input_channels(self) -> int:
        return int(self.model.input_shape[-1])

    @property
    def target(self) -> str:
        """What the outputs are: "classes" (softmax over classes) or "regions" (sigmoid per WT, TC, ET)."""
        return self.run_config.get("target", "classes")

    @property
    def modality_dropout(self) -> float:
        """The run's modality dropout probability; 0 when it had none or nothing was recorded."""
        return float(self.run_config.get("modality_dropout", 0.0))


PRECISIONS = ("float32", "mixed_bfloat16")


def load_model(path: str | Path, precision: str = "float32") -> LoadedModel:
    """Load a `.keras` file, or the best (else final) model of a training run folder.

    Args:
        path: a `.keras` file or a `--model_dir` of `python -m tfbrats.train`.
        precision: "float32", or "mixed_bfloat16" to compute in bfloat16 (faster on CPUs with
            AVX512_BF16 and on GPUs; the logits stay float32).

    Example:
        >>> loaded = load_model("runs/demo")  # doctest: +SKIP
        >>> loaded.patch_size  # doctest: +SKIP
        (16, 96, 96)
    """
    import keras

    import tfbrats.models  # noqa: F401  (registers the AlbuNet classes for deserialisation)

    path = Path(path)
    run_dir = path if path.is_dir() else path.parent
    if path.is_dir():
        candidates = [path / name for name in MODEL_FILES if (path / name).is_file()]
        if not candidates:
            raise FileNotFoundError(f"{path}: no {' or '.join(MODEL_FILES)} in this folder; is it a training run?")
        path = candidates[0]
    elif not path.is_file():
        raise FileNotFoundError(f"model not found: {path}; give a .keras file or a training run folder")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    config_path = run_dir / "config.json"
    run_config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    model = keras.models.load_model(path, compile=False)
    target = run_config.get("target", "classes")
    if target not in TARGETS:
        raise ValueError(f"{config_path}: target is {target!r}; expected one of {TARGETS}")
    if target == "regions" and model.output_shape[-1] != 3:
        raise ValueError(
            f"{config_path} says target 'regions' but model {path} has {model.output_shape[-1]} outputs, not 3 "
            "(WT, TC, ET); is the config.json from another run?"
        )
    if precision != "float32":
        # A saved model keeps the dtype policy it was built with: rebuild it under the new one.
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(precision)
        try:
            rebuilt = type(model).from_config(model.get_config())
        finally:
            keras.mixed_precision.set_global_policy(previous)
        rebuilt.set_weights(model.get_weights())
        model = rebuilt
    return LoadedModel(model, path, run_config)


def make_predictor(model, target: str = "classes") -> Callable[[np.ndarray], np.ndarray]:
    """A batch predictor returning probabilities, compiled once per window shape.

    Args:
        model: The Keras model.
        target: "classes" (softmax over the classes, unless the model has a softmax head) or
            "regions" (a sigmoid on each of the WT, TC, ET logits).
    """
    import keras

    def probabilities(x):
        out = model(x, training=False)
        if target == "regions":
            return keras.ops.sigmoid(out)
        return out if getattr(model, "head", "logits") == "softmax" else keras.ops.softmax(out, axis=-1)

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        probabilities = tf.function(probabilities, reduce_retracing=True)

    def predict(batch: np.ndarray) -> np.ndarray:
        return keras.ops.convert_to_numpy(probabilities(batch))

    return predict


def remove_small_enhancing(labels: np.ndarray, min_voxels: int) -> np.ndarray:
    """Relabel all enhancing tumor (3) as necrosis (1) when there are fewer than `min_voxels` of it.

    BraTS scores an ET prediction on a case without ET as Dice 0 and HD95 373.13, so a few
    stray ET voxels cost far more than missing a tiny enhancing region.
    """
    count = int(np.count_nonzero(labels == 3))
    if 0 < count < min_voxels:
        labels = np.where(labels == 3, np.uint8(1), labels)
    return labels


def segment(
    case: PreprocessedCase,
    predictor: Callable[[np.ndarray], np.ndarray],
    window: WindowSettings,
    min_et_voxels: int = 0,
    target: str = "classes",
) -> np.ndarray:
    """Segment one preprocessed case: internal labels 0..3 on its original (D, H, W) grid.

    With ``target="regions"`` the predictor returns WT, TC, ET probabilities, turned into nested
    labels by `tfbrats.metrics.regions_to_labels`; else class probabilities, argmax. Voxels outside
    the brain (zero in every channel) are background whatever the network says.
    """
    probabilities = sliding_window(
        case.image,
        predictor,
        patch_size=window.patch_size,
        steps=window.steps,
        batch_size=window.batch_size,
        blend=window.blend,
        mirror_tta=window.mirror_tta,
    )
    if target == "regions":
        import keras

        from tfbrats.metrics import regions_to_labels

        labels = keras.ops.convert_to_numpy(regions_to_labels(probabilities))
    else:
        labels = np.argmax(probabilities, axis=-1).astype(np.uint8)
    labels[~np.any(case.image != 0, axis=-1)] = 0
    if min_et_voxels:
        labels = remove_small_enhancing(labels, min_et_voxels)
    return uncrop(labels, case.meta)


@dataclasses.dataclass
class PredictionSummary:
    """What a folder prediction did: files written, cases skipped as done, cases that failed."""

    written: list[Path] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)


def missing_modality_report(case_id: str, channels: Sequence[str], missing: Sequence[str], loaded: LoadedModel) -> dict:
    """The JSON sidecar of one prediction: which modalities were missing, how they were filled, and a warning.

    The warning is set when modalities are missing and the model's run records no modality
    dropout: such a model never saw a zero-filled channel, so its result is unreliable.

    Example:
        >>> missing_modality_report("c1", ("flair", "t1ce", "t2"), ("t2",), loaded)["warning"]  # doctest: +SKIP
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
        "target": loaded.target,
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
    extent = brain_extent(np.any(preprocessed.image != 0, axis=-1), meta.spacing, int(np.prod(meta.original_shape)))
    warning = extent.warning(meta.case_id)
    if warning:
        log.warning("%s", warning)
    return {**extent.to_json(), "warning": warning}


def _write_json_atomic(values: dict, path: Path) -> None:
    """Writes `values` as JSON to a temporary file beside `path`, then renames it over `path`."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as f:
            json.dump(values, f, indent=2)
            f.write("\n")
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def predict_cases(
    cases: Sequence[Case],
    loaded: LoadedModel,
    output_dir: str | Path,
    window: WindowSettings,
    min_et_voxels: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> PredictionSummary:
    """Predict every case into `output_dir/<case_id>.nii.gz`; a failing case does not stop the others.

    A case may lack some modalities (not all): they are filled with zeros, logged, and listed in
    the sidecar `output_dir/<case_id>.json` (see `missing_modality_report`) written beside every
    prediction, with a warning when the model was trained without modality dropout.

    Args:
        cases: cases to segment (segmentations, if any, are ignored).
        loaded: the model (see `load_model`).
        output_dir: where the NIfTI files and their JSON sidecars go.
        window: tiling settings.
        min_et_voxels: see `remove_small_enhancing`; 0 keeps predictions as they are.
        overwrite: recompute cases whose output already exists.
        progress: show a progress bar over cases.
    """
    import keras

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    predictor = make_predictor(loaded.model, loaded.target)
    summary = PredictionSummary()
    bar = keras.utils.Progbar(len(cases), unit_name="case") if progress else None
    for number, case in enumerate(cases, start=1):
        target = output_dir / f"{case.case_id}.nii.gz"
        if target.exists() and not overwrite:
            summary.skipped.append(case.case_id)
        else:
            try:
                image_only = dataclasses.replace(case, seg=None)
                preprocessed = load_case(image_only, input_channels=loaded.input_channels, allow_missing=True)
                meta = preprocessed.meta
                report = missing_modality_report(case.case_id, meta.channels, meta.missing, loaded)
                if meta.missing:
                    log.warning("case %s: missing modalities %s, filled with zeros (model trained with modality "
                                "dropout %g)", case.case_id, list(meta.missing), loaded.modality_dropout)
                if report["warning"]:
                    log.warning("case %s: %s", case.case_id, report["warning"])
                report["brain_extent"] = check_brain_extent(preprocessed)
                labels = segment(preprocessed, predictor, window, min_et_voxels, loaded.target)
                # The sidecar first: the NIfTI marks a finished case, so a rerun never skips a case without one.
                _write_json_atomic(report, output_dir / f"{case.case_id}.json")
                summary.written.append(write_labels_nifti(labels, meta, target))
            except Exception as error:  # one bad case must not stop a folder of hundreds
                log.error("case %s failed: %s", case.case_id, error)
                summary.failed[case.case_id] = f"{type(error).__name__}: {error}"
        if bar is not None:
            bar.update(number)
    return summary
