"""Independent numpy implementations of torch's layers and state dicts, for parity tests."""

from __future__ import annotations

import numpy as np

BLOCKS = (3, 4, 6, 3)
WIDTHS = (64, 128, 256, 512)


def conv2d(x: np.ndarray, weight: np.ndarray, stride: int = 1, padding: int = 0, bias=None) -> np.ndarray:
    """torch.nn.functional.conv2d on channels-last input: x (N, H, W, I), weight (O, I, kh, kw)."""
    _, _, kh, kw = weight.shape
    x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    out_h = (x.shape[1] - kh) // stride + 1
    out_w = (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, weight.shape[0]), np.float64)
    for i in range(kh):
        for j in range(kw):
            window = x[:, i : i + stride * out_h : stride, j : j + stride * out_w : stride, :]
            out += window @ weight[:, :, i, j].T.astype(np.float64)
    return out if bias is None else out + bias


def batch_norm(x: np.ndarray, state: dict, prefix: str, eps: float = 1e-5) -> np.ndarray:
    """BatchNorm in inference mode with torch's running statistics."""
    g, b = state[f"{prefix}.weight"], state[f"{prefix}.bias"]
    m, v = state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"]
    return (x - m) / np.sqrt(v + eps) * g + b


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def max_pool2(x: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    return x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _conv_weight(state: dict, key: str) -> np.ndarray:
    w = state[key]
    return w[:, :, 0] if w.ndim == 5 else w  # reference 3-D kernels have depth 1 in the encoder


def _conv(x, state, prefix, stride, padding):
    return conv2d(x, _conv_weight(state, f"{prefix}.weight"), stride, padding, state.get(f"{prefix}.bias"))


def stem(x: np.ndarray, state: dict, conv: str = "conv1", bn: str = "bn1") -> np.ndarray:
    """7x7/2 conv (pad 3), BN, ReLU, then the paper's 2x2 max pool."""
    return max_pool2(relu(batch_norm(_conv(x, state, conv, 2, 3), state, bn)))


def basic_block(x: np.ndarray, state: dict, prefix: str, stride: int) -> np.ndarray:
    y = relu(batch_norm(_conv(x, state, f"{prefix}.conv1", stride, 1), state, f"{prefix}.bn1"))
    y = batch_norm(_conv(y, state, f"{prefix}.conv2", 1, 1), state, f"{prefix}.bn2")
    shortcut = x
    if f"{prefix}.downsample.0.weight" in state:
        shortcut = batch_norm(_conv(x, state, f"{prefix}.downsample.0", stride, 0), state, f"{prefix}.downsample.1")
    return relu(y + shortcut)


def _bn_state(rng, prefix: str, channels: int) -> dict:
    return {
        f"{prefix}.weight": rng.uniform(0.5, 1.5, channels).astype(np.float32),
        f"{prefix}.bias": rng.normal(0, 0.1, channels).astype(np.float32),
        f"{prefix}.running_mean": rng.normal(0, 0.1, channels).astype(np.float32),
        f"{prefix}.running_var": rng.uniform(0.5, 2.0, channels).astype(np.float32),
        f"{prefix}.num_batches_tracked": np.array(7, np.int64),
    }


def _kernel(rng, shape) -> np.ndarray:
    fan_in = int(np.prod(shape[1:]))
    return rng.normal(0, np.sqrt(2.0 / fan_in), shape).astype(np.float32)


def torchvision_resnet34_state(seed: int = 0) -> dict[str, np.ndarray]:
    """A random state dict with torchvision's ResNet34 key names and shapes (fc included)."""
    rng = np.random.default_rng(seed)
    state = {"conv1.weight": _kernel(rng, (64, 3, 7, 7)), **_bn_state(rng, "bn1", 64)}
    channels = 64
    for layer, (blocks, width) in enumerate(zip(BLOCKS, WIDTHS), start=1):
        for block in range(blocks):
            p = f"layer{layer}.{block}"
            state[f"{p}.conv1.weight"] = _kernel(rng, (width, channels, 3, 3))
            state.update(_bn_state(rng, f"{p}.bn1", width))
            state[f"{p}.conv2.weight"] = _kernel(rng, (width, width, 3, 3))
            state.update(_bn_state(rng, f"{p}.bn2", width))
            if layer > 1 and block == 0:
                state[f"{p}.downsample.0.weight"] = _kernel(rng, (width, channels, 1, 1))
                state.update(_bn_state(rng, f"{p}.downsample.1", width))
            channels = width
    state["fc.weight"] = rng.normal(0, 0.01, (1000, 512)).astype(np.float32)
    state["fc.bias"] = np.zeros(1000, np.float32)
    return state


def reference_albunet3d_state(num_classes: int = 4, nf: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """A random state dict in the published AlbuNet3D's naming (594 keys for 4 classes).

    Encoder convs are 3-D (depth 1) and carry nonzero biases, like the reference code's.
    """
    rng = np.random.default_rng(seed)
    tv = torchvision_resnet34_state(seed + 1)
    state: dict[str, np.ndarray] = {}

    def conv3d(prefix, shape):
        state[f"{prefix}.weight"] = _kernel(rng, shape)
        state[f"{prefix}.bias"] = rng.normal(0, 0.1, shape[0]).astype(np.float32)

    def bn(prefix, channels):
        state.update(_bn_state(rng, prefix, channels))

    state["conv0.0.weight"] = tv["conv1.weight"][:, :, None]
    state["conv0.0.bias"] = rng.normal(0, 0.1, 64).astype(np.float32)
    bn("conv0.1", 64)
    for layer, blocks in enumerate(BLOCKS, start=1):
        for block in range(blocks):
            for conv, norm in (("conv1", "bn1"), ("conv2", "bn2"), ("downsample.0", "downsample.1")):
                key = f"layer{layer}.{block}.{conv}.weight"
                if key in tv:
                    p = f"conv{layer}_{block}"
                    state[f"{p}.{conv}.weight"] = tv[key][:, :, None]
                    state[f"{p}.{conv}.bias"] = rng.normal(0, 0.1, tv[key].shape[0]).astype(np.float32)
                    bn(f"{p}.{norm}", tv[key].shape[0])
    # The reference registers its encoder twice: the same blocks under encoder.layer*, a 2-D stem and fc.
    for key in list(state):
        if key.startswith("conv") and not key.startswith("conv0"):
            layer, rest = key[4:].split("_", 1)
            block, rest = rest.split(".", 1)
            state[f"encoder.layer{layer}.{block}.{rest}"] = state[key]
    state["encoder.conv1.weight"] = tv["conv1.weight"]
    for part in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        state[f"encoder.bn1.{part}"] = tv[f"bn1.{part}"]
    state["encoder.fc.weight"], state["encoder.fc.bias"] = tv["fc.weight"], tv["fc.bias"]

    for n in range(1, 5):
        channels = {1: 512, 2: 8 * nf, 3: 4 * nf, 4: nf}[n]
        conv3d(f"depth{n}.conv", (channels, channels, 3, 1, 1))
        bn(f"depth{n}.bn", channels)
    conv3d("center.conv", (8 * nf, 512, 1, 3, 3))
    bn("center.bn", 8 * nf)
    ups = {5: (512 + 8 * nf, 16 * nf, 8 * nf), 4: (256 + 8 * nf, 16 * nf, 8 * nf), 3: (128 + 8 * nf, 8 * nf, 2 * nf),
           2: (64 + 2 * nf, 4 * nf, 4 * nf), 1: (4 * nf, 4 * nf, nf)}
    for n, (cin, mid, cout) in ups.items():
        conv3d(f"dec{n}.block.0.conv", (mid, cin, 1, 3, 3))
        bn(f"dec{n}.block.0.bn", mid)
        state[f"dec{n}.block.1.weight"] = _kernel(rng, (mid, cout, 1, 4, 4))  # ConvTranspose3d: (I, O, ...)
        state[f"dec{n}.block.1.bias"] = rng.normal(0, 0.1, cout).astype(np.float32)
    conv3d("dec0.conv", (nf, nf, 1, 3, 3))
    bn("dec0.bn", nf)
    conv3d("final", (num_classes, nf, 1, 1, 1))
    return state
