"""tools/convert_tftrt.py stops at once, with exit status 2 and a message, where TF-TRT cannot run."""

import ctypes
from pathlib import Path

import pytest

from tests.serving.conftest import run_tool


def tensorrt_loadable() -> bool:
    try:
        ctypes.CDLL("libnvinfer.so.8")
    except OSError:
        return False
    return True


@pytest.mark.skipif(tensorrt_loadable(), reason="TensorRT is present: the conversion itself would run")
def test_missing_tensorrt_exits_2_and_writes_nothing(tmp_path: Path):
    output = tmp_path / "albunet3d_trt" / "1"
    done = run_tool("convert_tftrt.py", "--input", str(tmp_path / "albunet3d" / "1"), "--output", str(output),
                    "--precision", "FP16")
    assert done.returncode == 2
    assert "nothing was written" in done.stderr and "libnvinfer.so.8" in done.stderr
    assert list(tmp_path.iterdir()) == []
