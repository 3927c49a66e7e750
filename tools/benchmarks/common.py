"""Timing, machine and backend facts, the Conv2D ceiling and the AlbuNet3D FLOP figure every benchmark shares.

Example:
    seconds, times = median_seconds(lambda: sum(range(100)), repeats=3)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ALBUNET3D_GFLOP = 90.66  # one 24x128x128 forward pass (a multiply-add counts 2)
ENTRY = Path(__file__).resolve().parents[1] / "benchmark.py"  # what sub-commands run in their subprocesses
REPOSITORY = Path(__file__).resolve().parents[2]


def median_seconds(function: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of `function()` over `repeats` calls after `warmup` untimed calls.

    Args:
        function: What to time, called without arguments.
        repeats: Timed calls (at least 1).
        warmup: Untimed calls first.

    Returns:
        The median in seconds and every timed call's seconds.

    Example:
        >>> seconds, times = median_seconds(lambda: sum(range(1000)), repeats=3)
        >>> len(times), seconds in times
        (3, True)
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1; got {repeats}")
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def backend_facts() -> dict[str, Any]:
    """The Keras backend and version, its device, and for TensorFlow whether its oneDNN kernels are on.

    Example:
        backend_facts()["backend"]
        # -> 'tensorflow'
    """
    import keras

    facts: dict[str, Any] = {"backend": keras.backend.backend(), "keras": keras.__version__}
    if facts["backend"] == "jax":
        import jax

        facts["device"] = str(jax.devices()[0].device_kind)
    else:
        import tensorflow as tf
        from tensorflow.python.util import _pywrap_util_port  # TensorFlow's own answer: are oneDNN kernels on?

        facts["device"] = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU x{os.cpu_count()}"
        facts["tf_enable_onednn_opts"] = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
        facts["onednn_enabled"] = bool(_pywrap_util_port.IsMklEnabled())
    return facts


def machine_facts() -> dict[str, Any]:
    """The commit and the CPU a run measured: `lscpu`'s model name and its AVX512 / AVX512_BF16 flags.

    The commit gets ``-dirty`` when tracked files under ``tfbrats/`` or ``tools/`` have changes.

    Example:
        >>> sorted(machine_facts())
        ['avx512', 'avx512_bf16', 'commit', 'cpu_count', 'cpu_model']
    """
    from tfbrats.inference.modes import cpu_info

    model, flags = cpu_info()

    def git(*arguments: str) -> str:
        finished = subprocess.run(["git", "-C", str(REPOSITORY), *arguments], capture_output=True, text=True)
        return finished.stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "tfbrats", "tools")
    return {"commit": commit + ("-dirty" if dirty else ""), "cpu_model": model, "avx512": "avx512f" in flags,
            "avx512_bf16": "avx512_bf16" in flags, "cpu_count": os.cpu_count()}


def peak_gflops(repeats: int) -> float:
    """GFLOP/s of one large float32 Conv2D (24x64x64x64 -> 64, 3x3): the practical ceiling.

    Args:
        repeats: Timed calls; the median is used.

    Example:
        peak_gflops(5) > 0
        # -> True
    """
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = keras.ops.convert_to_tensor(rng.normal(size=(24, 64, 64, 64)).astype("float32"))
    kernel = keras.ops.convert_to_tensor(rng.normal(size=(3, 3, 64, 64)).astype("float32"))
    flop = 2 * 24 * 64 * 64 * 64 * 64 * 9

    def conv(a, b):
        return keras.ops.conv(a, b, padding="same")

    if keras.backend.backend() == "jax":  # eager JAX dispatch would measure Python, not the device
        import jax

        conv = jax.jit(conv)
    seconds, _ = median_seconds(lambda: keras.ops.convert_to_numpy(conv(x, kernel)), repeats, warmup=2)
    return flop / seconds / 1e9


def albunet3d(precision: str, **options: Any) -> Any:
    """A random AlbuNet3D with 4 classes whose layers compute in `precision`; the global policy is restored.

    Args:
        precision: ``float32`` or ``mixed_bfloat16``.
        **options: Further `AlbuNet3D` arguments (``conv``, ``head``).

    Example:
        albunet3d("mixed_bfloat16").compute_dtype
        # -> 'bfloat16'
    """
    from tfbrats.models import AlbuNet3D
    from tfbrats.precision import compute_precision

    with compute_precision(precision):
        return AlbuNet3D(num_classes=4, **options)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--repeats``, ``--batch`` and ``--precision``: the arguments of ``peak``, ``forward`` and ``windows``.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_model_arguments(parser)
        >>> parser.parse_args(["--batch", "2"]).precision
        'float32'
    """
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (the median is reported)")
    parser.add_argument("--batch", type=int, default=1, help="windows per forward pass")
    parser.add_argument("--precision", choices=("float32", "mixed_bfloat16"), default="float32")
