"""best.keras chosen by whole-volume validation Dice: the entry point's scorer and the trainer's choice."""

import math
import types

import keras
import numpy as np

from tests.training.conftest import tiny_config
from tfbrats.contract import SegmentationContract
from tfbrats.evaluation.volumes import score_volumes
from tfbrats.training import Run


class ChannelModel:
    """Reads the labels off the image: channel c is 1 on class c + 1; `paint` relabels every tumor voxel."""

    segmentation = SegmentationContract().to_json()

    def __init__(self, paint: int | None = None):
        self.paint = paint

    def __call__(self, batch, training=False):  # keras ops: the scorer traces it
        tumor = keras.ops.cast(batch, "float32")
        if self.paint is not None:
            tumor = np.eye(3, dtype=np.float32)[self.paint - 1] * keras.ops.sum(tumor, -1, keepdims=True)
        return 10.0 * keras.ops.concatenate([1.0 - keras.ops.sum(tumor, -1, keepdims=True), tumor], -1)


def _cases() -> list:
    rng = np.random.default_rng(0)
    cases = []
    for shape, classes in (((5, 40, 36), (1, 2, 3)), ((3, 33, 70), (2,))):
        label = np.zeros(shape, np.uint8)
        for value in classes:
            d, h, w = (int(rng.integers(0, s - 2)) for s in shape)
            label[d:d + 2, h:h + 9, w:w + 7] = value
        image = np.stack([(label == c).astype(np.float32) for c in (1, 2, 3)], -1)
        cases.append(types.SimpleNamespace(image=image, label=label))
    return cases


def _dice(pred: np.ndarray, ref: np.ndarray) -> float:
    total = pred.sum() + ref.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(pred, ref).sum() / total


def test_the_scorer_finds_a_perfect_model_perfect():
    assert score_volumes(ChannelModel(), _cases()) == {"WT": 1.0, "TC": 1.0, "ET": 1.0}


def test_the_scorer_equals_numpy_dice_over_whole_volumes():
    cases = _cases()
    scores = score_volumes(ChannelModel(paint=2), cases)  # every tumor voxel called edema
    regions = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
    expected = {name: np.mean([_dice(np.isin(np.where(c.label > 0, 2, 0), values), np.isin(c.label, values))
                               for c in cases]) for name, values in regions.items()}
    assert expected == {"WT": 1.0, "TC": 0.5, "ET": 0.5}  # the second case has neither TC nor ET: Dice 1
    assert scores == expected


def test_best_is_chosen_by_whole_volumes_every_n_epochs_and_at_the_last(tiny_data, tmp_path, tiny_trainer):
    figures = iter([0.6, 0.9, 0.7])
    calls = []

    def scorer(model, cases):
        calls.append(len(cases))
        value = next(figures)
        return {"WT": value, "TC": value, "ET": value}

    config = tiny_config(tiny_data, tmp_path / "run", epochs=5, steps_per_epoch=1, volume_validation_every=2)
    result = tiny_trainer(config, volume_scorer=scorer, echo=lambda m: None).fit()
    assert calls == [2, 2, 2]  # epochs 2, 4 and the last (5), each on the 2 validation cases
    scored = [row["volume_dice_mean"] for row in result.history]
    assert [round(v, 6) for v in scored if not math.isnan(v)] == [0.6, 0.9, 0.7]
    assert [math.isnan(v) for v in scored] == [True, False, True, False, False]
    run = Run(config.model_dir)
    record = run.best_record()
    assert (record["epoch"], record["metric"], record["value"]) == (4, "volume_dice_mean", 0.9)
    assert record["validation"].startswith("whole volumes: 2 validation cases")
    assert run.problems() == [] and result.best_dice == 0.9
