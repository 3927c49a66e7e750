"""``modes``: every inference mode on every backend for one BraTS-size case, and what each costs in Dice.

A mode is a window and a precision (`tfbrats.inference.modes`: the model's own window, the
paper's 24x128x128 windows with steps 24x32x32, no overlap, one full-volume pass; float32, and
bfloat16 where the CPU has AVX512_BF16 or AMX); a backend runs the network: TensorFlow,
ONNX Runtime or OpenVINO (exports made once, with a free window). Whatever the backend, the case
goes through `tfbrats.inference.predict.segment` with the mode's contract: only the forward
function changes. Each mode x backend runs in its own process, which reports the median seconds
of reading, preprocessing and segmenting the case, its peak resident memory, and the labels of
the held-out cases; the parent scores those against the cases' references and reports each
mode's mean Dice change against the default (the model's own window, TensorFlow, float32).

Example:
    python tools/benchmark.py modes --model=runs/demo --repeats=3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tfbrats.cli import name_list, parse_size

from .common import ENTRY, median_seconds

HELP = "every inference mode x backend on one BraTS-size case: seconds, peak memory, Dice change"
BACKENDS = ("tensorflow", "onnxruntime", "openvino")
DEFAULT = "contract/tensorflow"
PAPER = "paper_windows/tensorflow"
CASE_KEY = "__benchmark_case__"  # the timed case's labels, beside the held-out cases'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of ``modes``.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_arguments(parser)
        >>> parser.parse_args(["--backends=openvino,onnxruntime"]).backends
        ['openvino', 'onnxruntime']
    """
    parser.add_argument("--model", type=Path, help="trained run folder or .keras (default: a random AlbuNet3D)")
    parser.add_argument("--case", type=Path, help="case folder (default: one synthetic 240x240x155 case)")
    parser.add_argument("--held_out", type=Path, help="labelled cases for the Dice change (default: synthetic "
                        "cases of --held_out_shape, seed 1000)")
    parser.add_argument("--held_out_cases", type=int, default=3, help="synthetic held-out cases to make")
    parser.add_argument("--held_out_shape", type=parse_size, default=(240, 240, 155), metavar="X,Y,Z",
                        help="shape of the synthetic held-out cases: BraTS size by default, since on a case whose "
                        "plane fits one 128x128 window every mode sees the same plane and costs nothing")
    parser.add_argument("--modes", type=name_list(), help="mode names, comma-separated (default: every mode this "
                        "CPU runs)")
    parser.add_argument("--backends", type=name_list(BACKENDS), default=list(BACKENDS), metavar=",".join(BACKENDS),
                        help="backends, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="timed predictions per mode (median reported)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the measuring subprocess: MODE/BACKEND
    parser.add_argument("--exports", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--labels_out", type=Path, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every mode x backend in its own process; seconds, peak memory and Dice change per mode.

    Example:
        python tools/benchmark.py modes --modes=contract,full_volume --backends=tensorflow,openvino
    """
    if args.one:
        return measure_one(args)
    import numpy as np

    from tfbrats.inference.modes import candidate_modes

    names = args.modes or [mode.name for mode in candidate_modes()]
    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        case_dir, held_out, model = _inputs(args, scratch_dir)
        exports = _export(model, args.backends, scratch_dir / "exports")
        results: dict[str, Any] = {"benchmark": "modes", "model": str(args.model or "random AlbuNet3D"),
                                   "case": str(args.case or "synthetic 240x240x155, seed 0"),
                                   "held_out": str(args.held_out or f"{args.held_out_cases} synthetic cases "
                                                   f"{tuple(args.held_out_shape)}, seed 1000"),
                                   "repeats": args.repeats, "stack": stack_versions(), "lscpu": lscpu(), "runs": {}}
        labels = {}
        for name in names:
            for backend in args.backends:
                key = f"{name}/{backend}"
                if backend == "onnxruntime" and name.endswith("_bf16"):
                    results["runs"][key] = {"skipped": "onnxruntime's CPU provider computes no bfloat16"}
                    continue
                out = scratch_dir / f"{name}.{backend}.npz"
                results["runs"][key] = _run_one([f"--model={model}", f"--case={case_dir}", f"--held_out={held_out}",
                                                 f"--one={key}", f"--exports={exports}", f"--labels_out={out}",
                                                 f"--repeats={args.repeats}"])
                labels[key] = dict(np.load(out))
        _compare(results["runs"], labels, held_out)
    return results


def _run_one(arguments: list[str]) -> dict[str, Any]:
    """Runs ``tools/benchmark.py modes --one=...`` in a fresh process and returns its figures."""
    command = [sys.executable, str(ENTRY), "modes", *arguments]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {finished.returncode}; expected 0. "
                           f"Its error output:\n{finished.stderr[-4000:]}")
    return json.loads(finished.stdout)


def _inputs(args: argparse.Namespace, scratch: Path) -> tuple[Path, Path, Path]:
    """The case, the held-out cases and the model: the given ones, or synthetic ones made in `scratch`."""
    from tfbrats.data import write_synthetic_dataset

    case_dir = args.case or write_synthetic_dataset(scratch / "case", 1, (240, 240, 155), seed=0)[0]
    held_out = args.held_out
    if held_out is None:
        held_out = scratch / "held_out"
        write_synthetic_dataset(held_out, args.held_out_cases, tuple(args.held_out_shape), seed=1000)
    model = args.model
    if model is None:
        from tfbrats.contract import SegmentationContract, Window
        from tfbrats.inference.model import save_with_contract

        from .common import albunet3d

        contract = SegmentationContract(window=Window.for_patch((8, 64, 64)))  # the demo's training patch
        model = save_with_contract(albunet3d("float32"), contract, scratch / "random.keras")
    return Path(case_dir), Path(held_out), Path(model)


def _export(model: Path, backends: list[str], folder: Path) -> Path:
    """The ONNX and OpenVINO exports (any window) the backends need, made once."""
    from tfbrats.inference.model import load_model
    from tfbrats.serving.export import export_onnx, export_openvino

    loaded = load_model(model, "float32")
    if "onnxruntime" in backends:
        export_onnx(loaded.model, folder / "onnx", 1, loaded.contract, any_window=True)
    if "openvino" in backends:
        export_openvino(loaded.model, folder / "openvino", 1, loaded.contract)
    return folder


def measure_one(args: argparse.Namespace) -> dict[str, Any]:
    """In a fresh process: one mode on one backend, timed on the case, and its labels of the held-out cases."""
    import numpy as np

    from tfbrats.data import find_cases, load_case
    from tfbrats.evaluation.mode_tuning import reference_window
    from tfbrats.inference.model import load_model
    from tfbrats.inference.modes import InferenceMode
    from tfbrats.inference.predict import segment

    name, backend = args.one.split("/")
    mode = InferenceMode.from_name(name)
    loaded = load_model(args.model, mode.precision if backend == "tensorflow" else "float32")
    contract = mode.apply(loaded.contract, reference_window(loaded.contract))
    predictor = _predictor(backend, loaded, contract, args.exports, mode.precision)
    windows: list[int] = []

    def counting(batch):
        windows.append(batch.shape[0])
        return predictor(batch)

    case = find_cases(args.case).cases[0]
    labels: list[np.ndarray] = []
    seconds, times = median_seconds(
        lambda: labels.append(segment(load_case(case, loaded.input_channels), counting, contract)), args.repeats,
        warmup=1)
    held_out = {c.case_id: segment(load_case(c, loaded.input_channels), predictor, contract)
                for c in find_cases(args.held_out).cases}
    np.savez_compressed(args.labels_out, **held_out, **{CASE_KEY: labels[-1]})
    return {"mode": name, "backend": backend, "window": contract.window.to_json(),
            "seconds": round(seconds, 3), "times": [round(t, 3) for t in times],
            "windows": sum(windows) // (args.repeats + 1),
            "peak_rss_gib": peak_rss_gib()}


def peak_rss_gib() -> float:
    """This process' peak resident memory (GiB) since it started its program.

    Linux keeps `ru_maxrss` across exec, so a child started by a big parent would report the
    parent's peak; `VmHWM` belongs to the program's own memory map, made new at exec.

    Example:
        >>> peak_rss_gib() > 0
        True
    """
    import resource

    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.is_file() else []:
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 2**20, 2)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def _predictor(backend: str, loaded, contract, exports: Path, precision: str):
    """Windows -> probabilities on `backend` (the only part of prediction a backend replaces)."""
    if backend == "tensorflow":
        from tfbrats.inference.model import make_predictor

        return make_predictor(loaded.model, contract.target)
    if backend == "onnxruntime":
        from tfbrats.serving.onnx import OnnxSegmenter

        return OnnxSegmenter(exports / "onnx" / "1", contract=contract).probabilities
    from tfbrats.serving.openvino import OpenVinoSegmenter

    return OpenVinoSegmenter(exports / "openvino" / "1", precision=precision, contract=contract).probabilities


def _compare(runs: dict[str, Any], labels: dict[str, dict], held_out: Path) -> None:
    """Adds each run's mean held-out Dice per region, its change against the default, and its speed-up."""
    from tfbrats.data import find_cases, load_case, uncrop
    from tfbrats.evaluation.metrics import dice
    from tfbrats.evaluation.tuning import mean_dice

    cases = find_cases(held_out).cases
    references = []
    for case in cases:  # the references as training reads them, on the original grid like the labels
        preprocessed = load_case(case)
        references.append(uncrop(preprocessed.label, preprocessed.meta))
    for key, per_case in labels.items():
        runs[key]["mean_dice"] = {r: round(v, 4) for r, v in
                                  mean_dice([per_case[c.case_id] for c in cases], references).items()}
    default = runs.get(DEFAULT, {})
    for key in labels:
        if PAPER in labels:  # the whole tumor of the timed case against the paper's windows
            runs[key]["wt_dice_vs_paper_windows"] = round(dice(labels[key][CASE_KEY] > 0, labels[PAPER][CASE_KEY] > 0),
                                                          4)
        if "mean_dice" in default:
            runs[key]["dice_change"] = {r: round(v - default["mean_dice"][r], 4)
                                        for r, v in runs[key]["mean_dice"].items()}
            runs[key]["speedup"] = round(default["seconds"] / runs[key]["seconds"], 2)


def lscpu() -> dict[str, str]:
    """`lscpu`'s model name, core counts and flags (empty where lscpu is missing)."""
    try:
        finished = subprocess.run(["lscpu"], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    except FileNotFoundError:
        return {}
    keep = ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "Flags", "Hypervisor vendor")
    facts = {}
    for line in finished.stdout.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keep:
            facts[key.strip()] = value.strip()
    return facts


def stack_versions() -> dict[str, str]:
    """Python and the versions of the packages a mode runs on."""
    import importlib.metadata
    import platform

    versions = {"python": platform.python_version()}
    for package in ("tensorflow", "keras", "numpy", "onnxruntime", "openvino", "tf2onnx"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions
