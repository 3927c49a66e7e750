"""Training on mixed pre/post-treatment data (BraTS 2025 layout): the label set comes from the data."""

import json

import nibabel as nib
import numpy as np
import pytest

from tests.training.conftest import SHAPE_XYZ, run_python, tiny_config, tiny_flags
from tfbrats.data.synthetic import write_synthetic_dataset
from tfbrats.inference.model import load_model
from tfbrats.labels import BRATS_POST_TREATMENT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def post_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("brats2025")
    write_synthetic_dataset(root, cases=4, shape=SHAPE_XYZ, seed=0, layout="brats2025")
    return root


@pytest.mark.parametrize("target", ["classes", "regions"])
def test_auto_label_set_trains_the_cavity_and_predict_writes_it(post_data, tmp_path, target):
    model_dir = tmp_path / "run"
    done = run_python(["-m", "tfbrats.train", *tiny_flags(post_data, model_dir, target=target), "--notune"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((model_dir / "config.json").read_text())["label_set"] == "auto"
    # The console and history.csv follow the label set: a Dice of the resection cavity beside WT, TC, ET.
    assert " dice_RC " in done.stdout and " val_dice_RC " in done.stdout, done.stdout[-2000:]
    history = (model_dir / "history.csv").read_text().splitlines()
    header, row = history[0].split(","), history[1].split(",")
    assert {"dice_RC", "val_dice_RC", "volume_dice_RC"} <= set(header)
    assert 0.0 <= float(row[header.index("val_dice_RC")]) <= 1.0
    assert set(json.loads((model_dir / "best.json").read_text())["dice"]) == {"WT", "TC", "ET", "RC"}
    loaded = load_model(model_dir)
    assert loaded.contract.target.label_set is BRATS_POST_TREATMENT
    assert int(loaded.model.output_shape[-1]) == (5 if target == "classes" else 4)
    assert loaded.contract.to_json()["version"] == 3
    # Every prediction holds only BraTS 2024 values; the network, scaled to decide, paints the cavity too.
    done = run_python(["-m", "tfbrats.predict", f"--model={model_dir}", f"--input={post_data}",
                       f"--output={tmp_path / 'pred'}"])
    assert done.returncode == 0, done.stderr[-3000:]
    for path in sorted((tmp_path / "pred").glob("*.nii.gz")):
        assert set(np.unique(np.asarray(nib.load(path).dataobj)).tolist()) <= {0, 1, 2, 3, 4}, path.name


def test_a_forced_label_set_must_hold_the_data_s_classes(post_data, tmp_path):
    from tfbrats.training import ConfigError, Trainer

    trainer = Trainer(tiny_config(post_data, tmp_path / "run", epochs=1, label_set="brats"), echo=lambda _: None)
    with pytest.raises(ConfigError, match="--label_set=brats has 4 classes but the training data has the label set "
                                          "brats_post_treatment"):
        trainer.fit()
    assert trainer.data_label_set is BRATS_POST_TREATMENT and not (tmp_path / "run" / "config.json").exists()
