"""Prepare a clinical study as a BraTS 2020 case.

Usage:
    python -m tfbrats.clinical --t1c T1C --t2 T2 --flair FLAIR [--t1 T1] [--mask MASK | --no_mask]
        [--reference t1c] [--dicom_reader pydicom|tfio] --case_id ID --out DIR

Each scan is a DICOM series folder or a NIfTI file. Writes `DIR/ID/ID_{t1,t1ce,t2,flair}.nii.gz`,
the brain mask `DIR/ID/ID_brainmask.nii.gz` and `DIR/ID/ID_clinical.json` (every step with its
parameters, metric values and transforms). Without `--mask` the brain mask is computed (deepbet,
`pip install 'tfbrats[brainmask]'`); `--no_mask` declares the scans already skull-stripped. With
none of the three it stops (exit status 1) and says how to get one. DICOM pixels are decoded with
pydicom; `--dicom_reader=tfio` uses tensorflow-io instead where it is installed and loads
(TensorFlow 2.16 only).
"""

from __future__ import annotations

import sys

from absl import app, flags

from tfbrats.clinical.brainmask import DEFAULT_THRESHOLD, BrainMaskUnavailable
from tfbrats.clinical.dicom import READERS, DicomReaderUnavailable, DicomSeriesError
from tfbrats.clinical.pipeline import prepare_case

FLAGS = flags.FLAGS
flags.DEFINE_string("t1c", None, "Contrast-enhanced T1: DICOM series folder or NIfTI file.")
flags.DEFINE_string("t2", None, "T2: DICOM series folder or NIfTI file.")
flags.DEFINE_string("flair", None, "FLAIR: DICOM series folder or NIfTI file.")
flags.DEFINE_string("t1", None, "Native T1 (optional; T1c is copied into the T1 slot when missing).")
flags.DEFINE_string("mask", None, "Brain mask (NIfTI or DICOM) in the reference scan's world "
                    "coordinates; voxels outside are set to 0. Without it the mask is computed "
                    "automatically (the brainmask extra).")
flags.DEFINE_boolean("no_mask", False, "The scans are already skull-stripped: write them unmasked "
                     "(recorded in the sidecar).")
flags.DEFINE_enum("mask_input", None, ["t1", "t1c", "t2", "flair"],
                  "Scan the automatic brain mask is computed from; default t1, else t1c.")
flags.DEFINE_float("mask_threshold", DEFAULT_THRESHOLD, "Probability threshold of the automatic brain mask.")
flags.DEFINE_enum("reference", None, ["t1", "t1c", "t2", "flair"],
                  "Scan every other scan is registered to; default the highest-resolution one.")
flags.DEFINE_string("case_id", None, "Case name: the output folder and file prefix.")
flags.DEFINE_string("out", None, "Dataset root; the case is written to OUT/CASE_ID/.")
flags.DEFINE_float("spacing", 1.0, "Isotropic output voxel size in mm.")
flags.DEFINE_boolean("overwrite", False, "Replace an existing OUT/CASE_ID folder.")
flags.DEFINE_boolean("figure", True, "Draw the brain mask's outline over the unmasked scan on three planes "
                     "into OUT/CASE_ID/CASE_ID_brainmask.png (needs matplotlib).")
flags.DEFINE_enum("dicom_reader", READERS[0], list(READERS),
                  "DICOM pixel decoder: pydicom (exact values, no tensorflow-io needed) or tfio "
                  "(tensorflow-io's DCMTK, only where it loads: TensorFlow 2.16).")
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
            scans, FLAGS.case_id, FLAGS.out, mask=FLAGS.mask, skull_stripped=FLAGS.no_mask,
            mask_input=_FLAG_TO_MODALITY[FLAGS.mask_input] if FLAGS.mask_input else None,
            mask_threshold=FLAGS.mask_threshold,
            reference=_FLAG_TO_MODALITY[FLAGS.reference] if FLAGS.reference else None,
            spacing_mm=FLAGS.spacing, overwrite=FLAGS.overwrite, dicom_reader=FLAGS.dicom_reader)
    except (BrainMaskUnavailable, DicomReaderUnavailable, DicomSeriesError, FileExistsError, FileNotFoundError,
            ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if FLAGS.figure and (case_dir / f"{case_dir.name}_brainmask.nii.gz").exists():
        try:
            from tfbrats.clinical.figure import draw_case_mask

            print(f"check the brain mask: {draw_case_mask(case_dir)}", file=sys.stderr)
        except ImportError as error:
            print(f"no brain mask figure ({error}); pip install 'tfbrats[plots]' or open "
                  f"{case_dir.name}_brainmask.nii.gz over {case_dir.name}_head.nii.gz in ITK-SNAP or 3D Slicer",
                  file=sys.stderr)
    print(case_dir)
    return 0


if __name__ == "__main__":
    app.run(main)
