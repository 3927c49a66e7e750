"""Bad training configurations fail before training, each with a message that says what to change."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from tests.training.conftest import run_python, tiny_flags
from tfbrats.training import (
    ConfigError,
    Run,
    RunError,
    StrategyError,
    TrainConfig,
    check_config,
    check_patch_fits,
    load_split,
    settings,
)
from tfbrats.training.config import config_from_values
from tfbrats.training.strategy import cluster_role


@pytest.fixture
def config(tiny_data, tmp_path) -> TrainConfig:
    return TrainConfig(model_dir=str(tmp_path / "run"), data_dir=str(tiny_data), model="albunet2d",
                       patch_size=(1, 32, 32), batch_size=2, num_folds=2)


def test_a_good_configuration_passes(config):
    check_config(config)
    train, val = load_split(config)
    assert (len(train), len(val)) == (2, 2)
    check_patch_fits(config, train)


def test_missing_data_dir(config, tmp_path):
    with pytest.raises(ConfigError, match=f"data_dir {tmp_path / 'nowhere'} does not exist"):
        check_config(dataclasses.replace(config, data_dir=str(tmp_path / "nowhere")))


def test_empty_data_dir(config, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty"):
        check_config(dataclasses.replace(config, data_dir=str(tmp_path / "empty")))


def test_a_model_dir_that_is_a_file(config, tmp_path):
    (tmp_path / "run").write_text("notes")
    with pytest.raises(ConfigError, match=f"model_dir {tmp_path / 'run'} is a file; give a folder"):
        check_config(config)


@pytest.mark.slow
def test_cli_reports_a_model_dir_that_is_a_file_in_one_line(tiny_data, tmp_path):
    (tmp_path / "run").write_text("notes")
    result = run_python(["-m", "tfbrats.train", *tiny_flags(tiny_data, tmp_path / "run")], timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"model_dir {tmp_path / 'run'} is a file" in result.stderr
    assert (tmp_path / "run").read_text() == "notes"


def test_neither_or_both_data_sources(config):
    with pytest.raises(ConfigError, match="exactly one of --data_dir"):
        check_config(dataclasses.replace(config, data_dir=None))
    with pytest.raises(ConfigError, match="exactly one of --data_dir"):
        check_config(dataclasses.replace(config, cache_dir=config.data_dir))


def test_no_labelled_case(config, tiny_data, tmp_path):
    unlabelled = tmp_path / "validation_data"
    shutil.copytree(tiny_data, unlabelled, ignore=shutil.ignore_patterns("*_seg.nii.gz"))
    with pytest.raises(ConfigError, match="no case with a reference segmentation"):
        load_split(dataclasses.replace(config, data_dir=str(unlabelled)))


@pytest.mark.parametrize("patch", [(1, 48, 32), (4, 32, 100)])
def test_patch_not_a_multiple_of_32(config, patch):
    with pytest.raises(ConfigError, match="multiples of 32"):
        check_config(dataclasses.replace(config, model="albunet3d", patch_size=patch))


def test_2d_patch_with_depth(config):
    with pytest.raises(ConfigError, match="D must be 1"):
        check_config(dataclasses.replace(config, patch_size=(4, 32, 32)))


def test_patch_larger_than_the_data(config):
    train, _ = load_split(config)
    with pytest.raises(ConfigError, match=r"larger than the data allow.*at most \(1, 64, 64\)"):
        check_patch_fits(dataclasses.replace(config, patch_size=(1, 128, 128)), train)
    with pytest.raises(ConfigError, match="larger than the data allow"):
        check_patch_fits(dataclasses.replace(config, model="albunet3d", patch_size=(64, 32, 32)), train)


def test_missing_encoder_weights(config, tmp_path):
    missing = tmp_path / "resnet34.weights.h5"
    with pytest.raises(ConfigError, match=f"encoder weights file {missing} does not exist"):
        check_config(dataclasses.replace(config, encoder_weights=str(missing)))


def test_run_folder_with_other_flags(config):
    Path(config.model_dir).mkdir()
    (Path(config.model_dir) / "config.json").write_text(json.dumps(config.to_json()))
    check_config(config)
    check_config(dataclasses.replace(config, epochs=80))  # more epochs extend the run
    changed = dataclasses.replace(config, batch_size=4, learning_rate=0.01)
    with pytest.raises(ConfigError, match=r"different settings \(batch_size: 2 in the run, 4 now; learning_rate"):
        check_config(changed)
    check_config(changed, overwrite=True)


def test_several_problems_are_reported_together(config):
    bad = dataclasses.replace(config, batch_size=0, foreground_fraction=2.0, model="unet")
    with pytest.raises(ConfigError) as error:
        check_config(bad)
    assert all(text in str(error.value) for text in ("batch_size must be >= 1", "foreground_fraction", "model must"))


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(StrategyError, match="needs the TF_CONFIG"):
        cluster_role("multi_worker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker",
                                                                                              "index": 1}}))
    assert cluster_role("multi_worker") == cluster_role("multi_worker").__class__("worker", 1, 2, False)


def test_cli_reports_a_bad_configuration_and_exits_2(tiny_data, tmp_path):
    result = run_python(["-m", "tfbrats.train", *tiny_flags(tiny_data, tmp_path / "run", patch_size="1,40,32")],
                        timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "error: bad training configuration" in result.stderr and "multiples of 32" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("fault", ["nan", "label"])
def test_a_bad_value_in_the_last_case_fails_before_any_case_is_loaded(config, tiny_data, tmp_path, monkeypatch,
                                                                      fault):
    import nibabel as nib
    import numpy as np

    import tfbrats.data

    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    last = sorted(root.iterdir())[-1]
    path = last / f"{last.name}_{'flair' if fault == 'nan' else 'seg'}.nii.gz"
    image = nib.load(path)
    data = np.asarray(image.dataobj).astype(np.float32 if fault == "nan" else np.uint8)
    data[1, 2, 3] = np.nan if fault == "nan" else 5
    nib.save(nib.Nifti1Image(data, image.affine), path)
    loaded = []
    monkeypatch.setattr(tfbrats.data, "load_case", lambda case, *args: loaded.append(case.case_id))
    expected = "holds 1 NaN or infinite voxels" if fault == "nan" else r"holds label values \[5\]"
    with pytest.raises(ConfigError, match=f"case {last.name}: .*{expected}"):
        load_split(dataclasses.replace(config, data_dir=str(root)))
    assert loaded == []


def test_every_setting_is_a_flag_declared_once():
    from tfbrats.cli.train import FLAGS

    table = {s.name: s for s in settings()}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert fields - {"augment"} <= set(table) and {"augment", "aug_flip", "aug_blur"} <= set(table)
    assert set(FLAGS) == set(table) | {"overwrite", "tune", "all_folds"}
    for name, setting in table.items():
        flag = FLAGS[name]
        assert flag.help == setting.help or flag.help.endswith(setting.help)
        default = [str(v) for v in setting.default] if setting.kind == "size" else setting.default
        assert flag.default == default, name


def test_flag_values_round_trip_through_config_json(tmp_path):
    values = {s.name: s.default for s in settings()} | {
        "model_dir": str(tmp_path), "patch_size": ["8", "64", "64"], "aug_flip": 0.25, "mixed_precision": "float16",
        "lr_schedule": "cosine", "encoder_weights": ""}
    config = config_from_values(values)
    assert (config.patch_size, config.augment.flip, config.encoder_weights) == ((8, 64, 64), 0.25, None)
    assert config_from_values({**values, "augment": False}).augment is None
    Run(tmp_path).write_config(config)
    assert Run(tmp_path).config == config


def test_a_config_recorded_before_a_setting_existed_reads_with_its_default(tmp_path):
    old = {"model_dir": str(tmp_path), "data_dir": "d", "patch_size": [8, 64, 64], "mixed_precision": True,
           "augment": {"flip": 0.1, "scale_range": [0.9, 1.1]}, "a_setting_since_removed": 1}
    (tmp_path / "config.json").write_text(json.dumps(old))
    config = Run(tmp_path).config
    assert (config.mixed_precision, config.lr_schedule, config.volume_validation_every) == ("bfloat16", "constant", 5)
    assert config.augment.flip == 0.1 and config.augment.scale_range == (0.9, 1.1) and config.patch_size == (8, 64, 64)


def test_a_bad_config_json_is_named(tmp_path):
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(RunError, match=f"{tmp_path / 'config.json'} is not a training config"):
        _ = Run(tmp_path).config
    with pytest.raises(FileNotFoundError, match="no best.keras or final.keras"):
        Run(tmp_path).model_path()


def test_the_table_checks_choices_and_ranges(config):
    bad = dataclasses.replace(config, mixed_precision="float8", lr_schedule="step", log_every=-1)
    with pytest.raises(ConfigError) as error:
        check_config(bad)
    for text in ("mixed_precision must be one of ['none', 'bfloat16', 'float16']; got 'float8'",
                 "lr_schedule must be one of", "log_every must be >= 0; got -1"):
        assert text in str(error.value)
