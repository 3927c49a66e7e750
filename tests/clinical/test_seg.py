"""Labels back onto the reference series: native NIfTI and DICOM Segmentation, exact geometry and the CLI path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from study_helpers import check_seg_against_truth, dice, image_truth, voxel_model, write_study

from tfbrats.clinical import prepare_case
from tfbrats.data import BRATS2020_LABELS

hd = pytest.importorskip("highdicom", reason="the clinical extra (highdicom) is not installed")

from tfbrats.clinical.segment import write_segmentation  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict[str, Path]:
    """The study: T1c 1 mm reference stored rotated, T2 moved and anisotropic, 4 mm FLAIR, no T1."""
    return write_study(tmp_path_factory.mktemp("study"))


def test_known_labels_come_back_exactly_on_the_reference_series(study, tmp_path):
    case_dir = prepare_case(study, "c1", tmp_path / "out", skull_stripped=True)
    grid = sitk.ReadImage(str(case_dir / "c1_t1ce.nii.gz"))
    truth = image_truth(grid)
    on_grid = sitk.GetImageFromArray(truth)
    on_grid.CopyInformation(grid)
    result = write_segmentation(case_dir, truth, on_grid, label_map=BRATS2020_LABELS, classes=(1, 2, 3),
                                model_name="truth", fingerprint="ab" * 32)
    assert np.isin(truth, (1, 2, 3)).sum() > 400  # the tumor is on the grid, every class present
    assert set(np.unique(truth)) == {0, 1, 2, 3}

    # The native NIfTI: the reference series' own grid (as read, rotated), BraTS 2020 values.
    native = sitk.ReadImage(str(result.native))
    record = json.loads((case_dir / "c1_clinical.json").read_text())
    assert list(native.GetSize()) == record["inputs"]["t1ce"]["size"] == [60, 70, 50]
    np.testing.assert_allclose(native.GetDirection(), record["inputs"]["t1ce"]["direction"])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(native), BRATS2020_LABELS.to_dataset(image_truth(native)))

    # The SEG: every reference instance's frame equals the truth on that instance's pixels.
    labels, expected = check_seg_against_truth(result.dicom, study["t1ce"])
    np.testing.assert_array_equal(labels, expected)  # segment numbers 1, 2, 3 are classes 1, 2, 3
    seg = hd.seg.segread(result.dicom)
    assert [(s.SegmentNumber, s.SegmentLabel, s.SegmentedPropertyTypeCodeSequence[0].CodeValue)
            for s in seg.SegmentSequence] == [(1, "necrotic/non-enhancing core", "6574001"),
                                               (2, "edema", "79654002"), (3, "enhancing tumor", "108369006")]
    category = seg.SegmentSequence[0].SegmentedPropertyCategoryCodeSequence[0]
    assert (category.CodeValue, category.CodingSchemeDesignator) == ("49755003", "SCT")
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "tfbrats" and "abababab" in algorithm.AlgorithmVersion

    # Volumes: counts on the 1 mm grid, nested regions.
    whole = np.count_nonzero(truth) / 1000.0
    assert result.volumes_ml["WT"] == pytest.approx(whole, abs=1e-3)
    assert result.volumes_ml["TC"] == pytest.approx(np.isin(truth, (1, 3)).sum() / 1000.0, abs=1e-3)
    assert record["segmentation"]["volumes_ml"] == result.volumes_ml

    # The figure: the classes in colour over the reference scan on three planes through the tumor.
    matplotlib_image = pytest.importorskip("matplotlib.image")
    assert record["segmentation"]["figure"] == "c1_seg.png"
    pixels = matplotlib_image.imread(case_dir / "c1_seg.png")[..., :3]
    coloured = pixels.max(axis=-1) - pixels.min(axis=-1) > 0.3  # the scan itself is grey
    assert all(np.count_nonzero(third) > 30 for third in np.array_split(coloured, 3, axis=1))


@pytest.mark.slow
def test_cli_segments_a_study_and_writes_its_segmentation(study, tmp_path):
    run = voxel_model(tmp_path / "run", weights=(1.0, 2.0, 1.0), threshold=9.0)
    done = subprocess.run(
        [sys.executable, "-m", "tfbrats.clinical", f"--t1c={study['t1ce']}", f"--t2={study['t2']}",
         f"--flair={study['flair']}", "--no_mask", f"--model={run}", "--case_id=p1", f"--out={tmp_path / 'out'}"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    case_dir = tmp_path / "out" / "p1"
    assert (case_dir / "p1_seg_native.nii.gz").is_file() and (case_dir / "p1_seg.dcm").is_file()
    record = json.loads((case_dir / "p1_clinical.json").read_text())["segmentation"]
    assert record["model_sha256"] and record["dicom_seg_segments"] == {
        "necrotic/non-enhancing core": 1, "edema": 2, "enhancing tumor": 3}
    for region, ml in record["volumes_ml"].items():
        assert f"{region} (" in done.stdout and f"{ml:.2f} ml" in done.stdout
    labels, expected = check_seg_against_truth(case_dir / "p1_seg.dcm", study["t1ce"])
    assert dice(labels > 0, expected > 0) >= 0.90
    native = sitk.GetArrayFromImage(sitk.ReadImage(str(case_dir / "p1_seg_native.nii.gz")))
    assert set(np.unique(native)) <= {0, 4}
    assert np.count_nonzero(native) == np.count_nonzero(labels)


def test_a_failed_segmentation_leaves_no_case_folder(study, tmp_path):
    from tfbrats.clinical.segment import prepare_and_segment
    from tfbrats.contract import OutputError
    from tfbrats.inference.model import load_model

    broken = load_model(voxel_model(tmp_path / "run", weights=(float("nan"), 1.0, 1.0), threshold=9.0))
    out = tmp_path / "out"
    with pytest.raises(OutputError, match="case c"):
        prepare_and_segment(study, "c", out, broken, skull_stripped=True)
    assert list(out.iterdir()) == []  # neither the case nor its scratch folder
    (out / "c").mkdir()
    (out / "c" / "earlier.txt").write_text("kept")
    with pytest.raises(OutputError):
        prepare_and_segment(study, "c", out, broken, skull_stripped=True, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["c"] and (out / "c" / "earlier.txt").read_text() == "kept"
