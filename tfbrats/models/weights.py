"""Pretrained weights into an AlbuNet, by layer name: torchvision's ResNet34 (ImageNet) into the
encoder, and whole checkpoints of the published PyTorch AlbuNet3D.

Conversions map names, never positions: every torch key is translated to a Keras layer name
(`stem_conv`, `layer2_block0_downsample_bn`, `dec5_deconv`, ...) and checked for shape. The
functions take a built model and fill it in place; `AlbuNet3D.from_encoder_weights` and
`AlbuNet3D.from_reference_checkpoint` build and fill in one call.

Layouts: a torch Conv2d kernel (O, I, kh, kw) becomes the Keras Conv3D kernel (1, kh, kw, I, O);
a Conv3d kernel (O, I, kd, kh, kw) becomes (kd, kh, kw, I, O); a ConvTranspose3d kernel
(I, O, kd, kh, kw) becomes the Conv3DTranspose kernel (kd, kh, kw, O, I), with no spatial flip.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tfbrats.files import atomic_path
from tfbrats.models.resnet import RESNET34_BLOCKS, resnet34_encoder
from tfbrats.models.state_dict import WEIGHTS_HELP, WeightsError, read_state_dict

BN_KEYS = ("weight", "bias", "running_mean", "running_var")  # Keras order: gamma, beta, mean, var


def _encoder_layers(reference: bool) -> list[tuple[str, str, str]]:
    """(torch prefix, Keras layer name, kind) for every encoder conv and BN.

    torchvision names the stem `conv1`/`bn1` and blocks `layer{L}.{i}`; the reference
    checkpoint names them `conv0.0`/`conv0.1` and `conv{L}_{i}`.
    """
    entries = [
        ("conv0.0" if reference else "conv1", "stem_conv", "conv"),
        ("conv0.1" if reference else "bn1", "stem_bn", "bn"),
    ]
    for layer, blocks in enumerate(RESNET34_BLOCKS, start=1):
        for block in range(blocks):
            prefix = f"conv{layer}_{block}" if reference else f"layer{layer}.{block}"
            name = f"layer{layer}_block{block}"
            for part in ("conv1", "bn1", "conv2", "bn2"):
                entries.append((f"{prefix}.{part}", f"{name}_{part}", part[:-1] if part.startswith("bn") else "conv"))
            if layer > 1 and block == 0:
                entries.append((f"{prefix}.downsample.0", f"{name}_downsample_conv", "conv"))
                entries.append((f"{prefix}.downsample.1", f"{name}_downsample_bn", "bn"))
    return entries


def _decoder_layers(depth_layers: bool = True) -> list[tuple[str, str, str]]:
    """(reference torch prefix, Keras layer name, kind) for the decoder of the reference model."""
    entries = [("center.conv", "center_conv", "conv"), ("center.bn", "center_bn", "bn")]
    for n in range(5, 0, -1):
        entries += [
            (f"dec{n}.block.0.conv", f"dec{n}_conv", "conv"),
            (f"dec{n}.block.0.bn", f"dec{n}_bn", "bn"),
            (f"dec{n}.block.1", f"dec{n}_deconv", "deconv"),
        ]
    entries += [("dec0.conv", "dec0_conv", "conv"), ("dec0.bn", "dec0_bn", "bn")]
    if depth_layers:
        for n in range(1, 5):
            entries += [(f"depth{n}.conv", f"depth{n}_conv", "conv"), (f"depth{n}.bn", f"depth{n}_bn", "bn")]
    entries.append(("final", "final", "conv"))
    return entries


def _kernel_to_keras(array: np.ndarray) -> np.ndarray:
    """torch conv kernel -> Keras kernel (see module docstring; the same axes move for transposed convs)."""
    if array.ndim == 4:  # Conv2d (O, I, kh, kw) lifted to depth 1
        return np.transpose(array, (2, 3, 1, 0))[np.newaxis]
    if array.ndim == 5:  # Conv3d (O, I, kd, kh, kw) or ConvTranspose3d (I, O, kd, kh, kw)
        return np.transpose(array, (2, 3, 4, 1, 0))
    raise WeightsError(f"expected a 4-D or 5-D convolution kernel, got shape {array.shape}")


def _expected_torch_shape(keras_shape: tuple[int, ...], lifted_2d: bool) -> tuple[int, ...]:
    if lifted_2d:
        _, kh, kw, i, o = keras_shape
        return (o, i, kh, kw)
    kd, kh, kw, i, o = keras_shape
    return (o, i, kd, kh, kw)


def _take(state: dict, key: str, source: Path) -> np.ndarray:
    if key not in state:
        raise WeightsError(f"{source}: missing key {key!r}; is this the right kind of checkpoint? {WEIGHTS_HELP}")
    return np.asarray(state.pop(key), dtype=np.float32)


def _convert_layers(state: dict, model, entries, source: Path, fold_conv_bias: bool) -> dict[str, list[np.ndarray]]:
    """Translate torch tensors into Keras weight lists, checking every shape against `model`."""
    converted: dict[str, list[np.ndarray]] = {}
    pending_bias: dict[str, np.ndarray] = {}
    for prefix, name, kind in entries:
        layer = model.get_layer(name)
        if kind == "bn":
            weights = [_take(state, f"{prefix}.{part}", source) for part in BN_KEYS]
            state.pop(f"{prefix}.num_batches_tracked", None)
            bias = pending_bias.pop(name, None)
            if bias is not None:
                # conv(x) + b followed by BN equals conv(x) followed by BN with mean - b.
                weights[2] = weights[2] - bias
        else:
            kernel = _take(state, f"{prefix}.weight", source)
            expected = tuple(layer.kernel.shape)
            converted_kernel = _kernel_to_keras(kernel)
            adapted = _adapt_input_channels(converted_kernel, expected, name) if kind == "conv" else converted_kernel
            if adapted.shape != expected:
                torch_expected = (
                    _expected_torch_shape(expected, kernel.ndim == 4) if kind != "deconv"
                    else (expected[4], expected[3], *expected[:3])
                )
                raise WeightsError(
                    f"{source}: key {prefix + '.weight'!r} has shape {kernel.shape}, but layer {name!r} needs "
                    f"{torch_expected} (torch layout; Keras kernel {expected})"
                )
            weights = [adapted]
            if layer.use_bias:
                weights.append(_take(state, f"{prefix}.bias", source))
            elif f"{prefix}.bias" in state:
                if not fold_conv_bias:
                    raise WeightsError(f"{source}: unexpected key {prefix + '.bias'!r}: layer {name!r} has no bias")
                # stem_conv -> stem_bn, ..._conv1 -> ..._bn1, ..._downsample_conv -> ..._downsample_bn
                pending_bias[name.replace("conv", "bn")] = _take(state, f"{prefix}.bias", source)
        for array, variable in zip(weights[1:], layer.weights[1:]):
            if array.shape != tuple(variable.shape):
                raise WeightsError(
                    f"{source}: a weight of {prefix!r} has shape {array.shape}, "
                    f"layer {name!r} needs {tuple(variable.shape)}"
                )
        converted[name] = weights
    return converted


def _adapt_input_channels(kernel: np.ndarray, expected: tuple[int, ...], name: str) -> np.ndarray:
    """The 4-channel stem: T1's kernel slice starts as the mean of the three RGB (ImageNet) slices."""
    if name == "stem_conv" and kernel.shape[3] == 3 and expected[3] == 4 and kernel.shape[:3] == expected[:3]:
        return np.concatenate([kernel, kernel.mean(axis=3, keepdims=True)], axis=3)
    return kernel


def _reject_leftover(keys: list[str], source: Path, architecture: str) -> None:
    if keys:
        shown = ", ".join(repr(k) for k in sorted(keys)[:5])
        raise WeightsError(f"{source}: {len(keys)} keys are not part of {architecture}: {shown}")


def _set_weights(model, converted: dict[str, list[np.ndarray]]) -> None:
    for name, weights in converted.items():
        model.get_layer(name).set_weights(weights)


def _encoder_weights_from_h5(path: Path) -> dict[str, list[np.ndarray]]:
    encoder = resnet34_encoder(3)
    try:
        encoder.load_weights(path)
    except Exception as error:  # keras reports h5 mismatches with many exception types
        raise WeightsError(
            f"{path}: not a tfbrats encoder weights file ({error}); such files are written by "
            "tools/convert_weights.py"
        ) from None
    return {name: encoder.get_layer(name).get_weights() for _, name, _ in _encoder_layers(False)}


def torchvision_encoder_weights(path: str | os.PathLike, model) -> dict[str, list[np.ndarray]]:
    """Convert torchvision ResNet34 weights for `model`'s encoder layers (fc.* ignored).

    Args:
        path: torchvision-format weights, `.safetensors` or `.pth` (needs torch).
        model: any model holding the encoder's layers by name: an AlbuNet or `resnet34_encoder()`.

    Returns:
        Keras weight lists by layer name, checked against `model`'s shapes.

    Example:
        With timm's ``resnet34.tv_in1k`` file, ``converted["stem_conv"][0].shape`` is ``(1, 7, 7, 3, 64)``;
        a file without every torchvision key is refused, naming the first missing one:

        >>> import tempfile
        >>> from safetensors.numpy import save_file
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = f"{tmp.name}/weights.safetensors"
        >>> save_file({"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)}, path)  # a stem alone: keys missing
        >>> from tfbrats.models import resnet34_encoder
        >>> torchvision_encoder_weights(path, resnet34_encoder())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tfbrats.models.state_dict.WeightsError: .../weights.safetensors: missing key 'bn1.weight'; ...
        >>> tmp.cleanup()
    """
    source = Path(path)
    state = read_state_dict(source)
    converted = _convert_layers(state, model, _encoder_layers(False), source, fold_conv_bias=False)
    _reject_leftover([key for key in state if not key.startswith("fc.")], source, "a ResNet34")
    return converted


def load_encoder_weights(model, path: str | os.PathLike) -> None:
    """Load ImageNet ResNet34 weights into the encoder of an AlbuNet (in place).

    Args:
        model: an `AlbuNet3D` or `AlbuNet2D` (3 or 4 input channels; a 4th stem channel is set to
            the mean of the RGB kernels).
        path: torchvision-format weights: `.safetensors`, `.pth` (needs torch) or tfbrats'
            `.weights.h5` from tools/convert_weights.py.

    Example:
        With ``encoder.weights.h5`` from tools/convert_weights.py (or torchvision's ``.pth``, timm's
        ``.safetensors``) the encoder's layers take the ImageNet numbers; a path that is no file
        says where such weights come from:

        >>> from tfbrats.models import AlbuNet2D
        >>> load_encoder_weights(AlbuNet2D(num_filters=4), "resnet34.safetensors")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: encoder weights file not found: resnet34.safetensors. ImageNet ResNet34 weights ...
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder weights file not found: {path}. {WEIGHTS_HELP}")
    if path.name.endswith(".weights.h5"):
        converted = _encoder_weights_from_h5(path)
        stem_shape = tuple(model.get_layer("stem_conv").kernel.shape)
        converted["stem_conv"] = [_adapt_input_channels(converted["stem_conv"][0], stem_shape, "stem_conv")]
    else:
        converted = torchvision_encoder_weights(path, model)
    _set_weights(model, converted)


def save_encoder_weights(converted: dict[str, list[np.ndarray]], path: str | os.PathLike) -> None:
    """Write converted 3-channel encoder weights as a Keras `.weights.h5` file, atomically.

    Args:
        converted: weight lists by layer name (`torchvision_encoder_weights`).
        path: the output file; its name must end in `.weights.h5`.

    Example:
        ``save_encoder_weights(torchvision_encoder_weights("resnet34.safetensors", resnet34_encoder()),
        "encoder.weights.h5")`` is what tools/convert_weights.py runs; the name is checked first:

        >>> save_encoder_weights({}, "encoder.h5")
        Traceback (most recent call last):
        ...
        ValueError: encoder.h5: the output must end in .weights.h5
    """
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"{path}: the output must end in .weights.h5")
    encoder = resnet34_encoder(3)
    _set_weights(encoder, converted)
    with atomic_path(path) as partial:  # keeps the .weights.h5 suffix Keras asks for
        encoder.save_weights(partial)


def load_reference_checkpoint(model, path: str | os.PathLike) -> None:
    """Load a trained checkpoint of the published PyTorch AlbuNet3D into an AlbuNet (in place).

    The checkpoint's duplicated `encoder.*` entries are ignored, and its encoder conv biases are
    folded into the following BatchNorm (moving mean minus bias): exact for inference.

    Args:
        model: an `AlbuNet3D` with the checkpoint's `num_classes` and `num_filters` (the reference
            model has depth layers, so an `AlbuNet2D` is refused: its depth keys are left over).
        path: `torch.save(state_dict)` file (`.pth`, needs torch) or `.safetensors` with the same keys.

    Example:
        With the published model's ``state_dict`` (594 keys), every layer is filled; a file that is
        not such a checkpoint is refused, naming the first missing key:

        >>> import tempfile
        >>> from safetensors.numpy import save_file
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = f"{tmp.name}/weights.safetensors"
        >>> save_file({"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)}, path)  # a stem alone: keys missing
        >>> from tfbrats.models import AlbuNet2D
        >>> load_reference_checkpoint(AlbuNet2D(num_filters=4), path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tfbrats.models.state_dict.WeightsError: .../weights.safetensors: missing key 'conv0.0.weight'; ...
        >>> tmp.cleanup()
    """
    source = Path(path)
    state = {key: value for key, value in read_state_dict(source).items() if not key.startswith("encoder.")}
    depth_layers = any(layer.name == "depth1_conv" for layer in model.layers)
    entries = _encoder_layers(True) + _decoder_layers(depth_layers)
    converted = _convert_layers(state, model, entries, source, fold_conv_bias=True)
    _reject_leftover(list(state), source, model.name)
    _set_weights(model, converted)
