"""Measure what a missing modality costs: classes vs regions, with and without modality dropout.

    python tools/compare_modalities.py --workdir=runs/compare_modalities

Writes synthetic training and held-out cases (`tfbrats.data.synthetic`), trains three small
models with `tfbrats.training.train` (classes without dropout, classes with dropout, regions with
dropout), then segments every held-out case once with all modalities and once with each single
modality removed (its file left out, so `tfbrats.inference.predict` fills it as for a real
incomplete case) and scores Dice WT, TC, ET against the reference. The markdown table of mean Dice
is printed and written to `--output` (default `<workdir>/modalities.md`). The defaults take a few
minutes per model on a 2-core CPU; the size flags shrink it (the test runs it in seconds).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfbrats.cli import parse_size  # noqa: E402
from tfbrats.labels import REGIONS  # noqa: E402

# (name, target, uses modality dropout) of the compared models.
VARIANTS = (
    ("classes", "classes", False),
    ("classes + dropout", "classes", True),
    ("regions + dropout", "regions", True),
)
MODALITY_NAMES = {"flair": "FLAIR", "t1ce": "T1c", "t2": "T2", "t1": "T1"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="folder for the data, the runs and the table")
    parser.add_argument("--output", type=Path, help="markdown table file (default <workdir>/modalities.md)")
    parser.add_argument("--train_cases", type=int, default=16, help="synthetic training cases (a fifth validate)")
    parser.add_argument("--test_cases", type=int, default=4, help="held-out synthetic cases")
    parser.add_argument("--shape", type=parse_size, default=(96, 96, 64), metavar="X,Y,Z",
                        help="synthetic volume shape, nibabel order")
    parser.add_argument("--model", choices=("albunet3d", "albunet2d"), default="albunet3d", help="network")
    parser.add_argument("--patch_size", type=parse_size, default=(8, 64, 64), help="training patch and window D,H,W")
    parser.add_argument("--batch_size", type=int, default=2, help="training batch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per model")
    parser.add_argument("--steps_per_epoch", type=int, default=20, help="training batches per epoch")
    parser.add_argument("--learning_rate", type=float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--modality_dropout", type=float, default=0.25, help="dropout of the dropout models")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the training")
    args = parser.parse_args(argv)
    for name in ("train_cases", "test_cases", "batch_size", "epochs", "steps_per_epoch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1; got {getattr(args, name)}")
    if args.train_cases < 2:
        parser.error(f"--train_cases must be >= 2 (training and validation); got {args.train_cases}")
    if not 0 < args.modality_dropout <= 1:
        parser.error(f"--modality_dropout must lie in (0, 1]; got {args.modality_dropout}")
    return args


def train_variants(args: argparse.Namespace, train_dir: Path) -> dict[str, Path]:
    """Trains the three models; returns name -> run folder."""
    from tfbrats.training import TrainConfig, train

    runs = {}
    for name, target, dropout in VARIANTS:
        model_dir = args.workdir / "runs" / name.replace(" + ", "_")
        config = TrainConfig(
            model_dir=str(model_dir), data_dir=str(train_dir), model=args.model, patch_size=args.patch_size,
            batch_size=args.batch_size, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
            learning_rate=args.learning_rate, num_folds=min(5, args.train_cases), seed=args.seed, augment=None,
            foreground_fraction=0.5, strategy="default", target=target,
            modality_dropout=args.modality_dropout if dropout else 0.0,
        )
        started = time.monotonic()
        print(f"== training {name} in {model_dir}")
        train(config, overwrite=True)
        print(f"== {name}: trained in {time.monotonic() - started:.0f} s")
        runs[name] = model_dir
    return runs


def evaluate(run_dir: Path, cases: list, patch_size: tuple[int, int, int]) -> dict[str, dict[str, float]]:
    """Mean Dice per region of one model on `cases`, for all modalities and each one missing.

    Returns:
        ``{"none": {"WT": ..., "TC": ..., "ET": ...}, "flair": {...}, ...}``, keyed by the missing modality.
    """
    import numpy as np

    from tfbrats.data import channels_for, load_case, uncrop
    from tfbrats.evaluation.metrics import dice
    from tfbrats.inference.model import load_model, make_predictor, override_contract
    from tfbrats.inference.predict import segment
    from tfbrats.labels import region_masks

    loaded = load_model(run_dir)
    predictor = make_predictor(loaded.model, loaded.target)
    contract = override_contract(loaded.contract, patch_size=patch_size, batch_size=2)
    channels = channels_for(loaded.input_channels)
    scores: dict[str, list[list[float]]] = {key: [] for key in ("none", *channels)}
    for case in cases:
        full = load_case(case, loaded.input_channels)
        reference = region_masks(uncrop(full.label, full.meta))
        for missing in scores:
            images = {key: path for key, path in case.images.items() if key != missing}
            image_only = dataclasses.replace(case, images=images, seg=None)
            preprocessed = load_case(image_only, loaded.input_channels, allow_missing=True)
            predicted = region_masks(segment(preprocessed, predictor, contract))
            scores[missing].append([dice(predicted[r], reference[r]) for r in REGIONS])
    return {key: dict(zip(REGIONS, np.mean(values, axis=0).tolist())) for key, values in scores.items()}


def markdown_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """The table: one row per model and missing modality, mean Dice WT, TC, ET."""
    lines = ["| model | missing | Dice WT | Dice TC | Dice ET |", "| --- | --- | --- | --- | --- |"]
    for name, by_missing in results.items():
        for missing, dices in by_missing.items():
            label = "none" if missing == "none" else MODALITY_NAMES[missing]
            lines.append(f"| {name} | {label} | " + " | ".join(f"{dices[r]:.3f}" for r in REGIONS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Writes the data, trains, evaluates and writes the table."""
    args = parse_args(argv)
    from tfbrats.data import find_cases, write_synthetic_dataset

    train_dir, test_dir = args.workdir / "train", args.workdir / "test"
    write_synthetic_dataset(train_dir, args.train_cases, args.shape, args.seed)
    # Another seed: the held-out cases share names with training cases but not their images.
    write_synthetic_dataset(test_dir, args.test_cases, args.shape, args.seed + 1000)
    runs = train_variants(args, train_dir)
    test_cases = find_cases(test_dir).cases
    results = {name: evaluate(run_dir, test_cases, args.patch_size) for name, run_dir in runs.items()}
    table = markdown_table(results)
    header = (
        f"Mean Dice on {len(test_cases)} held-out synthetic cases of {tuple(args.shape)} voxels; {args.model}, "
        f"patches {args.patch_size}, batch {args.batch_size}, {args.epochs} x {args.steps_per_epoch} steps, "
        f"modality dropout {args.modality_dropout} where named, seed {args.seed}.\n\n"
    )
    output = args.output or args.workdir / "modalities.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(header + table)
    print(header + table, end="")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
