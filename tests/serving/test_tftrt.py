"""tools/convert_tftrt.py stops at once, with exit status 2 and a message, where TF-TRT cannot run."""

import ctypes
import importlib.metadata
from pathlib import Path

import pytest

from tests.serving.conftest import run_tool

TENSORFLOW = tuple(int(part) for part in importlib.metadata.version("tensorflow").split(".")[:2])
HAS_TFTRT = TENSORFLOW <= (2, 17)


def tensorrt_loadable() -> bool:
    try:
        ctypes.CDLL("libnvinfer.so.8")
    except OSError:
        return False
    return True


def convert(tmp_path: Path):
    return run_tool("convert_tftrt.py", "--input", str(tmp_path / "albunet3d" / "1"),
                    "--output", str(tmp_path / "albunet3d_trt" / "1"), "--precision", "FP16")


@pytest.mark.skipif(not HAS_TFTRT, reason="TensorFlow 2.18+ has no TF-TRT (the next test covers it)")
@pytest.mark.skipif(tensorrt_loadable(), reason="TensorRT is present: the conversion itself would run")
def test_missing_tensorrt_exits_2_and_writes_nothing(tmp_path: Path):
    done = convert(tmp_path)
    assert done.returncode == 2
    assert "nothing was written" in done.stderr and "libnvinfer.so.8" in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(HAS_TFTRT, reason="this TensorFlow has TF-TRT (the previous test covers it)")
def test_tensorflow_without_tftrt_names_the_versions_and_the_onnx_route(tmp_path: Path):
    done = convert(tmp_path)
    assert done.returncode == 2
    assert "nothing was written" in done.stderr
    assert "removed after TensorFlow 2.17" in done.stderr and "tfbrats[tftrt]" in done.stderr
    assert "--format=onnx" in done.stderr
    assert list(tmp_path.iterdir()) == []
