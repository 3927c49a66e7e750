"""Pretrained weights: torchvision ResNet34 lifted to Conv3D (1,k,k), and reference checkpoints."""

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.models import torch_reference as ref
from tfbrats.models import AlbuNet2D, AlbuNet3D, WeightsError, load_encoder_weights
from tfbrats.models.state_dict import read_safetensors

safetensors_numpy = pytest.importorskip("safetensors.numpy")
REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet34.safetensors"
    safetensors_numpy.save_file(ref.torchvision_resnet34_state(seed=0), str(path))
    return path


@pytest.fixture(scope="module")
def pretrained(torchvision_file):
    return AlbuNet3D.from_encoder_weights(torchvision_file)


def _layer_output(model, name, x):
    return np.asarray(keras.Model(model.input, model.get_layer(name).output)(x))


def _slices(volume):
    """(1, D, H, W, C) -> (D, H, W, C): every slice as a 2-D image for the numpy reference."""
    return volume[0].astype(np.float64)


def test_safetensors_reader_matches_the_safetensors_package(torchvision_file):
    state = read_safetensors(torchvision_file)
    expected = ref.torchvision_resnet34_state(seed=0)
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(state[key], value)
        assert state[key].dtype == value.dtype


def test_stem_and_layer1_equal_numpy_2d_computation(pretrained):
    state = ref.torchvision_resnet34_state(seed=0)
    volume = np.random.default_rng(0).normal(size=(1, 2, 64, 64, 3)).astype("float32")
    x = ref.stem(_slices(volume), state)
    for block in range(3):
        x = ref.basic_block(x, state, f"layer1.{block}", stride=1)
    keras_out = _layer_output(pretrained, "layer1_block2_out", volume)[0]
    np.testing.assert_allclose(keras_out, x, rtol=1e-4, atol=1e-4 * np.abs(x).max())


def test_stride_two_block_pads_like_torch(pretrained):
    state = ref.torchvision_resnet34_state(seed=0)
    volume = np.random.default_rng(1).normal(size=(1, 1, 64, 64, 3)).astype("float32")
    c1 = _layer_output(pretrained, "layer1_block2_out", volume)[0].astype(np.float64)
    expected = ref.basic_block(c1, state, "layer2.0", stride=2)
    keras_out = _layer_output(pretrained, "layer2_block0_out", volume)[0]
    assert keras_out.shape == (1, 8, 8, 128)
    np.testing.assert_allclose(keras_out, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_fourth_channel_is_mean_of_rgb_kernels(torchvision_file):
    model = AlbuNet2D.from_encoder_weights(torchvision_file, input_channels=4)
    assert type(model) is AlbuNet2D and model.input_channels == 4
    kernel = model.get_layer("stem_conv").kernel.numpy()
    torch_kernel = ref.torchvision_resnet34_state(seed=0)["conv1.weight"]  # (O, I, kh, kw)
    np.testing.assert_allclose(kernel[0, :, :, :3], np.transpose(torch_kernel, (2, 3, 1, 0)), atol=0)
    np.testing.assert_allclose(kernel[0, :, :, 3], np.transpose(torch_kernel.mean(1), (1, 2, 0)), atol=1e-7)


def test_convert_tool_writes_keras_weights_that_load_identically(torchvision_file, pretrained, tmp_path):
    output = tmp_path / "encoder.weights.h5"
    result = subprocess.run(
        [sys.executable, "tools/convert_weights.py", "--input", str(torchvision_file), "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    model = AlbuNet3D.from_encoder_weights(output)
    for layer in ("stem_conv", "layer3_block5_bn2", "layer4_block0_downsample_conv"):
        for a, b in zip(model.get_layer(layer).get_weights(), pretrained.get_layer(layer).get_weights()):
            np.testing.assert_array_equal(a, b)


def _save(state, path):
    safetensors_numpy.save_file(state, str(path))
    return path


def test_missing_key_is_named(tmp_path):
    state = ref.torchvision_resnet34_state()
    del state["layer3.2.bn1.running_var"]
    with pytest.raises(WeightsError, match=r"missing key 'layer3\.2\.bn1\.running_var'"):
        load_encoder_weights(AlbuNet3D(), _save(state, tmp_path / "w.safetensors"))


def test_unexpected_key_is_named(tmp_path):
    state = ref.torchvision_resnet34_state()
    state["layer5.0.conv1.weight"] = np.zeros((1, 1, 3, 3), np.float32)
    with pytest.raises(WeightsError, match="layer5.0.conv1.weight"):
        load_encoder_weights(AlbuNet3D(), _save(state, tmp_path / "w.safetensors"))


def test_wrong_shape_names_key_and_both_shapes(tmp_path):
    state = ref.torchvision_resnet34_state()
    state["layer2.1.conv2.weight"] = np.zeros((128, 64, 3, 3), np.float32)
    message = r"'layer2\.1\.conv2\.weight' has shape \(128, 64, 3, 3\).*\(128, 128, 3, 3\)"
    with pytest.raises(WeightsError, match=message):
        load_encoder_weights(AlbuNet3D(), _save(state, tmp_path / "w.safetensors"))


def test_missing_file_says_where_weights_come_from(tmp_path):
    with pytest.raises(FileNotFoundError, match="resnet34.tv_in1k"):
        AlbuNet3D.from_encoder_weights(tmp_path / "nowhere.safetensors")


def test_truncated_safetensors_is_a_clear_error(torchvision_file, tmp_path):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(torchvision_file.read_bytes()[:100_000])
    with pytest.raises(WeightsError, match="truncated"):
        load_encoder_weights(AlbuNet3D(), cut)


@pytest.fixture(scope="module")
def reference_model(tmp_path_factory):
    state = ref.reference_albunet3d_state(num_classes=4, seed=0)
    assert len(state) == 594
    path = tmp_path_factory.mktemp("reference") / "albunet3d.safetensors"
    safetensors_numpy.save_file(state, str(path))
    return state, AlbuNet3D.from_reference_checkpoint(path, num_classes=4, num_filters=16)


def test_reference_checkpoint_encoder_with_biases_equals_numpy(reference_model):
    state, model = reference_model
    volume = np.random.default_rng(5).normal(size=(1, 2, 64, 64, 3)).astype("float32")
    x = ref.stem(_slices(volume), state, conv="conv0.0", bn="conv0.1")
    for block in range(3):
        x = ref.basic_block(x, state, f"conv1_{block}", stride=1)
    x = ref.basic_block(x, state, "conv2_0", stride=2)
    keras_out = _layer_output(model, "layer2_block0_out", volume)[0]
    np.testing.assert_allclose(keras_out, x, rtol=1e-4, atol=1e-4 * np.abs(x).max())


def test_reference_checkpoint_final_layer_and_keras_round_trip(reference_model, tmp_path):
    state, model = reference_model
    volume = np.random.default_rng(6).normal(size=(1, 3, 64, 64, 3)).astype("float32")
    features = _layer_output(model, "depth4_relu", volume)
    weight = state["final.weight"][:, :, 0, 0, 0]  # (classes, nf)
    expected = features.astype(np.float64) @ weight.T + state["final.bias"]
    logits = np.asarray(model(volume))
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
    path = tmp_path / "reference.keras"
    model.save(path)
    np.testing.assert_array_equal(np.asarray(keras.models.load_model(path)(volume)), logits)


def test_reference_transposed_conv_kernel_layout(reference_model):
    state, model = reference_model
    kernel = model.get_layer("dec3_deconv").kernel.numpy()  # (kd, kh, kw, O, I)
    torch_kernel = state["dec3.block.1.weight"]  # (I, O, kd, kh, kw)
    assert kernel.shape == (1, 4, 4, 32, 128)
    np.testing.assert_array_equal(kernel[0, 1, 2], torch_kernel[:, :, 0, 1, 2].T)


def test_reference_checkpoint_with_wrong_class_count(tmp_path):
    path = _save(ref.reference_albunet3d_state(num_classes=3), tmp_path / "three.safetensors")
    with pytest.raises(WeightsError, match="'final.weight' has shape"):
        AlbuNet3D.from_reference_checkpoint(path, num_classes=4)


def test_reference_checkpoint_into_albunet2d_names_the_depth_keys(tmp_path):
    path = _save(ref.reference_albunet3d_state(num_classes=4), tmp_path / "reference.safetensors")
    with pytest.raises(WeightsError, match=r"28 keys are not part of albunet2d: 'depth1\.bn\.bias'"):
        AlbuNet2D.from_reference_checkpoint(path, num_classes=4)
