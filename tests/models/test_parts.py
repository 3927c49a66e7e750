"""AlbuNet as backbone + decoder + head; the convolution argument; configs old and new; imports."""

import ast
import inspect
import json
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from tfbrats.models import (
    AlbuNet2D,
    AlbuNet3D,
    apply_albunet_decoder,
    apply_head,
    apply_resnet34,
    encoder_feature_model,
    resnet34_encoder,
)
from tfbrats.models.layers import FoldedConv3D, FoldedConv3DTranspose

PACKAGE = Path(__file__).parents[2] / "tfbrats" / "models"
MODULES = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")


def _conv_types(model):
    convolutions = (keras.layers.Conv3D, keras.layers.Conv3DTranspose)
    return {type(layer) for layer in model.layers if isinstance(layer, convolutions)}


def _random_weights(model, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(scale=0.1, size=w.shape).astype("float32") for w in model.get_weights()]


def test_encoder_features_have_their_scales_and_widths():
    encoder = resnet34_encoder()
    features = encoder(np.zeros((1, 2, 64, 96, 3), "float32"))
    shapes = {name: tuple(feature.shape) for name, feature in features.items()}
    assert shapes == {
        "stem": (1, 2, 32, 48, 64), "c1": (1, 2, 16, 24, 64), "c2": (1, 2, 8, 12, 128),
        "c3": (1, 2, 4, 6, 256), "c4": (1, 2, 2, 3, 512),
    }
    assert sum(int(np.prod(w.shape)) for w in encoder.trainable_weights) == 21_284_672


def test_standalone_encoder_is_the_albunet_encoder_by_name():
    encoder = resnet34_encoder()
    model = AlbuNet2D()
    weighted = [layer for layer in encoder.layers if layer.weights]
    assert len(weighted) == 72  # 36 convolutions, 36 BatchNorms
    for layer in weighted:
        assert [w.shape for w in model.get_layer(layer.name).weights] == [w.shape for w in layer.weights]
    encoder.set_weights(_random_weights(encoder, 0))
    for layer in weighted:
        model.get_layer(layer.name).set_weights(layer.get_weights())
    volume = np.random.default_rng(1).normal(size=(1, 2, 64, 64, 3)).astype("float32")
    ours, theirs = encoder_feature_model(model)(volume), encoder(volume)
    assert sorted(ours) == sorted(theirs) == ["c1", "c2", "c3", "c4", "stem"]
    for name in ours:
        np.testing.assert_array_equal(np.asarray(ours[name]), np.asarray(theirs[name]))


def test_albunet_is_backbone_decoder_head():
    inputs = keras.Input((None, None, None, 3))
    decoded = apply_albunet_decoder(apply_resnet34(inputs), num_filters=16, depth_layers=True)
    assembled = keras.Model(inputs, apply_head(decoded, 4))
    model = AlbuNet3D(num_classes=4)
    assert [layer.name for layer in assembled.layers[1:]] == [layer.name for layer in model.layers[1:]]
    assert assembled.count_params() == model.count_params() == 26_693_460
    weights = _random_weights(model, 2)
    model.set_weights(weights)
    assembled.set_weights(weights)
    volume = np.random.default_rng(3).normal(size=(1, 3, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(assembled(volume)), np.asarray(model(volume)))


@pytest.mark.parametrize(("model_class", "depth"), [(AlbuNet2D, 1), (AlbuNet3D, 3)])
def test_keras_convolutions_give_the_folded_outputs(model_class, depth):
    folded, plain = model_class(num_filters=8), model_class(num_filters=8, conv="keras")
    assert _conv_types(folded) == {FoldedConv3D, FoldedConv3DTranspose}
    assert _conv_types(plain) == {keras.layers.Conv3D, keras.layers.Conv3DTranspose}
    assert [w.shape for w in plain.weights] == [w.shape for w in folded.weights]
    weights = _random_weights(folded, 4)
    folded.set_weights(weights)
    plain.set_weights(weights)
    volume = np.random.default_rng(5).normal(size=(1, depth, 32, 32, 3)).astype("float32")
    expected = np.asarray(plain(volume))
    np.testing.assert_allclose(np.asarray(folded(volume)), expected, rtol=0, atol=1e-4 * np.abs(expected).max())


def test_unknown_convolution_is_refused():
    with pytest.raises(ValueError, match=r"conv must be one of \('folded', 'keras'\), got 'cudnn'"):
        AlbuNet2D(conv="cudnn")


@pytest.mark.parametrize("model_class", [AlbuNet3D, AlbuNet2D])
def test_config_holds_every_constructor_argument(model_class):
    arguments = {
        name for name, parameter in inspect.signature(model_class.__init__).parameters.items()
        if name != "self" and parameter.kind is not parameter.VAR_KEYWORD
    }
    model = model_class(num_classes=3, num_filters=8, input_channels=4, head="softmax", conv="keras",
                        name="small", segmentation={"target": "classes", "labels": [0, 1, 2]})
    config = model.get_config()
    assert set(config) == arguments
    assert config["conv"] == "keras" and config["segmentation"] == {"target": "classes", "labels": [0, 1, 2]}
    rebuilt = model_class.from_config(json.loads(json.dumps(config)))
    assert type(rebuilt) is model_class and rebuilt.get_config() == config
    assert _conv_types(rebuilt) == {keras.layers.Conv3D, keras.layers.Conv3DTranspose}


def _rewrite_config(path, change):
    """Rewrite the model config inside a .keras archive, as an older tfbrats would have written it."""
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    saved = json.loads(entries["config.json"])
    change(saved["config"])
    entries["config.json"] = json.dumps(saved).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def test_keras_file_of_an_older_config_loads(tmp_path):
    model = AlbuNet2D(num_classes=4, num_filters=8)
    model.set_weights(_random_weights(model, 6))
    path = tmp_path / "old.keras"
    model.save(path)

    def older(config):
        del config["conv"]  # written before the convolution was an argument
        config["encoder_weights"] = "/data/weights/resnet34.safetensors"  # a file that is gone

    _rewrite_config(path, older)
    loaded = keras.models.load_model(path)
    assert type(loaded) is AlbuNet2D and loaded.get_config() == model.get_config()
    volume = np.random.default_rng(7).normal(size=(1, 2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(loaded(volume)), np.asarray(model(volume)))


def test_keras_file_with_keras_convolutions_round_trips(tmp_path):
    model = AlbuNet2D(num_filters=8, conv="keras", head="softmax")
    model.set_weights(_random_weights(model, 8))
    model.save(tmp_path / "plain.keras")
    loaded = keras.models.load_model(tmp_path / "plain.keras")
    assert loaded.conv == "keras" and _conv_types(loaded) == {keras.layers.Conv3D, keras.layers.Conv3DTranspose}
    volume = np.random.default_rng(9).normal(size=(1, 1, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(loaded(volume)), np.asarray(model(volume)))


def test_constructor_never_reads_weight_files():
    with pytest.raises(TypeError, match=r"AlbuNet2D.from_encoder_weights\(path, \.\.\.\).*load_encoder_weights"):
        AlbuNet2D(encoder_weights="resnet34.safetensors")


def _imports_within_models(module: str) -> set[str]:
    """The tfbrats.models modules that `module` imports anywhere (top level or inside functions)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            if name.startswith("tfbrats.models."):
                found.add(name.split(".")[2])
            elif name == "tfbrats.models" and isinstance(node, ast.ImportFrom):
                found.update(alias.name for alias in node.names if alias.name in MODULES)
    return found


def test_models_modules_import_each_other_without_cycle():
    graph = {module: _imports_within_models(module) - {module} for module in MODULES}
    assert graph["albunet"] >= {"resnet", "decoder", "weights"}  # the parser sees imports
    order = []
    while graph:
        ready = sorted(module for module, needs in graph.items() if needs <= set(order))
        assert ready, f"import cycle among {sorted(graph)}: {graph}"
        order += ready
        for module in ready:
            del graph[module]
    assert order.index("layers") < order.index("resnet") < order.index("decoder") < order.index("albunet")
    assert order.index("weights") < order.index("albunet")
