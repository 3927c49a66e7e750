"""``windows``: sliding-window prediction of a BraTS-size brain held in memory, per window mode.

Example:
    python tools/benchmark.py windows --batch=4 --repeats=4
"""

from __future__ import annotations

import argparse
from typing import Any

from tfbrats.cli import parse_size

from .common import add_model_arguments, albunet3d, backend_facts, median_seconds

HELP = "sliding-window prediction of a BraTS-size brain in memory"
MODES: dict[str, dict[str, tuple[int, int, int]]] = {
    "paper_windows": {"patch_size": (24, 128, 128), "steps": (24, 32, 32)},
    "half_overlap": {"patch_size": (24, 128, 128), "steps": (24, 64, 64)},
    "no_overlap": {"patch_size": (24, 128, 128), "steps": (24, 128, 128)},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of ``windows``: those of ``forward`` and the brain's ``--volume``.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_arguments(parser)
        >>> parser.parse_args([]).volume
        (140, 170, 140)
    """
    add_model_arguments(parser)
    parser.add_argument("--volume", type=parse_size, default=(140, 170, 140), metavar="D,H,W",
                        help="cropped brain of a BraTS case in tfbrats axes (default: about BraTS' brain box)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Sliding-window prediction of a BraTS-size brain held in memory (no file I/O), per mode.

    Reports each mode's seconds, windows, seconds per window, and the overhead over the pure
    forward time of that many windows, measured in the same run.

    Example:
        python tools/benchmark.py windows --volume=24,128,128 --repeats=1
    """
    import keras
    import numpy as np

    from tfbrats.inference import sliding_window

    model = albunet3d(args.precision)
    volume = np.random.default_rng(0).normal(size=(*args.volume, 3)).astype("float32")
    window = np.zeros((args.batch, 24, 128, 128, 3), "float32")
    forward, _ = median_seconds(lambda: model.predict_on_batch(window), args.repeats, warmup=2)
    calls = []

    def predictor(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape[0])
        return keras.ops.convert_to_numpy(keras.ops.softmax(model.predict_on_batch(batch), axis=-1))

    results: dict[str, Any] = {
        "benchmark": "windows", **backend_facts(), "precision": args.precision, "volume": list(args.volume),
        "batch": args.batch, "forward_seconds_per_batch": round(forward, 4),
    }
    repeats = max(1, args.repeats // 2)
    for name, settings in MODES.items():
        calls.clear()
        seconds, _ = median_seconds(
            lambda settings=settings: sliding_window(volume, predictor, batch_size=args.batch, **settings),
            repeats, warmup=1,
        )
        windows = sum(calls) // (1 + repeats)
        pure = forward * len(calls) / (1 + repeats)
        results[name] = {
            "seconds": round(seconds, 3), "windows": windows, "seconds_per_window": round(seconds / windows, 4),
            "overhead_over_forward": round(seconds / pure - 1, 3), **{k: list(v) for k, v in settings.items()},
        }
    return results
