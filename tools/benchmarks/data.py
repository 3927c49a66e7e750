"""``data``: patches per second of the tf.data pipeline, without and with the default augmentation.

Example:
    python tools/benchmark.py data --patch=16,64,64 --batch=2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tfbrats.cli import parse_size

HELP = "patches/s of the tf.data pipeline with and without augmentation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of ``data``: the source, the patch and batch, and the timing counts.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_arguments(parser)
        >>> parser.parse_args(["--batch", "4"]).patch
        (24, 128, 128)
    """
    parser.add_argument("--data_dir", type=Path, help="dataset root or cache folder (default: synthetic cases)")
    parser.add_argument("--cases", type=int, default=4, help="synthetic cases to make when --data_dir is not given")
    parser.add_argument("--shape", type=parse_size, default=(128, 128, 80), metavar="X,Y,Z",
                        help="shape of the synthetic cases")
    parser.add_argument("--patch", type=parse_size, default=(24, 128, 128), metavar="D,H,W")
    parser.add_argument("--batch", type=int, default=2, help="batch size")
    parser.add_argument("--batches", type=int, default=10, help="timed batches per repeat")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (the median is reported)")


def patches_per_second(dataset: Any, batch: int, batches: int, warmup: int, repeats: int) -> list[float]:
    """Times `repeats` runs of `batches` batches from one iterator after `warmup` batches.

    Args:
        dataset: Any iterable of batches.
        batch: Patches per batch.
        batches: Batches per timed run.
        warmup: Batches drawn untimed first.
        repeats: Timed runs.

    Returns:
        Patches per second of each timed run.

    Example:
        >>> len(patches_per_second(range(100), batch=2, batches=5, warmup=1, repeats=3))
        3
    """
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Patches per second of `make_dataset`, without and with the default augmentation (median of the repeats).

    Example:
        python tools/benchmark.py data --cases=2 --shape=48,48,32 --patch=8,32,32 --batches=2
    """
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
        rates = patches_per_second(dataset, args.batch, args.batches, args.warmup, args.repeats)
        results[f"{name}_patches_per_s"] = round(statistics.median(rates), 3)
        results[f"{name}_repeats"] = [round(r, 3) for r in rates]
    results["augmented_over_plain"] = round(results["augmented_patches_per_s"] / results["plain_patches_per_s"], 4)
    return results
