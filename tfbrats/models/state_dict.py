"""Reading torch-style state dicts: `.safetensors` with numpy alone, `.pth` with torch if installed."""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import numpy as np

WEIGHTS_HELP = (
    "ImageNet ResNet34 weights in torchvision's format come from torchvision "
    "(resnet34-b627a593.pth, saved by `torchvision.models.resnet34(weights='IMAGENET1K_V1')`) or from "
    "timm's resnet34.tv_in1k (model.safetensors, the same weights); convert either once with "
    "`python tools/convert_weights.py --input=FILE --output=encoder.weights.h5`."
)

_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
# The safetensors package refuses longer headers.
SAFETENSORS_MAX_HEADER = 100_000_000


class WeightsError(ValueError):
    """A weights file that does not fit the model: missing key, wrong shape, unreadable file."""


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tensor_bytes(path: Path, name: str, entry, data_size: int) -> tuple[int, int, str, list[int]]:
    """(begin, end, dtype, shape) of one header entry, once they describe bytes inside the data."""
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
        raise WeightsError(f"{path}: tensor {name!r} has header entry {str(entry)[:80]}; expected "
                           "{'dtype', 'shape', 'data_offsets'}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    ranged = isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))
    if not ranged or offsets[1] < offsets[0]:
        raise WeightsError(f"{path}: tensor {name!r} has data_offsets {offsets}; expected [begin, end] with "
                           "0 <= begin <= end")
    begin, end = offsets
    if end > data_size:
        raise WeightsError(f"{path}: tensor {name!r} ends at byte {end}, past the {data_size} data bytes of the "
                           "file: truncated or a wrong header")
    if dtype != "BF16" and dtype not in _SAFETENSORS_DTYPES:
        raise WeightsError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}; expected one of "
                           f"{sorted(_SAFETENSORS_DTYPES) + ['BF16']}")
    if not isinstance(shape, list) or not all(map(_is_count, shape)):
        raise WeightsError(f"{path}: tensor {name!r} has shape {shape}; expected a list of sizes >= 0")
    itemsize = 2 if dtype == "BF16" else np.dtype(_SAFETENSORS_DTYPES[dtype]).itemsize
    if math.prod(shape) * itemsize != end - begin:
        raise WeightsError(f"{path}: tensor {name!r} of shape {shape} and dtype {dtype} needs "
                           f"{math.prod(shape) * itemsize} bytes; its data_offsets [{begin}, {end}] hold {end - begin}")
    return begin, end, dtype, shape


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a `.safetensors` file into numpy arrays (no torch, no safetensors package needed).

    The file is checked as the format prescribes before any tensor is made: a header length
    within the file, a JSON object of entries whose dtype and shape match their byte range, and
    ranges that tile the data in order, with no gap, overlap or byte past the end.

    Args:
        path: the file.

    Returns:
        Mapping of tensor name to array (bfloat16 is widened to float32).

    Raises:
        WeightsError: A malformed or truncated file; one line naming the file and the tensor.

    Example:
        >>> import tempfile
        >>> header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
        >>> path = Path(tempfile.mkdtemp()) / "tiny.safetensors"
        >>> _ = path.write_bytes(struct.pack("<Q", len(header)) + header + np.float32([1.5, -2]).tobytes())
        >>> read_safetensors(path)["w"]
        array([ 1.5, -2. ], dtype=float32)
    """
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 8:
        raise WeightsError(f"{path}: not a safetensors file (only {len(data)} bytes)")
    (header_size,) = struct.unpack("<Q", data[:8])
    if header_size > min(SAFETENSORS_MAX_HEADER, len(data) - 8):
        raise WeightsError(f"{path}: not a safetensors file or truncated (a header of {header_size} bytes announced, "
                           f"{len(data) - 8} bytes follow)")
    try:
        header = json.loads(data[8 : 8 + header_size])
    except ValueError as error:
        raise WeightsError(f"{path}: unreadable safetensors header ({error})") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: the safetensors header is a JSON {type(header).__name__}; expected an object "
                           "of tensors")
    body = memoryview(data)[8 + header_size :]
    tensors = {name: _tensor_bytes(path, name, entry, len(body))
               for name, entry in header.items() if name != "__metadata__"}
    covered = 0
    for name, (begin, end, _, _) in sorted(tensors.items(), key=lambda item: item[1][:2]):
        if begin != covered:
            problem = "overlaps the tensor before it" if begin < covered else f"leaves bytes {covered}..{begin} unused"
            raise WeightsError(f"{path}: tensor {name!r} starts at byte {begin} and {problem}; expected tensors to "
                               "follow one another in the data")
        covered = end
    if covered != len(body):
        raise WeightsError(f"{path}: the tensors end at byte {covered} of {len(body)} data bytes; expected them to "
                           "cover the data to its end")
    state = {}
    for name, (begin, end, dtype, shape) in tensors.items():
        raw = body[begin:end]
        if dtype == "BF16":
            array = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            array = np.frombuffer(raw, _SAFETENSORS_DTYPES[dtype])
        state[name] = array.reshape(shape).copy()
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
        >>> import tempfile
        >>> from safetensors.numpy import save_file
        >>> tmp = tempfile.TemporaryDirectory()
        >>> save_file({"fc.weight": np.zeros((1000, 512), np.float32)}, f"{tmp.name}/resnet34.safetensors")
        >>> read_state_dict(f"{tmp.name}/resnet34.safetensors")["fc.weight"].shape
        (1000, 512)
        >>> tmp.cleanup()
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}. {WEIGHTS_HELP}")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if path.suffix in (".pth", ".pt", ".bin"):
        return _read_torch(path)
    raise WeightsError(f"{path}: unknown weights format {path.suffix!r}; expected .safetensors, .pth or .weights.h5")
