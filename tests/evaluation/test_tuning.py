"""Post-processing chosen on validation: stray ET and small components removed only where it does not hurt."""

import json

import numpy as np
import pytest

from tfbrats.contract import PostProcessing, SegmentationContract, Window
from tfbrats.data import CaseMeta, PreprocessedCase
from tfbrats.evaluation.tuning import choose_postprocessing
from tfbrats.evaluation.tuning_run import TUNING_CSV, TUNING_JSON, tune_run
from tfbrats.inference.model import load_model, save_with_contract
from tfbrats.models import AlbuNet2D

SHAPE = (10, 40, 40)


def _case(case_id: str, label: np.ndarray) -> PreprocessedCase:
    meta = CaseMeta(case_id, tuple((0, n) for n in SHAPE), SHAPE, np.eye(4), None, (1.0, 1.0, 1.0), 4,
                    ("flair", "t1ce", "t2"))
    return PreprocessedCase(np.ones(SHAPE + (3,), np.float32), label, meta)


def _tumor(et: bool) -> np.ndarray:
    label = np.zeros(SHAPE, np.uint8)
    label[2:8, 5:20, 5:20] = 2
    label[3:7, 8:16, 8:16] = 1
    if et:
        label[3:7, 10:14, 10:14] = 3  # 64 voxels of ET
    return label


def test_stray_et_is_relabelled_and_a_threshold_that_would_erase_real_et_is_not_chosen():
    with_et, without_et = _tumor(True), _tumor(False)
    predicted = {"a": with_et.copy(), "b": without_et.copy()}
    predicted["b"][4, 30:32, 30:33] = 3  # 6 stray ET voxels, a component of their own
    predicted["b"][4, 10:12, 10:12] = 3  # 4 ET voxels inside the core
    cases = [_case("a", with_et), _case("b", without_et)]
    result = choose_postprocessing(cases, lambda case: predicted[case.meta.case_id],
                                   component_candidates=(0, 5, 10, 2000), et_candidates=(0, 20, 50, 100))
    # 10 removes the 6-voxel stray component (5 keeps it); 2000 would erase the 1350-voxel tumors.
    # ET below 20 relabels case b's remaining 4 ET voxels, and so would 50 (a tie: the weaker stays);
    # 100 would erase case a's 64.
    assert result.chosen == PostProcessing(brain_mask=True, min_component_voxels=10, min_et_voxels=20)
    rows = {row["case_id"]: row for row in result.per_case}
    assert rows["b"]["baseline_Dice_ET"] == 0.0 and rows["b"]["chosen_Dice_ET"] == 1.0
    assert rows["b"]["baseline_HD95_ET"] == pytest.approx(373.13) and rows["b"]["chosen_HD95_ET"] == 0.0
    assert rows["a"]["chosen_Dice_ET"] == 1.0 and rows["b"]["et_voxels_chosen"] == 0
    tried = {(c.postprocessing.min_component_voxels, c.postprocessing.min_et_voxels): c for c in result.candidates}
    assert tried[(10, 100)].mean_dice["ET"] == pytest.approx(0.5)  # case a lost its ET: not chosen


def test_a_small_false_component_is_removed_but_not_a_real_small_tumor():
    reference = _tumor(False)
    reference[5, 30:33, 30:33] = 2  # a real 9-voxel lesion
    predicted = reference.copy()
    predicted[8, 35, 35] = 2  # a 1-voxel false positive
    result = choose_postprocessing([_case("a", reference)], lambda case: predicted,
                                   component_candidates=(0, 2, 10), et_candidates=(0,))
    assert result.chosen.min_component_voxels == 2


def test_a_stronger_step_that_scores_the_same_is_not_chosen():
    # No validation case has ET between 100 and 500 voxels: 100, 200 and 500 all score the same here,
    # and only 100 is kept (500 would turn a new case's 416 voxels of real ET into necrosis).
    with_et, without_et = _tumor(False), _tumor(False)
    with_et[2:8, 6:19, 6:19] = 3  # 1014 voxels of ET
    predicted = without_et.copy()
    predicted[3:7, 10:14, 10:14] = 3  # 64 voxels of stray ET on the case without ET
    cases = [_case("a", with_et), _case("b", without_et)]
    labels = {"a": with_et, "b": predicted}
    result = choose_postprocessing(cases, lambda case: labels[case.meta.case_id],
                                   component_candidates=(0, 10), et_candidates=(0, 50, 100, 200, 500))
    assert result.chosen.min_component_voxels == 0  # removing components changes nothing here
    scores = {c.postprocessing.min_et_voxels: c.overall for c in result.candidates[-5:]}
    assert scores[100] == scores[200] == scores[500] > scores[50] == scores[0]  # 50 keeps the stray 64
    assert result.chosen.min_et_voxels == 100


def test_tuning_needs_labelled_cases():
    with pytest.raises(ValueError, match="reference labels"):
        choose_postprocessing([_case("a", None)], lambda case: np.zeros(SHAPE, np.uint8))


def test_tune_run_writes_the_choice_into_the_model_and_the_run_folder(tmp_path):
    run = tmp_path / "run"
    contract = SegmentationContract(window=Window(patch_size=(1, 32, 32), steps=(1, 32, 32), batch_size=8))
    model = AlbuNet2D(num_classes=4)
    kernel, _ = model.get_layer("final").get_weights()
    # ET everywhere: every tumor-free case then gains from relabelling all of it.
    model.get_layer("final").set_weights([np.zeros_like(kernel), np.array([0, 0, 0, 5], np.float32)])
    save_with_contract(model, contract, run / "best.keras")
    reference = _tumor(False)
    summary = tune_run(run, cases=[_case("a", reference)], component_candidates=(0,), et_candidates=(0, 100000))
    assert "ET below 100000 voxels -> necrosis" in summary
    tuned = load_model(run)
    assert tuned.contract.postprocessing.min_et_voxels == 100000
    assert tuned.contract.chosen_by.startswith("validation: 1 cases")
    record = json.loads((run / TUNING_JSON).read_text())
    assert record["chosen"]["min_et_voxels"] == 100000 and len(record["candidates"]) == 3
    assert (run / TUNING_CSV).read_text().startswith("case_id,")
