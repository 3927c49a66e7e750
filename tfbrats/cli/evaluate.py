"""Scores predicted segmentations against references, as BraTS 2020 and BraTS 2023+ score them.

    tfbrats-evaluate --pred_dir=predictions --ref_dir=/data/BraTS2020 --out=report

`--metrics=legacy,lesionwise` (the default; legacy alone, with a note, where the package is not
installed) reports both families side by side: legacy, BraTS
2020's global Dice and HD95 (mm) of ET, WT and TC; lesion-wise, BraTS 2023+'s per-lesion Dice,
HD95 and detection (spurious and missed lesions), computed by the official `brats-evaluation`
package (the `lesionwise` extra). Writes `metrics.csv` (per case), `summary.md` (mean, std and
median, the legacy table beside the paper's Table 1) and `dice_boxplot.png` into `--out`, and
prints the tables. `--ref_dir` is any layout tfbrats reads (BraTS 2018-2023+, a manifest,
Decathlon, nnU-Net raw); predictions carry the references' label values. A reference case without
prediction is scored as an empty mask and listed, as BraTS scores it.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from tfbrats.cli import UsageError, run_command
from tfbrats.evaluation import (
    METRIC_FAMILIES,
    available_metric_families,
    evaluate_folders,
    summary_markdown,
    write_report,
)

FLAGS = flags.FlagValues()
_PRED_DIR = flags.DEFINE_string("pred_dir", None, "Folder of predicted <case_id>.nii.gz.", flag_values=FLAGS)
_REF_DIR = flags.DEFINE_string(
    "ref_dir", None, "Dataset root (or case folder) with <id>_seg.nii.gz or <id>-seg.nii.gz.", flag_values=FLAGS)
_OUT = flags.DEFINE_string("out", None, "Folder for metrics.csv, summary.md, dice_boxplot.png.", flag_values=FLAGS)
_ET_LABEL = flags.DEFINE_integer(
    "et_label", None, "BraTS enhancing tumour value in both folders (default: the references' layout's labels).",
    flag_values=FLAGS)
_METRICS = flags.DEFINE_list(
    "metrics", list(METRIC_FAMILIES),
    "Metric families, comma-separated: legacy (BraTS 2020 Dice, HD95) and/or lesionwise (BraTS 2023+, "
    "brats-evaluation).", flag_values=FLAGS)
flags.register_validator("metrics", lambda names: bool(names) and set(names) <= set(METRIC_FAMILIES),
                         f"--metrics: give one or more of {', '.join(METRIC_FAMILIES)}, comma-separated",
                         flag_values=FLAGS)
flags.mark_flags_as_required(["pred_dir", "ref_dir", "out"], flag_values=FLAGS)


def _evaluate() -> None:
    """Evaluates `--pred_dir` against `--ref_dir` and writes the report into `--out`."""
    metrics = tuple(family for family in METRIC_FAMILIES if family in _METRICS.value)
    if not FLAGS["metrics"].present and available_metric_families() != METRIC_FAMILIES:
        metrics = available_metric_families()
        print("lesion-wise metrics need the lesionwise extra (pip install -e '.[lesionwise]'); reporting legacy only")
    try:
        evaluation = evaluate_folders(_PRED_DIR.value, _REF_DIR.value, _ET_LABEL.value, metrics)
    except ImportError as error:
        raise UsageError(str(error)) from None
    paths = write_report(evaluation.results, _OUT.value)
    print(summary_markdown(evaluation.results), end="")
    if evaluation.unmatched_predictions:
        print(
            f"{len(evaluation.unmatched_predictions)} predictions without reference (ignored): "
            + ", ".join(evaluation.unmatched_predictions)
        )
    print("report: " + ", ".join(str(path) for path in paths.values()))


def main(argv: Sequence[str] | None = None) -> int:
    """``tfbrats-evaluate``: scores with the flags in `argv` (default: the command line); the exit status.

    Example:
        >>> import contextlib, io
        >>> with contextlib.redirect_stderr(io.StringIO()) as err:
        ...     status = main(["--pred_dir=predictions", "--ref_dir=references"])
        >>> status, "--out" in err.getvalue()
        (2, True)
    """
    return run_command(FLAGS, _evaluate, argv, doc=__doc__, program="tfbrats-evaluate")
