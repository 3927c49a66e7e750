"""Scores predicted segmentations against references with the BraTS 2020 conventions.

    python -m tfbrats.evaluate --pred_dir=predictions --ref_dir=/data/BraTS2020 --out=report

Writes `metrics.csv` (Dice and HD95 in mm of ET, WT and TC per case), `summary.md` (mean, std and
median beside the paper's Table 1) and `dice_boxplot.png` into `--out`, and prints the table. A
reference case without prediction is scored as an empty mask and listed, as BraTS scores it.
"""

from __future__ import annotations

from absl import app, flags

from tfbrats.evaluation import evaluate_folders, summary_markdown, write_report

_PRED_DIR = flags.DEFINE_string("pred_dir", None, "Folder of predicted <case_id>.nii.gz.")
_REF_DIR = flags.DEFINE_string(
    "ref_dir", None, "Dataset root (or case folder) with <id>_seg.nii.gz or <id>-seg.nii.gz."
)
_OUT = flags.DEFINE_string("out", None, "Folder for metrics.csv, summary.md, dice_boxplot.png.")
_ET_LABEL = flags.DEFINE_integer(
    "et_label", None, "Enhancing tumour value in both folders (default: 4 for _seg, 3 for -seg)."
)
flags.mark_flags_as_required(["pred_dir", "ref_dir", "out"])


def main(argv: list[str]) -> None:
    """Evaluates `--pred_dir` against `--ref_dir` and writes the report into `--out`."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    evaluation = evaluate_folders(_PRED_DIR.value, _REF_DIR.value, _ET_LABEL.value)
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
