"""Scores predicted segmentations against references, as BraTS 2020 and BraTS 2023+ score them.

    python -m tfbrats.evaluate --pred_dir=predictions --ref_dir=/data/BraTS2020 --out=report

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

from absl import app, flags

from tfbrats.evaluation import (
    METRIC_FAMILIES,
    available_metric_families,
    evaluate_folders,
    summary_markdown,
    write_report,
)

_PRED_DIR = flags.DEFINE_string("pred_dir", None, "Folder of predicted <case_id>.nii.gz.")
_REF_DIR = flags.DEFINE_string(
    "ref_dir", None, "Dataset root (or case folder) with <id>_seg.nii.gz or <id>-seg.nii.gz."
)
_OUT = flags.DEFINE_string("out", None, "Folder for metrics.csv, summary.md, dice_boxplot.png.")
_ET_LABEL = flags.DEFINE_integer(
    "et_label", None, "BraTS enhancing tumour value in both folders (default: the references' layout's labels)."
)
_METRICS = flags.DEFINE_multi_enum(
    "metrics",
    list(METRIC_FAMILIES),
    list(METRIC_FAMILIES),
    "Metric families: legacy (BraTS 2020 Dice, HD95) and/or lesionwise (BraTS 2023+, brats-evaluation).",
)
flags.mark_flags_as_required(["pred_dir", "ref_dir", "out"])


def main(argv: list[str]) -> None:
    """Evaluates `--pred_dir` against `--ref_dir` and writes the report into `--out`."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    metrics = tuple(family for family in METRIC_FAMILIES if family in _METRICS.value)
    if not flags.FLAGS["metrics"].present and available_metric_families() != METRIC_FAMILIES:
        metrics = available_metric_families()
        print("lesion-wise metrics need the lesionwise extra (pip install -e '.[lesionwise]'); reporting legacy only")
    try:
        evaluation = evaluate_folders(_PRED_DIR.value, _REF_DIR.value, _ET_LABEL.value, metrics)
    except ImportError as error:
        raise app.UsageError(str(error)) from None
    paths = write_report(evaluation.results, _OUT.value)
    print(summary_markdown(evaluation.results), end="")
    if evaluation.unmatched_predictions:
        print(
            f"{len(evaluation.unmatched_predictions)} predictions without reference (ignored): "
            + ", ".join(evaluation.unmatched_predictions)
        )
    print("report: " + ", ".join(str(path) for path in paths.values()))


if __name__ == "__main__":
    app.run(main)
