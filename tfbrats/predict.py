"""Segments whole patients with a trained model and writes NIfTI label maps.

    python -m tfbrats.predict --model=runs/3d --input=/data/BraTS2020_Validation --output=predictions

`--input` is a dataset root (any layout `tfbrats.data.find_cases` knows), a manifest, or one case
folder. Each case is preprocessed exactly as in training, tiled with overlapping windows (the
training patch, steps 24 x 32 x 32 as in the paper), uncropped and written as
`<output>/<case_id>.nii.gz` with the input's affine and header and the dataset's own labels
(ET = 4 for BraTS 2020). Finished cases are skipped on a rerun unless `--overwrite`.

A case may lack some of its modalities (FLAIR, T1c, T2, and T1 for 4-channel models), not all:
each missing one is filled with zeros (the z-scored brain mean, what `--modality_dropout` training
fills), named in the log, and recorded in `<output>/<case_id>.json` beside the prediction (missing
modalities, the fill, the model's modality dropout, and a warning when it had none, as then the
result on an incomplete case is unreliable). A `--target=regions` model (config.json) has its WT,
TC, ET probabilities turned into nested labels.
"""

from __future__ import annotations

import os
import sys
from argparse import ArgumentTypeError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

_MODEL = flags.DEFINE_string("model", None, "Training run folder (best.keras/final.keras) or a .keras file.")
_INPUT = flags.DEFINE_string("input", None, "Dataset root, manifest CSV, or a single case folder.")
_OUTPUT = flags.DEFINE_string("output", None, "Folder for <case_id>.nii.gz predictions.")
_PATCH = flags.DEFINE_list("patch_size", None, "Window D,H,W (default: the training patch from config.json).")
_STEPS = flags.DEFINE_list("steps", ["24", "32", "32"], "Window steps D,H,W (clipped to the window size).")
_FULL_VOLUME = flags.DEFINE_bool("full_volume", False, "One pass over the whole cropped volume, no windows.")
_BLEND = flags.DEFINE_enum("blend", "mean", ["mean", "gaussian"], "How overlapping windows are averaged.")
_MIRROR = flags.DEFINE_bool("mirror_tta", False, "Average over mirrored copies (8x the work in 3-D).")
_BATCH = flags.DEFINE_integer("batch_size", 2, "Windows per forward pass.")
_PRECISION = flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"],
                               "Compute precision (bfloat16 is faster on CPUs with AVX512_BF16 and on GPUs).")
_MIN_ET = flags.DEFINE_integer("min_et_voxels", 0, "Relabel enhancing tumor as necrosis when it has fewer voxels.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Recompute cases whose output already exists.")
flags.mark_flags_as_required(["model", "input", "output"])


def _triple(values: list[str], name: str) -> tuple[int, int, int]:
    from tfbrats.cli import parse_size

    try:
        return parse_size(",".join(values))
    except ArgumentTypeError as error:
        raise app.UsageError(f"--{name}: {error}") from None


def main(argv: list[str]) -> int:
    """Predicts every case of `--input` into `--output`."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from tfbrats.data import find_cases
    from tfbrats.inference.predict import WindowSettings, load_model, predict_cases

    index = find_cases(_INPUT.value)
    loaded = load_model(_MODEL.value, _PRECISION.value)
    patch = None if _FULL_VOLUME.value else (_triple(_PATCH.value, "patch_size") if _PATCH.value else loaded.patch_size)
    steps = _triple(_STEPS.value, "steps")
    if patch is not None:
        steps = tuple(min(step, size) for step, size in zip(steps, patch))
    window = WindowSettings(patch, steps, _BATCH.value, _BLEND.value, _MIRROR.value)
    logging.info("%d cases (%s layout) with %s, windows %s", len(index.cases), index.layout, loaded.path, window)
    summary = predict_cases(index.cases, loaded, _OUTPUT.value, window, _MIN_ET.value, _OVERWRITE.value)
    print(f"wrote {len(summary.written)} predictions to {_OUTPUT.value}"
          + (f"; skipped {len(summary.skipped)} already done (use --overwrite to redo)" if summary.skipped else ""))
    for case_id, reason in summary.failed.items():
        print(f"FAILED {case_id}: {reason}", file=sys.stderr)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    app.run(main)
