"""Per-case metrics CSV and a summary table like Table 1 of the paper (mean, std, median)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfbrats.evaluation.figures import dice_boxplot
from tfbrats.evaluation.metrics import COLUMNS, CaseResult

STATISTICS = ("mean", "std", "median")
# The paper's Table 1 (DESIGN §7): AlbuNet3D pretrained, BraTS 2020 validation set.
PAPER_TABLE1 = {
    "mean": {
        "Dice_ET": 0.7187,
        "Dice_WT": 0.8851,
        "Dice_TC": 0.7822,
        "HD95_ET": 31.53,
        "HD95_WT": 5.99,
        "HD95_TC": 15.65,
    },
    "median": {
        "Dice_ET": 0.8382,
        "Dice_WT": 0.9127,
        "Dice_TC": 0.8830,
        "HD95_ET": 2.24,
        "HD95_WT": 3.43,
        "HD95_TC": 4.02,
    },
}
PAPER_LABEL = "paper AlbuNet3D, BraTS 2020 val."


def write_metrics_csv(results: Sequence[CaseResult], path: str | Path) -> Path:
    """Writes one row per case: `case_id`, `prediction` (ok or missing), then the metric columns.

    Args:
        results: the per-case results.
        path: the CSV file to write.

    Returns:
        the path written.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "metrics.csv"
        >>> write_metrics_csv([CaseResult("a", dict.fromkeys(COLUMNS, 0.5))], out).name
        'metrics.csv'
    """
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("case_id", "prediction") + COLUMNS)
        for result in results:
            status = "missing" if result.missing else "ok"
            writer.writerow([result.case_id, status] + [f"{result.metrics[c]:.6g}" for c in COLUMNS])
    return path


def summarize(results: Sequence[CaseResult]) -> dict[str, dict[str, float]]:
    """Mean, population standard deviation and median of every metric column over all cases.

    Missing predictions count, with their empty-mask scores, as the BraTS evaluation counts them.

    Args:
        results: the per-case results (at least one).

    Returns:
        dict statistic (`mean`, `std`, `median`) -> column -> value.

    Example:
        >>> rows = [CaseResult(str(i), dict.fromkeys(COLUMNS, float(i))) for i in range(3)]
        >>> summarize(rows)["median"]["Dice_WT"]
        1.0
    """
    if not results:
        raise ValueError("no cases to summarize")
    table = np.array([[result.metrics[c] for c in COLUMNS] for result in results], np.float64)
    stats = {"mean": table.mean(0), "std": table.std(0), "median": np.median(table, 0)}
    return {name: dict(zip(COLUMNS, map(float, stats[name]))) for name in STATISTICS}


def summary_markdown(results: Sequence[CaseResult], compare_paper: bool = True) -> str:
    """A markdown summary: the statistics table (Dice 4 decimals, HD95 in mm), counts and misses.

    Args:
        results: the per-case results.
        compare_paper: add the paper's mean and median (Table 1) as the last two rows.

    Returns:
        the markdown text.

    Example:
        >>> rows = [CaseResult("a", dict.fromkeys(COLUMNS, 1.0))]
        >>> summary_markdown(rows).splitlines()[0]
        '| | Dice ET | Dice WT | Dice TC | HD95 ET (mm) | HD95 WT (mm) | HD95 TC (mm) |'
    """
    rows = dict(summarize(results))
    if compare_paper:
        rows.update({f"{PAPER_LABEL} {name}": PAPER_TABLE1[name] for name in ("mean", "median")})
    header = [c.replace("_", " ") + (" (mm)" if c.startswith("HD95") else "") for c in COLUMNS]
    lines = ["| | " + " | ".join(header) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, values in rows.items():
        cells = [f"{values[c]:.2f}" if c.startswith("HD95") else f"{values[c]:.4f}" for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    missing = [result.case_id for result in results if result.missing]
    lines += [
        "",
        f"{len(results)} cases, {len(missing)} without prediction (scored as empty masks)",
    ]
    if missing:
        lines.append("missing predictions: " + ", ".join(missing))
    return "\n".join(lines) + "\n"


def write_report(results: Sequence[CaseResult], out_dir: str | Path) -> dict[str, Path]:
    """Writes `metrics.csv`, `summary.md` and `dice_boxplot.png` into `out_dir` (created if needed).

    Args:
        results: the per-case results.
        out_dir: the report folder.

    Returns:
        dict file name -> path written.

    Example:
        >>> import tempfile
        >>> rows = [CaseResult("a", dict.fromkeys(COLUMNS, 1.0))]
        >>> sorted(write_report(rows, tempfile.mkdtemp()))
        ['dice_boxplot.png', 'metrics.csv', 'summary.md']
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = out_dir / "summary.md"
    summary.write_text(summary_markdown(results))
    paths = [
        write_metrics_csv(results, out_dir / "metrics.csv"),
        summary,
        dice_boxplot(results, out_dir / "dice_boxplot.png"),
    ]
    return {path.name: path for path in paths}
