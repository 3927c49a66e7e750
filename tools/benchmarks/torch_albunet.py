"""The published PyTorch AlbuNet3D, for the ``reference`` benchmark: tfbrats' speed is held to it.

The network of Wacker et al. (BraTS 2020): torchvision's ResNet34 encoder with every k x k kernel
a Conv3d of kernel (1, k, k) and stride (1, s, s), the paper's 2x2 max pooling after the stem, and
a U-Net decoder whose four (3, 1, 1) depth layers are its only mixing across slices. Modules are
named as the published checkpoints name their keys (``conv0.0``, ``conv2_0.downsample.1``,
``dec5.block.1``, ``depth3.bn``, ``final``), so a state dict saved from this model loads into
tfbrats' Keras AlbuNet3D with `tfbrats.models.AlbuNet3D.from_reference_checkpoint`; that is how
the test proves both compute the same function. The published code also registers torchvision's
whole ResNet34 a second time under ``encoder.*`` without using it in the forward pass; it is left
out here (it changes no computation). Its encoder convolutions carry biases (``encoder_bias``,
on by default as published), which torchvision's and tfbrats' do not.

This module needs torch (the ``torch`` extra): ``pip install -e '.[torch]'``.

Example:
    model = albunet3d().eval()
    model(torch.zeros(1, 3, 24, 128, 128)).shape
    # -> torch.Size([1, 4, 24, 128, 128])
"""

from __future__ import annotations

import torch
from torch import nn

BLOCKS = (3, 4, 6, 3)
WIDTHS = (64, 128, 256, 512)


def _in_plane(inputs: int, outputs: int, kernel: int, stride: int = 1, bias: bool = True) -> nn.Conv3d:
    """A (1, k, k) convolution with torch's symmetric padding k // 2 in-plane, none in depth."""
    return nn.Conv3d(inputs, outputs, (1, kernel, kernel), stride=(1, stride, stride), padding=(0, kernel // 2,
                     kernel // 2), bias=bias)


class ConvBnRelu(nn.Module):
    """Conv3d (with bias), BatchNorm3d, ReLU; kernel (1, 3, 3) in-plane or (3, 1, 1) along depth."""

    def __init__(self, inputs: int, outputs: int, depth: bool = False):
        super().__init__()
        if depth:
            self.conv = nn.Conv3d(inputs, outputs, (3, 1, 1), padding=(1, 0, 0))
        else:
            self.conv = _in_plane(inputs, outputs, 3)
        self.bn = nn.BatchNorm3d(outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """ResNet's BasicBlock lifted to (1, 3, 3) kernels; a 1x1x1 conv + BN shortcut where it strides."""

    def __init__(self, inputs: int, outputs: int, stride: int, bias: bool):
        super().__init__()
        self.conv1 = _in_plane(inputs, outputs, 3, stride, bias)
        self.bn1 = nn.BatchNorm3d(outputs)
        self.conv2 = _in_plane(outputs, outputs, 3, 1, bias)
        self.bn2 = nn.BatchNorm3d(outputs)
        self.downsample = None
        if stride != 1 or inputs != outputs:
            self.downsample = nn.Sequential(_in_plane(inputs, outputs, 1, stride, bias), nn.BatchNorm3d(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class Up(nn.Module):
    """ConvBnRelu in -> middle, ConvTranspose3d (1, 4, 4)/(1, 2, 2) padding (0, 1, 1) middle -> out, ReLU."""

    def __init__(self, inputs: int, middle: int, outputs: int):
        super().__init__()
        self.block = nn.Sequential(
            ConvBnRelu(inputs, middle),
            nn.ConvTranspose3d(middle, outputs, (1, 4, 4), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class AlbuNet3D(nn.Module):
    """The published AlbuNet3D: input (B, C, D, H, W), H and W multiples of 32; logits (B, classes, D, H, W)."""

    def __init__(self, num_classes: int = 4, num_filters: int = 16, input_channels: int = 3,
                 encoder_bias: bool = True):
        super().__init__()
        nf = num_filters
        self.conv0 = nn.Sequential(_in_plane(input_channels, 64, 7, 2, encoder_bias), nn.BatchNorm3d(64),
                                   nn.ReLU(inplace=True))
        self.pool = nn.MaxPool3d((1, 2, 2), stride=(1, 2, 2))
        inputs = 64
        for layer, (blocks, width) in enumerate(zip(BLOCKS, WIDTHS), start=1):
            for block in range(blocks):
                stride = 2 if layer > 1 and block == 0 else 1
                self.add_module(f"conv{layer}_{block}", BasicBlock(inputs, width, stride, encoder_bias))
                inputs = width
        self.depth1 = ConvBnRelu(512, 512, depth=True)
        self.center = ConvBnRelu(512, 8 * nf)
        self.dec5 = Up(512 + 8 * nf, 16 * nf, 8 * nf)
        self.dec4 = Up(256 + 8 * nf, 16 * nf, 8 * nf)
        self.depth2 = ConvBnRelu(8 * nf, 8 * nf, depth=True)
        self.dec3 = Up(128 + 8 * nf, 8 * nf, 2 * nf)
        self.dec2 = Up(64 + 2 * nf, 4 * nf, 4 * nf)
        self.depth3 = ConvBnRelu(4 * nf, 4 * nf, depth=True)
        self.dec1 = Up(4 * nf, 4 * nf, nf)
        self.dec0 = ConvBnRelu(nf, nf)
        self.depth4 = ConvBnRelu(nf, nf, depth=True)
        self.final = nn.Conv3d(nf, num_classes, 1)

    def _layer(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        for block in range(BLOCKS[layer - 1]):
            x = getattr(self, f"conv{layer}_{block}")(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1 = self._layer(self.pool(self.conv0(x)), 1)  # 1/4 in-plane
        c2 = self._layer(c1, 2)
        c3 = self._layer(c2, 3)
        c4 = self.depth1(self._layer(c3, 4))  # 1/32
        d5 = self.dec5(torch.cat([self.center(c4), c4], 1))
        d4 = self.depth2(self.dec4(torch.cat([d5, c3], 1)))
        d3 = self.dec3(torch.cat([d4, c2], 1))
        d2 = self.depth3(self.dec2(torch.cat([d3, c1], 1)))
        return self.final(self.depth4(self.dec0(self.dec1(d2))))


def albunet3d(num_classes: int = 4, encoder_bias: bool = True, seed: int = 0) -> AlbuNet3D:
    """The published AlbuNet3D with torch's default initialisation from `seed` and random BN statistics.

    Random running statistics (means near 0, variances near 1) make inference depend on every
    BatchNorm entry, as a trained model's does.

    Example:
        sum(p.numel() for p in albunet3d(encoder_bias=False).parameters())
        # -> 26673172
    """
    torch.manual_seed(seed)
    model = AlbuNet3D(num_classes=num_classes, encoder_bias=encoder_bias)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm3d):
                size = module.num_features
                module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(size, generator=generator) * 0.1)
    return model
