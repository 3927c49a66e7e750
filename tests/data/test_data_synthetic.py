"""The synthetic BraTS generator: layout, dtypes, labels, contrasts, and acceptance by the loaders."""

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from tfbrats.data import find_cases, load_case


def test_layout_dtypes_labels_and_geometry(brats2020: Path) -> None:
    index = find_cases(brats2020)
    assert index.layout == "brats2020" and len(index.cases) == 4
    for number, case in enumerate(index.cases, start=1):
        for path in case.images.values():
            image = nib.load(path)
            assert image.get_data_dtype() == np.int16 and image.shape == (48, 48, 32)
            assert image.header.get_zooms() == (1.0, 1.0, 1.0)
            np.testing.assert_array_equal(image.affine[:3, :3], np.diag([-1.0, -1.0, 1.0]))
        seg = nib.load(case.seg)
        assert seg.get_data_dtype() == np.uint8
        labels = set(np.unique(np.asarray(seg.dataobj)).tolist())
        assert labels == ({0, 1, 2} if number == 4 else {0, 1, 2, 4})  # the 4th case has no ET


def test_tumor_is_visible_in_flair_t1c_and_t2(brats2020: Path) -> None:
    pre = load_case(find_cases(brats2020).cases[0])
    flair, t1ce, t2 = (pre.image[..., c] for c in range(3))
    brain = (flair != 0) & (pre.label == 0)
    edema, enhancing = pre.label == 2, pre.label == 3
    assert flair[edema].mean() > flair[brain].mean() + 2.0
    assert t2[edema].mean() > t2[brain].mean() + 1.0
    assert t1ce[enhancing].mean() > t1ce[brain].mean() + 1.5
    assert np.all(flair[pre.label > 0] != 0)  # tumor lies inside the brain


def test_command_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "tfbrats.data.synthetic", f"--out={tmp_path}", "--cases=2", "--shape=40,36,24",
               "--seed=5"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "wrote 2 synthetic cases" in result.stdout
    cases = find_cases(tmp_path).cases
    assert [c.case_id for c in cases] == ["BraTS20_Training_001", "BraTS20_Training_002"]
    assert nib.load(cases[0].images["t1"]).shape == (40, 36, 24)
    assert load_case(cases[1]).label.max() == 3


def test_command_line_refuses_a_shape_without_three_sizes(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "tfbrats.data.synthetic", f"--out={tmp_path / 'out'}", "--shape=40,36"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2 and "--shape: expected three positive integers X,Y,Z; got '40,36'" in result.stderr
    assert not (tmp_path / "out").exists()
