"""Shared fixtures for the data tests: a small synthetic BraTS 2020 dataset."""

from pathlib import Path

import pytest

from tfbrats.data.synthetic import write_synthetic_dataset

SHAPE_XYZ = (48, 48, 32)


@pytest.fixture(scope="session")
def brats2020(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four synthetic cases (the 4th without enhancing tumor) of 48x48x32 voxels."""
    root = tmp_path_factory.mktemp("brats2020")
    write_synthetic_dataset(root, cases=4, shape=SHAPE_XYZ, seed=0)
    return root
