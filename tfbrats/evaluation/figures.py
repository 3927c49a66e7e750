"""Figures of an evaluation, like Fig. 4 of the paper (matplotlib, optional, imported lazily).

Figures are drawn on a bare `matplotlib.figure.Figure`, which renders with Agg and never touches
pyplot's global backend, so this works headless and inside a notebook alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tfbrats.evaluation.metrics import ALL_GROUPS, CaseResult
from tfbrats.files import atomic_path


def dice_boxplot(results: Sequence[CaseResult], path: str | Path, title: str = "", metric: str = "Dice") -> Path:
    """Writes a box plot of the per-case Dice of each group the results hold (ET, WT, TC[, RC, NETC, SNFH]), atomically.

    Args:
        results: the per-case results.
        path: the PNG file to write.
        title: optional title above the plot.
        metric: "Dice" (BraTS 2020's) or "LesionDice" (lesion-wise; NaN values are left out).

    Returns:
        the path written.

    Example:
        >>> import tempfile
        >>> from tfbrats.evaluation.metrics import COLUMNS
        >>> rows = [CaseResult("a", dict.fromkeys(COLUMNS, 0.8))]
        >>> dice_boxplot(rows, Path(tempfile.mkdtemp()) / "dice_boxplot.png").suffix
        '.png'
    """
    import numpy as np
    from matplotlib.figure import Figure

    regions = [group for group in ALL_GROUPS if f"{metric}_{group}" in results[0].metrics]
    values = [[result.metrics[f"{metric}_{region}"] for result in results] for region in regions]
    values = [[v for v in region_values if not np.isnan(v)] for region_values in values]
    fig = Figure(figsize=(4.5, 4.0), dpi=120, layout="constrained")
    ax = fig.subplots()
    ax.boxplot(values, showmeans=True, widths=0.5)
    ax.set_xticks(range(1, len(regions) + 1), regions)
    jitter = np.random.default_rng(0)
    for position, region_values in enumerate(values, start=1):
        x = position + jitter.uniform(-0.12, 0.12, len(region_values))
        ax.scatter(x, region_values, s=8, alpha=0.5, color="tab:blue", zorder=3)
    ax.set_ylabel("lesion-wise Dice" if metric == "LesionDice" else "Dice")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title)
    path = Path(path)
    with atomic_path(path) as partial:
        fig.savefig(partial, format="png")
    return path
