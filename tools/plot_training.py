"""Draws validation Dice curves per region from training runs, like the paper's Fig. 3.

    python tools/plot_training.py --runs=runs/demo --out=dice.png
    python tools/plot_training.py --runs=runs/pretrained,runs/scratch --labels=pretrained,scratch --out=fig3.png

One panel per region (whole tumor, tumor core, enhancing tumor; resection cavity for a run
that trained it), validation Dice against epoch, one
line per run (a run folder of python -m tfbrats.train, or its history.csv). Needs matplotlib.
"""

from __future__ import annotations

import csv
from pathlib import Path

from absl import app, flags

from tfbrats.labels import BRATS_POST_TREATMENT

_RUNS = flags.DEFINE_list("runs", None, "Run folders (or history.csv files), comma-separated.")
_LABELS = flags.DEFINE_list("labels", None, "Legend labels, one per run (default: the folder names).")
_OUT = flags.DEFINE_string("out", None, "PNG file to write.")
flags.mark_flags_as_required(["runs", "out"])


def read_history(run: str | Path) -> dict[str, list[float]]:
    """The columns of a run's history.csv as lists of floats.

    Args:
        run: A run folder or its history.csv.

    Example:
        read_history("runs/demo")["val_dice_WT"][-1]
        # -> 0.95
    """
    path = Path(run)
    path = path / "history.csv" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(
            f"no history at {path}; give a run folder of python -m tfbrats.train or its history.csv"
        )
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no epochs yet; plot it after the first epoch has finished")
    return {column: [float(row[column]) for row in rows] for column in rows[0]}


def plot_dice_curves(histories: dict[str, dict[str, list[float]]], out: str | Path) -> Path:
    """Writes a PNG with one panel per region and one validation Dice curve per run.

    Args:
        histories: Legend label -> `read_history` result.
        out: The PNG path.

    Example:
        plot_dice_curves({"demo": read_history("runs/demo")}, "dice.png")
        # -> PosixPath('dice.png')
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # The regions of the runs' label sets: WT, TC, ET, and RC when a run trained the resection cavity.
    titles = {region: BRATS_POST_TREATMENT.titles[region] for region in BRATS_POST_TREATMENT.regions
              if any(f"val_dice_{region}" in history for history in histories.values())}
    figure, axes = plt.subplots(1, len(titles), figsize=(4.2 * len(titles), 3.6), sharey=True)
    for axis, (region, title) in zip(axes, titles.items()):
        for label, history in histories.items():
            if f"val_dice_{region}" in history:
                axis.plot(history["epoch"], history[f"val_dice_{region}"], marker="o", markersize=3, label=label)
        axis.set_title(f"{title} ({region})")
        axis.set_xlabel("epoch")
        axis.set_ylim(0.0, 1.0)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("validation Dice")
    axes[-1].legend(loc="lower right")
    figure.tight_layout()
    out = Path(out)
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


def main(argv: list[str]) -> int:
    """Reads the runs' histories and writes the figure."""
    del argv
    labels = _LABELS.value or [Path(run).name if Path(run).is_dir() else Path(run).parent.name for run in _RUNS.value]
    if len(labels) != len(_RUNS.value):
        raise app.UsageError(f"--labels has {len(labels)} entries but --runs has {len(_RUNS.value)}; give one per run")
    histories = {label: read_history(run) for label, run in zip(labels, _RUNS.value)}
    print(f"wrote {plot_dice_curves(histories, _OUT.value)}")
    return 0


if __name__ == "__main__":
    app.run(main)
