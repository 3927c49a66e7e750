"""What prediction may write: never among its inputs, never over a file it did not write, never outside its folder."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tfbrats.contract import SegmentationContract, Window
from tfbrats.data import find_cases
from tfbrats.data.synthetic import write_synthetic_dataset
from tfbrats.inference.model import load_model, save_with_contract
from tfbrats.inference.predict import predict_cases
from tfbrats.models import AlbuNet2D

REPO = Path(__file__).parents[2]
SHAPE = (40, 44, 12)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "albunet2d.keras"
    save_with_contract(AlbuNet2D(num_classes=4), SegmentationContract(window=Window((1, 32, 32), (1, 32, 32), 8)),
                       path)
    return path


@pytest.fixture(scope="module")
def loaded(model_file):
    return load_model(model_file)


@pytest.fixture
def decathlon(tmp_path):
    """Task01_BrainTumour with two training cases (images and labels) and one test case."""
    root = tmp_path / "Task01_BrainTumour"
    write_synthetic_dataset(root, cases=3, shape=SHAPE, seed=4, layout="decathlon", test_cases=1)
    return root


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("output", "overwrite"), [
    ("imagesTr", False), ("imagesTr", True), ("labelsTr", True), ("imagesTs", False), ("imagesTr/predictions", True),
    (".", False),
])
def test_an_output_folder_among_the_inputs_is_refused_before_any_case(decathlon, loaded, output, overwrite):
    before = _digests(decathlon)
    with pytest.raises(ValueError, match=r"output folder .* (holds|lies in the folder of) input file .*nii.gz"):
        predict_cases(find_cases(decathlon).cases, loaded, decathlon / output, overwrite=overwrite, progress=False)
    assert _digests(decathlon) == before, "no input was touched and nothing was written"


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_file_tfbrats_did_not_write_is_never_replaced(decathlon, loaded, tmp_path, overwrite):
    cases = find_cases(decathlon).cases
    out = tmp_path / "predictions"
    out.mkdir()
    # A reference segmentation copied into the output folder, and another tool's record of a case.
    shutil.copy(decathlon / "labelsTr" / "BRATS_001.nii.gz", out / "BRATS_001.nii.gz")
    (out / "BRATS_002.json").write_text(json.dumps({"case_id": "BRATS_002", "tool": "someone else's"}))
    before = _digests(out)
    summary = predict_cases(cases, loaded, out, overwrite=overwrite, progress=False)
    assert sorted(summary.failed) == ["BRATS_001", "BRATS_002"]
    assert f"{out / 'BRATS_001.nii.gz'} exists without a sidecar BRATS_001.json" in summary.failed["BRATS_001"]
    assert f"{out / 'BRATS_002.json'} is not the sidecar tfbrats writes" in summary.failed["BRATS_002"]
    assert [p.name for p in summary.written] == ["BRATS_003.nii.gz"] and not summary.recomputed
    assert {name: digest for name, digest in _digests(out).items() if name in before} == before
    record = json.loads((out / "BRATS_003.json").read_text())
    assert record["written_by"] == "tfbrats.predict"
    # A sidecar written before "written_by" existed is still known as tfbrats' by its fingerprint and contract.
    del record["written_by"]
    (out / "BRATS_003.json").write_text(json.dumps(record))
    again = predict_cases(cases[2:], loaded, out, overwrite=overwrite, progress=False)
    assert not again.failed
    assert (again.skipped, len(again.written)) == (([], 1) if overwrite else (["BRATS_003"], 0))


def test_an_output_path_that_is_a_file_is_refused(decathlon, loaded, tmp_path):
    (tmp_path / "predictions.nii.gz").write_bytes(b"not a folder")
    with pytest.raises(ValueError, match=r"output folder .*predictions.nii.gz is a file"):
        predict_cases(find_cases(decathlon).cases, loaded, tmp_path / "predictions.nii.gz", progress=False)


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_case(decathlon, loaded, tmp_path):
    out = tmp_path / "read_only"
    out.mkdir()
    out.chmod(0o555)
    try:
        try:
            (out / "probe").touch()
            pytest.skip("this process writes into read-only folders (root with CAP_DAC_OVERRIDE)")
        except PermissionError:
            pass
        with pytest.raises(ValueError, match=f"output folder {out} cannot be written into"):
            predict_cases(find_cases(decathlon).cases, loaded, out, progress=False)
    finally:
        out.chmod(0o755)


def test_a_dangling_link_fails_its_case_by_name_instead_of_being_a_missing_modality(loaded, tmp_path):
    root = tmp_path / "data"
    case_dir = write_synthetic_dataset(root, cases=1, shape=SHAPE, seed=4)[0]
    t2 = next(case_dir.glob("*_t2.nii.gz"))
    t2.unlink()
    t2.symlink_to(tmp_path / "elsewhere" / "moved_away.nii.gz")
    summary = predict_cases(find_cases(root).cases, loaded, tmp_path / "out", progress=False)
    assert not summary.written and f"t2 file {t2} does not exist" in summary.failed[case_dir.name]


def _predict_cli(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfbrats.predict", *flags], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["imagesTr", "labelsTr"])
def test_predict_cli_refuses_a_dataset_folder_as_output(decathlon, model_file, folder):
    before = _digests(decathlon)
    result = _predict_cli(f"--model={model_file}", f"--input={decathlon}", f"--output={decathlon / folder}")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"error: output folder {decathlon / folder} holds input file {decathlon / folder / 'BRATS_001.nii.gz'}" \
        in result.stderr
    assert _digests(decathlon) == before


@pytest.mark.slow
def test_predict_cli_reports_bad_inputs_in_one_line(decathlon, model_file, tmp_path):
    (tmp_path / "not_a_model.keras").write_text("weights\n")
    (tmp_path / "a_file").write_text("")
    flair = decathlon / "imagesTr" / "BRATS_001.nii.gz"
    (tmp_path / "escape.csv").write_text(f"case_id,flair\n../victim/c1,{flair}\n")
    broken = tmp_path / "broken"
    shutil.copytree(decathlon, broken)
    (broken / "dataset.json").write_text("{ not json")
    model, data = f"--model={model_file}", f"--input={decathlon}"
    runs = {
        "dataset.json": ([model, f"--input={broken}", f"--output={tmp_path / 'o1'}"],
                         f"{broken / 'dataset.json'}: cannot be read as JSON"),
        "missing input": ([model, f"--input={tmp_path / 'nowhere'}", f"--output={tmp_path / 'o2'}"],
                          f"data folder {tmp_path / 'nowhere'} does not exist"),
        "output is a file": ([model, data, f"--output={tmp_path / 'a_file'}"],
                             f"output folder {tmp_path / 'a_file'} is a file"),
        "not a model": ([f"--model={tmp_path / 'not_a_model.keras'}", data, f"--output={tmp_path / 'o3'}"],
                        f"model file {tmp_path / 'not_a_model.keras'} is not a Keras model"),
        "escaping case id": ([model, f"--input={tmp_path / 'escape.csv'}", f"--output={tmp_path / 'o4'}"],
                             f"manifest {tmp_path / 'escape.csv'}, line 2: case id '../victim/c1' is not a file name"),
    }
    for what, (flags, message) in runs.items():
        result = _predict_cli(*flags)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert result.returncode == 1 and "Traceback" not in result.stderr, (what, result.stderr[-2000:])
        assert len(errors) == 1 and message in errors[0], (what, result.stderr[-2000:])
    assert not (tmp_path / "victim").exists()
