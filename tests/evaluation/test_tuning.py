"""Post-processing chosen on validation: stray ET and small components removed only where it does not hurt."""

import dataclasses
import json

import numpy as np
import pytest

from tfbrats.contract import PostProcessing, SegmentationContract, Window, postprocess
from tfbrats.data import CaseMeta, PreprocessedCase
from tfbrats.evaluation.tuning import Evidence, choose_postprocessing
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
                                   component_candidates=(0, 5, 10, 2000), et_candidates=(0, 20, 50, 100),
                                   dust_candidates=(0,))
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
                                   component_candidates=(0, 2, 10), et_candidates=(0,), dust_candidates=(0,))
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
                                   component_candidates=(0, 10), et_candidates=(0, 50, 100, 200, 500),
                                   dust_candidates=(0,))
    assert result.chosen.min_component_voxels == 0  # removing components changes nothing here
    scores = {c.postprocessing.min_et_voxels: c.overall for c in result.candidates[-5:]}
    assert scores[100] == scores[200] == scores[500] > scores[50] == scores[0]  # 50 keeps the stray 64
    assert result.chosen.min_et_voxels == 100


def _large_tumor(et: tuple[slice, ...] | None = None) -> np.ndarray:
    """Edema around a 6x24x24 non-enhancing core; `et` marks a block of it enhancing."""
    label = np.zeros(SHAPE, np.uint8)
    label[1:9, 3:37, 3:37] = 2
    label[2:8, 8:32, 8:32] = 1
    if et is not None:
        label[et] = 3
    return label


def _with_dust(label: np.ndarray) -> np.ndarray:
    """`label` with stray ET as the failure looks: components of 2, 1, 1 and 30 voxels inside the core."""
    predicted = label.copy()
    predicted[4, 12:14, 12] = 3
    predicted[5, 20, 20] = 3
    predicted[4, 26, 14] = 3
    predicted[4:6, 15:18, 22:27] = 3
    return predicted


def test_dust_ties_take_the_strongest_candidate_and_spare_a_real_400_voxel_enhancing_tumor():
    with_et = _large_tumor(np.s_[3:7, 10:20, 10:20])  # 400 voxels of ET
    without_et = _large_tumor()
    cases = [_case("a", with_et), _case("b", without_et)]
    predicted = {"a": with_et, "b": _with_dust(without_et)}
    result = choose_postprocessing(cases, lambda case: predicted[case.meta.case_id])
    # 50 and 100 both relabel case b's 30-voxel component (10 and 20 do not) and leave case a's 400 voxels
    # alone: a tie, and the dust step takes the stronger; the ET threshold then has nothing left to do.
    assert result.chosen == PostProcessing(brain_mask=True, min_et_component_voxels=100)
    dust = {c.postprocessing.min_et_component_voxels: c.mean_dice["ET"] for c in result.candidates
            if not c.postprocessing.min_et_voxels}
    assert dust[0] == dust[10] == dust[20] == 0.5 and dust[50] == dust[100] == 1.0
    assert result.evidence == Evidence(cases=2, cases_without_et=1, cases_without_et_given_et=1)

    # New cases: an ET-free one with stray ET, and one whose real 400-voxel enhancing tumor has stray ET beside it.
    steps = dataclasses.replace(result.chosen, brain_mask=False)
    np.testing.assert_array_equal(postprocess(_with_dust(without_et), None, steps), without_et)  # dust -> necrosis
    real = _large_tumor(np.s_[3:7, 22:32, 22:32])  # 400 voxels of ET, apart from the dust
    np.testing.assert_array_equal(postprocess(_with_dust(real), None, steps), real)


def test_a_stronger_dust_step_that_would_lower_a_real_enhancing_tumor_is_not_chosen():
    with_et = _tumor(True)
    with_et[3:5, 30:35, 30:33] = 3  # a real 30-voxel enhancing satellite beside the 64-voxel tumor
    predicted = {"a": with_et, "b": _tumor(False)}
    predicted["b"][4, 10:12, 10:12] = 3  # 4 voxels of dust in case b's core
    cases = [_case("a", with_et), _case("b", _tumor(False))]
    result = choose_postprocessing(cases, lambda case: predicted[case.meta.case_id], component_candidates=(0,),
                                   et_candidates=(0,))
    # 10 and 20 relabel the dust alone (a tie: 20 is kept); 50 and 100 would take case a's satellite too.
    assert result.chosen.min_et_component_voxels == 20


def test_the_evidence_says_plainly_when_no_validation_case_lacks_enhancing_tumor():
    result = choose_postprocessing([_case("a", _tumor(True))], lambda case: _tumor(True))
    assert result.evidence == Evidence(cases=1, cases_without_et=0, cases_without_et_given_et=0)
    warnings = result.to_json()["evidence"]["warnings"]
    assert warnings[0].startswith("no validation case without enhancing tumor")
    assert warnings[1].startswith("only 1 validation cases")
    assert not Evidence(cases=20, cases_without_et=5, cases_without_et_given_et=2).warnings()


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
    summary = tune_run(run, cases=[_case("a", reference)], component_candidates=(0,), et_candidates=(0, 100000),
                       dust_candidates=(0,))
    assert "ET below 100000 voxels -> necrosis" in summary
    assert "chosen on 1 validation cases (1 without enhancing tumor, 1 of them given stray ET" in summary
    assert "little evidence: only 1 validation cases" in summary
    tuned = load_model(run)
    assert tuned.contract.postprocessing.min_et_voxels == 100000
    assert tuned.contract.chosen_by.startswith("validation: 1 cases, 1 without enhancing tumor (1 given stray ET)")
    record = json.loads((run / TUNING_JSON).read_text())
    assert record["chosen"]["min_et_voxels"] == 100000 and len(record["candidates"]) == 4
    assert record["evidence"]["cases"] == 1 and record["evidence"]["cases_without_et"] == 1
    assert (run / TUNING_CSV).read_text().startswith("case_id,")
