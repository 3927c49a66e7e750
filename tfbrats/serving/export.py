"""Export a trained model for TensorFlow Serving (SavedModel) or ONNX runtimes, one version at a time.

A SavedModel goes to `<output>/<version>/`, the layout `tensorflow_model_server --model_base_path`
watches, with two signatures:

- `serving_default`: `image` float32 `(B, D, H, W, C)`, a batch of patches (H and W multiples of
  32) -> `probabilities` float32 `(B, D, H, W, K)`;
- `segment`: `volume` float32 `(D, H, W, C)`, one preprocessed (z-scored, cropped) volume of any
  size -> `labels` int32 `(D, H, W)`, the internal classes 0..K-1, by the sliding window of
  `tfbrats.inference` run inside the graph (`tfbrats.serving.window`).

The window settings and the model's description are written to `assets.extra/tfbrats.json`: the
SavedModel folder that libraries keep for files that go with the model but that the graph does not
load (TensorFlow Serving ignores it, apart from its warm-up file).

A version is written to a hidden temporary folder beside it and renamed into place when complete,
so a server that polls `<output>` never loads a half-written model; an existing version is never
overwritten (servers cache versions by number).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

import tfbrats
from tfbrats.serving.signatures import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_PATCH_SIZE,
    IMAGE_INPUT,
    LABELS_OUTPUT,
    METADATA_FILE,
    ONNX_FILE,
    ONNX_METADATA_KEY,
    PROBABILITIES_OUTPUT,
    SEGMENT,
    SERVING_DEFAULT,
    VOLUME_INPUT,
    default_steps,
)
from tfbrats.serving.window import sliding_window_graph

ONNX_OPSET = 17
INTERNAL_CLASSES = ("background", "necrotic/non-enhancing core", "edema", "enhancing tumor")


def export_saved_model(
    model: keras.Model,
    output: str | Path,
    version: int,
    patch_size: Sequence[int] = DEFAULT_PATCH_SIZE,
    steps: Sequence[int] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    head: str | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Writes `<output>/<version>/` with the `serving_default` and `segment` signatures.

    Args:
        model: a Keras model mapping `(B, D, H, W, C)` to `(B, D, H, W, K)`.
        output: the model's base folder (TensorFlow Serving's `--model_base_path`).
        version: the version number (a non-negative integer); must not exist yet.
        patch_size: the window `(d, h, w)` of the `segment` signature (the training patch).
        steps: window steps; None takes `tfbrats.predict`'s (24, 32, 32) clipped to the patch.
        batch_size: windows per model call inside `segment`.
        head: "logits" (a softmax is added) or "softmax"; None reads the model's `head` attribute
            (a model without one is taken to return logits, as `tfbrats.predict` does).
        extra_metadata: more entries for `assets.extra/tfbrats.json` (e.g. the run's config).

    Returns:
        The version folder.

    Raises:
        FileExistsError: the version exists.
        ValueError: bad window settings, version or head.

    Example:
        >>> export_saved_model(AlbuNet3D(head="softmax"), "saved_models/albunet3d", 1)  # doctest: +SKIP
        PosixPath('saved_models/albunet3d/1')
    """
    patch = _check_triple(patch_size, "patch_size")
    step = default_steps(patch) if steps is None else _check_triple(steps, "steps")
    head = _resolve_head(model, head)
    probabilities = _probability_function(model, head)
    channels, num_classes = _io_sizes(model)

    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {PROBABILITIES_OUTPUT: probabilities(image)}

    def segment(volume: tf.Tensor) -> dict[str, tf.Tensor]:
        volume_probabilities = sliding_window_graph(volume, probabilities, patch, step, num_classes, batch_size)
        return {LABELS_OUTPUT: tf.argmax(volume_probabilities, axis=-1, output_type=tf.int32)}

    metadata = _metadata(model, head, channels, num_classes, extra_metadata)
    metadata["format"] = "saved_model"
    metadata["window"] = {"patch_size": list(patch), "steps": list(step), "batch_size": batch_size, "blend": "mean"}
    metadata["signatures"] = {
        SERVING_DEFAULT: {
            "inputs": {IMAGE_INPUT: "float32 (B, D, H, W, C), H and W multiples of 32"},
            "outputs": {PROBABILITIES_OUTPUT: "float32 (B, D, H, W, K)"},
        },
        SEGMENT: {
            "inputs": {VOLUME_INPUT: "float32 (D, H, W, C), preprocessed like tfbrats.data.load_case"},
            "outputs": {LABELS_OUTPUT: "int32 (D, H, W), internal classes"},
        },
    }

    def write(folder: Path) -> None:
        # No archive.track(model): the endpoints capture every variable they use, and tracking
        # the model as well stores each weight twice (keras-team/keras#23553; measured with Keras 3.15.1).
        archive = keras.export.ExportArchive()
        patches = tf.TensorSpec((None, None, None, None, channels), tf.float32, name=IMAGE_INPUT)
        volume = tf.TensorSpec((None, None, None, channels), tf.float32, name=VOLUME_INPUT)
        archive.add_endpoint(SERVING_DEFAULT, serve, [patches])
        archive.add_endpoint(SEGMENT, segment, [volume])
        archive.write_out(str(folder), verbose=False)
        (folder / METADATA_FILE).parent.mkdir()
        (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str) + "\n")

    return _write_version(Path(output), version, write)


def export_onnx(
    model: keras.Model,
    output: str | Path,
    version: int,
    patch_size: Sequence[int] = DEFAULT_PATCH_SIZE,
    head: str | None = None,
    opset: int = ONNX_OPSET,
    extra_metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Writes `<output>/<version>/model.onnx`: patches `image` -> `probabilities`, via tf2onnx.

    The input is `(batch, d, h, w, C)` with the batch free and the window fixed to `patch_size`
    (the sliding window runs outside, e.g. `tfbrats.inference.sliding_window`). The same
    description as the SavedModel's is stored in the model's metadata under the key "tfbrats".
    The layout is the one Triton Inference Server reads.

    Args:
        model, output, version, head, extra_metadata: as `export_saved_model`.
        patch_size: the window `(d, h, w)` the ONNX model takes.
        opset: the ONNX opset.

    Returns:
        The version folder.

    Example:
        >>> export_onnx(AlbuNet3D(head="softmax"), "onnx_models/albunet3d", 1)  # doctest: +SKIP
        PosixPath('onnx_models/albunet3d/1')
    """
    import onnx
    import tf2onnx

    patch = _check_triple(patch_size, "patch_size")
    head = _resolve_head(model, head)
    probabilities = _probability_function(model, head)
    channels, num_classes = _io_sizes(model)
    spec = tf.TensorSpec((None,) + patch + (channels,), tf.float32, name=IMAGE_INPUT)

    @tf.function(input_signature=[spec])
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {PROBABILITIES_OUTPUT: tf.identity(probabilities(image), name=PROBABILITIES_OUTPUT)}

    metadata = _metadata(model, head, channels, num_classes, extra_metadata)
    metadata["format"] = "onnx"
    metadata["window"] = {"patch_size": list(patch), "steps": list(default_steps(patch)), "blend": "mean"}
    metadata["inputs"] = {IMAGE_INPUT: f"float32 (B, {patch[0]}, {patch[1]}, {patch[2]}, {channels})"}
    metadata["outputs"] = {PROBABILITIES_OUTPUT: f"float32 (B, {patch[0]}, {patch[1]}, {patch[2]}, {num_classes})"}

    def write(folder: Path) -> None:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=[spec], opset=opset)
        onnx.helper.set_model_props(proto, {ONNX_METADATA_KEY: json.dumps(metadata, default=str)})
        onnx.save(proto, str(folder / ONNX_FILE))

    return _write_version(Path(output), version, write)


def read_metadata(version_dir: str | Path) -> dict[str, Any]:
    """The `tfbrats.json` description of an exported version (SavedModel or ONNX folder).

    Example:
        >>> read_metadata("saved_models/albunet3d/1")["window"]["patch_size"]  # doctest: +SKIP
        [24, 128, 128]
    """
    version_dir = Path(version_dir)
    if (version_dir / ONNX_FILE).is_file():
        import onnx

        proto = onnx.load(str(version_dir / ONNX_FILE), load_external_data=False)
        props = {p.key: p.value for p in proto.metadata_props}
        if ONNX_METADATA_KEY in props:
            return json.loads(props[ONNX_METADATA_KEY])
    if (version_dir / METADATA_FILE).is_file():
        return json.loads((version_dir / METADATA_FILE).read_text())
    raise FileNotFoundError(f"{version_dir} holds no tfbrats export ({METADATA_FILE} or {ONNX_FILE} with metadata)")


def _check_triple(values: Sequence[int], name: str) -> tuple[int, int, int]:
    values = tuple(int(v) for v in values)
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"{name} must be three positive integers (d, h, w); got {values}")
    return values


def _io_sizes(model: keras.Model) -> tuple[int, int]:
    """Input channels and output classes, which the signatures fix."""
    channels, num_classes = model.input_shape[-1], model.output_shape[-1]
    if channels is None or num_classes is None:
        raise ValueError(
            f"model {model.name} must have known channel counts; got input {model.input_shape}, "
            f"output {model.output_shape}"
        )
    return int(channels), int(num_classes)


def _resolve_head(model: keras.Model, head: str | None) -> str:
    """`head`, else the model's `head` attribute, else "logits" (as `tfbrats.predict` assumes)."""
    head = head or getattr(model, "head", "logits")
    if head not in ("logits", "softmax"):
        raise ValueError(
            f"head must be 'logits' or 'softmax' (what model {model.name} returns); got {head!r}"
        )
    return head


def _probability_function(model: keras.Model, head: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """The model in inference mode, with a softmax appended when it returns logits."""

    def probabilities(image: tf.Tensor) -> tf.Tensor:
        out = tf.cast(model(image, training=False), tf.float32)
        return tf.nn.softmax(out, axis=-1) if head == "logits" else out

    return probabilities


def _metadata(
    model: keras.Model, head: str, channels: int, num_classes: int, extra: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The description shared by both formats (the caller adds format, window and signatures)."""
    from tfbrats.data import channels_for

    metadata: dict[str, Any] = {
        "tfbrats_version": tfbrats.__version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "model": {"class": type(model).__name__, "config": model.get_config(), "head": head},
        "input_channels": channels,
        "channels": list(channels_for(channels)) if channels in (3, 4) else None,
        "preprocessing": "tfbrats.data.load_case: channels in the order above, each z-scored over its "
        "nonzero voxels (background 0), cropped to the bounding box of the nonzero voxels",
        "num_classes": num_classes,
        "classes": list(INTERNAL_CLASSES) if num_classes == len(INTERNAL_CLASSES) else None,
    }
    metadata.update(extra or {})
    return metadata


def write_folder_atomically(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Runs `write(folder)` on a hidden temporary folder beside `target`, then renames it to `target`.

    A reader (a server polling the parent folder) sees either no `target` or a complete one; when
    `write` fails, the temporary folder is removed and nothing is left behind.

    Raises:
        FileExistsError: `target` exists (before or after writing): it is never replaced.

    Example:
        >>> write_folder_atomically("saved_models/albunet3d/2", lambda folder: ...)  # doctest: +SKIP
    """
    target = Path(target)
    if target.exists():
        raise FileExistsError(f"{target} already exists and is never overwritten; choose another folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    # A name that is not a number: TensorFlow Serving ignores the folder until it is renamed.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        write(staging)
        # mkdtemp makes the folder private; a server often runs as another user.
        os.chmod(staging, 0o755)
        if target.exists():
            raise FileExistsError(f"{target} appeared while it was being written; the new one is discarded")
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _write_version(output: Path, version: int, write: Callable[[Path], None]) -> Path:
    """`write_folder_atomically(output / version)`, with TensorFlow Serving's version rules."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"version must be a non-negative integer (TensorFlow Serving's version); got {version!r}")
    target = output / str(version)
    if target.exists():
        taken = [int(p.name) for p in output.iterdir() if p.name.isdigit()]
        raise FileExistsError(
            f"{target} already exists and versions are never overwritten (servers cache them by number); "
            f"export as version {max(taken) + 1} or remove {target} yourself"
        )
    return write_folder_atomically(target, write)
