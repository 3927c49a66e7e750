"""Label sets as data: the resection cavity (BraTS 2024/2025) through targets, contract, loss and data discovery."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from tfbrats.contract import (
    ContractError,
    OutputError,
    PostProcessing,
    SegmentationContract,
    finish_segmentation,
    postprocess,
)
from tfbrats.data import BRATS2023_LABELS, BRATS2024_LABELS, dataset_label_set, find_cases
from tfbrats.data.records import BRATS2020_LABELS, LabelMap
from tfbrats.labels import (
    BRATS,
    BRATS_POST_TREATMENT,
    ClassesTarget,
    get_target,
    labels_to_regions,
    regions_to_labels,
    target_from_json,
)
from tfbrats.losses import RegionDiceLoss, loss_for

RC = BRATS_POST_TREATMENT


def _numpy(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def test_label_sets_declare_classes_regions_and_groups():
    assert BRATS.num_classes == 4 and list(BRATS.regions) == ["WT", "TC", "ET"]
    assert RC.num_classes == 5 and RC.classes[4] == "resection cavity"
    assert RC.regions == {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,), "RC": (4,)}
    assert RC.groups == {"ET": (3,), "WT": (1, 2, 3), "TC": (1, 3), "RC": (4,), "NETC": (1,), "SNFH": (2,)}


def test_classes_target_with_the_cavity_has_five_outputs_and_argmax_gives_4():
    target = get_target("classes", label_set=RC)
    assert target.num_outputs == 5 and target.labels == (0, 1, 2, 3, 4)
    probabilities = np.eye(5)[[0, 4, 3, 1]] * 0.8 + 0.04
    assert target.to_labels_numpy(probabilities).tolist() == [0, 4, 3, 1]
    with pytest.raises(ValueError, match="5 classes"):
        ClassesTarget(4, RC)
    # Targets stay hashable and compare by their label set.
    assert len({get_target("classes"), get_target("classes"), target, get_target("classes", 5)}) == 3


def test_regions_with_the_cavity_round_trip_and_rc_stays_outside_the_whole_tumor():
    labels = np.array([[0, 1, 2, 3, 4, 4, 2]])
    regions = _numpy(labels_to_regions(labels, RC))
    assert regions.shape == (1, 7, 4)
    # RC is its own region, not nested in WT: an RC voxel is only in RC.
    assert regions[0, 4].tolist() == [0, 0, 0, 1]
    np.testing.assert_array_equal(_numpy(regions_to_labels(regions, label_set=RC)), labels)
    # Where WT and RC are both above the threshold, the tumor wins; an RC probability alone gives 4.
    p = np.array([[0.9, 0.1, 0.1, 0.9], [0.1, 0.1, 0.1, 0.9], [0.1, 0.9, 0.9, 0.4]])
    assert _rc_regions().to_labels_numpy(p).tolist() == [2, 4, 0]
    # The four-class regions target ignores a fourth channel it does not have: its labels never hold 4.
    assert _numpy(regions_to_labels(regions[..., :3])).max() == 3


@pytest.mark.parametrize("target", [get_target("classes"), get_target("classes", label_set=RC),
                                    get_target("regions"), get_target("regions", label_set=RC)],
                         ids=["classes", "classes_rc", "regions", "regions_rc"])
def test_numpy_labels_equal_the_keras_ops_labels(target):
    # Predictions label numpy volumes with numpy's operations and graphs with Keras': one rule, two array
    # libraries, the same labels (ties and values at the threshold included).
    rng = np.random.default_rng(0)
    probabilities = rng.random((6, 7, 8, target.num_outputs)).astype(np.float32)
    probabilities[0, 0, 0] = 0.5
    probabilities[1, 1, 1] = probabilities[1, 1, 1, 0]
    labels = target.to_labels_numpy(probabilities)
    assert labels.dtype == np.uint8 and labels.shape == (6, 7, 8)
    np.testing.assert_array_equal(labels, _numpy(target.to_labels(probabilities)))
    assert set(np.unique(labels)) <= set(target.labels)


def _rc_regions():
    return get_target("regions", label_set=RC)


def test_region_dice_loss_scores_the_cavity_region_as_numpy_does():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=(2, 3, 8, 8))
    logits = rng.normal(size=(2, 3, 8, 8, 4)).astype("float32")
    loss = loss_for(_rc_regions())
    assert isinstance(loss, RegionDiceLoss) and loss.label_set == RC.name
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    dices = []
    for index, classes in enumerate(RC.regions.values()):
        r = np.isin(labels, classes).astype(np.float64)
        dices.append((2 * (p[..., index] * r).sum() + 1) / (p[..., index].sum() + r.sum() + 1))
    assert float(loss(labels, logits)) == pytest.approx(1 - np.mean(dices), abs=1e-5)
    assert RegionDiceLoss.from_config(loss.get_config()).label_set == RC.name
    with pytest.raises(ValueError, match="last axis 4"):
        loss(labels, logits[..., :3])


def test_contract_records_the_label_set_and_old_contracts_load_as_brats():
    four = SegmentationContract()
    assert "label_set" not in four.to_json()["target"] and four.to_json()["version"] == 1
    contract = SegmentationContract(_rc_regions(), label_values={1: 1, 2: 2, 3: 3, 4: 4})
    values = json.loads(json.dumps(contract.to_json()))
    assert values["version"] == 3 and values["target"]["label_set"] == RC.name
    assert values["target"]["outputs"] == ["WT", "TC", "ET", "RC"]
    assert SegmentationContract.from_json(values) == contract
    old = {"version": 1, "target": {"name": "classes", "num_outputs": 4}, "channels": ["flair", "t1ce", "t2"],
           "window": {"patch_size": [24, 128, 128]}}
    assert SegmentationContract.from_json(old).target == ClassesTarget(4, BRATS)
    assert target_from_json({"name": "classes", "num_outputs": 5, "label_set": RC.name}).label_set is RC
    with pytest.raises(ContractError, match="each class"):
        SegmentationContract(_rc_regions(), label_values={1: 1, 2: 2, 3: 3})
    with pytest.raises(ValueError, match="unknown label set"):
        target_from_json({"name": "classes", "num_outputs": 5, "label_set": "brats2099"})


def test_finish_segmentation_keeps_the_cavity_only_for_a_target_that_has_it():
    p = np.zeros((1, 2, 3, 5), np.float32)
    p[0, :, 0, 4] = p[0, :, 1, 3] = p[0, :, 2, 0] = 1
    image = np.ones((1, 2, 3, 3), np.float32)
    rc = SegmentationContract(get_target("classes", label_set=RC),
                              postprocessing=PostProcessing(min_component_voxels=3))
    assert finish_segmentation(p, image, rc).tolist() == [[[4, 3, 0], [4, 3, 0]]]
    # Small components go whatever their class: a 2-voxel cavity falls below 3 voxels only when alone.
    assert finish_segmentation(p[:, :1], image[:, :1], rc).tolist() == [[[0, 0, 0]]]
    with pytest.raises(OutputError, match="not labels"):
        postprocess(np.array([[[4]]], np.uint8), None, PostProcessing())


def test_label_map_with_a_cavity_maps_both_ways_and_covers_a_model_with_it():
    values = np.array([0, 1, 2, 3, 4])
    assert BRATS2024_LABELS.to_internal(values).tolist() == [0, 1, 2, 3, 4]
    assert BRATS2024_LABELS.to_dataset(values).tolist() == [0, 1, 2, 3, 4]
    odd = LabelMap(necrosis=2, edema=1, enhancing=3, cavity=7)
    assert odd.to_dataset(values).tolist() == [0, 2, 1, 3, 7] and odd.label_set is RC
    with pytest.raises(ValueError, match=r"0\.\.3"):
        BRATS2023_LABELS.to_dataset(values)
    assert BRATS2023_LABELS.covering(RC) == BRATS2024_LABELS
    assert BRATS2023_LABELS.covering(BRATS) is BRATS2023_LABELS
    with pytest.raises(ValueError, match="value 4 is taken"):
        BRATS2020_LABELS.covering(RC)
    with pytest.raises(ValueError, match="four distinct"):
        LabelMap(1, 2, 3, cavity=3)
    assert dataset_label_set([BRATS2023_LABELS]) is BRATS and dataset_label_set([BRATS2024_LABELS]) is RC


def _touch_case(root: Path, case_id: str, seg: bool = True) -> None:
    folder = root / case_id
    folder.mkdir(parents=True)
    for key in ("t1n", "t1c", "t2w", "t2f", *(("seg",) if seg else ())):
        (folder / f"{case_id}-{key}.nii.gz").touch()


def test_find_cases_reads_brats2025_mixed_pre_and_post_treatment_as_one_dataset(tmp_path):
    for case_id in ("BraTS-GLI-00001-000", "BraTS-GLI-00002-100", "BraTS-GLI-00002-101"):
        _touch_case(tmp_path / "mixed", case_id)
    index = find_cases(tmp_path / "mixed")
    assert index.layout == "brats2025"
    assert [c.labels for c in index.cases] == [BRATS2024_LABELS] * 3
    assert set(index.cases[0].images) == {"t1", "t1ce", "t2", "flair"}
    _touch_case(tmp_path / "pre", "BraTS-GLI-00001-000")
    assert find_cases(tmp_path / "pre").layout == "brats2023"
    assert find_cases(tmp_path / "pre").cases[0].labels == BRATS2023_LABELS
    single = find_cases(tmp_path / "mixed" / "BraTS-GLI-00002-100")
    assert single.layout == "case" and single.cases[0].labels.cavity == 4


def test_manifest_and_nnunet_dataset_json_name_the_cavity(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "manifest.csv").write_text("case_id,flair,seg,et_label,cavity_label\na,a.nii.gz,s.nii.gz,3,4\n"
                                                 "b,b.nii.gz,,3,\n")
    cases = find_cases(tmp_path / "m").cases
    assert cases[0].labels == BRATS2024_LABELS and cases[1].labels == BRATS2023_LABELS
    root = tmp_path / "Dataset137_BraTS2024"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "t1n", "1": "t1c", "2": "t2w", "3": "t2f"},
        "labels": {"background": 0, "NETC": 1, "SNFH": 2, "ET": 3, "RC": 4},
        "numTraining": 1, "file_ending": ".nii.gz"}))
    for channel in range(4):
        (root / "imagesTr" / f"BraTS_001_{channel:04d}.nii.gz").touch()
    (root / "labelsTr" / "BraTS_001.nii.gz").touch()
    index = find_cases(root)
    assert index.layout == "nnunet" and index.cases[0].labels == BRATS2024_LABELS
