"""BraTS evaluation: region Dice and HD95 (legacy), lesion-wise metrics, per-case CSV, summary tables, figures.

Figures need matplotlib (the `plots` extra), imported only when a figure is drawn.
"""

from tfbrats.evaluation.folders import (
    METRIC_FAMILIES,
    FolderEvaluation,
    available_metric_families,
    evaluate_folders,
    find_reference_segs,
)
from tfbrats.evaluation.lesionwise import LESION_COLUMNS, lesionwise_available, lesionwise_metrics
from tfbrats.evaluation.metrics import (
    COLUMNS,
    HD95_EMPTY,
    CaseResult,
    case_metrics,
    dice,
    hd95,
)
from tfbrats.evaluation.report import (
    PAPER_TABLE1,
    summarize,
    summary_markdown,
    write_report,
)

__all__ = [
    "COLUMNS",
    "HD95_EMPTY",
    "LESION_COLUMNS",
    "METRIC_FAMILIES",
    "PAPER_TABLE1",
    "CaseResult",
    "FolderEvaluation",
    "case_metrics",
    "dice",
    "available_metric_families",
    "evaluate_folders",
    "find_reference_segs",
    "hd95",
    "lesionwise_available",
    "lesionwise_metrics",
    "summarize",
    "summary_markdown",
    "write_report",
]
