"""The Decathlon and nnU-Net raw layouts: discovery, reading by channel name, label values both ways."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tfbrats.data import CaseError, CaseMeta, find_cases, load_case, uncrop, write_labels_nifti
from tfbrats.data.records import BRATS2020_LABELS, DECATHLON_LABELS, LabelMap
from tfbrats.data.synthetic import synthetic_case, write_synthetic_dataset

SHAPE = (48, 48, 32)
LAYOUTS = ("brats2020", "brats2023", "decathlon", "nnunet")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    """The same five synthetic cases (the 5th a test case without labels) in every layout."""
    root = tmp_path_factory.mktemp("layouts")
    for layout in LAYOUTS:
        write_synthetic_dataset(root / layout, cases=5, shape=SHAPE, seed=3, layout=layout, test_cases=1)
    return {layout: root / layout for layout in LAYOUTS}


def test_find_cases_recognises_each_layout(datasets):
    ids = {
        "brats2020": "BraTS20_Training_{:03d}",
        "brats2023": "BraTS-GLI-{:05d}-000",
        "decathlon": "BRATS_{:03d}",
        "nnunet": "BraTS_{:03d}",
    }
    for layout, root in datasets.items():
        index = find_cases(root)
        assert index.layout == layout
        assert [c.case_id for c in index.cases] == [ids[layout].format(n) for n in range(1, 6)]
        assert [c.has_seg for c in index.cases] == [True, True, True, True, False]
        assert all(set(c.images) == {"t1", "t1ce", "t2", "flair"} for c in index.cases)
    decathlon = find_cases(datasets["decathlon"]).cases
    assert decathlon[0].volumes == {"flair": 0, "t1": 1, "t1ce": 2, "t2": 3}
    assert set(decathlon[0].images.values()) == {datasets["decathlon"] / "imagesTr" / "BRATS_001.nii.gz"}
    assert decathlon[4].images["t2"] == datasets["decathlon"] / "imagesTs" / "BRATS_005.nii.gz"
    assert decathlon[0].labels == DECATHLON_LABELS == LabelMap(necrosis=2, edema=1, enhancing=3)
    nnunet = find_cases(datasets["nnunet"]).cases
    assert nnunet[0].images["t1ce"].name == "BraTS_001_0002.nii.gz" and nnunet[0].volumes == {}
    assert nnunet[0].seg == datasets["nnunet"] / "labelsTr" / "BraTS_001.nii.gz"
    assert nnunet[0].labels == LabelMap(necrosis=2, edema=1, enhancing=3)


def test_every_layout_loads_the_same_arrays(datasets):
    reference = [load_case(c) for c in find_cases(datasets["brats2020"]).cases]
    # Independently of the loaders: the generator's own labels, BraTS 2020 values mapped by hand.
    _, seg = synthetic_case(SHAPE, np.random.default_rng([3, 1]))
    by_hand = np.select([seg == 1, seg == 2, seg == 4], [1, 2, 3], 0).transpose(2, 1, 0)
    assert np.array_equal(uncrop(reference[0].label, reference[0].meta), by_hand)
    for layout in ("brats2023", "decathlon", "nnunet"):
        for expected, case in zip(reference, find_cases(datasets[layout]).cases):
            loaded = load_case(case, input_channels=4, allow_missing=not case.has_seg)
            assert np.array_equal(loaded.image[..., :3], expected.image), (layout, case.case_id)
            assert loaded.meta.box == expected.meta.box and loaded.meta.spacing == expected.meta.spacing
            np.testing.assert_array_equal(loaded.meta.affine, expected.meta.affine)
            if case.has_seg:
                assert np.array_equal(loaded.label, expected.label), (layout, case.case_id)
            else:
                assert loaded.label is None and expected.label is None


@pytest.mark.parametrize("layout", ["decathlon", "nnunet"])
def test_predictions_are_written_as_the_layout_stores_labels(datasets, layout, tmp_path):
    case = find_cases(datasets[layout]).cases[0]
    pre = load_case(case)
    out = write_labels_nifti(uncrop(pre.label, pre.meta), pre.meta, tmp_path / f"{case.case_id}.nii.gz")
    written, stored = nib.load(out), nib.load(case.seg)
    assert written.shape == stored.shape == SHAPE  # 3-D, also when the images are one 4-D file
    assert written.header["dim"][0] == 3 and written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(written.affine, stored.affine)
    assert np.array_equal(np.asarray(written.dataobj), np.asarray(stored.dataobj))
    assert sorted(np.unique(np.asarray(written.dataobj)).tolist()) == [0, 1, 2, 3]


def test_label_map_round_trip_and_unknown_values():
    internal = np.array([0, 1, 2, 3, 3, 0])
    for labels, stored in ((BRATS2020_LABELS, [0, 1, 2, 4, 4, 0]), (DECATHLON_LABELS, [0, 2, 1, 3, 3, 0])):
        assert labels.to_dataset(internal).tolist() == stored
        assert labels.to_internal(np.array(stored)).tolist() == internal.tolist()
    with pytest.raises(ValueError, match=r"label values \[4\] are not among the dataset's \[0, 2, 1, 3\]"):
        DECATHLON_LABELS.to_internal(np.array([0, 4]))
    with pytest.raises(ValueError, match="three distinct integers"):
        LabelMap(1, 1, 3)


def test_old_cache_metadata_with_only_et_label_still_reads(datasets):
    meta = load_case(find_cases(datasets["brats2023"]).cases[0]).meta
    values = meta.to_json()
    assert values["labels"] == {"necrosis": 1, "edema": 2, "enhancing": 3}
    del values["labels"]
    assert CaseMeta.from_json(values).labels == meta.labels


def _dataset(root: Path, values: dict, files: list[str]) -> Path:
    root.mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps(values))
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    return root


V2_CHANNELS = {"0": "T1", "1": "T1ce", "2": "T2", "3": "Flair"}


def test_nnunet_v2_named_labels_and_channel_order(tmp_path):
    values = {"channel_names": V2_CHANNELS, "file_ending": ".nii.gz",
              "labels": {"background": 0, "NCR": 1, "ED": 2, "ET": 3}}  # fmt: skip
    files = [f"imagesTr/case_{c:04d}.nii.gz" for c in range(4)] + ["labelsTr/case.nii.gz", "imagesTs/new_0003.nii.gz"]
    index = find_cases(_dataset(tmp_path / "Dataset042_Gli", values, files))
    assert index.layout == "nnunet"
    case, new = index.cases
    assert case.case_id == "case" and case.images["flair"].name == "case_0003.nii.gz"
    assert case.labels == LabelMap(necrosis=1, edema=2, enhancing=3)
    assert new.case_id == "new" and new.seg is None and list(new.images) == ["flair"]  # what the case has


@pytest.mark.parametrize(
    "values, message",
    [
        ({"channel_names": {"0": "CT"}, "labels": {"background": 0}}, r"channel '0' is named 'CT'"),
        ({"channel_names": V2_CHANNELS, "labels": {"background": 0, "edema": 1, "liver": 2, "enhancing tumor": 3}},
         r"label 2 is named 'liver', which is not a tumor class"),
        ({"channel_names": V2_CHANNELS, "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3],
          "enhancing tumor": [3]}, "regions_class_order": [3, 2, 1]},
         r"regions_class_order \[3, 2, 1\] would write .* as \[3, 2, 1\], but the regions' own values are \[1, 2, 3\]"),
        ({"channel_names": V2_CHANNELS, "labels": {"background": 0, "whole tumor": [1, 2], "tumor core": [2, 3],
          "enhancing tumor": [3]}}, r"not three nested regions"),
    ],
)  # fmt: skip
def test_dataset_json_errors_name_the_file_and_the_problem(tmp_path, values, message):
    root = _dataset(tmp_path / "Dataset001_X", values, ["imagesTr/a_0000.nii.gz"])
    with pytest.raises(ValueError, match=message) as error:
        find_cases(root)
    assert str(root / "dataset.json") in str(error.value)


def test_a_4d_image_with_too_few_channels_names_the_case(datasets, tmp_path):
    source = find_cases(datasets["decathlon"]).cases[0]
    image = nib.load(source.images["flair"])
    values = json.loads((datasets["decathlon"] / "dataset.json").read_text())
    root = _dataset(tmp_path / "Task01", values, [])
    (root / "imagesTr").mkdir()
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[..., :2], image.affine), root / "imagesTr" / "BRATS_001.nii.gz")
    case = find_cases(root).cases[0]
    with pytest.raises(CaseError, match=r"case BRATS_001: t1ce file .* shape \(48, 48, 32, 2\); expected a 4-D image"):
        load_case(case)


def test_a_dangling_channel_or_label_link_is_listed_and_named_when_read(tmp_path):
    root = tmp_path / "nnunet"
    write_synthetic_dataset(root, cases=1, shape=SHAPE, seed=3, layout="nnunet")
    t2, label = root / "imagesTr" / "BraTS_001_0003.nii.gz", root / "labelsTr" / "BraTS_001.nii.gz"
    for path in (t2, label):
        path.unlink()
        path.symlink_to(path)  # refers to itself
    case = find_cases(root).cases[0]
    assert case.images["t2"] == t2 and case.seg == label
    with pytest.raises(CaseError, match=f"t2 file {t2}"):
        load_case(case, allow_missing=True)
