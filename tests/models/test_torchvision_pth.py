"""A real torchvision ResNet34 saved with torch.save loads as the encoder: every layer equals torchvision's.

torch and torchvision are in the test extra, so this test runs in `make test` (it is never skipped).
"""

import keras
import numpy as np
import pytest
import torch
import torchvision

from tfbrats.models import AlbuNet3D

BLOCKS = {1: 3, 2: 4, 3: 6, 4: 3}


def _keras_name(torch_name: str) -> str:
    """torchvision module name -> the AlbuNet layer that must compute the same features."""
    if torch_name in ("conv1", "bn1"):
        return {"conv1": "stem_conv", "bn1": "stem_bn"}[torch_name]
    parts = torch_name.split(".")  # layer2.0.downsample.1
    block = f"{parts[0]}_block{parts[1]}"
    if len(parts) == 2:
        return f"{block}_out"
    if parts[2] == "downsample":
        return f"{block}_downsample_{'conv' if parts[3] == '0' else 'bn'}"
    return f"{block}_{parts[2]}"


@pytest.fixture(scope="module")
def resnet34(tmp_path_factory):
    """torchvision's resnet34() with random weights and random BN statistics, saved as a .pth state dict."""
    torch.manual_seed(0)
    net = torchvision.models.resnet34()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                size = module.num_features
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(size, generator=generator) * 1.5 + 0.5)
    net.eval()
    path = tmp_path_factory.mktemp("torchvision") / "resnet34.pth"
    torch.save(net.state_dict(), path)
    return net, path


def test_every_converted_layer_equals_torchvision_on_the_same_input(resnet34):
    net, path = resnet34
    net.maxpool = torch.nn.MaxPool2d(2, 2)  # the paper's 2x2 pool replaces ResNet's 3x3/2
    watched = [name for name, module in net.named_modules()
               if isinstance(module, torch.nn.Conv2d | torch.nn.BatchNorm2d | torchvision.models.resnet.BasicBlock)]
    features: dict[str, np.ndarray] = {}
    for name in watched:
        # clone: the ReLU after each BN works in place
        net.get_submodule(name).register_forward_hook(
            lambda module, inputs, output, name=name: features.__setitem__(name, output.detach().clone().numpy()))
    volume = np.random.default_rng(2).normal(size=(1, 2, 64, 64, 3)).astype("float32")
    with torch.no_grad():
        net(torch.from_numpy(volume[0].transpose(0, 3, 1, 2).copy()))  # the two slices as a batch of images

    model = AlbuNet3D.from_encoder_weights(str(path))
    names = [_keras_name(name) for name in watched]
    keras_features = keras.Model(model.input, [model.get_layer(n).output for n in names])(volume, training=False)
    assert len(watched) == 2 + 4 * sum(BLOCKS.values()) + 2 * 3 + sum(BLOCKS.values()) == 88
    for torch_name, keras_name, keras_out in zip(watched, names, keras_features):
        expected = features[torch_name].transpose(0, 2, 3, 1)  # (slices, H, W, C)
        got = np.asarray(keras_out)[0]
        assert got.shape == expected.shape, (torch_name, keras_name)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max(),
                                   err_msg=f"torchvision {torch_name} vs Keras {keras_name}")
    encoder_layers = {layer.name for layer in model.layers
                      if layer.name.startswith(("stem_conv", "stem_bn", "layer")) and layer.weights}
    assert encoder_layers == {n for n in names if not n.endswith("_out")}
