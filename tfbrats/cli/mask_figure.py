"""Draw a prepared clinical case's brain mask over its unmasked scan, to check it by eye.

Usage:
    tfbrats-mask-figure --case_dir=clinical_cases/P001 [--out=P001_brainmask.png]

Reads `<id>_head.nii.gz` and `<id>_brainmask.nii.gz` of a case that ``tfbrats-clinical`` masked
and writes the mask's outline on axial, coronal and sagittal slices through its centre
(`tfbrats.clinical.figure.draw_case_mask`; needs matplotlib, ``pip install 'tfbrats[plots]'``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from tfbrats.cli import run_command

FLAGS = flags.FlagValues()
_CASE_DIR = flags.DEFINE_string("case_dir", None, "Case folder written by tfbrats-clinical.", flag_values=FLAGS)
_OUT = flags.DEFINE_string("out", None, "PNG file (default: <case_dir>/<id>_brainmask.png).", flag_values=FLAGS)
flags.mark_flag_as_required("case_dir", flag_values=FLAGS)


def _draw() -> int:
    """Draws the figure and prints its path; 1 with the message when the case lacks a file."""
    from tfbrats.clinical.figure import draw_case_mask

    try:
        print(draw_case_mask(_CASE_DIR.value, _OUT.value))
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``tfbrats-mask-figure``: draws the figure of the flags in `argv` (default: the command line); the exit status.

    Example:
        >>> import contextlib, sys, tempfile
        >>> with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stderr(sys.stdout):
        ...     main([f"--case_dir={folder}/P1"])  # doctest: +ELLIPSIS
        error: .../P1/P1_head.nii.gz is missing; ...
        1
    """
    return run_command(FLAGS, _draw, argv, doc=__doc__, program="tfbrats-mask-figure")
