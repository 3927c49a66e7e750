"""Reading torch-style state dicts: `.safetensors` with numpy alone, `.pth` with torch if installed."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

WEIGHTS_HELP = (
    "ImageNet ResNet34 weights in torchvision's format come from torchvision "
    "(resnet34-b627a593.pth, saved by `torchvision.models.resnet34(weights='IMAGENET1K_V1')`) or from "
    "timm's resnet34.tv_in1k (model.safetensors, the same weights); convert either once with "
    "`python tools/convert_weights.py --input FILE --output encoder.weights.h5`."
)

_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


class WeightsError(ValueError):
    """A weights file that does not fit the model: missing key, wrong shape, unreadable file."""


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a `.safetensors` file into numpy arrays (no torch, no safetensors package needed).

    Args:
        path: the file.

    Returns:
        Mapping of tensor name to array (bfloat16 is widened to float32).

    Example:
        >>> import tempfile
        >>> header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
        >>> path = Path(tempfile.mkdtemp()) / "tiny.safetensors"
        >>> _ = path.write_bytes(struct.pack("<Q", len(header)) + header + np.float32([1.5, -2]).tobytes())
        >>> read_safetensors(path)["w"]
        array([ 1.5, -2. ], dtype=float32)
    """
    data = Path(path).read_bytes()
    if len(data) < 8:
        raise WeightsError(f"{path}: not a safetensors file (only {len(data)} bytes)")
    (header_size,) = struct.unpack("<Q", data[:8])
    if 8 + header_size > len(data):
        raise WeightsError(f"{path}: not a safetensors file or truncated (header of {header_size} bytes announced)")
    try:
        header = json.loads(data[8 : 8 + header_size])
    except ValueError as error:
        raise WeightsError(f"{path}: unreadable safetensors header ({error})") from None
    body = memoryview(data)[8 + header_size :]
    state = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        if end > len(body):
            raise WeightsError(f"{path}: tensor {name!r} ends at byte {end}, past the end of the file: truncated")
        raw = body[begin:end]
        if entry["dtype"] == "BF16":
            array = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif entry["dtype"] in _SAFETENSORS_DTYPES:
            array = np.frombuffer(raw, _SAFETENSORS_DTYPES[entry["dtype"]])
        else:
            raise WeightsError(f"{path}: tensor {name!r} has unsupported dtype {entry['dtype']}")
        state[name] = array.reshape(entry["shape"]).copy()
    return state


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise WeightsError(
            f"{path}: reading .pth files needs PyTorch (`pip install -e '.[torch]'`), "
            "or convert the file to .safetensors elsewhere"
        ) from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict (name -> tensor), found {type(state).__name__}")
    return {name: value.detach().cpu().numpy() for name, value in state.items() if hasattr(value, "detach")}


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a torch-style state dict from `.safetensors` (numpy) or `.pth`/`.pt` (needs torch).

    Args:
        path: the weights file.

    Returns:
        Mapping of torch key (e.g. "layer1.0.conv1.weight") to numpy array.

    Example:
        >>> read_state_dict("resnet34-b627a593.pth")["fc.weight"].shape  # doctest: +SKIP
        (1000, 512)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}. {WEIGHTS_HELP}")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if path.suffix in (".pth", ".pt", ".bin"):
        return _read_torch(path)
    raise WeightsError(f"{path}: unknown weights format {path.suffix!r}; expected .safetensors, .pth or .weights.h5")
