"""AlbuNet3D/AlbuNet2D: parameter counts, shapes, slice independence of the encoder, saving."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from tfbrats.models import AlbuNet2D, AlbuNet3D, encoder_feature_model


def _counts(model):
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    return trainable, frozen, model.count_params()


@pytest.fixture(scope="module")
def model3d():
    return AlbuNet3D(num_classes=4, num_filters=16, input_channels=3)


def test_parameter_counts_match_design(model3d):
    assert _counts(model3d) == (26_673_172, 20_288, 26_693_460)
    assert _counts(AlbuNet2D(num_classes=4)) == (25_822_372, 18_848, 25_841_220)


def test_encoder_alone_has_resnet34_trainable_parameters(model3d):
    encoder = encoder_feature_model(model3d)
    assert sum(int(np.prod(w.shape)) for w in encoder.trainable_weights) == 21_284_672


@pytest.mark.parametrize("depth", [1, 3])
def test_output_shape_for_any_depth(model3d, depth):
    x = np.random.default_rng(0).normal(size=(2, depth, 64, 96, 3)).astype("float32")
    assert tuple(model3d(x).shape) == (2, depth, 64, 96, 4)


def test_softmax_head_gives_probabilities():
    model = AlbuNet2D(num_classes=3, head="softmax")
    probabilities = np.asarray(model(np.random.default_rng(1).normal(size=(1, 1, 32, 32, 3)).astype("float32")))
    assert probabilities.shape == (1, 1, 32, 32, 3)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    assert probabilities.min() >= 0


def test_four_input_channels():
    model = AlbuNet3D(input_channels=4, num_classes=2)
    assert tuple(model.get_layer("stem_conv").kernel.shape) == (1, 7, 7, 4, 64)
    assert tuple(model(np.zeros((1, 1, 32, 32, 4), "float32")).shape) == (1, 1, 32, 32, 2)


@pytest.mark.parametrize("shape", [(1, 2, 48, 64, 3), (1, 2, 64, 100, 3)])
def test_spatial_size_not_multiple_of_32_is_a_clear_error(model3d, shape):
    with pytest.raises(ValueError, match="multiple of 32"):
        model3d(np.zeros(shape, "float32"))


def test_bad_head_is_rejected():
    with pytest.raises(ValueError, match="head"):
        AlbuNet3D(head="sigmoidal")


def test_encoder_never_mixes_slices(model3d):
    encoder = encoder_feature_model(model3d)
    volume = np.random.default_rng(2).normal(size=(1, 3, 64, 64, 3)).astype("float32")
    together = encoder(volume)
    assert sorted(together) == ["c1", "c2", "c3", "c4", "stem"]
    for d in range(3):
        alone = encoder(volume[:, d : d + 1])
        for name, joint in together.items():
            np.testing.assert_allclose(np.asarray(joint)[:, d : d + 1], np.asarray(alone[name]), rtol=1e-5, atol=1e-5)


def test_depth_layers_do_mix_slices(model3d):
    volume = np.random.default_rng(3).normal(size=(1, 3, 32, 32, 3)).astype("float32")
    joint = np.asarray(model3d(volume))[:, 1]
    alone = np.asarray(model3d(volume[:, 1:2]))[:, 0]
    assert np.abs(joint - alone).max() > 1e-4


def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
    model = AlbuNet2D(num_classes=4, head="softmax")
    x = np.random.default_rng(4).normal(size=(1, 2, 32, 64, 3)).astype("float32")
    path = tmp_path / "albunet2d.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is AlbuNet2D
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


def test_config_round_trip_and_clone(model3d):
    rebuilt = AlbuNet3D.from_config(model3d.get_config())
    assert type(rebuilt) is AlbuNet3D and rebuilt.get_config() == model3d.get_config()
    clone = keras.models.clone_model(model3d)
    for copy in (rebuilt, clone):
        assert [w.shape for w in copy.weights] == [w.shape for w in model3d.weights]
        copy.set_weights(model3d.get_weights())
        x = np.random.default_rng(5).normal(size=(1, 2, 32, 32, 3)).astype("float32")
        np.testing.assert_allclose(np.asarray(copy(x)), np.asarray(model3d(x)), atol=1e-6)


@pytest.mark.slow
def test_builds_and_runs_under_jax_backend_without_tensorflow():
    pytest.importorskip("jax")
    script = textwrap.dedent(
        """
        import importlib.abc
        import sys

        class NoTensorFlow(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] == "tensorflow":
                    raise ImportError(f"{name}: TensorFlow is not installed here")

        sys.meta_path.insert(0, NoTensorFlow())
        import numpy as np
        import keras
        assert keras.backend.backend() == "jax"
        from tfbrats.models import AlbuNet3D
        model = AlbuNet3D(num_classes=4)
        out = model.predict(np.zeros((1, 2, 32, 32, 3), "float32"), verbose=0)
        assert out.shape == (1, 2, 32, 32, 4), out.shape
        assert "tensorflow" not in sys.modules
        print("jax-ok", model.count_params())
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                            cwd=Path(__file__).parents[2], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "jax-ok 26693460" in result.stdout
