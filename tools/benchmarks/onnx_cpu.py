"""``onnx``: one AlbuNet3D window in onnxruntime (CPU) against TensorFlow, as `tfbrats.predict` runs it.

The module is not named ``onnx`` so that it can never stand in for the ``onnx`` package.

Example:
    python tools/benchmark.py onnx --repeats=5
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from tfbrats.cli import parse_size

from .common import backend_facts, median_seconds

HELP = "one AlbuNet3D window in onnxruntime vs TensorFlow on the CPU"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of ``onnx``: repeats, batch and patch.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_arguments(parser)
        >>> parser.parse_args(["--patch=8,32,32"]).patch
        (8, 32, 32)
    """
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (the median is reported)")
    parser.add_argument("--batch", type=int, default=1, help="windows per call")
    parser.add_argument("--patch", type=parse_size, default=(24, 128, 128), metavar="D,H,W")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One window of AlbuNet3D (softmax) in onnxruntime (CPU) vs TensorFlow, as `tfbrats.predict` runs it.

    The model is exported with `tfbrats.serving.export.export_onnx` (tf2onnx) into a scratch
    folder; both runtimes get the same weights and input, and the largest difference of their
    probabilities is reported beside the times.

    Example:
        python tools/benchmark.py onnx --patch=8,32,32 --repeats=1
    """
    import numpy as np
    import onnxruntime

    from tfbrats.contract import SegmentationContract, Window
    from tfbrats.inference.model import make_predictor
    from tfbrats.models import AlbuNet3D
    from tfbrats.serving.export import export_onnx

    model = AlbuNet3D(num_classes=4, head="softmax")
    contract = SegmentationContract(window=Window(patch_size=tuple(args.patch)))  # 4 classes, 3 channels
    x = np.random.default_rng(0).normal(size=(args.batch, *args.patch, 3)).astype("float32")
    with tempfile.TemporaryDirectory() as scratch:
        folder = export_onnx(model, Path(scratch) / "albunet3d", 1, contract)
        session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    tensorflow = make_predictor(model, contract.target)
    onnx_seconds, onnx_times = median_seconds(lambda: session.run(None, {"image": x}), args.repeats, warmup=2)
    tf_seconds, tf_times = median_seconds(lambda: tensorflow(x), args.repeats, warmup=2)
    difference = np.abs(session.run(None, {"image": x})[0] - tensorflow(x)).max()
    return {
        "benchmark": "onnx", **backend_facts(), "onnxruntime": onnxruntime.__version__, "batch": args.batch,
        "patch": list(args.patch), "onnxruntime_seconds": round(onnx_seconds, 4),
        "tensorflow_seconds": round(tf_seconds, 4), "tensorflow_over_onnxruntime": round(tf_seconds / onnx_seconds, 3),
        "max_abs_difference": float(difference), "onnxruntime_times": [round(t, 4) for t in onnx_times],
        "tensorflow_times": [round(t, 4) for t in tf_times],
    }
