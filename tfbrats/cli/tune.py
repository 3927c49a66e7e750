"""Chooses a run's post-processing on its validation cases and writes it into the model.

    tfbrats-tune --model=runs/3d
    tfbrats-tune --model=runs/3d --other_folds=runs/3d-fold1,runs/3d-fold2,runs/3d-fold3,runs/3d-fold4

Every validation case of the run (its own fold of its own data, as `config.json` records them)
is segmented as a whole volume with the model's window; then tumor-component removal, the
relabelling of resection-cavity dust (a model with the cavity), the relabelling of
enhancing-tumor dust and the enhancing-tumor volume threshold are chosen as
`tfbrats.evaluation.tuning` describes (a step is kept only when no region's mean validation Dice
drops). The run folder gets `tuning.json` (the choice, every candidate, the per-case table, and
the evidence: how many validation cases, how many without enhancing tumor, and for a model with
the cavity how many without one and how many of those got stray cavity voxels) and `tuning.csv`
(per-case Dice/HD95 before and after), and the model file (`best.keras`, else `final.keras`) is
rewritten with the chosen post-processing in its segmentation contract, so `tfbrats.predict`,
exports and serving apply it by default. ``tfbrats-train`` runs this at the end of training
(over every fold with ``--all_folds``). With ``--other_folds`` the choice rests on the validation
cases of every fold, each segmented by the model that never trained on it (out-of-fold, as
nnU-Net chooses), and every fold's model gets it.

Then the inference mode: each mode of `tfbrats.inference.modes` (the model's own window, the
paper's 24x128x128 windows with steps 24x32x32, the same without overlap, one full-volume pass;
float32, and bfloat16 where the CPU has AVX512_BF16 or AMX) segments the validation cases, timed on
this machine; the contract takes the fastest whose mean validation Dice is within
--mode_tolerance (0.005) of the model's own window's in every region and whose whole-tumor labels
agree with the paper's windows' at a mean Dice of at least --mode_agreement (0.995), and records
every mode's seconds, Dice and agreement (`inference_mode` in the contract and in tuning.json). `tfbrats.predict`'s
--patch_size, --steps, --full_volume and --precision still override it for one call.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from tfbrats.cli import UsageError, run_command  # noqa: E402

FLAGS = flags.FlagValues()

_MODEL = flags.DEFINE_string("model", None, "Training run folder (its config.json names the data and the fold).",
                             flag_values=FLAGS)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "The run's data, if it has moved since training (default: "
                                "config.json's data_dir or cache_dir).", flag_values=FLAGS)
_COMPONENTS = flags.DEFINE_list("component_candidates", None, "Minimum tumor component sizes (voxels) to try "
                                "(default: 0,10,50,100,200).", flag_values=FLAGS)
_DUST = flags.DEFINE_list("dust_candidates", None, "Minimum ET component sizes (voxels) to try; smaller ET components "
                          "take the class around them (default: 0,10,20,50,100).", flag_values=FLAGS)
_CAVITY = flags.DEFINE_list("cavity_candidates", None, "Minimum resection-cavity component sizes (voxels, at most "
                            "100) to try for a model with the cavity; smaller cavity components take the class "
                            "around them (default: 0,10,20,50,100).", flag_values=FLAGS)
_ET = flags.DEFINE_list("et_candidates", None, "ET voxel thresholds to try (default: 0,50,100,200,500,750,1000).",
                        flag_values=FLAGS)
_OTHER_FOLDS = flags.DEFINE_list("other_folds", [], "Run folders of the other folds of the same split (e.g. "
                                 "runs/demo-fold1,...): the choice rests on every fold's validation cases, each "
                                 "segmented by its own fold's model, and is written into every fold's model.",
                                 flag_values=FLAGS)
_MODES = flags.DEFINE_list("inference_modes", None, "Inference modes to choose from (default: every mode this CPU "
                           "runs: contract, paper_windows, no_overlap, full_volume, and their _bf16 variants where "
                           "the CPU has bfloat16); 'none' keeps the model's window.", flag_values=FLAGS)
_MODE_TOLERANCE = flags.DEFINE_float("mode_tolerance", 0.005, "Largest drop of mean validation Dice, in any region, "
                                     "that the chosen inference mode may cost.", flag_values=FLAGS)
_MODE_AGREEMENT = flags.DEFINE_float("mode_agreement", 0.995, "Least mean whole-tumor Dice between the chosen "
                                     "inference mode's labels and those of the paper's 24x128x128 windows; 0 turns "
                                     "the condition off.", flag_values=FLAGS)
flags.mark_flag_as_required("model", flag_values=FLAGS)


def _tune() -> int:
    """Tunes the post-processing of `--model` and prints the choice; 2 when the run cannot be tuned."""
    from tfbrats.evaluation.tuning import CAVITY_CANDIDATES, COMPONENT_CANDIDATES, DUST_CANDIDATES, ET_CANDIDATES
    from tfbrats.evaluation.tuning_run import tune_run
    from tfbrats.inference.modes import InferenceMode

    try:
        components = tuple(int(v) for v in _COMPONENTS.value) if _COMPONENTS.value else COMPONENT_CANDIDATES
        thresholds = tuple(int(v) for v in _ET.value) if _ET.value else ET_CANDIDATES
        dust = tuple(int(v) for v in _DUST.value) if _DUST.value else DUST_CANDIDATES
        cavity = tuple(int(v) for v in _CAVITY.value) if _CAVITY.value else CAVITY_CANDIDATES
    except ValueError as error:
        raise UsageError(f"candidates must be integers: {error}") from None
    try:
        modes = None if _MODES.value is None else [InferenceMode.from_name(name) for name in _MODES.value
                                                   if name != "none"]
    except ValueError as error:
        raise UsageError(f"--inference_modes: {error}") from None
    try:
        summary = tune_run(_MODEL.value, data_dir=_DATA_DIR.value, component_candidates=components,
                           et_candidates=thresholds, dust_candidates=dust, other_folds=_OTHER_FOLDS.value,
                           modes=modes, mode_tolerance=_MODE_TOLERANCE.value,
                           mode_agreement=_MODE_AGREEMENT.value, cavity_candidates=cavity)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``tfbrats-tune``: tunes with the flags in `argv` (default: the command line); the exit status.

    Example:
        >>> import contextlib, io
        >>> with contextlib.redirect_stderr(io.StringIO()) as err:
        ...     status = main(["--model=runs/demo", "--et_candidates=0,many"])
        >>> status, err.getvalue().splitlines()[0]
        (2, "error: candidates must be integers: invalid literal for int() with base 10: 'many'")
    """
    return run_command(FLAGS, _tune, argv, doc=__doc__, program="tfbrats-tune")
