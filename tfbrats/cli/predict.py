"""Segments whole patients with a trained model and writes NIfTI label maps.

    tfbrats-predict --model=runs/3d --input=/data/BraTS2020_Validation --output=predictions

`--input` is a dataset root (any layout `tfbrats.data.find_cases` knows), a manifest, or one case
folder. Each case is preprocessed exactly as in training, tiled with overlapping windows (the
training patch, steps 24 x 32 x 32 as in the paper), post-processed, uncropped and written as
`<output>/<case_id>.nii.gz` with the input's affine and header and the dataset's own labels
(ET = 4 for BraTS 2020). The window, the target and the post-processing come from the model's
segmentation contract (chosen on validation by ``tfbrats-tune``); a flag overrides one
setting, and the sidecar `<output>/<case_id>.json` records what was applied. A rerun skips cases
made by the same model and contract and recomputes the others; `--overwrite` recomputes all.

Prediction never replaces what it did not write: an `--output` that holds, or lies in the folder
of, any input file (a dataset's `imagesTr`/`labelsTr`, a case folder, a dataset root), a file, or
a folder that cannot be written is refused before any case is computed; a `<case_id>.nii.gz` or
`<case_id>.json` there whose sidecar does not say tfbrats wrote it fails that case (named, left
untouched, `--overwrite` or not) while the others go on. A bad input, model or output folder is
one `error:` line; any failed case makes the exit status 1.

A case may lack some of its modalities (FLAIR, T1c, T2, and T1 for 4-channel models), not all:
each missing one is filled with zeros (the z-scored brain mean, what `--modality_dropout` training
fills), named in the log, and recorded in `<output>/<case_id>.json` beside the prediction (missing
modalities, the fill, the model's modality dropout, and a warning when it had none, as then the
result on an incomplete case is unreliable). A `--target=regions` model has its WT, TC, ET
probabilities turned into nested labels.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from tfbrats.cli import run_command, size_flag  # noqa: E402

FLAGS = flags.FlagValues()

_MODEL = flags.DEFINE_string("model", None, "Training run folder (best.keras/final.keras) or a .keras file.",
                             flag_values=FLAGS)
_INPUT = flags.DEFINE_string("input", None, "Dataset root, manifest CSV, or a single case folder.", flag_values=FLAGS)
_OUTPUT = flags.DEFINE_string("output", None, "Folder for <case_id>.nii.gz predictions.", flag_values=FLAGS)
# Unset flags keep what the model's contract says (its training patch, the tuned post-processing).
_PATCH = flags.DEFINE_list("patch_size", None, "Window D,H,W (default: the model's contract, the training patch).",
                           flag_values=FLAGS)
_STEPS = flags.DEFINE_list("steps", None, "Window steps D,H,W, clipped to the window (default: the contract's).",
                           flag_values=FLAGS)
_FULL_VOLUME = flags.DEFINE_bool("full_volume", False, "One pass over the whole cropped volume, no windows.",
                                 flag_values=FLAGS)
_BLEND = flags.DEFINE_enum("blend", None, ["mean", "gaussian"], "How overlapping windows are averaged.",
                           flag_values=FLAGS)
_MIRROR = flags.DEFINE_bool("mirror_tta", None, "Average over mirrored copies (8x the work in 3-D).", flag_values=FLAGS)
_BATCH = flags.DEFINE_integer("batch_size", None, "Windows per forward pass.", flag_values=FLAGS)
_PRECISION = flags.DEFINE_enum("precision", None, ["float32", "mixed_bfloat16", "mixed_float16"],
                               "Compute precision (default: the contract's, float32 unless tfbrats.tune chose "
                               "bfloat16; bfloat16 is faster on CPUs with AVX512_BF16 and on GPUs).", flag_values=FLAGS)
_BRAIN_MASK = flags.DEFINE_bool("brain_mask", None, "Set voxels outside the brain (zero in every channel) to "
                                "background.", flag_values=FLAGS)
_MIN_COMPONENT = flags.DEFINE_integer("min_component_voxels", None, "Remove tumor components with fewer voxels.",
                                      flag_values=FLAGS)
_MIN_ET = flags.DEFINE_integer("min_et_voxels", None, "Relabel enhancing tumor as necrosis when it has fewer voxels.",
                               flag_values=FLAGS)
_MIN_ET_COMPONENT = flags.DEFINE_integer("min_et_component_voxels", None, "Give enhancing-tumor components with fewer "
                                         "voxels the class around them.", flag_values=FLAGS)
_MIN_RC_COMPONENT = flags.DEFINE_integer("min_rc_component_voxels", None, "Give resection-cavity components with "
                                         "fewer voxels the class around them (a model with the cavity only).",
                                         flag_values=FLAGS)
_LABEL_VALUES = flags.DEFINE_list("label_values", None, "Values written for necrosis, edema and enhancing tumor, "
                                  "e.g. 1,2,4 (default: each input dataset's own).", flag_values=FLAGS)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Recompute every case, even those made by this model and contract.",
                               flag_values=FLAGS)
flags.mark_flags_as_required(["model", "input", "output"], flag_values=FLAGS)


def _predict() -> int:
    """Predicts every case of `--input` into `--output`; 1 when the input, the model or any case failed."""
    from tfbrats.data import find_cases
    from tfbrats.inference.model import load_model, override_contract
    from tfbrats.inference.predict import predict_cases

    patch_size, steps = size_flag(_PATCH.value, "patch_size"), size_flag(_STEPS.value, "steps")
    label_values = size_flag(_LABEL_VALUES.value, "label_values")
    try:
        index = find_cases(_INPUT.value)
        loaded = load_model(_MODEL.value, _PRECISION.value)
        contract = override_contract(
            loaded.contract, patch_size=patch_size, full_volume=_FULL_VOLUME.value, steps=steps,
            batch_size=_BATCH.value, blend=_BLEND.value, mirror_tta=_MIRROR.value, brain_mask=_BRAIN_MASK.value,
            min_component_voxels=_MIN_COMPONENT.value, min_et_voxels=_MIN_ET.value, label_values=label_values,
            min_et_component_voxels=_MIN_ET_COMPONENT.value, min_rc_component_voxels=_MIN_RC_COMPONENT.value,
            precision=_PRECISION.value)
        print(f"{len(index.cases)} cases ({index.layout} layout); model {loaded.path}; target "
              f"{contract.target.name}; window {contract.window.patch_size or 'full volume'}; post-processing: "
              f"{contract.postprocessing.describe()} ({contract.chosen_by})")
        summary = predict_cases(index.cases, loaded, _OUTPUT.value, contract, _OVERWRITE.value)
    except (OSError, ValueError) as error:  # the input, the model or the output folder: nothing was predicted
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(summary.written)} predictions to {_OUTPUT.value}"
          + (f" ({len(summary.recomputed)} recomputed: made by another model or contract)"
             if summary.recomputed else "")
          + (f"; skipped {len(summary.skipped)} already done by this model and contract" if summary.skipped else ""))
    for case_id, reason in summary.failed.items():
        print(f"FAILED {case_id}: {reason}", file=sys.stderr)
    return 1 if summary.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``tfbrats-predict``: segments with the flags in `argv` (default: the command line); the exit status.

    Example:
        >>> import contextlib, io
        >>> with contextlib.redirect_stderr(io.StringIO()) as err:
        ...     status = main(["--model=run", "--input=cases", "--output=out", "--steps=8,32"])
        >>> status, err.getvalue().splitlines()[0]
        (2, "error: --steps: expected three positive integers D,H,W; got '8,32'")
    """
    return run_command(FLAGS, _predict, argv, doc=__doc__, program="tfbrats-predict")
