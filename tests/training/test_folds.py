"""Every fold of a split trained, and post-processing chosen on all their validation cases (out-of-fold)."""

import csv
import dataclasses
import json

import pytest

from tests.training.conftest import run_python, tiny_config, tiny_flags
from tfbrats.evaluation.tuning_run import tune_run
from tfbrats.inference.model import load_model
from tfbrats.training import Run, load_validation_cases
from tfbrats.training.folds import check_folds, other_fold_configs


def test_other_folds_live_beside_the_run_with_only_fold_and_folder_changed(tiny_data, tmp_path):
    config = tiny_config(tiny_data, tmp_path / "run", fold=1, num_folds=3)
    others = other_fold_configs(config)
    run = tmp_path / "run"
    assert [(c.fold, c.model_dir) for c in others] == [(0, f"{run}-fold0"), (2, f"{run}-fold2")]
    assert all(dataclasses.replace(c, fold=1, model_dir=config.model_dir) == config for c in others)


def test_runs_of_another_split_are_refused(tiny_data, tmp_path):
    a = tiny_config(tiny_data, tmp_path / "a", fold=0)
    b = tiny_config(tiny_data, tmp_path / "b", fold=1, seed=7)
    with pytest.raises(ValueError, match=r"not folds of one split: seed is 0 in one and 7"):
        check_folds([a, b], ["a", "b"])


@pytest.mark.slow
def test_all_folds_train_then_tune_on_every_labelled_case(tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    done = run_python(["-m", "tfbrats.train", *tiny_flags(tiny_data, run_dir), "--all_folds"])
    assert done.returncode == 0, done.stderr[-3000:]
    fold_dirs = [run_dir, tmp_path / "run-fold1"]
    validation = [{case.meta.case_id for case in load_validation_cases(Run(folder).config)} for folder in fold_dirs]
    assert not validation[0] & validation[1] and len(validation[0] | validation[1]) == 4  # every case, once
    assert "post-processing chosen on 4 validation cases of 2 folds (out-of-fold) (1 without enhancing" in done.stdout
    chosen = []
    for folder in fold_dirs:
        with open(folder / "tuning.csv", newline="") as handle:
            assert {row["case_id"] for row in csv.DictReader(handle)} == validation[0] | validation[1]
        contract = load_model(folder).contract
        assert contract.chosen_by.startswith("out-of-fold validation of 2 folds: 4 cases, 1 without enhancing tumor")
        assert json.loads((folder / "tuning.json").read_text())["evidence"]["cases"] == 4
        chosen.append(contract.postprocessing)
    assert chosen[0] == chosen[1]
    assert "--fold=1" in (fold_dirs[1] / "flags.txt").read_text()

    with pytest.raises(ValueError, match="both validate on fold 0"):
        tune_run(run_dir, other_folds=[run_dir])
