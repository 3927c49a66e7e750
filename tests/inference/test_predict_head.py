"""Prediction warns when a case's nonzero region is a whole head rather than a skull-stripped brain."""

import json
import logging

import nibabel as nib
import numpy as np

from tfbrats.contract import SegmentationContract, Window
from tfbrats.data import find_cases
from tfbrats.data.synthetic import write_synthetic_dataset
from tfbrats.inference.model import load_model, save_with_contract
from tfbrats.inference.predict import predict_cases
from tfbrats.models import AlbuNet2D


def test_a_case_with_noise_in_the_air_is_flagged_and_a_stripped_brain_is_not(tmp_path, caplog):
    folders = write_synthetic_dataset(tmp_path / "data", cases=2, shape=(40, 44, 12), seed=7)
    # The second case as if never skull-stripped: Rician-like noise makes every air voxel nonzero.
    rng = np.random.default_rng(0)
    for path in folders[1].glob("*.nii.gz"):
        if not path.name.endswith("_seg.nii.gz"):
            image = nib.load(path)
            data = np.asarray(image.dataobj)
            noise = np.maximum(np.rint(rng.rayleigh(4.0, data.shape)), 1).astype(data.dtype)
            nib.save(nib.Nifti1Image(np.where(data == 0, noise, data), image.affine, image.header), path)
    model_file = tmp_path / "model.keras"
    save_with_contract(AlbuNet2D(num_classes=4), SegmentationContract(window=Window((1, 32, 32), (1, 32, 32), 8)),
                       model_file)
    cases = find_cases(tmp_path / "data").cases
    with caplog.at_level(logging.WARNING, logger="tfbrats.inference.predict"):
        summary = predict_cases(cases, load_model(model_file), tmp_path / "out", progress=False)
    assert not summary.failed, summary.failed
    stripped, head = (json.loads((tmp_path / "out" / f"{c.case_id}.json").read_text())["brain_extent"] for c in cases)
    assert stripped["whole_head"] is False and stripped["warning"] is None
    assert 0.1 < stripped["image_fraction"] < 0.5
    assert head["whole_head"] is True and head["image_fraction"] == 1.0
    assert head["volume_ml"] == round(40 * 44 * 12 / 1000, 1)  # 1 mm voxels, every one nonzero
    warnings = [r.getMessage() for r in caplog.records if "looks like a whole head" in r.getMessage()]
    assert warnings == [head["warning"]] and warnings[0].startswith(f"case {cases[1].case_id} ")
