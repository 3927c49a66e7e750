"""The end-to-end demo: synthetic BraTS data -> training -> prediction -> evaluation -> figures.

    tfbrats-demo --out=demo_output
    tfbrats-demo --out=demo_decathlon --layout=decathlon   # or nnunet, brats2023
    tfbrats-demo --out=demo_brats2025 --layout=brats2025   # post-treatment: resection cavity
    tfbrats-demo --out=demo_output --seeds=0,1,2     # the held-out range over 3 training seeds

Every step is the command a user would type (as ``python -m tfbrats.<command>``, which runs the
same code as the ``tfbrats-<command>`` console script), printed before it runs, so the demo doubles as a
tutorial. Steps that are done are not redone: a rerun resumes training from its checkpoint and
skips finished predictions. With ``--seeds``, training (its split, patches, augmentation and
initial weights), prediction and evaluation run once per seed on the same synthetic data, and the
held-out mean Dice per region is printed as min / median / max over the seeds (and written to
``seeds.md``).

Every fourth synthetic case has no enhancing tumor, so the held-out cases (the last ones made)
hold some as BraTS does (one of the default 4); the evaluation shows enhancing tumor on those
cases apart (ET Dice, and the stray ET voxels predicted there), since BraTS scores any ET predicted
on them as Dice 0. With ``--layout=brats2025`` the odd-numbered cases are post-treatment, with a
resection cavity (RC): the model learns the cavity as a fifth class, and the demo reports the RC
Dice on the held-out post-treatment cases and the RC voxels predicted on the pre-treatment ones
(which have no cavity, so any RC there costs the case's RC score).
"""

from __future__ import annotations

import csv
import json
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from absl import flags

from tfbrats.cli import UsageError, run_command
from tfbrats.data.synthetic import LAYOUTS
from tfbrats.files import write_text
from tfbrats.labels import REGIONS

REPO = Path(__file__).resolve().parents[2]
FLAGS = flags.FlagValues()

_OUT = flags.DEFINE_string("out", "demo_output", "Folder for data, model, predictions, report and figures.",
                           flag_values=FLAGS)
_TRAIN_CASES = flags.DEFINE_integer("train_cases", 16, "Synthetic cases to train and validate on.", flag_values=FLAGS)
_TEST_CASES = flags.DEFINE_integer("test_cases", 4, "Held-out synthetic cases to predict and evaluate.",
                                   flag_values=FLAGS)
_SHAPE = flags.DEFINE_list("shape", ["96", "96", "64"], "Synthetic volume X,Y,Z.", flag_values=FLAGS)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the synthetic data.", flag_values=FLAGS)
_LAYOUT = flags.DEFINE_enum("layout", "brats2020", list(LAYOUTS),
                            "How the synthetic data are stored (Decathlon, nnU-Net raw: no case figure).",
                            flag_values=FLAGS)
_FLAGFILE = flags.DEFINE_string("flagfile_train", str(REPO / "configs" / "demo.flags"), "Training flagfile.",
                                flag_values=FLAGS)
_TRAIN_ARGS = flags.DEFINE_multi_string("train_arg", [], "An extra training flag, e.g. epochs=1 (repeatable).",
                                        flag_values=FLAGS)
_SEEDS = flags.DEFINE_list("seeds", [], "Training seeds: one run each, and the held-out Dice as min / median / max "
                           "(empty: one run with the flagfile's seed).", flag_values=FLAGS)
# Columns of the seed table beyond the regions: ET Dice on the held-out cases without enhancing
# tumor, and the stray ET voxels predicted on them (summed over those cases).
ET_FREE = ("ET without ET", "stray ET voxels")
# With a resection cavity (BraTS 2025 layout): RC Dice on the post-treatment held-out cases, and the
# RC voxels predicted on the pre-treatment ones (which have none).
CAVITY = ("RC post-treatment", "RC voxels pre-treatment")


def _run(command: list[str]) -> None:
    print("\n$ " + shlex.join(command), flush=True)
    started = time.monotonic()
    subprocess.run(command, check=True)  # python -m tfbrats.* children silence TensorFlow's start-up themselves
    print(f"  ({time.monotonic() - started:.0f} s)", flush=True)


def _make_data(out: Path) -> tuple[Path, Path]:
    train_dir, test_dir = out / "data" / "train", out / "data" / "test"
    if train_dir.is_dir() and test_dir.is_dir():
        print(f"synthetic data already in {out / 'data'}")
        return train_dir, test_dir
    staging = out / "data" / ".staging"
    for folder in (staging, train_dir, test_dir):
        shutil.rmtree(folder, ignore_errors=True)
    total = _TRAIN_CASES.value + _TEST_CASES.value
    _run([sys.executable, "-m", "tfbrats.data.synthetic", f"--out={staging}", f"--cases={total}",
          f"--shape={','.join(_SHAPE.value)}", f"--seed={_SEED.value}", f"--layout={_LAYOUT.value}"])
    test_dir.mkdir(parents=True)
    if (staging / "dataset.json").is_file():  # Decathlon / nnU-Net raw: the test cases' files, labels kept
        from tfbrats.data import find_cases

        shutil.copy(staging / "dataset.json", test_dir / "dataset.json")
        for case in find_cases(staging).cases[_TRAIN_CASES.value:]:
            for path in {*case.images.values(), case.seg} - {None}:
                destination = test_dir / path.parent.name / path.name
                destination.parent.mkdir(exist_ok=True)
                path.rename(destination)
    else:
        for folder in sorted(p for p in staging.iterdir() if p.is_dir())[_TRAIN_CASES.value:]:
            folder.rename(test_dir / folder.name)
    staging.rename(train_dir)  # last: a demo killed before this point makes its data again
    return train_dir, test_dir


def held_out_without_et(train_cases: int, test_cases: int) -> int:
    """How many of the held-out synthetic cases (numbers after the training ones) have no enhancing tumor.

    Example:
        >>> held_out_without_et(16, 4), held_out_without_et(6, 3)
        (1, 1)
    """
    from tfbrats.data.synthetic import has_enhancing_tumor

    return sum(not has_enhancing_tumor(n) for n in range(train_cases + 1, train_cases + test_cases + 1))


def _train_predict_evaluate(out: Path, train_dir: Path, test_dir: Path, suffix: str = "",
                            extra: tuple[str, ...] = ()) -> tuple[Path, Path, Path]:
    """Trains into model<suffix>, predicts the held-out cases and evaluates them; returns the three folders."""
    model_dir, predictions, report = out / f"model{suffix}", out / f"predictions{suffix}", out / f"report{suffix}"
    python = sys.executable
    _run([python, "-m", "tfbrats.train", f"--flagfile={_FLAGFILE.value}", f"--data_dir={train_dir}",
          f"--model_dir={model_dir}", *(f"--{arg}" for arg in _TRAIN_ARGS.value), *extra])
    _run([python, "-m", "tfbrats.predict", f"--model={model_dir}", f"--input={test_dir}", f"--output={predictions}"])
    _run([python, "-m", "tfbrats.evaluate", f"--pred_dir={predictions}", f"--ref_dir={test_dir}", f"--out={report}"])
    return model_dir, predictions, report


def mean_dice(report: Path) -> dict[str, float]:
    """The mean held-out Dice per region of an evaluation report's metrics.csv, and the ET-free cases' figures.

    Returns:
        WT, TC, ET mean Dice over all cases; "ET without ET", the mean ET Dice over the cases whose
        reference has no enhancing tumor (NaN when there is none), and "stray ET voxels", the ET
        voxels predicted on them; with a resection cavity (an ``RC_voxels_reference`` column),
        "RC post-treatment", the mean RC Dice over the cases with a cavity, and "RC voxels
        pre-treatment", the RC voxels predicted on the cases without (summed).

    Example: after ``tfbrats-demo`` has written its report::

        mean_dice(Path("demo_output/report"))
        # {'WT': 0.95, 'TC': 0.91, 'ET': 0.88, 'ET without ET': 1.0, 'stray ET voxels': 0.0}
    """
    with open(report / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    means = {region: sum(float(row[f"Dice_{region}"]) for row in rows) / len(rows) for region in REGIONS}
    free = [row for row in rows if float(row["ET_voxels_reference"]) == 0]
    means[ET_FREE[0]] = sum(float(row["Dice_ET"]) for row in free) / len(free) if free else float("nan")
    means[ET_FREE[1]] = sum(float(row["ET_voxels_predicted"]) for row in free)
    if rows and "RC_voxels_reference" in rows[0]:
        post = [row for row in rows if float(row["RC_voxels_reference"]) > 0]
        means[CAVITY[0]] = sum(float(row["Dice_RC"]) for row in post) / len(post) if post else float("nan")
        means[CAVITY[1]] = sum(float(row["RC_voxels_predicted"]) for row in rows if row not in post)
    return means


def seed_range_table(means: dict[str, dict[str, float]]) -> str:
    """A markdown table of per-seed mean Dice and their min / median / max over the seeds.

    The last two columns are the held-out cases without enhancing tumor (`mean_dice`).

    Example:
        >>> free = {"0": (1.0, 0), "1": (0.0, 9), "2": (1.0, 0)}
        >>> means = {"0": {"WT": 0.9, "TC": 0.8, "ET": 0.7}, "1": {"WT": 0.95, "TC": 0.85, "ET": 0.6},
        ...          "2": {"WT": 0.93, "TC": 0.9, "ET": 0.8}}
        >>> print(seed_range_table({seed: values | dict(zip(ET_FREE, free[seed])) for seed, values in means.items()}))
        | held-out mean Dice | WT | TC | ET | ET without ET | stray ET voxels |
        |---|---|---|---|---|---|
        | seed 0 | 0.9000 | 0.8000 | 0.7000 | 1.0000 | 0 |
        | seed 1 | 0.9500 | 0.8500 | 0.6000 | 0.0000 | 9 |
        | seed 2 | 0.9300 | 0.9000 | 0.8000 | 1.0000 | 0 |
        | min | 0.9000 | 0.8000 | 0.6000 | 0.0000 | 0 |
        | median | 0.9300 | 0.8500 | 0.7000 | 1.0000 | 0 |
        | max | 0.9500 | 0.9000 | 0.8000 | 1.0000 | 9 |
    """
    import numpy as np

    columns = tuple(REGIONS) + ET_FREE + (CAVITY if CAVITY[0] in next(iter(means.values())) else ())

    def cell(column: str, value: float) -> str:
        return f"{value:.0f}" if column in (ET_FREE[1], CAVITY[1]) else f"{value:.4f}"

    lines = ["| held-out mean Dice | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| seed {seed} | " + " | ".join(cell(c, values[c]) for c in columns) + " |"
              for seed, values in means.items()]
    for name, reduce in (("min", np.min), ("median", np.median), ("max", np.max)):
        lines.append(f"| {name} | " + " | ".join(cell(c, float(reduce([v[c] for v in means.values()])))
                                                for c in columns) + " |")
    return "\n".join(lines)


def _demo() -> None:
    """Runs the demo into `--out`."""
    if len(_SHAPE.value) != 3:
        raise UsageError(f"--shape: expected three sizes X,Y,Z; got {','.join(_SHAPE.value)!r}")
    out = Path(_OUT.value).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    train_dir, test_dir = _make_data(out)
    print(f"held-out: {_TEST_CASES.value} cases, {held_out_without_et(_TRAIN_CASES.value, _TEST_CASES.value)} of "
          "them without enhancing tumor (every fourth synthetic case has none)")
    if _LAYOUT.value == "brats2025":
        from tfbrats.data.synthetic import is_post_treatment

        held_out = range(_TRAIN_CASES.value + 1, _TRAIN_CASES.value + _TEST_CASES.value + 1)
        print(f"  {sum(is_post_treatment(n, 'brats2025') for n in held_out)} of them post-treatment (resection "
              "cavity), the others pre-treatment")
    if _SEEDS.value:
        means = {}
        for seed in _SEEDS.value:
            _, _, report = _train_predict_evaluate(out, train_dir, test_dir, f"_seed{seed}", (f"--seed={seed}",))
            means[seed] = mean_dice(report)
        table = seed_range_table(means)
        write_text(out / "seeds.md", table + "\n")
        print(f"\n{table}\n\nDemo ({len(means)} seeds) finished in {(time.monotonic() - started) / 60:.1f} min; "
              f"table in {out / 'seeds.md'}")
        return
    model_dir, predictions, report = _train_predict_evaluate(out, train_dir, test_dir)
    figures = out / "figures"
    python = sys.executable
    figures.mkdir(exist_ok=True)
    _run([python, str(REPO / "tools" / "plot_training.py"), f"--runs={model_dir}",
          f"--out={figures / 'validation_dice.png'}"])
    if _LAYOUT.value in ("brats2020", "brats2023", "brats2025"):  # tools/visualize.py draws BraTS case folders
        first_case = sorted(p for p in test_dir.iterdir() if p.is_dir())[0]
        _run([python, str(REPO / "tools" / "visualize.py"), f"--case_dir={first_case}",
              f"--pred={predictions / (first_case.name + '.nii.gz')}", f"--out={figures / (first_case.name + '.png')}"])
    tuning = model_dir / "tuning.json"
    if tuning.is_file():
        record = json.loads(tuning.read_text())
        evidence = record["evidence"]
        cavity = (f", {evidence['cases_without_rc']} without a resection cavity "
                  f"({evidence['cases_without_rc_given_rc']} given stray cavity voxels)"
                  if "cases_without_rc" in evidence else "")
        print(f"\npost-processing chosen on {evidence['cases']} validation cases, {evidence['cases_without_et']} "
              f"without enhancing tumor{cavity} (python -m tfbrats.tune, in the model's contract): "
              f"{record['chosen_description']}")
        for warning in evidence["warnings"]:
            print(f"  little evidence: {warning}")
    means = mean_dice(report)
    print("\nheld-out mean Dice: " + ", ".join(
        f"{name} {value:.0f}" if name in (ET_FREE[1], CAVITY[1]) else f"{name} {value:.4f}"
        for name, value in means.items()))
    print(f"\nDemo finished in {(time.monotonic() - started) / 60:.1f} min. Everything is in {out}:")
    for name, path in (("model", model_dir), ("NIfTI predictions", predictions), ("report", report),
                       ("figures", figures)):
        print(f"  {name:18s} {path}")


def main(argv: Sequence[str] | None = None) -> int:
    """``tfbrats-demo``: runs the demo with the flags in `argv` (default: the command line); the exit status.

    Example:
        >>> import contextlib, io
        >>> with contextlib.redirect_stdout(io.StringIO()) as out:
        ...     status = main(["--help"])
        >>> status, "--train_arg" in out.getvalue()
        (0, True)
    """
    return run_command(FLAGS, _demo, argv, doc=__doc__, program="tfbrats-demo")
