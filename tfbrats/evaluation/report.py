"""Per-case metrics CSV and summary tables: the legacy one like Table 1 of the paper, and lesion-wise.

Results may hold the legacy columns (`COLUMNS`: BraTS 2020's Dice and HD95), the lesion-wise ones
(`LESION_COLUMNS`: BraTS 2023+, from the official package), or both side by side, for the groups
of the data's label set (ET, WT, TC; with BraTS 2024/2025's resection cavity also RC, NETC and
SNFH): the tables show the groups the results hold. Statistics skip
NaN values, as the package's own parser does (a region present in neither mask has no lesion-wise
score).
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfbrats.evaluation.figures import dice_boxplot
from tfbrats.evaluation.lesionwise import ALL_LESION_COLUMNS
from tfbrats.evaluation.metrics import (
    ALL_COLUMNS,
    ALL_COUNT_COLUMNS,
    ALL_GROUPS,
    COLUMNS,
    CaseResult,
    count_columns,
    legacy_columns,
)
from tfbrats.files import write_text

STATISTICS = ("mean", "std", "median")
# The paper's Table 1 (Wacker et al., 2020): AlbuNet3D pretrained, BraTS 2020 validation set.
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


def result_columns(results: Sequence[CaseResult]) -> tuple[str, ...]:
    """The metric columns the results hold: the legacy ones, then the lesion-wise ones.

    Example:
        >>> result_columns([CaseResult("a", dict.fromkeys(COLUMNS, 0.5))]) == COLUMNS
        True
    """
    if not results:
        raise ValueError("no cases: there is nothing to report")
    present = set(results[0].metrics)
    for result in results:
        if set(result.metrics) != present:
            raise ValueError(f"case {result.case_id} has metrics {sorted(result.metrics)}, not {sorted(present)}")
    return tuple(c for c in ALL_COLUMNS + ALL_COUNT_COLUMNS + ALL_LESION_COLUMNS if c in present)


def result_groups(results: Sequence[CaseResult], metric: str = "Dice") -> tuple[str, ...]:
    """The groups (ET, WT, TC, RC, NETC, SNFH) whose `metric` column the results hold, in report order.

    Example:
        >>> result_groups([CaseResult("a", dict.fromkeys(COLUMNS, 0.5))])
        ('ET', 'WT', 'TC')
    """
    columns = result_columns(results)
    return tuple(group for group in ALL_GROUPS if f"{metric}_{group}" in columns)


def write_metrics_csv(results: Sequence[CaseResult], path: str | Path) -> Path:
    """Writes one row per case, atomically: `case_id`, `prediction` (ok or missing), then the metric columns.

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
    columns = result_columns(results)
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(("case_id", "prediction") + columns)
    for result in results:
        status = "missing" if result.missing else "ok"
        writer.writerow([result.case_id, status] + [_cell(result.metrics[c]) for c in columns])
    return write_text(path, text.getvalue())


def _cell(value: float | int) -> str:
    """A CSV cell: counts as integers, scores to 6 significant digits."""
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def summarize(results: Sequence[CaseResult]) -> dict[str, dict[str, float]]:
    """Mean, population standard deviation and median of every metric column over all cases.

    Missing predictions count, with their empty-mask scores, as the BraTS evaluation counts them;
    NaN values (lesion-wise scores of a region present in neither mask) are left out.

    Args:
        results: the per-case results (at least one).

    Returns:
        dict statistic (`mean`, `std`, `median`) -> column -> value.

    Example:
        >>> rows = [CaseResult(str(i), dict.fromkeys(COLUMNS, float(i))) for i in range(3)]
        >>> summarize(rows)["median"]["Dice_WT"]
        1.0
    """
    columns = result_columns(results)
    table = np.array([[result.metrics[c] for c in columns] for result in results], np.float64)
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column summarises as NaN
        stats = {"mean": np.nanmean(table, 0), "std": np.nanstd(table, 0), "median": np.nanmedian(table, 0)}
    return {name: dict(zip(columns, map(float, stats[name]))) for name in STATISTICS}


def _table(rows: dict[str, dict[str, float]], columns: Sequence[str]) -> list[str]:
    """Markdown table lines: one row per entry of `rows`, Dice-like values 4 decimals, HD95 2."""
    # The package's lesion-wise HD95 ignores the voxel size: voxels, which are mm on BraTS' 1 mm grid.
    units = {"HD95": " (mm)", "LesionHD95": " (voxels)"}
    header = [c.replace("_", " ") + units.get(c.split("_")[0], "") for c in columns]
    lines = ["| | " + " | ".join(header) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, values in rows.items():
        cells = ["-" if c not in values else f"{values[c]:.2f}" if "HD95" in c or "FP" in c or "FN" in c
                 else f"{values[c]:.4f}" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


# Per counted group: what a case with it in its reference is called.
_COUNTED_NAMES = {"ET": "enhancing tumor", "RC": "resection cavity"}


def enhancing_by_reference(results: Sequence[CaseResult], group: str = "ET") -> list[str]:
    """Markdown lines: `group`'s Dice, HD95 and predicted voxels, for the cases with and without it (ET or RC).

    BraTS scores a case without enhancing tumor in its reference ET Dice 0 and HD95 373.13 as soon as a
    single voxel is predicted enhancing, so the two kinds of case are shown apart; on the cases
    without, the predicted ET is stray ET. The same holds for the resection cavity (RC) of a
    pre-treatment case. Needs the group's legacy columns and `count_columns`.

    Example:
        >>> counts = {"ET_voxels_reference": 0, "ET_voxels_predicted": 4, "ET_components_predicted": 3}
        >>> print(enhancing_by_reference([CaseResult("a", {**dict.fromkeys(COLUMNS, 0.0), **counts})])[3])
        | without enhancing tumor | 1 | 0.0000 | 0.00 | 4 | 3 |
    """
    reference, predicted, components = count_columns(group)
    lines = [f"| reference | cases | Dice {group} mean | HD95 {group} mean (mm) | {group} voxels predicted | "
             f"{group} components predicted |", "|---|---|---|---|---|---|"]
    named = _COUNTED_NAMES[group]
    cases = {f"with {named}": [r for r in results if r.metrics[reference] > 0],
             f"without {named}": [r for r in results if r.metrics[reference] == 0]}
    for name, chosen in cases.items():
        if not chosen:
            lines.append(f"| {name} | 0 | - | - | - | - |")
            continue
        dice, distance = (float(np.mean([r.metrics[f"{m}_{group}"] for r in chosen])) for m in ("Dice", "HD95"))
        voxels, parts = (sum(int(r.metrics[c]) for r in chosen) for c in (predicted, components))
        lines.append(f"| {name} | {len(chosen)} | {dice:.4f} | {distance:.2f} | {voxels} | {parts} |")
    stray = [r for r in cases[f"without {named}"] if r.metrics[predicted]]
    if stray:
        lines += ["", f"stray {group} on cases without {named}: " + ", ".join(
            f"{r.case_id} {int(r.metrics[predicted])} voxels in {int(r.metrics[components])} components"
            for r in stray)]
    return lines


def summary_markdown(results: Sequence[CaseResult], compare_paper: bool = True) -> str:
    """A markdown summary: the statistics tables (Dice 4 decimals, HD95 in mm), counts and misses.

    The legacy table (with the paper's Table 1 beside it) comes first, with ET shown apart for the
    cases with and without enhancing tumor (`enhancing_by_reference`), then the lesion-wise one
    with the totals of spurious and missed lesions, for whichever families the results hold.

    Args:
        results: the per-case results.
        compare_paper: add the paper's mean and median (Table 1) as the last two rows of the legacy table.

    Returns:
        the markdown text.

    Example:
        >>> rows = [CaseResult("a", dict.fromkeys(COLUMNS, 1.0))]
        >>> summary_markdown(rows).splitlines()[0]
        '| | Dice ET | Dice WT | Dice TC | HD95 ET (mm) | HD95 WT (mm) | HD95 TC (mm) |'
    """
    columns = result_columns(results)
    stats = summarize(results)
    lines = []
    groups = result_groups(results)
    if groups:
        legacy = legacy_columns(groups)
        rows = {name: {c: stats[name][c] for c in legacy} for name in STATISTICS}
        if compare_paper:
            rows.update({f"{PAPER_LABEL} {name}": PAPER_TABLE1[name] for name in ("mean", "median")})
        lines += _table(rows, legacy)
    for group in ("ET", "RC"):
        if count_columns(group)[0] in columns and f"Dice_{group}" in columns:
            predicted = "enhancing" if group == "ET" else "cavity"
            lines += ["", f"{_COUNTED_NAMES[group].capitalize()} by reference (a case without it scores {group} Dice "
                      f"0 as soon as one voxel is predicted {predicted}):", ""] + enhancing_by_reference(results, group)
    lesion_groups = result_groups(results, "LesionDice")
    if lesion_groups:
        shown = [c for c in ALL_LESION_COLUMNS if c in columns and not c.startswith(("LesionFP", "LesionFN"))]
        lines += ["", "Lesion-wise (BraTS 2023+, the official brats-evaluation package):", ""] if lines else []
        lines += _table({name: stats[name] for name in STATISTICS}, shown)
        totals = {c: sum(r.metrics[c] for r in results) for c in columns if c.startswith(("LesionFP", "LesionFN"))}
        fp, fn = ([totals[f"Lesion{kind}_{group}"] for group in lesion_groups] for kind in ("FP", "FN"))
        lines += [
            "",
            "lesions over all cases, " + ", ".join(
                f"{group}: {int(a)} spurious, {int(b)} missed" for group, a, b in zip(lesion_groups, fp, fn)
            ),
        ]
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

    The box plot shows the legacy Dice, or the lesion-wise Dice when the results hold only those.
    It needs matplotlib (the `plots` extra): without it the plot is left out with a warning and
    the tables are still written.

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
    metric = "Dice" if COLUMNS[0] in result_columns(results) else "LesionDice"
    paths = [
        write_metrics_csv(results, out_dir / "metrics.csv"),
        write_text(out_dir / "summary.md", summary_markdown(results)),
    ]
    try:
        paths.append(dice_boxplot(results, out_dir / "dice_boxplot.png", metric=metric))
    except ImportError as error:
        warnings.warn(f"dice_boxplot.png not drawn ({error}): pip install 'tfbrats[plots]'", stacklevel=2)
    return {path.name: path for path in paths}
