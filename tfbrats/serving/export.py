"""Export a trained model for TensorFlow Serving (SavedModel), ONNX runtimes or OpenVINO, one version at a time.

A SavedModel goes to `<output>/<version>/`, the layout `tensorflow_model_server --model_base_path`
watches, with two signatures:

- `serving_default`: `image` float32 `(B, D, H, W, C)`, a batch of patches (H and W multiples of
  32) -> `probabilities` float32 `(B, D, H, W, K)` (the target's activation: softmax over classes,
  or a sigmoid per region WT, TC, ET);
- `segment`: `volume` float32 `(D, H, W, C)`, one preprocessed (z-scored, cropped) volume of any
  size -> `labels` int32 `(D, H, W)` (internal classes 0..3, 0..4 with the resection cavity) and
  `client_postprocessing` int32 `(4,)`, or `(5,)` when the contract relabels cavity dust: the
  model's segmentation contract applied in the graph as far as TensorFlow can (the sliding window,
  the target's labels, then the brain mask and the ET volume threshold through
  `tfbrats.contract.postprocess_without_components`, the same Keras ops the library runs), and
  the steps left to the client (`PostProcessing.split`) as (brain_mask, min_component_voxels,
  min_et_voxels, min_et_component_voxels[, min_rc_component_voxels]) for
  `tfbrats.contract.postprocess` (`PostProcessing.to_integers`, read back by
  `PostProcessing.from_integers`). TensorFlow has no connected-component op, so when the contract
  removes small components or relabels cavity or enhancing-tumor dust, those steps and the ET
  threshold after them run in the client. The
  window's probabilities are checked before they become labels (`checked_probabilities`): a NaN,
  infinite or out-of-range value fails the request (InvalidArgument) rather than segmenting.

The contract and the model's description are written to `assets.extra/tfbrats.json`: the
SavedModel folder that libraries keep for files that go with the model but that the graph does not
load (TensorFlow Serving ignores it, apart from its warm-up file). An ONNX export stores the same
description in the model's metadata, an OpenVINO export in its IR's runtime information.

A version is written to a hidden temporary folder beside it and renamed into place when complete,
so a server that polls `<output>` never loads a half-written model; an existing version is never
overwritten (servers cache versions by number).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

import tfbrats
from tfbrats.contract import (
    PROBABILITY_TOLERANCE,
    PostProcessing,
    SegmentationContract,
    postprocess_without_components,
)
from tfbrats.files import atomic_folder
from tfbrats.inference.model import probability_function
from tfbrats.serving.signatures import (
    CLIENT_POSTPROCESSING_OUTPUT,
    IMAGE_INPUT,
    LABELS_OUTPUT,
    METADATA_FILE,
    ONNX_FILE,
    ONNX_METADATA_KEY,
    OPENVINO_FILE,
    PROBABILITIES_OUTPUT,
    SEGMENT,
    SERVING_DEFAULT,
    VOLUME_INPUT,
)
from tfbrats.serving.window import sliding_window_graph

ONNX_OPSET = 17


def checked_probabilities(probabilities: tf.Tensor) -> tf.Tensor:
    """`probabilities` once all are finite and in [0, 1] (`tfbrats.contract.check_probabilities` in the graph).

    A request whose probabilities hold NaN, infinity or values outside [0, 1] (by more than
    `PROBABILITY_TOLERANCE`) fails with an InvalidArgument error that says so, rather than
    answering the labels argmax or a threshold would make of them.

    Example:
        >>> checked_probabilities(tf.constant([0.2, 0.8])).numpy().tolist()
        [0.20000000298023224, 0.800000011920929]
    """
    valid = tf.logical_and(probabilities >= -PROBABILITY_TOLERANCE, probabilities <= 1 + PROBABILITY_TOLERANCE)
    invalid = tf.reduce_sum(tf.cast(tf.logical_not(valid), tf.int64))  # NaN compares false: invalid
    check = tf.debugging.Assert(tf.equal(invalid, 0), [
        "network probabilities:", invalid, "values are NaN, infinite or outside [0, 1]; expected finite "
        "probabilities: check the model weights and the input for NaN"], summarize=1)
    with tf.control_dependencies([check]):
        return tf.identity(probabilities)


def _check_graph_window(contract: SegmentationContract) -> None:
    window = contract.window
    if window.patch_size is None or window.blend != "mean" or window.mirror_tta:
        raise ValueError(
            f"the in-graph window runs fixed windows with mean blending and no mirroring; the contract asks for "
            f"{window} — export with a patch size, blend 'mean' and no mirror TTA (tools/export.py --patch_size ...)"
        )


def export_saved_model(
    model: keras.Model,
    output: str | Path,
    version: int,
    contract: SegmentationContract,
    extra_metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Writes `<output>/<version>/` with the `serving_default` and `segment` signatures.

    Args:
        model: A Keras model mapping `(B, D, H, W, C)` to `(B, D, H, W, K)` (logits, or class
            probabilities when its `head` attribute is "softmax").
        output: The model's base folder (TensorFlow Serving's `--model_base_path`).
        version: The version number (a non-negative integer); must not exist yet.
        contract: The segmentation contract (`tfbrats.inference.load_model(...).contract`): its
            window, target and post-processing make the `segment` signature.
        extra_metadata: More entries for `assets.extra/tfbrats.json` (e.g. the source model).

    Returns:
        The version folder.

    Raises:
        FileExistsError: The version exists.
        ValueError: A bad version, or a window the graph cannot run.

    Example: a trained model comes from `tfbrats.inference.load_model(run)` (its `.model` and
    `.contract`); any Keras model of that shape exports the same way, here a one-layer stand-in.

        >>> import tempfile
        >>> from tfbrats.contract import Window
        >>> tmp = tempfile.TemporaryDirectory()
        >>> model = keras.Sequential([keras.Input((None, None, None, 3)), keras.layers.Conv3D(4, 1)])
        >>> contract = SegmentationContract(window=Window.for_patch((16, 32, 32)))
        >>> version = export_saved_model(model, Path(tmp.name) / "albunet3d", 1, contract)
        >>> version.relative_to(tmp.name).as_posix()
        'albunet3d/1'
        >>> served = tf.saved_model.load(str(version))
        >>> served.signatures["segment"](volume=tf.ones((20, 40, 40, 3)))["labels"].shape
        TensorShape([20, 40, 40])
        >>> tmp.cleanup()
    """
    _check_graph_window(contract)
    window = contract.window
    probabilities = probability_function(model, contract.target)
    channels, outputs = _io_sizes(model, contract)
    graph_steps, client_steps = contract.postprocessing.split()

    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {PROBABILITIES_OUTPUT: probabilities(image)}

    def segment(volume: tf.Tensor) -> dict[str, tf.Tensor]:
        volume_probabilities = sliding_window_graph(volume, probabilities, window.patch_size, window.steps, outputs,
                                                    window.batch_size)
        labels = tf.cast(contract.target.to_labels(checked_probabilities(volume_probabilities)), tf.int32)
        return {LABELS_OUTPUT: postprocess_without_components(labels, volume, graph_steps),
                CLIENT_POSTPROCESSING_OUTPUT: tf.constant(client_steps.to_integers(), tf.int32)}

    metadata = _saved_model_metadata(model, contract, channels, outputs, extra_metadata)

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


def _saved_model_metadata(model: keras.Model, contract: SegmentationContract, channels: int, outputs: int,
                         extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """`assets.extra/tfbrats.json` of a SavedModel: the shared description, where each step runs, the signatures."""
    graph_steps, client_steps = contract.postprocessing.split()
    highest_label = contract.target.label_set.num_classes - 1
    # PostProcessing.to_integers gives the fields in their order, as many as the export returns.
    integers = [field.name for field in dataclasses.fields(PostProcessing)][:len(client_steps.to_integers())]
    metadata = _metadata(model, contract, channels, extra)
    metadata["format"] = "saved_model"
    metadata["postprocessing_in_graph"] = graph_steps.describe()
    metadata["postprocessing_in_client"] = client_steps.describe()
    metadata["signatures"] = {
        SERVING_DEFAULT: {
            "inputs": {IMAGE_INPUT: "float32 (B, D, H, W, C), H and W multiples of 32"},
            "outputs": {PROBABILITIES_OUTPUT: f"float32 (B, D, H, W, {outputs}), {contract.target.activation}"},
        },
        SEGMENT: {
            "inputs": {VOLUME_INPUT: "float32 (D, H, W, C), preprocessed like tfbrats.data.load_case"},
            "outputs": {LABELS_OUTPUT: f"int32 (D, H, W), internal classes 0..{highest_label}",
                        CLIENT_POSTPROCESSING_OUTPUT: f"int32 ({len(integers)},): {', '.join(integers)} still "
                        "to apply with tfbrats.contract.postprocess"},
        },
    }
    return metadata


def export_onnx(
    model: keras.Model,
    output: str | Path,
    version: int,
    contract: SegmentationContract,
    opset: int = ONNX_OPSET,
    extra_metadata: Mapping[str, Any] | None = None,
    any_window: bool = False,
) -> Path:
    """Writes `<output>/<version>/model.onnx`: patches `image` -> `probabilities`, via tf2onnx.

    The input is `(batch, d, h, w, C)` with the batch free and the window fixed to the contract's
    patch (or free as well with `any_window`); the sliding window and the rest of the contract run
    outside (`tfbrats.serving.onnx.OnnxSegmenter`), from the contract stored in the model's
    metadata under the key "tfbrats". The layout is the one Triton Inference Server reads.

    Args:
        model, output, version, contract, extra_metadata: As `export_saved_model`.
        opset: The ONNX opset.
        any_window: Leave the window's size free too (D, H, W dynamic, H and W multiples of 32), so
            one file runs any window or a single pass over a whole volume.

    Returns:
        The version folder.

    Example: as `export_saved_model`'s, with a one-layer stand-in for the trained model.

        >>> import tempfile
        >>> from tfbrats.contract import Window
        >>> tmp = tempfile.TemporaryDirectory()
        >>> model = keras.Sequential([keras.Input((None, None, None, 3)), keras.layers.Conv3D(4, 1)])
        >>> contract = SegmentationContract(window=Window.for_patch((16, 32, 32)))
        >>> version = export_onnx(model, Path(tmp.name) / "albunet3d", 1, contract)
        >>> sorted(path.name for path in version.iterdir())
        ['model.onnx']
        >>> read_metadata(version)["inputs"]
        {'image': 'float32 (B, 16, 32, 32, 3)'}
        >>> tmp.cleanup()
    """
    import onnx

    patch = contract.window.patch_size
    if patch is None and not any_window:
        raise ValueError("an ONNX export needs a fixed window (the contract's patch_size is None: a full-volume "
                         "pass); export with --patch_size")
    channels, outputs = _io_sizes(model, contract)
    window = (None, None, None) if any_window else patch
    metadata = _metadata(model, contract, channels, extra_metadata)
    metadata["format"] = "onnx"
    metadata.update(_patch_signature(window, channels, outputs))

    def write(folder: Path) -> None:
        proto = _onnx_proto(model, contract, window, channels, opset)
        onnx.helper.set_model_props(proto, {ONNX_METADATA_KEY: json.dumps(metadata, default=str)})
        onnx.save(proto, str(folder / ONNX_FILE))

    return _write_version(Path(output), version, write)


def export_openvino(
    model: keras.Model,
    output: str | Path,
    version: int,
    contract: SegmentationContract,
    opset: int = ONNX_OPSET,
    extra_metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Writes `<output>/<version>/model.xml` and `model.bin`: OpenVINO's IR of patches -> probabilities.

    Batch and window are free (`(B, D, H, W, C)`, H and W multiples of 32), so one export runs the
    contract's window, any other, or a single pass over a whole volume; the sliding window and the
    rest of the contract run outside (`tfbrats.serving.openvino.OpenVinoSegmenter`), from the
    contract stored in the IR's runtime information under the key "tfbrats". The network goes
    through ONNX (tf2onnx, then `openvino.convert_model`): OpenVINO's TensorFlow reader, given the
    function directly with a free window, computes a wrong shape for the folded transposed
    convolution (measured with openvino 2026.4.1). Weights stay float32; the precision of the
    computation is chosen when the model is compiled.

    Args:
        model, output, version, contract, extra_metadata: As `export_saved_model`.
        opset: The ONNX opset of the intermediate graph.

    Returns:
        The version folder.

    Example: as `export_saved_model`'s, with a one-layer stand-in for the trained model.

        >>> import tempfile
        >>> from tfbrats.contract import Window
        >>> tmp = tempfile.TemporaryDirectory()
        >>> model = keras.Sequential([keras.Input((None, None, None, 3)), keras.layers.Conv3D(4, 1)])
        >>> contract = SegmentationContract(window=Window.for_patch((16, 32, 32)))
        >>> version = export_openvino(model, Path(tmp.name) / "albunet3d", 1, contract)
        >>> sorted(path.name for path in version.iterdir())
        ['model.bin', 'model.xml']
        >>> read_metadata(version)["inputs"]
        {'image': 'float32 (B, D, H, W, 3)'}
        >>> tmp.cleanup()
    """
    import tempfile

    import onnx
    import openvino

    channels, outputs = _io_sizes(model, contract)
    window = (None, None, None)
    metadata = _metadata(model, contract, channels, extra_metadata)
    metadata["format"] = "openvino"
    metadata["openvino_version"] = openvino.__version__
    metadata.update(_patch_signature(window, channels, outputs))

    def write(folder: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="tfbrats-openvino-") as scratch:
            onnx_path = Path(scratch) / ONNX_FILE
            onnx.save(_onnx_proto(model, contract, window, channels, opset), str(onnx_path))
            network = openvino.convert_model(str(onnx_path))
        network.set_rt_info(json.dumps(metadata, default=str), [ONNX_METADATA_KEY])
        openvino.save_model(network, str(folder / OPENVINO_FILE), compress_to_fp16=False)

    return _write_version(Path(output), version, write)


def _onnx_proto(model: keras.Model, contract: SegmentationContract, window: tuple[int | None, ...], channels: int,
                opset: int) -> Any:
    """The ONNX graph of `image` (B, *window, C) -> `probabilities` (tf2onnx)."""
    import tf2onnx

    probabilities = probability_function(model, contract.target)
    spec = tf.TensorSpec((None,) + tuple(window) + (channels,), tf.float32, name=IMAGE_INPUT)

    @tf.function(input_signature=[spec])
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {PROBABILITIES_OUTPUT: tf.identity(probabilities(image), name=PROBABILITIES_OUTPUT)}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=[spec], opset=opset)
    return proto


def _patch_signature(window: tuple[int | None, ...], channels: int, outputs: int) -> dict[str, Any]:
    """The metadata's description of the patches -> probabilities signature."""
    d, h, w = (name if size is None else size for name, size in zip("DHW", window))
    return {"inputs": {IMAGE_INPUT: f"float32 (B, {d}, {h}, {w}, {channels})"},
            "outputs": {PROBABILITIES_OUTPUT: f"float32 (B, {d}, {h}, {w}, {outputs})"}}


def read_metadata(version_dir: str | Path) -> dict[str, Any]:
    """The `tfbrats.json` description of an exported version (SavedModel, ONNX or OpenVINO folder).

    Example:
        >>> import tempfile
        >>> from tfbrats.contract import Window
        >>> tmp = tempfile.TemporaryDirectory()
        >>> model = keras.Sequential([keras.Input((None, None, None, 3)), keras.layers.Conv3D(4, 1)])
        >>> contract = SegmentationContract(window=Window.for_patch((16, 32, 32)))
        >>> metadata = read_metadata(export_onnx(model, Path(tmp.name) / "albunet3d", 1, contract))
        >>> metadata["format"], metadata["contract"]["window"]["patch_size"]
        ('onnx', [16, 32, 32])
        >>> metadata["outputs"]
        {'probabilities': 'float32 (B, 16, 32, 32, 4)'}
        >>> tmp.cleanup()
    """
    version_dir = Path(version_dir)
    if (version_dir / OPENVINO_FILE).is_file():
        import openvino

        network = openvino.Core().read_model(str(version_dir / OPENVINO_FILE))
        if network.has_rt_info([ONNX_METADATA_KEY]):
            return json.loads(network.get_rt_info([ONNX_METADATA_KEY]).astype(str))
    if (version_dir / ONNX_FILE).is_file():
        import onnx

        proto = onnx.load(str(version_dir / ONNX_FILE), load_external_data=False)
        props = {p.key: p.value for p in proto.metadata_props}
        if ONNX_METADATA_KEY in props:
            return json.loads(props[ONNX_METADATA_KEY])
    if (version_dir / METADATA_FILE).is_file():
        return json.loads((version_dir / METADATA_FILE).read_text())
    raise FileNotFoundError(f"{version_dir} holds no tfbrats export ({METADATA_FILE} or {ONNX_FILE} with metadata)")


def _io_sizes(model: keras.Model, contract: SegmentationContract) -> tuple[int, int]:
    """Input channels and outputs, which the signatures fix; both must agree with the contract."""
    channels, outputs = model.input_shape[-1], model.output_shape[-1]
    if channels is None or outputs is None:
        raise ValueError(f"model {model.name} must have known channel counts; got input {model.input_shape}, "
                         f"output {model.output_shape}")
    if int(outputs) != contract.target.num_outputs or int(channels) != len(contract.channels):
        raise ValueError(f"model {model.name} ({channels} channels in, {outputs} out) does not match its contract "
                         f"({len(contract.channels)} channels, {contract.target.num_outputs} {contract.target.name})")
    return int(channels), int(outputs)


def _metadata(model: keras.Model, contract: SegmentationContract, channels: int,
              extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """The description shared by both formats (the caller adds format and signatures)."""
    config = {k: v for k, v in model.get_config().items() if k != "segmentation"}
    metadata: dict[str, Any] = {
        "tfbrats_version": tfbrats.__version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "model": {"class": type(model).__name__, "config": config, "head": getattr(model, "head", "logits")},
        "contract": contract.to_json(),
        "input_channels": channels,
        "channels": list(contract.channels),
        "preprocessing": "tfbrats.data.load_case: channels in the order above, each z-scored over its "
        "nonzero voxels (background 0), cropped to the bounding box of the nonzero voxels",
        "outputs": list(contract.target.output_names),
    }
    metadata.update(extra or {})
    return metadata


def _write_version(output: Path, version: int, write: Callable[[Path], None]) -> Path:
    """Writes `output / version` atomically with `write(folder)`, with TensorFlow Serving's version rules."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"version must be a non-negative integer (TensorFlow Serving's version); got {version!r}")
    target = output / str(version)
    if target.exists():
        taken = [int(p.name) for p in output.iterdir() if p.name.isdigit()]
        raise FileExistsError(
            f"{target} already exists and versions are never overwritten (servers cache them by number); "
            f"export as version {max(taken) + 1} or remove {target} yourself"
        )
    with atomic_folder(target) as staging:
        write(staging)
    return target
