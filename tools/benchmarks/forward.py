"""``peak`` and ``forward``: the Conv2D ceiling, and AlbuNet3D's forward pass measured against it.

Example:
    python tools/benchmark.py forward --repeats=5 --precision=mixed_bfloat16
"""

from __future__ import annotations

import argparse
from typing import Any

from .common import ALBUNET3D_GFLOP, add_model_arguments, albunet3d, backend_facts, median_seconds, peak_gflops

HELP = "AlbuNet3D forward on 24x128x128 windows"
PEAK_HELP = "GFLOP/s of one large Conv2D: the ceiling"
add_arguments = add_model_arguments


def run_peak(args: argparse.Namespace) -> dict[str, Any]:
    """The Conv2D ceiling that the model figures are divided by.

    Example:
        python tools/benchmark.py peak --repeats=5
    """
    return {"benchmark": "peak", **backend_facts(), "gflops": round(peak_gflops(args.repeats), 1)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """AlbuNet3D forward pass on 24x128x128 windows: seconds, GFLOP/s and the ratio to `peak` of the same run.

    Example:
        python tools/benchmark.py forward --repeats=5 --batch=2
    """
    import numpy as np

    peak = peak_gflops(args.repeats)
    model = albunet3d(args.precision)
    x = np.random.default_rng(0).normal(size=(args.batch, 24, 128, 128, 3)).astype("float32")
    seconds, times = median_seconds(lambda: model.predict_on_batch(x), args.repeats, warmup=2)
    gflops = ALBUNET3D_GFLOP * args.batch / seconds
    return {
        "benchmark": "forward", **backend_facts(), "precision": args.precision, "batch": args.batch,
        "seconds": round(seconds, 4), "seconds_per_window": round(seconds / args.batch, 4),
        "gflops": round(gflops, 1), "peak_gflops": round(peak, 1), "ratio_to_peak": round(gflops / peak, 3),
        "times": [round(t, 4) for t in times],
    }
