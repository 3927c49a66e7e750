"""An epoch is committed checkpoint -> best model -> history; a failure between any two writes leaves a folder
that agrees with itself and resumes to the run an unbroken one makes. Also: --overwrite replaces only a run with
other settings; patch validation counts each validation case once."""

import dataclasses

import keras
import numpy as np
import pytest

from tests.training.conftest import tiny_config
from tfbrats.data import make_dataset
from tfbrats.training import Run, load_split
from tfbrats.training.metrics import dice_from_counts, region_counts
from tfbrats.training.run import Run as RunClass


class Killed(Exception):
    """The injected failure (stands for a kill at that point)."""


def _weights(path) -> list[np.ndarray]:
    return keras.models.load_model(path, compile=False).get_weights()


def _rows(run: Run) -> np.ndarray:
    """The history without its timings, as an array (NaN where an epoch has no value)."""
    return np.array([[v for k, v in row.items() if k != "seconds"] for row in run.history()])


@pytest.fixture(scope="module")
def unbroken(tiny_data, tmp_path_factory, tiny_trainer):
    """A two-epoch run with no failure: its history, best record and final weights."""
    model_dir = tmp_path_factory.mktemp("unbroken")
    tiny_trainer(tiny_config(tiny_data, model_dir), echo=lambda m: None).fit()
    run = Run(model_dir)
    assert run.problems() == []
    return _rows(run), run.best_record(), _weights(run.final_path), _weights(run.best_path)


def _failing(trainer_class, hook: str, when: str):
    """A trainer that raises `Killed` before or after its `hook` in epoch 1 (the first best always comes there)."""

    class Failing(trainer_class):
        pass

    original = getattr(trainer_class, hook)

    def wrapped(self, *args):
        if when == "before" and int(self.epoch.numpy()) == 1:
            raise Killed(f"before {hook}")
        original(self, *args)
        if when == "after" and int(self.epoch.numpy()) == 1:
            raise Killed(f"after {hook}")

    setattr(Failing, hook, wrapped)
    return Failing


def _best_keras_without_record(trainer_class):
    """A trainer killed between best.keras and best.json."""

    class Failing(trainer_class):
        def save_best(self, record):
            RunClass(self.write_dir).save_model(self.model, RunClass(self.write_dir).best_path)
            raise Killed("between best.keras and best.json")

    return Failing


POINTS = [("save_checkpoint", "before"), ("save_checkpoint", "after"), ("save_best", "after"),
          ("save_history", "after"), ("between", "best")]


@pytest.mark.parametrize(("hook", "when"), POINTS)
def test_a_failure_between_writes_leaves_a_consistent_folder_that_resumes(
        tiny_data, tmp_path, tiny_trainer, unbroken, hook, when):
    config = tiny_config(tiny_data, tmp_path / "run")
    failing = _best_keras_without_record(tiny_trainer) if hook == "between" else _failing(tiny_trainer, hook, when)
    with pytest.raises(Killed):
        failing(config, echo=lambda m: None).fit()
    run = Run(config.model_dir)
    assert run.problems() == []
    assert len(run.history()) <= (run.checkpoint_epoch() or 0) <= 1
    result = tiny_trainer(config, echo=lambda m: None).fit()
    assert run.problems() == []
    rows, best, final, best_weights = unbroken
    np.testing.assert_allclose(_rows(run), rows, rtol=1e-5, atol=1e-6, equal_nan=True)
    record = run.best_record()
    assert (record["epoch"], record["metric"]) == (best["epoch"], best["metric"])
    assert record["value"] == pytest.approx(best["value"], rel=1e-6)
    for ours, theirs in zip(_weights(run.final_path), final):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    for ours, theirs in zip(_weights(run.best_path), best_weights):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert result.resumed_from_epoch == (0 if (hook, when) == ("save_checkpoint", "before") else 1)


def test_problems_name_a_history_ahead_of_the_checkpoint(tiny_data, tmp_path, tiny_trainer):
    config = tiny_config(tiny_data, tmp_path / "run", epochs=1)
    tiny_trainer(config, echo=lambda m: None).fit()
    run = Run(config.model_dir)
    rows = run.history()
    run.write_history([*rows, {**rows[0], "epoch": 2, "step": 4}])
    assert run.problems() == [f"{run.history_path} has 2 epochs but the latest checkpoint is of epoch 1"]


def test_overwrite_resumes_a_run_with_the_same_settings_and_replaces_one_with_others(tiny_data, tmp_path, tiny_trainer):
    config = tiny_config(tiny_data, tmp_path / "run", epochs=1)
    tiny_trainer(config, echo=lambda m: None).fit()
    same = tiny_trainer(dataclasses.replace(config, epochs=2), overwrite=True, echo=lambda m: None).fit()
    assert same.resumed_from_epoch == 1 and [r["epoch"] for r in Run(config.model_dir).history()] == [1, 2]
    messages = []
    other = tiny_trainer(dataclasses.replace(config, learning_rate=0.01), overwrite=True, echo=messages.append).fit()
    assert other.resumed_from_epoch == 0 and [r["epoch"] for r in Run(config.model_dir).history()] == [1]
    assert any("replacing the run" in m for m in messages)
    assert Run(config.model_dir).config.learning_rate == 0.01


def test_patch_validation_counts_each_case_once(tiny_data, tmp_path, tiny_trainer):
    # 2 validation cases in batches of 3: a repeating dataset would count the first case twice.
    config = tiny_config(tiny_data, tmp_path / "run", epochs=1, batch_size=3)
    result = tiny_trainer(config, echo=lambda m: None).fit()
    _, val_cases = load_split(config)
    patches = list(make_dataset(val_cases, config.patch_size, 100, seed=config.seed,
                                foreground_fraction=config.foreground_fraction, training=False, repeat=False))
    images, labels = patches[0]
    assert len(patches) == 1 and images.shape[0] == len(val_cases) == 2
    logits = result.model(images, training=False)
    counts = region_counts(labels, keras.ops.one_hot(keras.ops.argmax(logits, axis=-1), 4))
    expected = keras.ops.convert_to_numpy(dice_from_counts(counts))
    row = result.history[0]
    np.testing.assert_allclose([row["val_dice_WT"], row["val_dice_TC"], row["val_dice_ET"]], expected, atol=1e-6)


def _disk_full_at_checkpoint(trainer_class, epoch: int, limit_bytes: int = 64):
    """A trainer whose checkpoint of `epoch` is written with files limited to `limit_bytes`, as on a full disk.

    The operating system refuses every write past the limit (RLIMIT_FSIZE, with SIGXFSZ ignored so
    the write fails instead of the process dying): TensorFlow's own save fails as it does on a full disk.
    """
    import resource
    import signal

    class DiskFull(trainer_class):
        def save_checkpoint(self, number):
            if number != epoch:
                return super().save_checkpoint(number)
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, hard))
            try:
                super().save_checkpoint(number)
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
                signal.signal(signal.SIGXFSZ, handler)

    return DiskFull


def _checkpoint_entries(run: Run) -> list[str]:
    return sorted(p.name for p in run.checkpoint_dir.iterdir())


def test_a_checkpoint_save_that_fills_the_disk_leaves_no_partial_files(tiny_data, tmp_path, tiny_trainer):
    import tensorflow as tf

    config = tiny_config(tiny_data, tmp_path / "run", epochs=2)
    with pytest.raises(tf.errors.OpError, match="tempstate"):
        _disk_full_at_checkpoint(tiny_trainer, epoch=2)(config, echo=lambda m: None).fit()
    run = Run(config.model_dir)
    assert _checkpoint_entries(run) == ["checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index"]
    assert run.checkpoint_epoch() == 1 and run.problems() == []
    assert tiny_trainer(config, echo=lambda m: None).fit().resumed_from_epoch == 1
    assert run.problems() == [] and run.checkpoint_epoch() == 2


def test_a_start_removes_what_a_killed_checkpoint_save_left(tiny_data, tmp_path, tiny_trainer):
    config = tiny_config(tiny_data, tmp_path / "run", epochs=1)
    tiny_trainer(config, echo=lambda m: None).fit()
    run = Run(config.model_dir)
    complete = _checkpoint_entries(run)
    # What a save of epoch 2 killed part-way leaves: TensorFlow's temporary folder and files, and a data
    # file of a checkpoint the state file never listed.
    partial = run.checkpoint_dir / "ckpt-2_temp"
    partial.mkdir()
    (partial / "part-00000-of-00001.data-00000-of-00001.tempstate8213").write_bytes(b"\0" * 100_000)
    (run.checkpoint_dir / "ckpt-2.data-00000-of-00001").write_bytes(b"\0" * 100_000)
    (run.checkpoint_dir / "checkpoint.tmp5f1c").write_bytes(b"")
    messages = []
    assert tiny_trainer(config, echo=messages.append).fit().resumed_from_epoch == 1
    assert _checkpoint_entries(run) == complete
    assert sum("left by a checkpoint save that did not finish" in m for m in messages) == 3
    assert run.problems() == []
