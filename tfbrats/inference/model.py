"""A trained model and its segmentation contract, loaded from a `.keras` file or a training run folder.

The contract (`tfbrats.contract.SegmentationContract`) comes from the model file itself: training
writes it into the AlbuNet's config and `python -m tfbrats.tune` rewrites it with the
post-processing chosen on validation, so a `.keras` copied anywhere segments as its run does. The
run folder's `config.json` is read only to check it (a contradiction names both files) and, for
models saved before contracts existed, to supply what the model file does not say.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tfbrats.contract import (
    DEFAULT_PATCH_2D,
    DEFAULT_PATCH_3D,
    ContractError,
    SegmentationContract,
    Window,
    save_model,
)
from tfbrats.labels import get_target
from tfbrats.precision import PRECISIONS, compute_precision


@dataclasses.dataclass
class LoadedModel:
    """A Keras model, its segmentation contract and what its training run recorded.

    Args:
        model: The Keras model.
        path: The `.keras` file it came from.
        contract: How its outputs become a segmentation.
        run_config: The run's `config.json` (empty when there is none beside the model).
        fingerprint: SHA-256 of the model's weights (what a prediction's sidecar records).
    """

    model: Any
    path: Path
    contract: SegmentationContract
    run_config: dict
    fingerprint: str

    @property
    def patch_size(self) -> tuple[int, int, int] | None:
        return self.contract.window.patch_size

    @property
    def input_channels(self) -> int:
        return int(self.model.input_shape[-1])

    @property
    def target(self):
        return self.contract.target

    @property
    def modality_dropout(self) -> float:
        """The run's modality dropout probability; 0 when it had none or nothing was recorded."""
        return float(self.run_config.get("modality_dropout", 0.0))


def weights_fingerprint(model) -> str:
    """SHA-256 over the model's weights (shapes and values), independent of file format and path.

    Example:
        >>> from tfbrats.models import AlbuNet2D
        >>> len(weights_fingerprint(AlbuNet2D()))
        64
    """
    digest = hashlib.sha256()
    for weight in model.get_weights():
        array = np.ascontiguousarray(weight)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def find_model_file(path: str | Path) -> Path:
    """The `.keras` file `path` names, or the best (else final) model of a run folder (`Run.model_path`).

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> for name in ("final.keras", "best.keras"):
        ...     _ = (Path(tmp.name) / name).write_bytes(b"")
        >>> find_model_file(tmp.name).name
        'best.keras'
        >>> tmp.cleanup()
    """
    path = Path(path)
    if path.is_dir():
        from tfbrats.training.run import Run  # the run folder's layout; training is imported only here

        return Run(path).model_path()
    if not path.is_file():
        raise FileNotFoundError(f"model not found: {path}; give a .keras file or a training run folder")
    return path


def _read_keras_model(path: Path):
    """The Keras model in `path`, or a one-line `ValueError` naming the file when it holds none."""
    import keras

    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ValueError(f"model file {path} is not a Keras model: a .keras file is a zip archive and this one is "
                         f"not ({path.stat().st_size} bytes); give a model saved by tfbrats or its run folder")
    try:
        return keras.models.load_model(path, compile=False)
    except (KeyError, OSError, TypeError, ValueError, zipfile.BadZipFile) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "no detail"
        raise ValueError(f"model file {path} cannot be loaded as a Keras model ({type(error).__name__}: {reason}); "
                         "give a model saved by tfbrats or its run folder") from error


def _default_patch(model) -> tuple[int, int, int]:
    return DEFAULT_PATCH_3D if getattr(model, "depth_layers", True) else DEFAULT_PATCH_2D


def contract_from_run_config(model, run_config: dict, where: str) -> SegmentationContract:
    """The contract of a model saved without one, from its run's `config.json` (or the defaults).

    A model with 3 outputs and no record of its target cannot be read safely (3 classes or the
    WT, TC, ET regions?): that is a `ContractError`.
    """
    from tfbrats.conventions import channels_for

    outputs = int(model.output_shape[-1])
    name = run_config.get("target")
    if name is None:
        if outputs == 3:
            raise ContractError(
                f"{where}: the model has 3 outputs and records no target (classes or regions), and no config.json "
                "of its run says which; put the model back in its run folder or re-save it with a contract"
            )
        name = "classes"
    target = get_target(name, outputs)
    if target.num_outputs != outputs:
        raise ContractError(f"{where}: config.json says target {name!r} ({target.num_outputs} outputs) but the model "
                            f"has {outputs} outputs; is the config.json from another run?")
    patch = tuple(int(v) for v in run_config["patch_size"]) if "patch_size" in run_config else _default_patch(model)
    return SegmentationContract(
        target=target,
        channels=channels_for(int(model.input_shape[-1])),
        window=Window.for_patch(patch),
        chosen_by="defaults (the model file records no contract)",
    )


def check_contract_against_run(contract: SegmentationContract, run_config: dict, model_path: Path,
                               config_path: Path) -> None:
    """Raises `ContractError` when the run's `config.json` contradicts the model's own contract."""
    problems = []
    if "target" in run_config and run_config["target"] != contract.target.name:
        problems.append(f"target {contract.target.name!r} in the model, {run_config['target']!r} in config.json")
    patch = contract.own_window.patch_size  # a tuned inference mode may use another window: not a contradiction
    if "patch_size" in run_config and patch is not None and tuple(run_config["patch_size"]) != tuple(patch):
        problems.append(f"window {tuple(patch)} in the model, training patch {tuple(run_config['patch_size'])} "
                        "in config.json")
    if "input_channels" in run_config and int(run_config["input_channels"]) != len(contract.channels):
        problems.append(f"{len(contract.channels)} input channels in the model, {run_config['input_channels']} "
                        "in config.json")
    if problems:
        raise ContractError(f"model {model_path} and {config_path} disagree ({'; '.join(problems)}); the config.json "
                            "belongs to another run: move the model out of this folder or use the run's own model")


def load_model(path: str | Path, precision: str | None = None) -> LoadedModel:
    """Loads a `.keras` file, or the best (else final) model of a training run folder, with its contract.

    Args:
        path: A `.keras` file or a `--model_dir` of `python -m tfbrats.train`.
        precision: "float32", or "mixed_bfloat16"/"mixed_float16" to compute in 16 bits (the
            logits stay float32); None: the precision of the contract's window (float32 unless
            `python -m tfbrats.tune` chose another).

    Raises:
        FileNotFoundError: No model there.
        ValueError: The file holds no Keras model (not a zip archive, no model config, ...).
        ContractError: The model's contract and its run's `config.json` disagree, or a model
            without a contract cannot be read safely.

    Example:
        >>> import tempfile
        >>> from tfbrats.contract import PostProcessing
        >>> from tfbrats.models import AlbuNet3D
        >>> run = tempfile.TemporaryDirectory()  # a run folder holding its best model
        >>> contract = SegmentationContract(window=Window.for_patch((16, 32, 32)),
        ...                                 postprocessing=PostProcessing(min_et_voxels=200))
        >>> _ = save_with_contract(AlbuNet3D(num_classes=4, num_filters=2), contract, Path(run.name) / "best.keras")
        >>> loaded = load_model(run.name)
        >>> loaded.path.name, loaded.patch_size, loaded.contract == contract
        ('best.keras', (16, 32, 32), True)
        >>> loaded.contract.postprocessing.describe()
        'brain mask; ET below 200 voxels -> necrosis'
        >>> run.cleanup()
    """
    import tfbrats.models  # noqa: F401  (registers the AlbuNet classes for deserialisation)

    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    from tfbrats.training.run import Run

    model_path = find_model_file(path)
    config_path = Run(model_path.parent).config_path
    run_config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    # One build: the saved config holds no dtype policy, so the model is built in the one asked for
    # (or the one its contract records), never first in float32 and then again.
    precision = precision or recorded_precision(model_path)
    with compute_precision(precision):
        model = _read_keras_model(model_path)
    recorded = getattr(model, "segmentation", None)
    if recorded:
        contract = SegmentationContract.from_json(recorded)
        if int(model.output_shape[-1]) != contract.target.num_outputs:
            raise ContractError(f"{model_path}: its contract says {contract.target.num_outputs} outputs "
                                f"({contract.target.name}) but the network has {model.output_shape[-1]}")
        if run_config:
            check_contract_against_run(contract, run_config, model_path, config_path)
    else:
        contract = contract_from_run_config(model, run_config, str(model_path))
    return LoadedModel(model, model_path, contract, run_config, weights_fingerprint(model))


def recorded_precision(path: str | Path) -> str:
    """The compute precision of the contract inside a `.keras` file, read without building the model.

    "float32" when the file records no contract or cannot be read as one (loading then says why).

    Example:
        >>> import tempfile
        >>> from tfbrats.models import AlbuNet3D
        >>> tmp = tempfile.TemporaryDirectory()
        >>> contract = SegmentationContract(window=Window.for_patch((16, 32, 32), precision="mixed_bfloat16"))
        >>> path = save_with_contract(AlbuNet3D(num_classes=4, num_filters=2), contract, Path(tmp.name) / "m.keras")
        >>> recorded_precision(path)
        'mixed_bfloat16'
        >>> recorded_precision(Path(tmp.name) / "missing.keras")
        'float32'
        >>> tmp.cleanup()
    """
    try:
        with zipfile.ZipFile(path) as archive:
            recorded = json.loads(archive.read("config.json")).get("config", {}).get("segmentation")
        return SegmentationContract.from_json(recorded).window.precision if recorded else "float32"
    except (KeyError, OSError, ValueError, AttributeError, zipfile.BadZipFile):
        return "float32"


def save_with_contract(model, contract: SegmentationContract, path: str | Path) -> Path:
    """Saves `model` as a `.keras` file carrying `contract`, atomically (`tfbrats.contract.save_model`).

    Example: give a model the post-processing chosen for it, then load it as prediction does.

        >>> import tempfile
        >>> from tfbrats.contract import PostProcessing
        >>> from tfbrats.models import AlbuNet3D
        >>> tmp = tempfile.TemporaryDirectory()
        >>> tuned = SegmentationContract(window=Window.for_patch((16, 32, 32)),
        ...                              postprocessing=PostProcessing(min_component_voxels=50),
        ...                              chosen_by="validation: 4 cases")
        >>> path = save_with_contract(AlbuNet3D(num_classes=4, num_filters=2), tuned, Path(tmp.name) / "best.keras")
        >>> path.name, load_model(path).contract.chosen_by
        ('best.keras', 'validation: 4 cases')
        >>> tmp.cleanup()
    """
    return save_model(model, path, contract)


def probability_function(model, target) -> Callable[[Any], Any]:
    """The model in inference mode followed by the target's activation: batch -> float32 probabilities.

    A model whose `head` is "softmax" already outputs class probabilities, so a classes target
    skips its activation there; every other model's logits go through `target.probabilities`.
    What `make_predictor` compiles and every export (`tfbrats.serving.export`) traces.

    Args:
        model: The Keras model (logits, or class probabilities when its `head` is "softmax").
        target: The `tfbrats.labels.Target` its outputs are.

    Example:
        >>> import keras
        >>> from tfbrats.labels import get_target
        >>> from tfbrats.models import AlbuNet3D
        >>> model = AlbuNet3D(num_classes=4, num_filters=2, head="softmax")
        >>> p = probability_function(model, get_target("classes"))(np.zeros((1, 1, 32, 32, 3), np.float32))
        >>> keras.ops.convert_to_numpy(keras.ops.sum(p, axis=-1)).round(4).min()
        np.float32(1.0)
    """
    import keras

    softmax_head = getattr(model, "head", "logits") == "softmax" and target.activation == "softmax"

    def probabilities(x):
        out = model(x, training=False)
        return keras.ops.cast(out, "float32") if softmax_head else target.probabilities(out)

    return probabilities


def make_predictor(model, target) -> Callable[[np.ndarray], np.ndarray]:
    """A batch predictor returning probabilities (`probability_function`), compiled once per window shape.

    Args:
        model: The Keras model (logits, or class probabilities when its `head` is "softmax").
        target: The `tfbrats.labels.Target` its outputs are.
    """
    import keras

    probabilities = probability_function(model, target)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        probabilities = tf.function(probabilities, reduce_retracing=True)

    def predict(batch: np.ndarray) -> np.ndarray:
        return keras.ops.convert_to_numpy(probabilities(batch))

    return predict


def override_contract(
    contract: SegmentationContract,
    *,
    patch_size: tuple[int, int, int] | None = None,
    full_volume: bool = False,
    steps: tuple[int, int, int] | None = None,
    batch_size: int | None = None,
    blend: str | None = None,
    mirror_tta: bool | None = None,
    brain_mask: bool | None = None,
    min_component_voxels: int | None = None,
    min_et_voxels: int | None = None,
    min_et_component_voxels: int | None = None,
    min_rc_component_voxels: int | None = None,
    label_values: tuple[int, int, int] | None = None,
    precision: str | None = None,
) -> SegmentationContract:
    """The contract with the settings a user gave explicitly (None keeps the contract's own).

    Steps are clipped to the window; `full_volume` replaces the window by one pass.

    Example:
        >>> override_contract(SegmentationContract(), min_et_voxels=500).postprocessing.min_et_voxels
        500
    """
    window = contract.window
    window = Window.for_patch(
        None if full_volume else (patch_size or window.patch_size), steps or window.steps,
        batch_size=window.batch_size if batch_size is None else batch_size,
        blend=blend or window.blend, mirror_tta=window.mirror_tta if mirror_tta is None else mirror_tta,
        precision=precision or window.precision)
    post = contract.postprocessing
    changes = {name: value for name, value in (("brain_mask", brain_mask), ("min_component_voxels",
               min_component_voxels), ("min_et_voxels", min_et_voxels),
               ("min_et_component_voxels", min_et_component_voxels),
               ("min_rc_component_voxels", min_rc_component_voxels)) if value is not None}
    updated = contract.replace(window=window, postprocessing=dataclasses.replace(post, **changes))
    if label_values is not None:
        updated = updated.replace(label_values=dict(zip((1, 2, 3), label_values)))
    if updated != contract:
        updated = updated.replace(chosen_by=f"{contract.chosen_by}; overridden by the user")
    return updated
