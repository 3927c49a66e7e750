"""Benchmarks that print their figures as JSON: ``python tools/benchmark.py <sub-command> ...``.

Each sub-command is registered in `SUBCOMMANDS` by name with a function that adds its
arguments to an argparse parser and a function that runs it and returns a JSON-able dict.

Example:
    python tools/benchmark.py data --patch 16 64 64 --batch 2
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tfbrats  # noqa: F401  (sets TensorFlow's CPU defaults before TensorFlow loads)

Runner = Callable[[argparse.Namespace], dict[str, Any]]


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``data`` sub-command."""
    parser.add_argument("--data_dir", type=Path, help="dataset root or cache folder (default: synthetic cases)")
    parser.add_argument("--cases", type=int, default=4, help="synthetic cases to make when --data_dir is not given")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=(128, 128, 80),
        metavar=("X", "Y", "Z"),
        help="shape of the synthetic cases",
    )
    parser.add_argument("--patch", type=int, nargs=3, default=(24, 128, 128), metavar=("D", "H", "W"))
    parser.add_argument("--batch", type=int, default=2, help="batch size")
    parser.add_argument("--batches", type=int, default=10, help="timed batches per repeat")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (the median is reported)")


def _patches_per_second(dataset: Any, batch: int, batches: int, warmup: int, repeats: int) -> list[float]:
    """Times `repeats` runs of `batches` batches from one iterator after `warmup` batches."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        rates.append(batches * batch / (time.perf_counter() - started))
    return rates


def run_data(args: argparse.Namespace) -> dict[str, Any]:
    """Patches per second of `make_dataset`, without and with the default augmentation."""
    from tfbrats.data import AugmentConfig, find_cases, make_dataset, write_synthetic_dataset
    from tfbrats.data.pipeline import resolve_source

    with tempfile.TemporaryDirectory() as scratch:
        if args.data_dir is None:
            write_synthetic_dataset(scratch, args.cases, args.shape, seed=0)
            source: Any = find_cases(scratch).cases
        elif (args.data_dir / "settings.json").is_file():
            source = str(args.data_dir)
        else:
            source = find_cases(args.data_dir).cases
        cases = resolve_source(source)  # loaded before the scratch folder goes
    results: dict[str, Any] = {
        "benchmark": "data",
        "cases": len(cases),
        "patch": list(args.patch),
        "batch": args.batch,
        "cpu_count": os.cpu_count(),
    }
    for name, augment in (("plain", None), ("augmented", AugmentConfig())):
        dataset = make_dataset(cases, args.patch, args.batch, augment=augment, seed=0)
        rates = _patches_per_second(dataset, args.batch, args.batches, args.warmup, args.repeats)
        results[f"{name}_patches_per_s"] = round(statistics.median(rates), 3)
        results[f"{name}_repeats"] = [round(r, 3) for r in rates]
    results["augmented_over_plain"] = round(results["augmented_patches_per_s"] / results["plain_patches_per_s"], 4)
    return results


ALBUNET3D_GFLOP = 90.66  # one 24x128x128 forward pass (a multiply-add counts 2)


def _median_seconds(function: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of `function()` over `repeats` calls after `warmup` untimed calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def _backend_facts() -> dict[str, Any]:
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

    Example:
        >>> sorted(machine_facts())  # doctest: +SKIP
        ['avx512', 'avx512_bf16', 'commit', 'cpu_count', 'cpu_model']
    """
    import subprocess

    model, flags = "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())

    def git(*arguments: str) -> str:
        repo = Path(__file__).resolve().parents[1]
        return subprocess.run(["git", "-C", str(repo), *arguments], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "tfbrats", "tools")
    return {"commit": commit + ("-dirty" if dirty else ""), "cpu_model": model, "avx512": "avx512f" in flags,
            "avx512_bf16": "avx512_bf16" in flags, "cpu_count": os.cpu_count()}


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (the median is reported)")
    parser.add_argument("--batch", type=int, default=1, help="windows per forward pass")
    parser.add_argument("--precision", choices=("float32", "mixed_bfloat16"), default="float32")


def _peak_gflops(repeats: int) -> float:
    """GFLOP/s of one large float32 Conv2D (24x64x64x64 -> 64, 3x3): the practical ceiling."""
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
    seconds, _ = _median_seconds(lambda: keras.ops.convert_to_numpy(conv(x, kernel)), repeats, warmup=2)
    return flop / seconds / 1e9


def run_peak(args: argparse.Namespace) -> dict[str, Any]:
    """The Conv2D ceiling that the model figures are divided by."""
    return {"benchmark": "peak", **_backend_facts(), "gflops": round(_peak_gflops(args.repeats), 1)}


def _albunet3d(precision: str):
    import keras

    from tfbrats.models import AlbuNet3D

    keras.mixed_precision.set_global_policy(precision)
    return AlbuNet3D(num_classes=4)


def run_forward(args: argparse.Namespace) -> dict[str, Any]:
    """AlbuNet3D forward pass on 24x128x128 windows: seconds, GFLOP/s and the ratio to `peak`."""
    import numpy as np

    peak = _peak_gflops(args.repeats)
    model = _albunet3d(args.precision)
    x = np.random.default_rng(0).normal(size=(args.batch, 24, 128, 128, 3)).astype("float32")
    seconds, times = _median_seconds(lambda: model.predict_on_batch(x), args.repeats, warmup=2)
    gflops = ALBUNET3D_GFLOP * args.batch / seconds
    return {
        "benchmark": "forward", **_backend_facts(), "precision": args.precision, "batch": args.batch,
        "seconds": round(seconds, 4), "seconds_per_window": round(seconds / args.batch, 4),
        "gflops": round(gflops, 1), "peak_gflops": round(peak, 1), "ratio_to_peak": round(gflops / peak, 3),
        "times": [round(t, 4) for t in times],
    }


def _add_train_step_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patch", type=int, nargs=3, default=(24, 128, 128), metavar=("D", "H", "W"))
    parser.add_argument("--batch", type=int, default=2, help="global batch size")
    parser.add_argument("--steps", type=int, default=2, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (the median is reported)")
    parser.add_argument("--precision", choices=("float32", "mixed_bfloat16"), default="float32")
    parser.add_argument("--cases", type=int, default=4, help="synthetic cases the pipeline samples")
    parser.add_argument("--shape", type=int, nargs=3, default=(160, 160, 96), metavar=("X", "Y", "Z"),
                        help="shape of the synthetic cases")
    parser.add_argument("--baselines", action="store_true",
                        help="also time the in-memory step, each in a subprocess, with TF_ENABLE_ONEDNN_OPTS=0 and "
                             "with Keras' own Conv3D layers in place of tfbrats' folded ones")
    parser.add_argument("--in_memory_only", action="store_true", help=argparse.SUPPRESS)  # a baseline subprocess
    parser.add_argument("--keras_conv3d", action="store_true", help=argparse.SUPPRESS)


def run_train_step(args: argparse.Namespace) -> dict[str, Any]:
    """One AlbuNet3D Adam step with the multiple Dice loss, as `tfbrats.train` runs it.

    The step is the training loop's own (`make_step_functions`, default strategy). It is timed
    fed from a batch held in memory and fed by the tf.data pipeline with the default (paper)
    augmentation and half the patches on tumor; their ratio is the input-bound ratio (1.0: the
    model never waits for data). GFLOP count forward + backward as 3x the forward pass.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from tfbrats.data import AugmentConfig, find_cases, make_dataset, write_synthetic_dataset
    from tfbrats.data.pipeline import resolve_source
    from tfbrats.losses import MultipleDiceLoss
    from tfbrats.models import AlbuNet3D
    from tfbrats.training import make_step_functions

    peak = _peak_gflops(5)
    with tempfile.TemporaryDirectory() as scratch:
        write_synthetic_dataset(scratch, args.cases, args.shape, seed=0)
        cases = resolve_source(find_cases(scratch).cases)
    pipeline = make_dataset(cases, args.patch, args.batch, augment=AugmentConfig(), seed=0, foreground_fraction=0.5)
    in_memory = tf.data.Dataset.from_tensors(next(iter(pipeline))).repeat()

    keras.mixed_precision.set_global_policy(args.precision)
    strategy = tf.distribute.get_strategy()
    # The baseline --keras_conv3d: the same graph built from Keras' own (unfolded) Conv3D layers.
    model = AlbuNet3D(num_classes=4, conv="keras" if args.keras_conv3d else "folded")
    train_step, _ = make_step_functions(model, keras.optimizers.Adam(1e-3), MultipleDiceLoss(4), strategy)

    def seconds_per_step(dataset: Any) -> tuple[float, list[float]]:
        iterator = iter(strategy.experimental_distribute_dataset(dataset))

        def steps() -> None:
            for _ in range(args.steps):
                float(train_step(next(iterator))[0])

        seconds, times = _median_seconds(steps, args.repeats, warmup=1)
        return seconds / args.steps, [t / args.steps for t in times]

    # which convolutions the step runs: tfbrats' folded layers, or Keras' own with --keras_conv3d
    layer_classes = (type(layer).__name__ for layer in model.layers)
    conv_layers = collections.Counter(name for name in layer_classes if "Conv3D" in name)
    step_gflop = 3 * ALBUNET3D_GFLOP * args.batch * int(np.prod(args.patch)) / (24 * 128 * 128)
    memory, memory_times = seconds_per_step(in_memory)
    results: dict[str, Any] = {
        "benchmark": "train_step", **_backend_facts(), "precision": args.precision, "batch": args.batch,
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
        import subprocess

        command = [sys.executable, __file__, "train_step", "--in_memory_only", "--patch", *map(str, args.patch),
                   f"--batch={args.batch}", f"--steps={args.steps}", f"--repeats={args.repeats}",
                   f"--precision={args.precision}", f"--cases={args.cases}", "--shape", *map(str, args.shape)]
        for name, extra, environment in (("onednn_off", [], {"TF_ENABLE_ONEDNN_OPTS": "0"}),
                                         ("keras_conv3d", ["--keras_conv3d"], {})):
            finished = subprocess.run(command + extra, capture_output=True, text=True, check=True,
                                      env={**os.environ, **environment})
            baseline = json.loads(finished.stdout)
            results[name] = {k: baseline[k] for k in ("in_memory_seconds", "peak_gflops", "ratio_to_peak",
                                                      "onednn_enabled", "conv_layers")}
            results[f"speedup_over_{name}"] = round(baseline["in_memory_seconds"] / memory, 2)
    return results


def _add_windows_arguments(parser: argparse.ArgumentParser) -> None:
    _add_model_arguments(parser)
    parser.add_argument("--volume", type=int, nargs=3, default=(140, 170, 140), metavar=("D", "H", "W"),
                        help="cropped brain of a BraTS case in tfbrats axes (default: about BraTS' brain box)")


def run_windows(args: argparse.Namespace) -> dict[str, Any]:
    """Sliding-window prediction of a BraTS-size brain held in memory (no file I/O), per mode.

    Reports each mode's seconds, windows, seconds per window, and the overhead over the pure
    forward time of that many windows, measured in the same run.
    """
    import keras
    import numpy as np

    from tfbrats.inference import sliding_window

    model = _albunet3d(args.precision)
    volume = np.random.default_rng(0).normal(size=(*args.volume, 3)).astype("float32")
    window = np.zeros((args.batch, 24, 128, 128, 3), "float32")
    forward, _ = _median_seconds(lambda: model.predict_on_batch(window), args.repeats, warmup=2)
    calls = []

    def predictor(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape[0])
        return keras.ops.convert_to_numpy(keras.ops.softmax(model.predict_on_batch(batch), axis=-1))

    modes = {
        "paper_windows": {"patch_size": (24, 128, 128), "steps": (24, 32, 32)},
        "half_overlap": {"patch_size": (24, 128, 128), "steps": (24, 64, 64)},
        "no_overlap": {"patch_size": (24, 128, 128), "steps": (24, 128, 128)},
    }
    results: dict[str, Any] = {
        "benchmark": "windows", **_backend_facts(), "precision": args.precision, "volume": list(args.volume),
        "batch": args.batch, "forward_seconds_per_batch": round(forward, 4),
    }
    for name, settings in modes.items():
        calls.clear()
        seconds, _ = _median_seconds(
            lambda settings=settings: sliding_window(volume, predictor, batch_size=args.batch, **settings),
            max(1, args.repeats // 2), warmup=1,
        )
        windows = sum(calls) // (1 + max(1, args.repeats // 2))
        pure = forward * len(calls) / (1 + max(1, args.repeats // 2))
        results[name] = {
            "seconds": round(seconds, 3), "windows": windows, "seconds_per_window": round(seconds / windows, 4),
            "overhead_over_forward": round(seconds / pure - 1, 3), **{k: list(v) for k, v in settings.items()},
        }
    return results


def _add_onnx_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (the median is reported)")
    parser.add_argument("--batch", type=int, default=1, help="windows per call")
    parser.add_argument("--patch", type=int, nargs=3, default=(24, 128, 128), metavar=("D", "H", "W"))


def run_onnx(args: argparse.Namespace) -> dict[str, Any]:
    """One window of AlbuNet3D (softmax) in onnxruntime (CPU) vs TensorFlow, as `tfbrats.predict` runs it.

    The model is exported with `tfbrats.serving.export.export_onnx` (tf2onnx) into a scratch
    folder; both runtimes get the same weights and input, and the largest difference of their
    probabilities is reported beside the times.
    """
    import numpy as np
    import onnxruntime

    from tfbrats.inference.model import make_predictor
    from tfbrats.labels import get_target
    from tfbrats.models import AlbuNet3D
    from tfbrats.serving.export import export_onnx

    model = AlbuNet3D(num_classes=4, head="softmax")
    x = np.random.default_rng(0).normal(size=(args.batch, *args.patch, 3)).astype("float32")
    with tempfile.TemporaryDirectory() as scratch:
        folder = export_onnx(model, Path(scratch) / "albunet3d", 1, args.patch)
        session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    tensorflow = make_predictor(model, get_target("classes"))
    onnx_seconds, onnx_times = _median_seconds(lambda: session.run(None, {"image": x}), args.repeats, warmup=2)
    tf_seconds, tf_times = _median_seconds(lambda: tensorflow(x), args.repeats, warmup=2)
    difference = np.abs(session.run(None, {"image": x})[0] - tensorflow(x)).max()
    return {
        "benchmark": "onnx", **_backend_facts(), "onnxruntime": onnxruntime.__version__, "batch": args.batch,
        "patch": list(args.patch), "onnxruntime_seconds": round(onnx_seconds, 4),
        "tensorflow_seconds": round(tf_seconds, 4), "tensorflow_over_onnxruntime": round(tf_seconds / onnx_seconds, 3),
        "max_abs_difference": float(difference), "onnxruntime_times": [round(t, 4) for t in onnx_times],
        "tensorflow_times": [round(t, 4) for t in tf_times],
    }


PREDICT_MODES: dict[str, dict[str, Any]] = {
    "paper_windows": {"patch_size": (24, 128, 128), "steps": (24, 32, 32), "precision": "float32"},
    "paper_windows_bf16": {"patch_size": (24, 128, 128), "steps": (24, 32, 32), "precision": "mixed_bfloat16"},
    "no_overlap": {"patch_size": (24, 128, 128), "steps": (24, 128, 128), "precision": "float32"},
    "no_overlap_bf16": {"patch_size": (24, 128, 128), "steps": (24, 128, 128), "precision": "mixed_bfloat16"},
    "full_volume": {"patch_size": None, "steps": (24, 32, 32), "precision": "float32"},
    "full_volume_bf16": {"patch_size": None, "steps": (24, 32, 32), "precision": "mixed_bfloat16"},
}


def _add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="trained run folder or .keras (default: a random AlbuNet3D)")
    parser.add_argument("--case", type=Path, help="case folder (default: one synthetic 240x240x155 case)")
    parser.add_argument("--modes", nargs="+", default=list(PREDICT_MODES), choices=list(PREDICT_MODES))
    parser.add_argument("--batch", type=int, default=2, help="windows per forward pass")
    parser.add_argument("--repeats", type=int, default=2, help="timed predictions per mode (median reported)")
    parser.add_argument("--one_mode", help=argparse.SUPPRESS)  # the measuring subprocess
    parser.add_argument("--labels_out", type=Path, help=argparse.SUPPRESS)


def _predict_one(args: argparse.Namespace) -> dict[str, Any]:
    """In a fresh process: one mode, end to end (read, preprocess, windows, uncrop, write), peak memory."""
    import resource

    import numpy as np

    from tfbrats.data import find_cases, load_case, write_labels_nifti
    from tfbrats.inference.model import load_model, make_predictor, override_contract
    from tfbrats.inference.predict import segment

    mode = PREDICT_MODES[args.one_mode]
    loaded = load_model(args.model, mode["precision"])
    predictor = make_predictor(loaded.model, loaded.target)
    case = find_cases(args.case).cases[0]
    window = override_contract(loaded.contract, patch_size=mode["patch_size"], full_volume=mode["patch_size"] is None,
                               steps=mode["steps"], batch_size=args.batch)
    calls: list[int] = []

    def counting(batch):
        calls.append(batch.shape[0])
        return predictor(batch)

    def run() -> None:
        preprocessed = load_case(case, loaded.input_channels)
        labels = segment(preprocessed, counting, window)
        write_labels_nifti(labels, preprocessed.meta, args.labels_out)

    seconds, times = _median_seconds(run, args.repeats, warmup=1)
    batches = len(calls) // (args.repeats + 1)
    if mode["patch_size"] is None:
        forward = seconds  # a single pass: no windows to compare against
    else:
        x = np.zeros((args.batch, *mode["patch_size"], loaded.input_channels), "float32")
        forward, _ = _median_seconds(lambda: predictor(x), 3, warmup=1)
    return {
        "seconds": round(seconds, 3), "times": [round(t, 3) for t in times],
        "windows": sum(calls) // (args.repeats + 1) if mode["patch_size"] else 1,
        "forward_seconds_per_batch": round(forward, 4),
        "overhead_over_forward": round(seconds / (forward * batches) - 1, 3) if mode["patch_size"] else 0.0,
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }


def run_predict(args: argparse.Namespace) -> dict[str, Any]:
    """One BraTS-size case end to end per prediction mode, each in its own process (for peak memory).

    Reports seconds, windows, overhead over pure forward time and peak resident memory per mode,
    the speed-up over the paper's windows, and the whole-tumor Dice of each mode's labels against
    the paper windows' labels (and against the reference segmentation when the case has one).
    """
    import subprocess

    import nibabel as nib
    import numpy as np

    if args.one_mode:
        return _predict_one(args)
    from tfbrats.evaluation.metrics import dice

    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        case_dir = args.case
        if case_dir is None:
            from tfbrats.data import write_synthetic_dataset

            case_dir = write_synthetic_dataset(scratch_dir / "data", 1, (240, 240, 155), seed=0)[0]
        model = args.model
        if model is None:
            from tfbrats.models import AlbuNet3D

            model = scratch_dir / "random.keras"
            AlbuNet3D(num_classes=4).save(model)
        results: dict[str, Any] = {"benchmark": "predict", "model": str(args.model or "random AlbuNet3D"),
                                   "case": str(case_dir), "batch": args.batch, "cpu_count": os.cpu_count()}
        labels = {}
        for name in args.modes:
            out = scratch_dir / f"{name}.nii.gz"
            command = [sys.executable, __file__, "predict", f"--model={model}", f"--case={case_dir}",
                       f"--one_mode={name}", f"--labels_out={out}", f"--batch={args.batch}",
                       f"--repeats={args.repeats}"]
            finished = subprocess.run(command, capture_output=True, text=True, check=True)
            results[name] = json.loads(finished.stdout)
            labels[name] = np.asarray(nib.load(out).dataobj)
        reference = next(iter(Path(case_dir).glob("*_seg.nii.gz")), None)
        truth = np.asarray(nib.load(reference).dataobj) if reference else None
        base = results.get("paper_windows", {}).get("seconds")
        paper = labels.get("paper_windows")
        for name in args.modes:
            if base:
                results[name]["speedup_over_paper_windows"] = round(base / results[name]["seconds"], 2)
            if paper is not None:
                results[name]["wt_dice_vs_paper_windows"] = round(dice(labels[name] > 0, paper > 0), 4)
            if truth is not None:
                results[name]["wt_dice_vs_reference"] = round(dice(labels[name] > 0, truth > 0), 4)
    return results


SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Runner]] = {
    "data": ("patches/s of the tf.data pipeline with and without augmentation", _add_data_arguments, run_data),
    "peak": ("GFLOP/s of one large Conv2D: the ceiling", _add_model_arguments, run_peak),
    "forward": ("AlbuNet3D forward on 24x128x128 windows", _add_model_arguments, run_forward),
    "train_step": ("one AlbuNet3D optimizer step, in memory and fed by tf.data", _add_train_step_arguments,
                   run_train_step),
    "predict": ("one BraTS-size case end to end per prediction mode", _add_predict_arguments, run_predict),
    "windows": ("sliding-window prediction of a BraTS-size brain in memory", _add_windows_arguments, run_windows),
    "onnx": ("one AlbuNet3D window in onnxruntime vs TensorFlow on the CPU", _add_onnx_arguments, run_onnx),
}


def main(argv: list[str] | None = None) -> int:
    """Parses the sub-command, runs it and prints its result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, run) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text)
        add_arguments(sub)
        sub.set_defaults(run=run)
    args = parser.parse_args(argv)
    print(json.dumps({**args.run(args), "machine": machine_facts()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
