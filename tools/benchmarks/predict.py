"""``predict``: one BraTS-size case end to end per prediction mode, each mode in its own process.

The parent writes the case and model when none is given, runs ``tools/benchmark.py predict
--one_mode=NAME`` per mode (so each reports its own peak memory) and compares the labels.

Example:
    python tools/benchmark.py predict --modes=paper_windows,no_overlap,full_volume --repeats=1
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

from tfbrats.cli import name_list
from tfbrats.contract import Window
from tfbrats.inference.modes import BFLOAT16, PAPER_PATCH, WINDOWS, InferenceMode

from .common import ENTRY, median_seconds

HELP = "one BraTS-size case end to end per prediction mode"
# The modes of `tfbrats.inference.modes` other than the model's own window, as settings.
MODES: dict[str, dict[str, Any]] = {
    mode.name: {"patch_size": window.patch_size, "steps": window.steps, "precision": mode.precision}
    for mode in (InferenceMode(kind, precision) for kind in WINDOWS[1:] for precision in ("float32", BFLOAT16))
    for window in [mode.window_for(Window(patch_size=PAPER_PATCH))]
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of ``predict``: model, case, modes, batch, repeats (and the subprocess' own two).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_arguments(parser)
        >>> parser.parse_args(["--modes=full_volume"]).modes
        ['full_volume']
    """
    parser.add_argument("--model", type=Path, help="trained run folder or .keras (default: a random AlbuNet3D)")
    parser.add_argument("--case", type=Path, help="case folder (default: one synthetic 240x240x155 case)")
    parser.add_argument("--modes", type=name_list(list(MODES)), default=list(MODES), metavar=",".join(MODES),
                        help="modes, comma-separated")
    parser.add_argument("--batch", type=int, default=2, help="windows per forward pass")
    parser.add_argument("--repeats", type=int, default=2, help="timed predictions per mode (median reported)")
    parser.add_argument("--one_mode", help=argparse.SUPPRESS)  # the measuring subprocess
    parser.add_argument("--labels_out", type=Path, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One BraTS-size case end to end per prediction mode, each in its own process (for peak memory).

    Reports seconds, windows, overhead over pure forward time and peak resident memory per mode,
    the speed-up over the paper's windows, and the whole-tumor Dice of each mode's labels against
    the paper windows' labels (and against the reference segmentation when the case has one).

    Example:
        python tools/benchmark.py predict --model=RUN --case=CASE --modes=paper_windows,full_volume
    """
    import nibabel as nib
    import numpy as np

    if args.one_mode:
        return measure_one_mode(args)
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
            command = [sys.executable, str(ENTRY), "predict", f"--model={model}", f"--case={case_dir}",
                       f"--one_mode={name}", f"--labels_out={out}", f"--batch={args.batch}",
                       f"--repeats={args.repeats}"]
            finished = subprocess.run(command, capture_output=True, text=True)
            if finished.returncode != 0:
                raise RuntimeError(f"predict mode {name} ({' '.join(command)}) failed with exit code "
                                   f"{finished.returncode}; expected 0. Its error output:\n{finished.stderr[-4000:]}")
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


def measure_one_mode(args: argparse.Namespace) -> dict[str, Any]:
    """In a fresh process: mode ``args.one_mode`` end to end (read, preprocess, windows, uncrop, write), peak memory.

    Args:
        args: The parsed ``predict`` arguments with ``one_mode`` and ``labels_out`` set.

    Example:
        python tools/benchmark.py predict --model=RUN --case=CASE --one_mode=full_volume --labels_out=OUT.nii.gz
    """
    import resource

    import numpy as np

    from tfbrats.data import find_cases, load_case, write_labels_nifti
    from tfbrats.inference.model import load_model, make_predictor, override_contract
    from tfbrats.inference.predict import segment

    if args.model is None or args.case is None or args.labels_out is None:
        raise ValueError(f"predict --one_mode={args.one_mode} needs --model, --case and --labels_out; got "
                         f"{args.model}, {args.case} and {args.labels_out}")
    mode = MODES[args.one_mode]
    loaded = load_model(args.model, mode["precision"])
    predictor = make_predictor(loaded.model, loaded.target)
    case = find_cases(args.case).cases[0]
    window = override_contract(loaded.contract, patch_size=mode["patch_size"], full_volume=mode["patch_size"] is None,
                               steps=mode["steps"], batch_size=args.batch)
    calls: list[int] = []

    def counting(batch):
        calls.append(batch.shape[0])
        return predictor(batch)

    def run_once() -> None:
        preprocessed = load_case(case, loaded.input_channels)
        labels = segment(preprocessed, counting, window)
        write_labels_nifti(labels, preprocessed.meta, args.labels_out)

    seconds, times = median_seconds(run_once, args.repeats, warmup=1)
    batches = len(calls) // (args.repeats + 1)
    if mode["patch_size"] is None:
        forward = seconds  # a single pass: no windows to compare against
    else:
        x = np.zeros((args.batch, *mode["patch_size"], loaded.input_channels), "float32")
        forward, _ = median_seconds(lambda: predictor(x), 3, warmup=1)
    return {
        "seconds": round(seconds, 3), "times": [round(t, 3) for t in times],
        "windows": sum(calls) // (args.repeats + 1) if mode["patch_size"] else 1,
        "forward_seconds_per_batch": round(forward, 4),
        "overhead_over_forward": round(seconds / (forward * batches) - 1, 3) if mode["patch_size"] else 0.0,
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
