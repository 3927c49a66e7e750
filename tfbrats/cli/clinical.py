"""Prepare a clinical study as a BraTS 2020 case.

Usage:
    tfbrats-clinical --t1c=T1C --t2=T2 --flair=FLAIR [--t1=T1] [--mask=MASK | --no_mask]
        [--reference=t1c] [--dicom_reader=pydicom|tfio] [--model=RUN] --case_id=ID --out=DIR
    tfbrats-clinical --pacs=AET@HOST:PORT --study=STUDY_UID [--calling_aet=TFBRATS]
        [--t1c=SERIES] ... [--model=RUN [--store]] --case_id=ID --out=DIR

Each scan is a DICOM series folder or a NIfTI file. Writes `DIR/ID/ID_{t1,t1ce,t2,flair}.nii.gz`,
the brain mask `DIR/ID/ID_brainmask.nii.gz` and `DIR/ID/ID_clinical.json` (every step with its
parameters, metric values and transforms). Without `--mask` the brain mask is computed (deepbet,
`pip install 'tfbrats[brainmask]'`); `--no_mask` declares the scans already skull-stripped. With
none of the three it stops (exit status 1) and says how to get one. DICOM pixels are decoded with
pydicom; `--dicom_reader=tfio` uses tensorflow-io instead where it is installed and loads
(TensorFlow 2.16 only).

With `--model` the case is segmented with the model's contract and the labels are written on the
reference series' own grid: `DIR/ID/ID_seg_native.nii.gz` and, for a DICOM reference, the DICOM
Segmentation `DIR/ID/ID_seg.dcm`; the region volumes (ml) are printed and recorded in the sidecar.
With `--pacs` the study's series are pulled from a PACS (chosen by SeriesDescription; `--t1c` etc.
then name a series by UID or description) and `--store` sends the DICOM Segmentation back.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from absl import flags

from tfbrats.cli import UsageError, run_command
from tfbrats.clinical.brainmask import DEFAULT_THRESHOLD, BrainMaskUnavailable
from tfbrats.clinical.dicom import READERS, DicomReaderUnavailable, DicomSeriesError
from tfbrats.clinical.pipeline import prepare_case
from tfbrats.files import write_json

FLAGS = flags.FlagValues()
flags.DEFINE_string("t1c", None, "Contrast-enhanced T1: DICOM series folder or NIfTI file.", flag_values=FLAGS)
flags.DEFINE_string("t2", None, "T2: DICOM series folder or NIfTI file.", flag_values=FLAGS)
flags.DEFINE_string("flair", None, "FLAIR: DICOM series folder or NIfTI file.", flag_values=FLAGS)
flags.DEFINE_string("t1", None, "Native T1 (optional; T1c is copied into the T1 slot when missing).", flag_values=FLAGS)
flags.DEFINE_string("mask", None, "Brain mask (NIfTI or DICOM) in the reference scan's world "
                    "coordinates; voxels outside are set to 0. Without it the mask is computed "
                    "automatically (the brainmask extra).", flag_values=FLAGS)
flags.DEFINE_boolean("no_mask", False, "The scans are already skull-stripped: write them unmasked "
                     "(recorded in the sidecar).", flag_values=FLAGS)
flags.DEFINE_enum("mask_input", None, ["t1", "t1c", "t2", "flair"],
                  "Scan the automatic brain mask is computed from; default t1, else t1c.", flag_values=FLAGS)
flags.DEFINE_float("mask_threshold", DEFAULT_THRESHOLD, "Probability threshold of the automatic brain mask.",
                   flag_values=FLAGS)
flags.DEFINE_enum("reference", None, ["t1", "t1c", "t2", "flair"],
                  "Scan every other scan is registered to; default the highest-resolution one.", flag_values=FLAGS)
flags.DEFINE_string("case_id", None, "Case name: the output folder and file prefix.", flag_values=FLAGS)
flags.DEFINE_string("out", None, "Dataset root; the case is written to OUT/CASE_ID/.", flag_values=FLAGS)
flags.DEFINE_float("spacing", 1.0, "Isotropic output voxel size in mm.", flag_values=FLAGS)
flags.DEFINE_boolean("overwrite", False, "Replace an existing OUT/CASE_ID folder.", flag_values=FLAGS)
flags.DEFINE_boolean("figure", True, "Draw the brain mask's outline over the unmasked scan on three planes "
                     "into OUT/CASE_ID/CASE_ID_brainmask.png (needs matplotlib).", flag_values=FLAGS)
flags.DEFINE_enum("dicom_reader", READERS[0], list(READERS),
                  "DICOM pixel decoder: pydicom (exact values, no tensorflow-io needed) or tfio "
                  "(tensorflow-io's DCMTK, only where it loads: TensorFlow 2.16).", flag_values=FLAGS)
flags.DEFINE_string("model", None, "Segment the prepared case with this model (a training run folder or a .keras "
                    "file) and write OUT/CASE_ID/CASE_ID_seg_native.nii.gz (labels on the reference series' grid) "
                    "and, for a DICOM reference, CASE_ID_seg.dcm (a DICOM Segmentation; the clinical extra).",
                    flag_values=FLAGS)
flags.DEFINE_string("pacs", None, "Pull the study from this PACS, AET@HOST:PORT (C-FIND, C-GET), instead of "
                    "folders; --t1c/--t2/--flair/--t1 then optionally name the series (SeriesInstanceUID or "
                    "SeriesDescription) where the description rules do not choose.", flag_values=FLAGS)
flags.DEFINE_string("study", None, "StudyInstanceUID of the study to pull (with --pacs).", flag_values=FLAGS)
flags.DEFINE_string("calling_aet", "TFBRATS", "This program's AE title towards the PACS.", flag_values=FLAGS)
flags.DEFINE_boolean("store", False, "Send the DICOM Segmentation back to the PACS (C-STORE; needs --pacs and "
                     "--model).", flag_values=FLAGS)
flags.DEFINE_float("pacs_timeout", 30.0, "Seconds to wait for the PACS at each step (connect, answer).",
                   flag_values=FLAGS)
flags.mark_flags_as_required(["case_id", "out"], flag_values=FLAGS)

# Command-line names of the modalities -> BraTS 2020 file suffixes.
_FLAG_TO_MODALITY = {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair"}
ERRORS = (BrainMaskUnavailable, DicomReaderUnavailable, DicomSeriesError, FileExistsError, FileNotFoundError,
          ValueError, RuntimeError, ImportError)


def _check_flags() -> None:
    """Raises `UsageError` for flag combinations that cannot work."""
    if FLAGS.pacs is None:
        missing = [f"--{name}" for name in ("t1c", "t2", "flair") if getattr(FLAGS, name) is None]
        if missing or FLAGS.study or FLAGS.store:
            raise UsageError(f"give {' '.join(missing) or '--pacs'}: without --pacs the scans are folders or "
                                 "files (--t1c, --t2, --flair), and --study/--store need --pacs")
    elif FLAGS.study is None:
        raise UsageError("--pacs needs --study=STUDY_INSTANCE_UID")
    if FLAGS.store and FLAGS.model is None:
        raise UsageError("--store sends the segmentation: give --model too")


def _prepare(scans: dict, loaded) -> Path:
    """The prepared case folder; with a model, prepared and segmented as one step (`prepare_and_segment`)."""
    options = dict(
        mask=FLAGS.mask, skull_stripped=FLAGS.no_mask,
        mask_input=_FLAG_TO_MODALITY[FLAGS.mask_input] if FLAGS.mask_input else None,
        mask_threshold=FLAGS.mask_threshold,
        reference=_FLAG_TO_MODALITY[FLAGS.reference] if FLAGS.reference else None,
        spacing_mm=FLAGS.spacing, overwrite=FLAGS.overwrite, dicom_reader=FLAGS.dicom_reader)
    if loaded is None:
        return prepare_case(scans, FLAGS.case_id, FLAGS.out, **options)
    from tfbrats.clinical.segment import prepare_and_segment
    from tfbrats.labels import BRATS_POST_TREATMENT

    case_dir, result = prepare_and_segment(scans, FLAGS.case_id, FLAGS.out, loaded, **options)
    for region, ml in result.volumes_ml.items():
        print(f"{region} ({BRATS_POST_TREATMENT.titles[region]}): {ml:.2f} ml")
    if result.dicom is None:
        print(f"no DICOM Segmentation: {result.record['dicom_seg_reason']}", file=sys.stderr)
    return case_dir


def _run(loaded) -> Path:
    """Prepare (from folders or the PACS), segment, store; the case folder."""
    scans = {modality: getattr(FLAGS, flag) for flag, modality in _FLAG_TO_MODALITY.items()}
    if FLAGS.pacs is None:
        return _prepare(scans, loaded)
    from tfbrats.clinical.pacs import PacsAddress, pull_study, store_file

    pacs = PacsAddress.parse(FLAGS.pacs)
    target = Path(FLAGS.out) / FLAGS.case_id
    if target.exists() and not FLAGS.overwrite:
        raise FileExistsError(f"{target} already exists; choose another --out or --case_id, or pass --overwrite.")
    with tempfile.TemporaryDirectory(prefix="tfbrats-pacs-") as folder:
        pulled = pull_study(pacs, FLAGS.study, folder, overrides=scans, calling_aet=FLAGS.calling_aet,
                            timeout=FLAGS.pacs_timeout)
        for modality, series in pulled.series.items():
            print(f"{modality}: {series}", file=sys.stderr)
        case_dir = _prepare(pulled.folders, loaded)
    record = {"pacs": str(pacs), "calling_aet": FLAGS.calling_aet, "study": FLAGS.study, "stored": False,
              "series": {m: dataclasses.asdict(s) for m, s in pulled.series.items()}}
    _record_pacs(case_dir, record)
    if FLAGS.store:
        seg = case_dir / f"{case_dir.name}_seg.dcm"
        store_file(pacs, seg, calling_aet=FLAGS.calling_aet, timeout=FLAGS.pacs_timeout)
        _record_pacs(case_dir, {**record, "stored": True})
        print(f"stored {seg.name} in {pacs}", file=sys.stderr)
    return case_dir


def _record_pacs(case_dir: Path, record: dict) -> None:
    """Records where the series came from (and whether the SEG was stored) under `pacs` in the sidecar."""
    path = case_dir / f"{case_dir.name}_clinical.json"
    write_json(path, {**json.loads(path.read_text()), "pacs": record})


def _clinical() -> int:
    """Runs the preparation (and the segmentation) with the parsed flags; 1 with the message on failure."""
    _check_flags()
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # one line per failure, not per PDU
    try:
        loaded = None
        if FLAGS.model:
            from tfbrats.clinical import seg  # noqa: F401  (the clinical extra, checked before any work)
            from tfbrats.inference.model import load_model

            loaded = load_model(FLAGS.model)
        case_dir = _run(loaded)
    except ERRORS as error:
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


def main(argv: Sequence[str] | None = None) -> int:
    """``tfbrats-clinical``: prepares a study with the flags in `argv` (default: the command line); the exit status.

    Example:
        >>> import contextlib, sys
        >>> with contextlib.redirect_stderr(sys.stdout):
        ...     main(["--case_id=P1", "--out=cases", "--pacs=PACS@127.0.0.1:104"])
        error: --pacs needs --study=STUDY_INSTANCE_UID
        Pass --help to see the flags of tfbrats-clinical.
        2
    """
    return run_command(FLAGS, _clinical, argv, doc=__doc__, program="tfbrats-clinical")
