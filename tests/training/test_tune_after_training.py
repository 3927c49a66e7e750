"""Training ends by choosing the post-processing on its validation cases; tfbrats.tune redoes it for a run."""

import csv
import json

import pytest

from tests.training.conftest import run_python, tiny_flags
from tfbrats.inference.model import load_model
from tfbrats.training import Run, load_validation_cases


@pytest.mark.slow
def test_training_writes_the_tuned_contract_and_tune_reruns_it(tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    done = run_python(["-m", "tfbrats.train", *tiny_flags(tiny_data, run_dir)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "post-processing chosen on 2 validation cases" in done.stdout
    validation = load_validation_cases(Run(run_dir).config)
    with open(run_dir / "tuning.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["case_id"] for row in rows) == sorted(case.meta.case_id for case in validation)
    record = json.loads((run_dir / "tuning.json").read_text())
    loaded = load_model(run_dir)
    assert loaded.contract.postprocessing.to_json() == record["chosen"]
    assert loaded.contract.chosen_by.startswith("validation: 2 cases")
    assert record["model_sha256"] == loaded.fingerprint  # tuning re-saved the same weights

    again = run_python(["-m", "tfbrats.tune", f"--model={run_dir}", "--component_candidates=0",
                        "--et_candidates=0,100000"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "post-processing chosen on 2 validation cases" in again.stdout
    assert load_model(run_dir).contract.postprocessing.min_component_voxels == 0
    missing = run_python(["-m", "tfbrats.tune", f"--model={tmp_path / 'nowhere'}"])
    assert missing.returncode == 2 and "nowhere" in missing.stderr
