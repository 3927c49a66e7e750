"""Synthetic BraTS 2024/2025 data: post-treatment cases with a resection cavity, mixed with pre-treatment ones."""

import numpy as np
import pytest
from scipy import ndimage

from tfbrats.data import BRATS2024_LABELS, dataset_label_set, find_cases, load_case
from tfbrats.data.synthetic import synthetic_case, write_synthetic_dataset
from tfbrats.labels import BRATS_POST_TREATMENT

SHAPE = (64, 64, 40)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("brats2025")
    write_synthetic_dataset(root, cases=4, shape=SHAPE, seed=5, layout="brats2025")
    return root


def test_brats2025_layout_mixes_pre_and_post_treatment_cases_as_one_dataset(dataset):
    index = find_cases(dataset)
    assert index.layout == "brats2025"
    assert [c.case_id for c in index.cases] == [
        "BraTS-GLI-00001-100", "BraTS-GLI-00002-000", "BraTS-GLI-00003-100", "BraTS-GLI-00004-000"]
    assert all(c.labels == BRATS2024_LABELS for c in index.cases)
    assert dataset_label_set(c.labels for c in index.cases) is BRATS_POST_TREATMENT
    loaded = {c.case_id: load_case(c) for c in index.cases}
    for case_id, case in loaded.items():
        classes = set(np.unique(case.label).tolist())
        assert (4 in classes) == case_id.endswith("-100"), (case_id, classes)
        assert {1, 2} <= classes
    # Case 4 has no enhancing tumor (every fourth case), the others have.
    assert 3 not in np.unique(loaded["BraTS-GLI-00004-000"].label)
    assert 3 in np.unique(loaded["BraTS-GLI-00001-100"].label)


def test_a_resection_cavity_is_fluid_with_a_residual_tumor_nodule_on_its_wall():
    for seed in range(3):
        images, seg = synthetic_case(SHAPE, np.random.default_rng([seed, 1]), post_treatment=True)
        cavity, edema, enhancing = seg == 4, seg == 2, seg == 3
        assert cavity.sum() > 50
        white = {name: np.median(image[(seg == 0) & (image > 0)]) for name, image in images.items()}

        def median(name, mask, images=images):
            return np.median(images[name][mask])

        # Fluid: dark in T1 and T1c, bright in T2, darker than the surrounding hyperintensity in FLAIR.
        assert median("t1", cavity) < 0.6 * white["t1"] and median("t1ce", cavity) < 0.6 * white["t1ce"]
        assert median("t2", cavity) > 1.8 * white["t2"]
        assert median("flair", cavity) < 0.5 * median("flair", edema)
        assert median("t1ce", enhancing) > 1.25 * white["t1ce"]  # a shell, blurred by partial volume
        # Residual tumor touches the cavity, on part of its rim only: most of the rim is edema.
        rim = ndimage.binary_dilation(cavity, np.ones((3, 3, 3), bool)) & ~cavity
        tumor_on_rim = np.isin(seg[rim], (1, 3)).mean()
        assert 0.05 < tumor_on_rim < 0.8, tumor_on_rim
        assert np.isin(seg[rim], (1, 2, 3)).all()
        # Nodular, not a thin line along the wall (which BraTS 2024 does not count as tumor): a fifth
        # of the residual tumor or more survives peeling one voxel off its surface.
        residual = np.isin(seg, (1, 3))
        assert ndimage.binary_erosion(residual).sum() > 0.2 * residual.sum()


def test_pre_treatment_cases_are_unchanged_by_the_post_treatment_option():
    rng = np.random.default_rng([2, 2])
    images, seg = synthetic_case(SHAPE, rng)
    assert sorted(np.unique(seg).tolist()) == [0, 1, 2, 4]  # BraTS 2020 values, no cavity
    again, seg_again = synthetic_case(SHAPE, np.random.default_rng([2, 2]), post_treatment=False)
    assert np.array_equal(seg, seg_again) and all(np.array_equal(images[k], again[k]) for k in images)
