"""Prepare a clinical study as a BraTS 2020 case.

Usage:
    python -m tfbrats.clinical --t1c T1C --t2 T2 --flair FLAIR [--t1 T1] [--mask MASK]
        [--reference t1c] --case_id ID --out DIR

Each scan is a DICOM series folder or a NIfTI file. Writes `DIR/ID/ID_{t1,t1ce,t2,flair}.nii.gz`
and `DIR/ID/ID_clinical.json` (every step with its parameters, metric values and transforms).
"""

from __future__ import annotations

import sys

from absl import app, flags

from tfbrats.clinical.dicom import DicomSeriesError
from tfbrats.clinical.pipeline import prepare_case

FLAGS = flags.FLAGS
flags.DEFINE_string("t1c", None, "Contrast-enhanced T1: DICOM series folder or NIfTI file.")
flags.DEFINE_string("t2", None, "T2: DICOM series folder or NIfTI file.")
flags.DEFINE_string("flair", None, "FLAIR: DICOM series folder or NIfTI file.")
flags.DEFINE_string("t1", None, "Native T1 (optional; T1c is copied into the T1 slot when missing).")
flags.DEFINE_string("mask", None, "Brain mask (NIfTI or DICOM) in the reference scan's world "
                    "coordinates; voxels outside are set to 0.")
flags.DEFINE_enum("reference", None, ["t1", "t1c", "t2", "flair"],
                  "Scan every other scan is registered to; default the highest-resolution one.")
flags.DEFINE_string("case_id", None, "Case name: the output folder and file prefix.")
flags.DEFINE_string("out", None, "Dataset root; the case is written to OUT/CASE_ID/.")
flags.DEFINE_float("spacing", 1.0, "Isotropic output voxel size in mm.")
flags.DEFINE_boolean("overwrite", False, "Replace an existing OUT/CASE_ID folder.")
flags.mark_flags_as_required(["t1c", "t2", "flair", "case_id", "out"])

# Command-line names of the modalities -> BraTS 2020 file suffixes.
_FLAG_TO_MODALITY = {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair"}


def main(argv: list[str]) -> int:
    """Run the preparation with the parsed flags; exit 1 with the message on bad input.

    Args:
        argv: leftover positional arguments (none are accepted).

    Example:
        >>> app.run(main)  # doctest: +SKIP
    """
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; every input is a flag.")
    scans = {modality: getattr(FLAGS, flag) for flag, modality in _FLAG_TO_MODALITY.items()}
    try:
        case_dir = prepare_case(
            scans, FLAGS.case_id, FLAGS.out, mask=FLAGS.mask,
            reference=_FLAG_TO_MODALITY[FLAGS.reference] if FLAGS.reference else None,
            spacing_mm=FLAGS.spacing, overwrite=FLAGS.overwrite)
    except (DicomSeriesError, FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(case_dir)
    return 0


if __name__ == "__main__":
    app.run(main)
