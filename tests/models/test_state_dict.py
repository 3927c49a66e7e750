"""The `.safetensors` reader refuses malformed files as the safetensors package does, on one line naming the tensor."""

import json
import struct

import numpy as np
import pytest

from tfbrats.models import WeightsError
from tfbrats.models.state_dict import read_safetensors

safetensors_numpy = pytest.importorskip("safetensors.numpy")
SafetensorError = pytest.importorskip("safetensors").SafetensorError
DATA = np.arange(4, dtype=np.float32).tobytes()  # 16 bytes


def write(path, header, data: bytes = DATA, announced: int | None = None):
    """A safetensors file: the header's length (or `announced`), the JSON header, then `data`."""
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    path.write_bytes(struct.pack("<Q", len(text) if announced is None else announced) + text + data)
    return path


def tensor(begin: int, end: int, shape: list, dtype: str = "F32") -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


MALFORMED = {
    "header past the end": ({"w": tensor(0, 16, [4])}, DATA, 10**6,
                            r"a header of 1000000 bytes announced, \d+ bytes follow"),
    "header of 2**63 bytes": ({"w": tensor(0, 16, [4])}, DATA, 2**63, r"a header of 9223372036854775808 bytes"),
    "negative offset": ({"w": tensor(-4, 12, [4])}, DATA, None,
                        r"tensor 'w' has data_offsets \[-4, 12\]; expected \[begin, end\] with 0 <= begin <= end"),
    "end before begin": ({"w": tensor(16, 0, [4])}, DATA, None, r"tensor 'w' has data_offsets \[16, 0\]"),
    "past the data": ({"w": tensor(0, 16, [4]), "v": tensor(16, 32, [4])}, DATA, None,
                      r"tensor 'v' ends at byte 32, past the 16 data bytes of the file: truncated"),
    "overlapping": ({"w": tensor(0, 8, [2]), "v": tensor(4, 12, [2]), "u": tensor(12, 16, [1])}, DATA, None,
                    r"tensor 'v' starts at byte 4 and overlaps the tensor before it"),
    "a gap": ({"w": tensor(0, 4, [1]), "v": tensor(8, 16, [2])}, DATA, None,
              r"tensor 'v' starts at byte 8 and leaves bytes 4..8 unused"),
    "bytes after the tensors": ({"w": tensor(0, 8, [2])}, DATA, None,
                                r"the tensors end at byte 8 of 16 data bytes"),
    "shape too large for the bytes": ({"w": tensor(0, 16, [5])}, DATA, None,
                                      r"tensor 'w' of shape \[5\] and dtype F32 needs 20 bytes; its data_offsets "
                                      r"\[0, 16\] hold 16"),
    "dtype too small for the bytes": ({"w": tensor(0, 16, [4], "F16")}, DATA, None, r"needs 8 bytes"),
    "negative size": ({"w": tensor(0, 16, [-4])}, DATA, None, r"tensor 'w' has shape \[-4\]"),
    "unknown dtype": ({"w": tensor(0, 16, [4], "F128")}, DATA, None, r"tensor 'w' has unsupported dtype 'F128'"),
    "entry without offsets": ({"w": {"dtype": "F32", "shape": [4]}}, DATA, None,
                              r"tensor 'w' has header entry .*; expected \{'dtype', 'shape', 'data_offsets'\}"),
    "header not an object": ([1, 2], DATA, None, r"the safetensors header is a JSON list"),
    "header not JSON": (b"{oops", DATA, None, r"unreadable safetensors header"),
}


@pytest.mark.parametrize("fault", MALFORMED)
def test_a_malformed_file_is_refused_on_one_line_naming_file_and_tensor(tmp_path, fault):
    header, data, announced, match = MALFORMED[fault]
    path = write(tmp_path / "w.safetensors", header, data, announced)
    with pytest.raises(WeightsError, match=match) as raised:
        read_safetensors(path)
    assert str(raised.value).startswith(f"{path}: ") and "\n" not in str(raised.value)
    with pytest.raises(SafetensorError):  # the reference reader refuses it too
        safetensors_numpy.load_file(str(path))


def test_a_well_formed_file_reads_as_the_safetensors_package_reads_it(tmp_path):
    header = {"__metadata__": {"format": "pt"}, "v": tensor(8, 16, [1, 2]), "w": tensor(0, 8, [2]),
              "empty": tensor(16, 16, [0, 3])}
    path = write(tmp_path / "w.safetensors", header)
    ours, theirs = read_safetensors(path), safetensors_numpy.load_file(str(path))
    assert sorted(ours) == sorted(theirs) == ["empty", "v", "w"]
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name])
    assert ours["v"].tolist() == [[2.0, 3.0]] and ours["empty"].shape == (0, 3)
