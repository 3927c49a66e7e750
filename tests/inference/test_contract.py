"""The segmentation contract: carried by the model file, checked against its run, applied once, recorded."""

import dataclasses
import json
import re
import shutil

import numpy as np
import pytest
from scipy import ndimage

from tfbrats.contract import (
    ContractError,
    OutputError,
    PostProcessing,
    SegmentationContract,
    Window,
    finish_segmentation,
    postprocess,
    postprocess_without_components,
    relabel_dust,
    remove_small_components,
)
from tfbrats.data import find_cases
from tfbrats.data.synthetic import write_synthetic_dataset
from tfbrats.inference.model import load_model, save_with_contract
from tfbrats.inference.predict import predict_cases
from tfbrats.labels import BRATS_POST_TREATMENT, ET_CLASS, RC_CLASS, get_target
from tfbrats.models import AlbuNet2D

SMALL = Window(patch_size=(1, 32, 32), steps=(1, 32, 32), batch_size=8)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("cases")
    write_synthetic_dataset(root, cases=2, shape=(40, 44, 12), seed=11)
    return find_cases(root).cases


def _regions_model(seed: int = 0) -> AlbuNet2D:
    import keras

    keras.utils.set_random_seed(seed)
    model = AlbuNet2D(num_classes=3)
    kernel, bias = model.get_layer("final").get_weights()
    # Random features, biased towards tumor so that every label appears.
    model.get_layer("final").set_weights([kernel * 20.0, bias + np.array([0.5, 0.0, 0.0], np.float32)])
    return model


def test_a_regions_keras_file_alone_segments_like_its_run_folder(cases, tmp_path):
    run = tmp_path / "run"
    contract = SegmentationContract(get_target("regions"), window=SMALL,
                                    postprocessing=PostProcessing(min_component_voxels=3, min_et_voxels=20))
    save_with_contract(_regions_model(), contract, run / "best.keras")
    (run / "config.json").write_text(json.dumps({"model": "albunet2d", "target": "regions", "patch_size": [1, 32, 32],
                                                 "input_channels": 3}))
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(run / "best.keras", alone / "copied.keras")

    from_run, from_file = load_model(run), load_model(alone / "copied.keras")
    assert from_file.contract == from_run.contract == contract
    assert from_file.fingerprint == from_run.fingerprint
    predict_cases(cases, from_run, tmp_path / "a", progress=False)
    predict_cases(cases, from_file, tmp_path / "b", progress=False)
    import nibabel as nib

    for case in cases:
        a = np.asarray(nib.load(tmp_path / "a" / f"{case.case_id}.nii.gz").dataobj)
        b = np.asarray(nib.load(tmp_path / "b" / f"{case.case_id}.nii.gz").dataobj)
        np.testing.assert_array_equal(a, b)
        assert set(np.unique(a)) <= {0, 1, 2, 4}
        assert json.loads((tmp_path / "b" / f"{case.case_id}.json").read_text())["contract"] == contract.to_json()


def test_a_model_and_an_unrelated_config_json_are_refused_naming_both(tmp_path):
    contract = SegmentationContract(get_target("regions"), window=SMALL)
    save_with_contract(_regions_model(), contract, tmp_path / "best.keras")
    (tmp_path / "config.json").write_text(json.dumps({"target": "classes", "patch_size": [8, 64, 64]}))
    with pytest.raises(ContractError, match="best.keras and .*config.json disagree.*target 'regions' in the model"):
        load_model(tmp_path)


def test_a_tuned_inference_mode_with_another_window_still_loads_from_its_run(tmp_path):
    """The run's training patch is checked against the model's own window, not the tuned mode's."""
    from tfbrats.inference.modes import InferenceMode

    own = SegmentationContract(window=Window.for_patch((8, 64, 64)))
    for mode in ("no_overlap", "paper_windows_bf16", "full_volume"):
        tuned = InferenceMode.from_name(mode).apply(own).replace(
            inference_mode={"mode": mode, "reference_window": own.window.to_json()})
        save_with_contract(AlbuNet2D(num_classes=4), tuned, tmp_path / "best.keras")
        (tmp_path / "config.json").write_text(json.dumps({"target": "classes", "patch_size": [8, 64, 64]}))
        assert load_model(tmp_path).contract.window == tuned.window
        (tmp_path / "config.json").write_text(json.dumps({"target": "classes", "patch_size": [16, 64, 64]}))
        with pytest.raises(ContractError, match=r"window \(8, 64, 64\) in the model, training patch \(16, 64, 64\)"):
            load_model(tmp_path)


def test_a_three_output_model_without_any_record_is_never_read_as_three_classes(tmp_path):
    AlbuNet2D(num_classes=3).save(tmp_path / "old.keras")
    with pytest.raises(ContractError, match="3 outputs and records no target"):
        load_model(tmp_path / "old.keras")


def test_a_rerun_recomputes_cases_made_by_another_model_or_contract(cases, tmp_path):
    first = tmp_path / "first.keras"
    second = tmp_path / "second.keras"
    save_with_contract(AlbuNet2D(num_classes=4), SegmentationContract(window=SMALL), first)
    save_with_contract(AlbuNet2D(num_classes=4), SegmentationContract(window=SMALL), second)
    out = tmp_path / "out"
    loaded = load_model(first)
    assert len(predict_cases(cases, loaded, out, progress=False).written) == 2
    again = predict_cases(cases, loaded, out, progress=False)
    assert len(again.skipped) == 2 and not again.written
    tuned = loaded.contract.replace(postprocessing=PostProcessing(min_et_voxels=100))
    changed = predict_cases(cases, loaded, out, tuned, progress=False)
    assert len(changed.recomputed) == 2 and len(changed.written) == 2
    other = predict_cases(cases, load_model(second), out, progress=False)
    assert len(other.recomputed) == 2
    record = json.loads((out / f"{cases[0].case_id}.json").read_text())
    assert record["model"].endswith("second.keras") and record["model_sha256"] == load_model(second).fingerprint


def test_small_components_are_removed_as_an_independent_count_says():
    rng = np.random.default_rng(0)
    labels = (rng.random((6, 20, 20)) < 0.08).astype(np.uint8) * rng.integers(1, 4, (6, 20, 20)).astype(np.uint8)
    labels[2:5, 5:12, 5:12] = 2
    kept = remove_small_components(labels, 4)
    # Independent: flood-fill each tumor voxel's 26-neighbourhood component by BFS.
    tumor = labels > 0
    seen = np.zeros_like(tumor)
    expected = labels.copy()
    for start in zip(*np.nonzero(tumor)):
        if seen[start]:
            continue
        stack, component = [start], []
        seen[start] = True
        while stack:
            voxel = stack.pop()
            component.append(voxel)
            for offset in np.ndindex(3, 3, 3):
                n = tuple(v + o - 1 for v, o in zip(voxel, offset))
                if all(0 <= c < s for c, s in zip(n, labels.shape)) and tumor[n] and not seen[n]:
                    seen[n] = True
                    stack.append(n)
        if len(component) < 4:
            for voxel in component:
                expected[voxel] = 0
    np.testing.assert_array_equal(kept, expected)
    assert (kept[2:5, 5:12, 5:12] == 2).all()
    assert ndimage.label(kept > 0, np.ones((3, 3, 3)))[1] < ndimage.label(tumor, np.ones((3, 3, 3)))[1]


def _components_26(mask: np.ndarray) -> list[list[tuple[int, ...]]]:
    """Connected components of a boolean mask, 26-neighbourhood, by flood fill (independent of scipy)."""
    seen = np.zeros_like(mask)
    found = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        stack, component = [start], []
        seen[start] = True
        while stack:
            voxel = stack.pop()
            component.append(voxel)
            for offset in np.ndindex(3, 3, 3):
                n = tuple(v + o - 1 for v, o in zip(voxel, offset))
                if all(0 <= c < s for c, s in zip(n, mask.shape)) and mask[n] and not seen[n]:
                    seen[n] = True
                    stack.append(n)
        found.append(component)
    return found


def test_enhancing_dust_takes_the_class_most_of_its_neighbours_have_as_an_independent_count_says():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, (6, 16, 16)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.15] = 3
    labels[1:5, 3:9, 3:9] = 3  # one large enhancing component
    relabelled = relabel_dust(labels, ET_CLASS, 5)
    expected = labels.copy()
    for component in _components_26(labels == 3):
        if len(component) >= 5:
            continue
        members = set(component)
        neighbours = {tuple(v + o - 1 for v, o in zip(voxel, offset))
                      for voxel in component for offset in np.ndindex(3, 3, 3)}
        neighbours = [n for n in neighbours - members if all(0 <= c < s for c, s in zip(n, labels.shape))]
        votes = np.bincount([labels[n] for n in neighbours], minlength=3)
        assert votes[3:].sum() == 0  # a component's neighbours are never ET
        for voxel in component:
            expected[voxel] = np.argmax(votes[:3])
    np.testing.assert_array_equal(relabelled, expected)
    assert (relabelled[1:5, 3:9, 3:9] == 3).all()
    assert 0 < (relabelled == 3).sum() < (labels == 3).sum()


def test_enhancing_dust_inside_a_core_becomes_necrosis_in_edema_edema_and_a_lone_speck_background():
    labels = np.zeros((5, 20, 20), np.uint8)
    labels[:, 2:12, 2:12] = 2  # edema
    labels[1:4, 4:10, 4:10] = 1  # a non-enhancing core
    labels[2, 6:8, 6:8] = 3  # 4 voxels of dust inside the core
    labels[0, 3, 3] = 3  # 1 voxel in the edema
    labels[2, 17, 17] = 3  # a lone speck outside the tumor
    relabelled = relabel_dust(labels, ET_CLASS, 5)
    assert (relabelled[2, 6:8, 6:8] == 1).all() and relabelled[0, 3, 3] == 2 and relabelled[2, 17, 17] == 0
    assert not (relabelled == 3).any()
    np.testing.assert_array_equal(relabelled[labels != 3], labels[labels != 3])
    np.testing.assert_array_equal(relabel_dust(labels, ET_CLASS, 4)[2, 6:8, 6:8], labels[2, 6:8, 6:8])  # 4 is not < 4


def _surroundings_vote(labels: np.ndarray, component: np.ndarray, label: int) -> int:
    """The class most of a component's 26-neighbours of another class have (a tie: the lower), voxel by voxel."""
    votes = np.zeros(label + 2, int)
    members = set(zip(*np.nonzero(component)))
    counted = set()
    for voxel in members:
        for offset in np.ndindex(3, 3, 3):
            n = tuple(v + o - 1 for v, o in zip(voxel, offset))
            if n in members or n in counted or not all(0 <= c < s for c, s in zip(n, labels.shape)):
                continue
            counted.add(n)
            if labels[n] != label:
                votes[labels[n]] += 1
    return int(np.argmax(votes))


def test_cavity_dust_takes_the_class_of_its_surroundings_as_scipy_label_says_and_a_real_cavity_stays():
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(4, dtype=np.uint8), 6)[None, None, :].repeat(6, 0).repeat(18, 1)  # 4 slabs
    labels[rng.random(labels.shape) < 0.2] = 0  # background, necrosis and ET mixed into each slab
    labels[rng.random(labels.shape) < 0.1] = 1
    labels[rng.random(labels.shape) < 0.1] = 3
    labels[rng.random(labels.shape) < 0.08] = RC_CLASS  # specks and small clumps of cavity
    labels[1:5, 4:10, 4:10] = RC_CLASS  # a real cavity of 144 voxels, with whatever specks touch it
    components, count = ndimage.label(labels == RC_CLASS, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(components.ravel())
    expected = labels.copy()
    for index in range(1, count + 1):
        if sizes[index] < 6:
            expected[components == index] = _surroundings_vote(labels, components == index, RC_CLASS)
    assert count > 10 and (sizes[1:] < 6).sum() > 5
    relabelled = relabel_dust(labels, RC_CLASS, 6)
    np.testing.assert_array_equal(relabelled, expected)
    assert (relabelled[1:5, 4:10, 4:10] == RC_CLASS).all()
    assert set(np.unique(relabelled[(labels == RC_CLASS) & (relabelled != RC_CLASS)]).tolist()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(relabelled[labels != RC_CLASS], labels[labels != RC_CLASS])
    # Enhancing tumor goes through the same function, and each step leaves the other class alone.
    np.testing.assert_array_equal(relabel_dust(labels, ET_CLASS, 6)[labels == RC_CLASS], labels[labels == RC_CLASS])


def test_stray_cavity_voxels_on_a_case_without_a_cavity_become_background_or_the_tumor_around_them():
    labels = np.zeros((5, 20, 20), np.uint8)
    labels[:, 2:12, 2:12] = 2  # edema
    labels[1:4, 4:10, 4:10] = 1  # a non-enhancing core
    labels[2, 6:8, 6:8] = RC_CLASS  # 4 cavity voxels inside the core
    labels[0, 3, 3] = RC_CLASS  # 1 in the edema
    labels[2, 16:18, 16:18] = RC_CLASS  # 4 alone in the background
    steps = PostProcessing(brain_mask=False, min_rc_component_voxels=5)
    cleaned = postprocess(labels, None, steps, allowed=BRATS_POST_TREATMENT.labels)
    assert (cleaned[2, 6:8, 6:8] == 1).all() and cleaned[0, 3, 3] == 2 and not cleaned[2, 16:18, 16:18].any()
    assert not (cleaned == RC_CLASS).any()
    kept = postprocess(labels, None, dataclasses.replace(steps, min_rc_component_voxels=4),
                       allowed=BRATS_POST_TREATMENT.labels)
    assert (kept == RC_CLASS).sum() == 8 and kept[0, 3, 3] == 2  # 4 is not < 4


def test_cavity_dust_runs_before_enhancing_dust_which_then_judges_the_enhancing_tumor_it_joined():
    labels = np.ones((1, 10, 10), np.uint8)  # a non-enhancing core
    labels[0, 3:5, 3:6] = ET_CLASS  # 6 voxels of enhancing tumor
    labels[0, 4, 4] = RC_CLASS  # a cavity voxel in it: 5 ET voxels around it, 3 of necrosis
    steps = PostProcessing(brain_mask=False, min_rc_component_voxels=2, min_et_component_voxels=7)
    assert relabel_dust(labels, RC_CLASS, 2)[0, 4, 4] == ET_CLASS
    # The cavity voxel joins the enhancing tumor (6 voxels), and then that is dust below 7: necrosis.
    np.testing.assert_array_equal(postprocess(labels, None, steps, allowed=BRATS_POST_TREATMENT.labels),
                                  np.ones_like(labels))
    only_cavity = dataclasses.replace(steps, min_et_component_voxels=0)
    assert (postprocess(labels, None, only_cavity, allowed=BRATS_POST_TREATMENT.labels) == ET_CLASS).sum() == 6


def test_postprocess_relabels_dust_before_the_whole_case_threshold_counts_what_is_left():
    labels = np.ones((3, 12, 12), np.uint8)
    labels[1, 1:5, 1:5] = 3  # 16 voxels of ET
    labels[1, 9, 9] = 3  # 1 voxel of dust in the core
    steps = PostProcessing(brain_mask=False, min_et_component_voxels=2, min_et_voxels=17)
    # The dust goes first: 16 ET voxels remain, below 17, so all of them become necrosis too.
    assert not (postprocess(labels, None, steps) == 3).any()
    kept = postprocess(labels, None, dataclasses.replace(steps, min_et_voxels=16))
    assert (kept == 3).sum() == 16 and kept[1, 9, 9] == 1


@pytest.mark.parametrize("steps", [PostProcessing(), PostProcessing(min_et_voxels=40),
                                   PostProcessing(brain_mask=False, min_et_voxels=400)])
def test_the_graph_steps_in_a_tf_function_give_the_numpy_path_s_labels(steps):
    import tensorflow as tf

    from tfbrats.contract import postprocess_without_components

    rng = np.random.default_rng(3)
    labels = rng.choice(np.arange(4, dtype=np.uint8), size=(4, 16, 16), p=[0.5, 0.2, 0.15, 0.15])
    image = rng.normal(size=(4, 16, 16, 2)).astype(np.float32)
    image[:, :3] = 0  # outside the brain
    expected = labels.copy()
    if steps.brain_mask:
        expected[~(image != 0).any(axis=-1)] = 0
    if 0 < (expected == 3).sum() < steps.min_et_voxels:
        expected[expected == 3] = 1
    graph = tf.function(lambda lab, img: postprocess_without_components(lab, img, steps))
    in_graph = graph(tf.constant(labels.astype(np.int32)), tf.constant(image)).numpy()
    assert in_graph.dtype == np.int32
    np.testing.assert_array_equal(in_graph, expected)
    np.testing.assert_array_equal(postprocess(labels, image, steps), expected)
    assert (expected == 3).any() == (steps.min_et_voxels < 400)  # the threshold is met in one case only


def test_steps_on_components_are_refused_by_the_keras_ops_path_and_split_off():
    from tfbrats.contract import postprocess_without_components

    steps = PostProcessing(min_component_voxels=10, min_et_voxels=200)
    with pytest.raises(ContractError, match="connected components"):
        postprocess_without_components(np.zeros((1, 1, 1), np.int32), np.ones((1, 1, 1, 1)), steps)
    graph, client = steps.split()
    assert graph == PostProcessing() and client == PostProcessing(False, 10, 200)
    assert PostProcessing(min_et_voxels=5).split() == (PostProcessing(min_et_voxels=5), PostProcessing(False))
    assert PostProcessing.from_integers(client.to_integers()) == client


def test_a_contract_with_the_dust_step_is_version_2_and_reads_back():
    plain = SegmentationContract(postprocessing=PostProcessing(min_et_voxels=200))
    dusted = SegmentationContract(postprocessing=PostProcessing(min_et_component_voxels=50))
    assert plain.to_json()["version"] == 1 and dusted.to_json()["version"] == 2
    assert SegmentationContract.from_json(json.loads(json.dumps(dusted.to_json()))) == dusted
    assert "ET components below 50 voxels -> surrounding class" in dusted.postprocessing.describe()
    assert PostProcessing.from_integers([1, 10, 200]) == PostProcessing(True, 10, 200, 0)  # an older export's steps
    with pytest.raises(ContractError, match="3, 4 or 5 whole numbers"):
        PostProcessing.from_integers([1, 2])


def test_the_cavity_step_is_a_fifth_integer_only_when_set_and_older_exports_read():
    cavity = PostProcessing(min_component_voxels=10, min_et_voxels=200, min_et_component_voxels=50,
                            min_rc_component_voxels=20)
    graph, client = cavity.split()  # a components step: everything after the brain mask goes to the client
    assert graph == PostProcessing() and client == dataclasses.replace(cavity, brain_mask=False)
    assert client.to_integers() == [0, 10, 200, 50, 20]
    assert PostProcessing.from_integers(np.array(client.to_integers(), np.int32)) == client
    only_cavity = PostProcessing(min_rc_component_voxels=20)
    assert only_cavity.split() == (PostProcessing(), PostProcessing(False, min_rc_component_voxels=20))
    with pytest.raises(ContractError, match="connected components"):
        postprocess_without_components(np.zeros((1, 1, 1), np.int32), np.ones((1, 1, 1, 1)), only_cavity)
    # Without the cavity step the integers are the four of before (an older client reads them) ...
    assert PostProcessing(False, 10, 200, 50).to_integers() == [0, 10, 200, 50]
    assert PostProcessing.from_integers([0, 10, 200, 50]).min_rc_component_voxels == 0
    assert PostProcessing.from_integers([1, 10, 200]) == PostProcessing(True, 10, 200)
    # ... and anything else is refused, naming the fields.
    for bad in ([1, 2], [1, 0, 0, 0, 0, 0], [1, 0, 0, 0, -5], [1, 0, 0, 0, 2.5]):
        with pytest.raises(ContractError, match="3, 4 or 5 whole numbers"):
            PostProcessing.from_integers(bad)


def test_a_contract_with_the_cavity_step_is_version_4_and_a_4_class_one_is_unchanged():
    four = SegmentationContract(postprocessing=PostProcessing(min_et_component_voxels=50))
    assert four.to_json()["postprocessing"] == {"brain_mask": True, "min_component_voxels": 0, "min_et_voxels": 0,
                                                "min_et_component_voxels": 50}
    assert four.to_json()["version"] == 2
    target = get_target("classes", label_set=BRATS_POST_TREATMENT)
    without = SegmentationContract(target, postprocessing=PostProcessing(min_et_component_voxels=50))
    assert without.to_json()["version"] == 3 and "min_rc_component_voxels" not in without.to_json()["postprocessing"]
    cavity = SegmentationContract(target, postprocessing=PostProcessing(min_rc_component_voxels=20))
    values = json.loads(json.dumps(cavity.to_json()))
    assert values["version"] == 4 and values["postprocessing"]["min_rc_component_voxels"] == 20
    assert SegmentationContract.from_json(values) == cavity
    assert "RC components below 20 voxels -> surrounding class" in cavity.postprocessing.describe()
    old = json.loads(json.dumps(without.to_json()))  # written before the step existed
    assert SegmentationContract.from_json(old).postprocessing.min_rc_component_voxels == 0
    with pytest.raises(ContractError, match="label set brats has no cavity"):
        SegmentationContract(postprocessing=PostProcessing(min_rc_component_voxels=20))
    with pytest.raises(ContractError, match="min_rc_component_voxels must be >= 0"):
        PostProcessing(min_rc_component_voxels=-1)


def test_a_user_s_cavity_step_overrides_the_contract_s():
    from tfbrats.inference.model import override_contract

    contract = SegmentationContract(get_target("classes", label_set=BRATS_POST_TREATMENT))
    changed = override_contract(contract, min_rc_component_voxels=30)
    assert changed.postprocessing.min_rc_component_voxels == 30 and changed.chosen_by.endswith("overridden by the user")
    assert override_contract(changed, min_rc_component_voxels=None) == changed
    with pytest.raises(ContractError, match="no cavity"):
        override_contract(SegmentationContract(), min_rc_component_voxels=30)


def test_finish_segmentation_applies_target_then_brain_mask_then_components_then_et():
    probabilities = np.zeros((1, 4, 6, 4), np.float32)
    probabilities[..., 0] = 1.0
    probabilities[0, 0, 0] = [0, 0, 0, 1]  # an isolated ET voxel: a 1-voxel component
    probabilities[0, 2:4, 2:6] = [0, 0, 1, 0]  # 8 voxels of edema
    probabilities[0, 3, 5] = [0, 0, 0, 1]  # ET inside the edema, outside the brain below
    image = np.ones((1, 4, 6, 2), np.float32)
    image[0, 3, 5] = 0
    contract = SegmentationContract(postprocessing=PostProcessing(min_component_voxels=2, min_et_voxels=1))
    labels = finish_segmentation(probabilities, image, contract)
    expected = np.zeros((1, 4, 6), np.uint8)
    expected[0, 2:4, 2:6] = 2
    expected[0, 3, 5] = 0
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(postprocess(labels, None, PostProcessing(brain_mask=False)), labels)
    with pytest.raises(ContractError, match="needs the image"):
        postprocess(labels, None, PostProcessing())


def _edema(shape=(1, 2, 2)) -> np.ndarray:
    probabilities = np.zeros((*shape, 4), np.float32)
    probabilities[..., 2] = 1.0
    return probabilities


def test_probabilities_that_are_not_finite_are_refused_naming_the_case():
    image = np.ones((1, 2, 2, 3), np.float32)
    assert finish_segmentation(_edema(), image, SegmentationContract()).tolist() == [[[2, 2], [2, 2]]]
    probabilities = _edema()
    probabilities[0, 1, 0, 3] = np.nan
    with pytest.raises(OutputError, match=r"^case c7: the network's probabilities hold 1 NaN or infinite values of "
                                          r"16 \(the first at index \(0, 1, 0, 3\): nan\); expected finite"):
        finish_segmentation(probabilities, image, SegmentationContract(), case_id="c7")
    # A regions model's NaN never exceeds the threshold: refused too, not read as background.
    regions = np.full((1, 2, 2, 3), 0.9, np.float32)
    regions[..., 1] = np.nan
    with pytest.raises(OutputError, match="4 NaN or infinite values of 12"):
        finish_segmentation(regions, image, SegmentationContract(get_target("regions")))


def test_probabilities_outside_0_1_or_off_the_grid_are_refused():
    image = np.ones((1, 2, 2, 3), np.float32)
    with pytest.raises(OutputError, match=r"range over \[-3, 6\] \(16 values outside \[0, 1\]\); expected the "
                                          r"classes target's softmax probabilities, not logits"):
        finish_segmentation(_edema() * 9 - 3, image, SegmentationContract())
    slightly = _edema() * (1 + 5e-4)  # within the tolerance for rounding
    assert finish_segmentation(slightly, image, SegmentationContract()).tolist() == [[[2, 2], [2, 2]]]
    with pytest.raises(OutputError, match=r"1 values outside \[0, 1\]"):
        finish_segmentation(np.where(np.arange(16).reshape(_edema().shape) == 5, 1.01, _edema()), image,
                            SegmentationContract())
    with pytest.raises(OutputError, match=r"probabilities over a grid \(1, 2, 3\) for an image of shape"):
        finish_segmentation(_edema((1, 2, 3)), image, SegmentationContract())
    with pytest.raises(OutputError, match=r"probabilities of shape \(1, 2, 2, 3\).*expected numbers \(D, H, W, 4\)"):
        finish_segmentation(_edema()[..., :3], image, SegmentationContract())


@pytest.mark.parametrize(("value", "shown"), [(3.7, "[3.7]"), (300, "[300]"), (-1, "[-1]"), (np.nan, "[nan]")])
def test_labels_that_are_not_classes_are_refused_not_cast(value, shown):
    """A cast to uint8 would make 3.7 enhancing tumor and wrap 300 to 44."""
    labels = np.zeros((1, 2, 3))
    labels[0, 1] = value
    with pytest.raises(OutputError, match=rf"^labels hold 3 voxels of values {re.escape(shown)}, which are not "
                                          r"labels \[0, 1, 2, 3\]; expected whole numbers among them$"):
        postprocess(labels, np.ones((1, 2, 3, 1)), PostProcessing())
    assert postprocess(np.full((1, 2, 3), 2.0), None, PostProcessing(brain_mask=False)).tolist() == [[[2] * 3] * 2]


def test_contract_json_round_trip_and_bad_versions():
    contract = SegmentationContract(get_target("regions"), ("flair", "t1ce", "t2", "t1"), SMALL,
                                    PostProcessing(False, 10, 200), {1: 1, 2: 2, 3: 4}, "validation")
    assert SegmentationContract.from_json(json.loads(json.dumps(contract.to_json()))) == contract
    with pytest.raises(ContractError, match="version"):
        SegmentationContract.from_json({**contract.to_json(), "version": 99})


def test_label_values_in_the_contract_decide_the_written_values(cases, tmp_path):
    import nibabel as nib

    from tfbrats.inference.model import override_contract

    model = AlbuNet2D(num_classes=4)
    kernel, _ = model.get_layer("final").get_weights()
    model.get_layer("final").set_weights([np.zeros_like(kernel), np.array([0, 0, 0, 5], np.float32)])  # ET
    save_with_contract(model, SegmentationContract(window=SMALL), tmp_path / "et.keras")
    loaded = load_model(tmp_path / "et.keras")
    predict_cases(cases[:1], loaded, tmp_path / "own", progress=False)
    predict_cases(cases[:1], loaded, tmp_path / "as2023", override_contract(loaded.contract, label_values=(1, 2, 3)),
                  progress=False)
    own = np.asarray(nib.load(tmp_path / "own" / f"{cases[0].case_id}.nii.gz").dataobj)
    as2023 = np.asarray(nib.load(tmp_path / "as2023" / f"{cases[0].case_id}.nii.gz").dataobj)
    assert set(np.unique(own)) == {0, 4} and set(np.unique(as2023)) == {0, 3}
    np.testing.assert_array_equal(own == 4, as2023 == 3)
