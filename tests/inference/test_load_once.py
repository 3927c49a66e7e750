"""`load_model` builds the network once, in the precision asked for or recorded by its contract."""

import dataclasses

import keras
import numpy as np
import pytest

from tfbrats.contract import SegmentationContract, Window
from tfbrats.inference.model import load_model, recorded_precision, save_with_contract
from tfbrats.models import AlbuNet2D


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    model = AlbuNet2D(num_classes=4)
    window = Window.for_patch((1, 32, 32))
    plain = save_with_contract(model, SegmentationContract(window=window), folder / "float32.keras")
    bfloat16 = SegmentationContract(window=dataclasses.replace(window, precision="mixed_bfloat16"))
    half = save_with_contract(model, bfloat16, folder / "bfloat16.keras")
    return model, plain, half


@pytest.fixture
def builds(monkeypatch):
    """Counts AlbuNet constructions (each one builds the whole graph)."""
    count = []
    original = AlbuNet2D.__init__

    def counting(self, *args, **kwargs):
        count.append(keras.mixed_precision.global_policy().name)
        original(self, *args, **kwargs)

    monkeypatch.setattr(AlbuNet2D, "__init__", counting)
    return count


def test_recorded_precision_is_read_without_building(saved, builds, tmp_path):
    _, plain, half = saved
    assert (recorded_precision(plain), recorded_precision(half)) == ("float32", "mixed_bfloat16")
    (tmp_path / "not_a_model.keras").write_text("text")
    assert recorded_precision(tmp_path / "not_a_model.keras") == "float32"
    assert builds == []


@pytest.mark.parametrize("asked, expected", [(None, "bfloat16"), ("float32", "float32"),
                                             ("mixed_bfloat16", "bfloat16")])
def test_one_build_in_the_precision_asked_or_recorded(saved, builds, asked, expected):
    original, _, half = saved
    loaded = load_model(half, asked)
    assert builds == [asked or "mixed_bfloat16"]  # once, under that policy
    assert loaded.model.get_layer("stem_conv").compute_dtype == expected
    assert keras.mixed_precision.global_policy().name == "float32"
    for got, want in zip(loaded.model.get_weights(), original.get_weights()):
        np.testing.assert_array_equal(got, want)
    x = np.random.default_rng(0).normal(size=(1, 1, 32, 32, 3)).astype("float32")
    reference = np.asarray(original(x))
    np.testing.assert_allclose(np.asarray(loaded.model(x), np.float32), reference, atol=0.1 * np.abs(reference).max())
