"""The one rule for names that become file names, and for where a writer's path may lead."""

import os

import pytest

from tfbrats.files import check_file_name, output_file

NOT_FILE_NAMES = ["", ".", "..", "../victim/c1", "/tmp/victim/c1", "a/b", "a\\b", ".hidden", "c1\n", "c\x001"]


@pytest.mark.parametrize("name", NOT_FILE_NAMES)
def test_a_name_with_a_path_in_it_is_refused(name):
    with pytest.raises(ValueError, match=r"case id .* is not a file name"):
        check_file_name(name)


@pytest.mark.parametrize("name", ["BraTS20_Training_001", "BraTS-GLI-00000-000", "BRATS_001", "c 1", "a..b"])
def test_dataset_ids_are_file_names(name):
    assert check_file_name(name) == name


def test_an_output_path_stays_in_its_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert output_file(out, "c1", ".nii.gz") == out / "c1.nii.gz"
    with pytest.raises(ValueError, match="is not a file name"):
        output_file(out, "../c1", ".nii.gz")
    with pytest.raises(ValueError, match="is not a file name"):
        output_file(out, str(tmp_path / "c1"), ".json")
    os.symlink(tmp_path / "elsewhere.nii.gz", out / "c2.nii.gz")
    with pytest.raises(ValueError, match=r"c2.nii.gz resolves to .*elsewhere.nii.gz, outside the folder"):
        output_file(out, "c2", ".nii.gz")
