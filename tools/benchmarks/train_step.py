"""``train_step``: one AlbuNet3D Adam step with the multiple Dice loss, fed from memory and by tf.data.

``--baselines`` reruns the in-memory step in subprocesses of ``tools/benchmark.py``: once with
TensorFlow's oneDNN kernels off, once with Keras' own Conv3D layers in place of tfbrats' folded ones.

Example:
    python tools/benchmark.py train_step --patch=8,64,64 --shape=96,96,64 --steps=5 --baselines
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from tfbrats.cli import parse_size

from .common import ALBUNET3D_GFLOP, ENTRY, backend_facts, median_seconds, peak_gflops

HELP = "one AlbuNet3D optimizer step, in memory and fed by tf.data"
BASELINES = (("onednn_off", [], {"TF_ENABLE_ONEDNN_OPTS": "0"}), ("keras_conv3d", ["--keras_conv3d"], {}))
BASELINE_FIELDS = ("in_memory_seconds", "peak_gflops", "ratio_to_peak", "onednn_enabled", "conv_layers")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of ``train_step``: patch, batch, steps, precision, synthetic data, baselines.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_arguments(parser)
        >>> parser.parse_args(["--baselines"]).shape
        (160, 160, 96)
    """
    parser.add_argument("--patch", type=parse_size, default=(24, 128, 128), metavar="D,H,W")
    parser.add_argument("--batch", type=int, default=2, help="global batch size")
    parser.add_argument("--steps", type=int, default=2, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (the median is reported)")
    parser.add_argument("--precision", choices=("float32", "mixed_bfloat16"), default="float32")
    parser.add_argument("--cases", type=int, default=4, help="synthetic cases the pipeline samples")
    parser.add_argument("--shape", type=parse_size, default=(160, 160, 96), metavar="X,Y,Z",
                        help="shape of the synthetic cases")
    parser.add_argument("--baselines", action="store_true",
                        help="also time the in-memory step, each in a subprocess, with TF_ENABLE_ONEDNN_OPTS=0 and "
                             "with Keras' own Conv3D layers in place of tfbrats' folded ones")
    parser.add_argument("--in_memory_only", action="store_true", help=argparse.SUPPRESS)  # a baseline subprocess
    parser.add_argument("--keras_conv3d", action="store_true", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One AlbuNet3D Adam step with the multiple Dice loss, as `tfbrats.train` runs it.

    The step is the training loop's own (`make_step_functions`, default strategy). It is timed
    fed from a batch held in memory and fed by the tf.data pipeline with the default (paper)
    augmentation and half the patches on tumor; their ratio is the input-bound ratio (1.0: the
    model never waits for data). GFLOP count forward + backward as 3x the forward pass.

    Example:
        python tools/benchmark.py train_step --patch=2,32,32 --shape=48,48,32 --cases=2 --steps=1 --repeats=1
    """
    from tfbrats.precision import compute_precision

    with compute_precision(args.precision):  # the model, loss and step as training builds them; restored after
        return _measure(args)


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    """`run`'s measurements, under the precision policy `run` set."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tfbrats.data import AugmentConfig, find_cases, make_dataset, write_synthetic_dataset
    from tfbrats.data.pipeline import resolve_source
    from tfbrats.losses import MultipleDiceLoss
    from tfbrats.models import AlbuNet3D
    from tfbrats.training import make_step_functions

    peak = peak_gflops(5)
    with tempfile.TemporaryDirectory() as scratch:
        write_synthetic_dataset(scratch, args.cases, args.shape, seed=0)
        cases = resolve_source(find_cases(scratch).cases)
    pipeline = make_dataset(cases, args.patch, args.batch, augment=AugmentConfig(), seed=0, foreground_fraction=0.5)
    in_memory = tf.data.Dataset.from_tensors(next(iter(pipeline))).repeat()

    strategy = tf.distribute.get_strategy()
    # The baseline --keras_conv3d: the same graph built from Keras' own (unfolded) Conv3D layers.
    model = AlbuNet3D(num_classes=4, conv="keras" if args.keras_conv3d else "folded")
    train_step, _ = make_step_functions(model, keras.optimizers.Adam(1e-3), MultipleDiceLoss(4), strategy)

    def seconds_per_step(dataset: Any) -> tuple[float, list[float]]:
        iterator = iter(strategy.experimental_distribute_dataset(dataset))

        def steps() -> None:
            for _ in range(args.steps):
                float(train_step(next(iterator))[0])

        seconds, times = median_seconds(steps, args.repeats, warmup=1)
        return seconds / args.steps, [t / args.steps for t in times]

    # which convolutions the step runs: tfbrats' folded layers, or Keras' own with --keras_conv3d
    layer_classes = (type(layer).__name__ for layer in model.layers)
    conv_layers = collections.Counter(name for name in layer_classes if "Conv3D" in name)
    step_gflop = 3 * ALBUNET3D_GFLOP * args.batch * int(np.prod(args.patch)) / (24 * 128 * 128)
    memory, memory_times = seconds_per_step(in_memory)
    results: dict[str, Any] = {
        "benchmark": "train_step", **backend_facts(), "precision": args.precision, "batch": args.batch,
        "patch": list(args.patch), "step_gflop": round(step_gflop, 2), "peak_gflops": round(peak, 1),
        "in_memory_seconds": round(memory, 3), "gflops": round(step_gflop / memory, 1),
        "ratio_to_peak": round(step_gflop / memory / peak, 3), "in_memory_times": [round(t, 3) for t in memory_times],
        "conv_layers": dict(sorted(conv_layers.items())),
    }
    if args.in_memory_only:
        return results
    fed, fed_times = seconds_per_step(pipeline)
    results.update({
        "pipeline_seconds": round(fed, 3), "input_bound_ratio": round(fed / memory, 3),
        "pipeline_times": [round(t, 3) for t in fed_times],
    })
    if args.baselines:
        for name, baseline in run_baselines(args).items():
            results[name] = {key: baseline[key] for key in BASELINE_FIELDS}
            results[f"speedup_over_{name}"] = round(baseline["in_memory_seconds"] / memory, 2)
    return results


def run_baselines(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Runs the in-memory step of `args` in one subprocess of ``tools/benchmark.py`` per baseline.

    Args:
        args: The parsed ``train_step`` arguments.

    Returns:
        Each baseline's name and its printed figures.

    Example:
        run_baselines(args)["onednn_off"]["onednn_enabled"]  # False
    """
    command = [sys.executable, str(ENTRY), "train_step", "--in_memory_only",
               f"--patch={','.join(map(str, args.patch))}", f"--batch={args.batch}", f"--steps={args.steps}",
               f"--repeats={args.repeats}", f"--precision={args.precision}", f"--cases={args.cases}",
               f"--shape={','.join(map(str, args.shape))}"]
    figures = {}
    for name, extra, environment in BASELINES:
        finished = subprocess.run(command + extra, capture_output=True, text=True, env={**os.environ, **environment})
        if finished.returncode != 0:
            raise RuntimeError(f"train_step baseline {name} ({' '.join(command + extra)}) failed with exit code "
                               f"{finished.returncode}; expected 0. Its error output:\n{finished.stderr[-4000:]}")
        figures[name] = json.loads(finished.stdout)
    return figures
