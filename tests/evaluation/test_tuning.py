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
from tfbrats.labels import BRATS_POST_TREATMENT, RC_CLASS, get_target
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


def test_a_dust_tie_stops_at_half_the_smallest_enhancing_tumor_of_the_validation_cases():
    # A residual nodule after resection can be all of a case's enhancing tumor, and small.
    nodule = _large_tumor(np.s_[3:7, 10:15, 10:16])  # 120 voxels of ET, the case's only enhancing tumor
    without_et = _large_tumor()
    predicted = {"a": nodule, "b": _with_dust(without_et)}
    cases = [_case("a", nodule), _case("b", without_et)]
    result = choose_postprocessing(cases, lambda case: predicted[case.meta.case_id])
    # 50 and 100 both relabel case b's 30-voxel component and keep the 120-voxel nodule: a tie, and the
    # stronger would erase a new case's nodule of 60 to 99 voxels. Half the smallest is 60: 50 is kept.
    assert result.tie_ceilings == {"min_et_component_voxels": 60}
    assert result.chosen.min_et_component_voxels == 50
    assert result.to_json()["tie_ceilings"] == {"min_et_component_voxels": 60}
    small = _large_tumor(np.s_[3:7, 22:27, 22:26])  # a new case whose whole enhancing tumor is 80 voxels
    steps = dataclasses.replace(result.chosen, brain_mask=False)
    np.testing.assert_array_equal(postprocess(small, None, steps), small)
    np.testing.assert_array_equal(postprocess(_with_dust(without_et), None, steps), without_et)


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


def _cavity_case(cavity: tuple[slice, ...] | None) -> np.ndarray:
    """`_large_tumor` (no enhancing tumor) with a resection cavity block inside its core (a post-treatment case)."""
    label = _large_tumor()
    if cavity is not None:
        label[cavity] = RC_CLASS
    return label


def _with_stray_cavity(label: np.ndarray) -> np.ndarray:
    """`label` with cavity specks as the failure looks: 27 and 8 voxels in the edema, 1 in the core, 1 outside."""
    predicted = label.copy()
    predicted[3:6, 4:7, 15:18] = RC_CLASS
    predicted[5:7, 34:36, 34:36] = RC_CLASS
    predicted[4, 20, 20] = RC_CLASS
    predicted[9, 38, 38] = RC_CLASS
    return predicted


def test_stray_cavity_on_a_pre_treatment_case_is_relabelled_and_a_real_320_voxel_cavity_survives():
    pre, post = _cavity_case(None), _cavity_case(np.s_[3:7, 12:22, 12:20])  # a real cavity of 320 voxels
    cases = [_case("pre", pre), _case("post", post)]
    predicted = {"pre": _with_stray_cavity(pre), "post": post}
    result = choose_postprocessing(cases, lambda case: predicted[case.meta.case_id], label_set=BRATS_POST_TREATMENT)
    # 50 and 100 both relabel the 27-voxel speck (10 and 20 do not) and keep the 320-voxel cavity: a tie,
    # and the cavity step takes the stronger (as the ET dust step does, with no ET anywhere).
    assert result.chosen == PostProcessing(brain_mask=True, min_et_component_voxels=100, min_rc_component_voxels=100)
    cavity = {c.postprocessing.min_rc_component_voxels: c.mean_dice["RC"] for c in result.candidates
              if not (c.postprocessing.min_et_component_voxels or c.postprocessing.min_et_voxels)}
    assert cavity[0] == cavity[10] == cavity[20] == 0.5 and cavity[50] == cavity[100] == 1.0
    rows = {row["case_id"]: row for row in result.per_case}
    assert (rows["pre"]["rc_voxels_reference"], rows["pre"]["rc_voxels_baseline"], rows["pre"]["rc_voxels_chosen"]) \
        == (0, 37, 0)
    assert rows["post"]["rc_voxels_chosen"] == 320 and rows["post"]["chosen_Dice_RC"] == 1.0
    assert rows["pre"]["baseline_Dice_RC"] == 0.0 and rows["pre"]["baseline_HD95_RC"] == pytest.approx(373.13)
    assert rows["pre"]["chosen_Dice_RC"] == 1.0 and rows["pre"]["chosen_HD95_RC"] == 0.0
    assert result.evidence == Evidence(2, 2, 0, cases_without_rc=1, cases_without_rc_given_rc=1)
    assert "1 without a resection cavity (1 given stray cavity)" in result.evidence.describe()
    record = json.loads(json.dumps(result.to_json()))
    assert record["evidence"]["cases_without_rc"] == 1 and record["evidence"]["cases_without_rc_given_rc"] == 1
    assert all("min_rc_component_voxels" in candidate for candidate in record["candidates"])

    # New cases: the specks take the class around them (edema, necrosis, background), and a real
    # 150-voxel cavity elsewhere stays whole.
    steps = dataclasses.replace(result.chosen, brain_mask=False)
    allowed = BRATS_POST_TREATMENT.labels
    np.testing.assert_array_equal(postprocess(_with_stray_cavity(pre), None, steps, allowed=allowed), pre)
    other = _cavity_case(np.s_[2:8, 20:25, 20:25])
    np.testing.assert_array_equal(postprocess(_with_stray_cavity(other), None, steps, allowed=allowed), other)


def test_a_stronger_cavity_step_that_would_erase_a_real_small_cavity_is_not_chosen():
    pre, post = _cavity_case(None), _cavity_case(np.s_[3:7, 12:16, 12:16])  # a real cavity of 64 voxels
    predicted = {"pre": pre.copy(), "post": post}
    predicted["pre"][5:7, 34:36, 34:36] = RC_CLASS  # 8 stray cavity voxels in the edema
    cases = [_case("pre", pre), _case("post", post)]
    result = choose_postprocessing(cases, lambda case: predicted[case.meta.case_id], component_candidates=(0,),
                                   label_set=BRATS_POST_TREATMENT)
    # 10, 20 and 50 relabel the speck alone (a tie); 100 would take the real cavity too. A tie takes no
    # threshold above half the smallest real cavity (32 voxels): 20.
    assert result.tie_ceilings["min_rc_component_voxels"] == 32
    assert result.chosen.min_rc_component_voxels == 20
    erased = next(c for c in result.candidates if c.postprocessing.min_rc_component_voxels == 100)
    assert erased.mean_dice["RC"] == pytest.approx(0.5)


def test_a_four_class_label_set_tries_no_cavity_step_and_cavity_candidates_are_capped():
    result = choose_postprocessing([_case("a", _tumor(True))], lambda case: _tumor(True))
    assert not any(c.postprocessing.min_rc_component_voxels for c in result.candidates)
    record = result.to_json()
    assert not any("rc" in key for key in record["evidence"]) and not any("rc" in key for key in result.per_case[0])
    assert not any("min_rc_component_voxels" in candidate for candidate in record["candidates"])
    with pytest.raises(ValueError, match="at most 100 voxels"):
        choose_postprocessing([_case("a", _tumor(True))], lambda case: _tumor(True), cavity_candidates=(0, 200))


def test_tune_run_of_a_model_with_the_cavity_reports_the_cases_without_one(tmp_path):
    run = tmp_path / "run"
    target = get_target("classes", label_set=BRATS_POST_TREATMENT)
    contract = SegmentationContract(target, window=Window(patch_size=(1, 32, 32), steps=(1, 32, 32), batch_size=8))
    model = AlbuNet2D(num_classes=BRATS_POST_TREATMENT.num_classes)
    kernel, _ = model.get_layer("final").get_weights()
    # Cavity everywhere: one large component, which no cavity candidate relabels.
    model.get_layer("final").set_weights([np.zeros_like(kernel), np.array([0, 0, 0, 0, 5], np.float32)])
    save_with_contract(model, contract, run / "best.keras")
    cases = [_case("pre", _cavity_case(None)), _case("post", _cavity_case(np.s_[3:7, 12:22, 12:20]))]
    summary = tune_run(run, cases=cases, component_candidates=(0,), et_candidates=(0,), dust_candidates=(0,),
                       cavity_candidates=(0, 20), modes=())
    assert "1 without a resection cavity, 1 of them given stray cavity voxels" in summary
    assert "RC components below 20 voxels -> surrounding class" in summary  # all tie: the stronger
    tuned = load_model(run).contract
    assert tuned.postprocessing.min_rc_component_voxels == 20 and tuned.to_json()["version"] == 4
    record = json.loads((run / TUNING_JSON).read_text())
    assert record["evidence"]["cases_without_rc"] == 1 and record["evidence"]["cases_without_rc_given_rc"] == 1
    header = (run / TUNING_CSV).read_text().splitlines()[0].split(",")
    assert {"rc_voxels_reference", "rc_voxels_baseline", "rc_voxels_chosen", "chosen_Dice_RC"} <= set(header)
