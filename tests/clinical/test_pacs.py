"""The round trip through a real PACS (Orthanc on loopback): pull, segment, store, read back; and its failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from orthanc_helpers import free_port, running_orthanc
from pydicom.uid import generate_uid
from study_helpers import check_seg_against_truth, dice, voxel_model, write_study

pytest.importorskip("pynetdicom", reason="the clinical extra (pynetdicom) is not installed")
pytest.importorskip("highdicom", reason="the clinical extra (highdicom) is not installed")

from tfbrats.clinical.pacs import PacsAddress, PacsError, pull_study, store_file  # noqa: E402
from tfbrats.clinical.seg import read_seg_labels, read_series_datasets  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def clinical(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfbrats.clinical", *flags], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """Orthanc holding three studies: complete (T1c, T2, FLAIR), without T1c, with two FLAIRs."""
    root = tmp_path_factory.mktemp("pacs")
    studies = {"complete": write_study(root / "complete", study_uid=generate_uid()),
               "no_t1c": write_study(root / "no_t1c", study_uid=generate_uid(), series=("t2", "flair")),
               "two_flairs": write_study(root / "two_flairs", study_uid=generate_uid(),
                                         extra={"flair_repeat": "flair"})}
    with running_orthanc(root / "orthanc") as orthanc:
        for folders in studies.values():
            for folder in folders.values():
                orthanc.upload(folder)
        orthanc.studies = {name: pydicom.dcmread(next(f["flair"].iterdir())).StudyInstanceUID
                           for name, f in studies.items()}
        orthanc.folders = studies
        yield orthanc


@pytest.mark.slow
def test_pull_segment_store_equals_the_folder_run(pacs, tmp_path):
    run = voxel_model(tmp_path / "run", weights=(1.0, 2.0, 1.0), threshold=9.0)
    study = pacs.folders["complete"]
    folder_run = clinical(f"--t1c={study['t1ce']}", f"--t2={study['t2']}", f"--flair={study['flair']}", "--no_mask",
                          f"--model={run}", "--case_id=local", f"--out={tmp_path / 'folders'}")
    assert folder_run.returncode == 0, folder_run.stderr
    pacs_run = clinical(f"--pacs={pacs.address}", f"--study={pacs.studies['complete']}", "--store", "--no_mask",
                        f"--model={run}", "--case_id=pulled", f"--out={tmp_path / 'pacs'}")
    assert pacs_run.returncode == 0, pacs_run.stderr
    assert "t1ce: #1 'T1 AX 3D POST GD'" in pacs_run.stderr and "stored pulled_seg.dcm" in pacs_run.stderr

    stored = pacs.series(pacs.studies["complete"], "SEG")
    assert len(stored) == 1
    files = pacs.instance_files(stored[0])
    assert len(files) == 1
    (tmp_path / "stored.dcm").write_bytes(files[0])
    uids = [ds.SOPInstanceUID for ds in read_series_datasets(study["t1ce"])]
    from_pacs = read_seg_labels(tmp_path / "stored.dcm", uids)
    from_folders = read_seg_labels(tmp_path / "folders" / "local" / "local_seg.dcm", uids)
    assert np.count_nonzero(from_folders) > 300
    np.testing.assert_array_equal(from_pacs, from_folders)
    labels, truth = check_seg_against_truth(tmp_path / "stored.dcm", study["t1ce"])  # frames on the instances
    assert dice(labels > 0, truth > 0) >= 0.90
    assert pydicom.dcmread(tmp_path / "stored.dcm").StudyInstanceUID == pacs.studies["complete"]
    record = json.loads((tmp_path / "pacs" / "pulled" / "pulled_clinical.json").read_text())["pacs"]
    assert record["stored"] is True and record["study"] == pacs.studies["complete"]
    assert record["series"]["flair"]["description"] == "AX FLAIR 4mm"


def test_unreachable_pacs_is_an_error_and_writes_nothing(tmp_path):
    done = clinical(f"--pacs=NOBODY@127.0.0.1:{free_port()}", "--study=1.2.3", "--no_mask", "--case_id=c",
                    f"--out={tmp_path / 'out'}", "--pacs_timeout=5")
    assert done.returncode == 1
    assert "could not be reached" in done.stderr and "NOBODY@127.0.0.1" in done.stderr
    assert not (tmp_path / "out" / "c").exists()


def test_study_without_t1c_lists_its_series(pacs, tmp_path):
    with pytest.raises(ValueError, match="t1ce: no series matches") as error:
        pull_study(PacsAddress.parse(pacs.address), pacs.studies["no_t1c"], tmp_path)
    assert "'AX T2 TSE'" in str(error.value) and "'AX FLAIR 4mm'" in str(error.value)
    assert not list(tmp_path.iterdir())  # nothing retrieved


def test_two_flairs_are_ambiguous_until_one_is_named(pacs, tmp_path):
    address, study = PacsAddress.parse(pacs.address), pacs.studies["two_flairs"]
    with pytest.raises(ValueError, match="flair: 2 series match") as error:
        pull_study(address, study, tmp_path / "a")
    assert "'AX FLAIR 4mm 2'" in str(error.value)
    wanted = pydicom.dcmread(next(pacs.folders["two_flairs"]["flair_repeat"].iterdir())).SeriesInstanceUID
    pulled = pull_study(address, study, tmp_path / "b", overrides={"flair": wanted})
    assert pulled.series["flair"].uid == wanted
    assert {pydicom.dcmread(p).SeriesInstanceUID for p in pulled.folders["flair"].iterdir()} == {wanted}
    assert len(list(pulled.folders["t1ce"].iterdir())) == 50


def test_store_refused_by_the_pacs_is_an_error(pacs, tmp_path):
    import SimpleITK as sitk
    from study_helpers import image_truth

    from tfbrats.clinical import prepare_case
    from tfbrats.clinical.segment import write_segmentation
    from tfbrats.data import BRATS2020_LABELS

    study = pacs.folders["complete"]
    case_dir = prepare_case(study, "c", tmp_path / "out", skull_stripped=True)
    grid = sitk.ReadImage(str(case_dir / "c_t1ce.nii.gz"))
    on_grid = sitk.GetImageFromArray(image_truth(grid))
    on_grid.CopyInformation(grid)
    seg = write_segmentation(case_dir, image_truth(grid), on_grid, label_map=BRATS2020_LABELS, classes=(1, 2, 3),
                             model_name="truth", fingerprint="cd" * 32).dicom
    with running_orthanc(tmp_path / "refusing", allow_store=False) as refusing:
        with pytest.raises(PacsError, match="C-STORE of c_seg.dcm"):
            store_file(PacsAddress.parse(refusing.address), seg, timeout=10)
        assert refusing.request("/series") == []  # nothing half-stored


def test_series_rules_and_overrides():
    from tfbrats.clinical.pacs import SeriesInfo, classify, pick_series

    names = {"Ax T1 +C": "t1ce", "T1_MPRAGE_POST_GD": "t1ce", "t1ce": "t1ce", "AX T2 FLAIR": "flair",
             "t2_tse_tra": "t2", "T2W": "t2", "T2* GRE": None, "SAG T1": "t1", "DWI": None, "ADC": None}
    assert {name: classify(name) for name in names} == names
    study = [SeriesInfo(str(i), d, m, str(i), "10") for i, (d, m) in enumerate(
        [("T1 POST", "MR"), ("AX T2", "MR"), ("FLAIR", "MR"), ("FLAIR", "SEG"), ("Ax T1", "MR")], start=1)]
    assert {m: s.uid for m, s in pick_series(study).items()} == {"flair": "3", "t1ce": "1", "t2": "2", "t1": "5"}
    # An override by description (any case) or UID; one naming nothing is an error listing the series.
    assert pick_series(study, {"t1ce": "ax t1"})["t1ce"].uid == "5"
    with pytest.raises(ValueError, match=r"t2: no series matches the override 'T2 SAG'(.|\n)*#3 'FLAIR' \[MR"):
        pick_series(study, {"t2": "T2 SAG"})
    with pytest.raises(ValueError, match=r"Choose with --t1c/--t2/--flair/--t1 \("):  # the command's own flags
        pick_series(study, {"t2": "T2 SAG"})


def test_pacs_address_is_checked():
    assert str(PacsAddress.parse(" PACS_1@10.0.0.5:104 ")) == "PACS_1@10.0.0.5:104"
    for bad in ("PACS@host", "host:104", "A_TITLE_LONGER_THAN_16@h:104", "P@h:0", "P@h:70000"):
        with pytest.raises(ValueError, match="is not AET@HOST:PORT"):
            PacsAddress.parse(bad)


def test_a_pacs_that_never_answers_times_out():
    import socket
    import time

    with socket.socket() as silent:  # accepts the connection, then says nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        address = PacsAddress("SILENT", "127.0.0.1", silent.getsockname()[1])
        started = time.monotonic()
        with pytest.raises(PacsError, match="SILENT@127.0.0.1.*could not be reached or aborted"):
            pull_study(address, "1.2.3", "unused", timeout=1.0)
        assert time.monotonic() - started < 15


def test_cli_two_flairs_is_an_error_that_writes_nothing(pacs, tmp_path):
    done = clinical(f"--pacs={pacs.address}", f"--study={pacs.studies['two_flairs']}", "--no_mask", "--case_id=c",
                    f"--out={tmp_path / 'out'}")
    assert done.returncode == 1
    assert "flair: 2 series match" in done.stderr and "'AX FLAIR 4mm 2'" in done.stderr
    assert not (tmp_path / "out" / "c").exists()


@pytest.mark.slow
def test_cli_store_refused_exits_non_zero(pacs, tmp_path):
    run = voxel_model(tmp_path / "run", weights=(1.0, 2.0, 1.0), threshold=9.0)
    with running_orthanc(tmp_path / "refusing", allow_store=False) as refusing:
        for folder in pacs.folders["complete"].values():
            refusing.upload(folder)
        done = clinical(f"--pacs={refusing.address}", f"--study={pacs.studies['complete']}", "--store", "--no_mask",
                        f"--model={run}", "--case_id=c", f"--out={tmp_path / 'out'}", "--pacs_timeout=10")
        assert refusing.series(pacs.studies["complete"], "SEG") == []
    assert done.returncode == 1
    assert f"error: PACS {refusing.address}" in done.stderr and "C-STORE of c_seg.dcm" in done.stderr
    record = json.loads((tmp_path / "out" / "c" / "c_clinical.json").read_text())
    assert record["pacs"]["stored"] is False and record["segmentation"]["dicom_seg_file"] == "c_seg.dcm"


@pytest.mark.parametrize("flags, expected", [
    (("--t1c=a", "--t2=b", "--flair=c", "--study=1.2"), "--study/--store need --pacs"),
    (("--pacs=P@127.0.0.1:104",), "--pacs needs --study"),
    (("--pacs=P@127.0.0.1:104", "--study=1.2", "--store"), "--store sends the segmentation: give --model"),
    (("--t2=b", "--flair=c"), "give --t1c"),
])
def test_flag_combinations_that_cannot_work_are_refused(tmp_path, flags, expected):
    done = clinical(*flags, "--case_id=c", f"--out={tmp_path / 'out'}")
    assert done.returncode != 0 and expected in done.stderr
    assert not (tmp_path / "out").exists()
