"""Missing modalities: dropout of training channels, and cases read without some of their files."""

import dataclasses
import json

import numpy as np
import pytest

from tfbrats.data import CaseError, CaseMeta, ModalityDropout, find_cases, load_case


def _patch(channels: int = 3) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(2, 4, 4, channels)).astype(np.float32) + 5.0


def _kept(image: np.ndarray) -> np.ndarray:
    return np.any(image != 0, axis=(0, 1, 2))


@pytest.mark.parametrize("probability", [0.5, 0.9, 1.0])
def test_dropout_never_removes_every_channel(probability):
    dropout, image, label = ModalityDropout(probability), _patch(), np.zeros((2, 4, 4), np.int32)
    kept = np.array([_kept(dropout(image, label, np.random.default_rng([1, i]))[0]) for i in range(200)])
    assert kept.any(axis=1).all(), "every patch keeps at least one channel"
    if probability == 1.0:
        assert (kept.sum(axis=1) == 1).all() and kept.any(axis=0).all(), "exactly one, each channel sometimes"
    else:
        assert (kept.sum(axis=1) < 3).any(), "channels are dropped"


def test_dropout_zero_fills_lost_channels_and_keeps_the_rest_and_the_label():
    image, label = _patch(4), np.arange(32, dtype=np.int32).reshape(2, 4, 4)
    out, out_label = ModalityDropout(0.5)(image, label, np.random.default_rng(3))
    kept = _kept(out)
    assert 0 < kept.sum() < 4
    np.testing.assert_array_equal(out[..., kept], image[..., kept])
    assert not out[..., ~kept].any()
    assert out_label is label and image.min() > 0, "the input patch is not modified"


def test_dropout_is_reproducible_under_a_seed_and_identity_at_zero():
    image, label = _patch(), np.zeros((2, 4, 4), np.int32)
    first = [ModalityDropout(0.5)(image, label, np.random.default_rng([7, i]))[0] for i in range(20)]
    again = [ModalityDropout(0.5)(image, label, np.random.default_rng([7, i]))[0] for i in range(20)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert len({tuple(_kept(a)) for a in first}) > 1, "different patches lose different channels"
    out, _ = ModalityDropout(0.0)(image, label, np.random.default_rng(0))
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("probability", [-0.1, 1.5])
def test_dropout_rejects_a_probability_outside_0_1(probability):
    with pytest.raises(ValueError, match="must lie in"):
        ModalityDropout(probability)


def _without(case, *modalities):
    return dataclasses.replace(case, images={k: p for k, p in case.images.items() if k not in modalities})


def test_a_case_folder_lacking_a_modality_is_found_and_loaded_when_allowed(brats2020, tmp_path):
    source = find_cases(brats2020).cases[0]
    folder = tmp_path / source.case_id
    folder.mkdir()
    for key, path in source.images.items():
        if key != "t2":
            (folder / path.name).symlink_to(path)
    case = find_cases(folder).cases[0]
    assert sorted(case.images) == ["flair", "t1", "t1ce"] and case.seg is None
    with pytest.raises(CaseError, match=r"no file for modality \['t2'\]"):
        load_case(case)
    partial, full = load_case(case, allow_missing=True), load_case(dataclasses.replace(source, seg=None))
    assert partial.meta.missing == ("t2",) and full.meta.missing == ()
    assert partial.meta.original_shape == full.meta.original_shape
    np.testing.assert_array_equal(partial.meta.affine, full.meta.affine)
    assert not partial.image[..., 2].any(), "the missing T2 is filled with zeros"
    assert partial.image[..., 0].any() and partial.image[..., 1].any()


def test_only_one_modality_is_enough_and_none_is_an_error(brats2020):
    case = dataclasses.replace(find_cases(brats2020).cases[1], seg=None)
    flair_only = load_case(_without(case, "t1ce", "t2"), allow_missing=True)
    assert flair_only.meta.missing == ("t1ce", "t2") and flair_only.image.shape[-1] == 3
    t1ce_only = load_case(_without(case, "flair", "t2", "t1"), input_channels=4, allow_missing=True)
    assert t1ce_only.meta.missing == ("flair", "t2", "t1")
    assert t1ce_only.meta.header.get_data_shape() == flair_only.meta.header.get_data_shape()
    with pytest.raises(CaseError, match="at least one of"):
        load_case(_without(case, "flair", "t1ce", "t2"), allow_missing=True)


def test_case_meta_json_keeps_missing_and_reads_older_caches(brats2020):
    meta = load_case(_without(find_cases(brats2020).cases[0], "flair"), allow_missing=True).meta
    values = json.loads(json.dumps(meta.to_json()))
    assert values["missing"] == ["flair"]
    assert CaseMeta.from_json(values).missing == ("flair",)
    del values["missing"]
    assert CaseMeta.from_json(values).missing == ()


def test_training_still_requires_every_modality(brats2020):
    from tfbrats.data import make_dataset

    case = _without(find_cases(brats2020).cases[0], "t2")
    with pytest.raises(CaseError, match="t2"):
        make_dataset([case], (1, 32, 32), 1)


def test_make_dataset_applies_dropout_to_training_patches(brats2020):
    from tfbrats.data import make_dataset

    cases = [load_case(c) for c in find_cases(brats2020).cases[:2]]
    dataset = make_dataset(cases, (4, 32, 32), 4, sample_transforms=[ModalityDropout(1.0)], foreground_fraction=1.0)
    images, _ = next(iter(dataset))
    kept = np.any(images.numpy() != 0, axis=(1, 2, 3))
    assert (kept.sum(axis=1) == 1).all(), kept
