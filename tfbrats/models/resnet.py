"""The backbone: torchvision's ResNet34 lifted to volumes, returning named multi-scale features.

Every k x k kernel becomes a Conv3D of kernel (1, k, k) and stride (1, s, s), so the encoder works
slice by slice and takes ImageNet weights unchanged. Layer names (`stem_conv`,
`layer2_block0_downsample_bn`, ...) are the weight-conversion contract: `tfbrats.models.weights`
maps torchvision and reference-checkpoint keys onto them.
"""

from __future__ import annotations

import keras
from keras import layers

from tfbrats.models.layers import FoldedConv3D, FoldedConv3DTranspose

# torch's BatchNorm2d/3d defaults; Keras' momentum is 1 - torch's momentum.
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9

RESNET34_FILTERS = (64, 128, 256, 512)
RESNET34_BLOCKS = (3, 4, 6, 3)

# The encoder's features, the layer each one is the output of, and its in-plane scale.
FEATURE_LAYERS = {
    "stem": "stem_relu",  # 1/2, 64 channels: the stem convolution's output before its pooling
    "c1": "layer1_block2_out",  # 1/4, 64
    "c2": "layer2_block3_out",  # 1/8, 128
    "c3": "layer3_block5_out",  # 1/16, 256
    "c4": "layer4_block2_out",  # 1/32, 512
}

# The convolution implementations: tfbrats' folded layers (the default: the same weights and
# outputs as Keras' Conv3D, computed as 2-D convolutions, several times faster to train on the
# CPU) or Keras' own Conv3D / Conv3DTranspose (the baseline they are measured against).
CONVOLUTIONS = {
    "folded": (FoldedConv3D, FoldedConv3DTranspose),
    "keras": (layers.Conv3D, layers.Conv3DTranspose),
}


def conv_layers(conv: str) -> tuple[type[layers.Conv3D], type[layers.Conv3DTranspose]]:
    """The (Conv3D, Conv3DTranspose) classes of a convolution implementation name.

    Args:
        conv: "folded" (tfbrats' `FoldedConv3D`) or "keras" (`keras.layers.Conv3D`).

    Example:
        >>> [c.__name__ for c in conv_layers("keras")]
        ['Conv3D', 'Conv3DTranspose']
    """
    if conv not in CONVOLUTIONS:
        raise ValueError(f"conv must be one of {tuple(CONVOLUTIONS)}, got {conv!r}")
    return CONVOLUTIONS[conv]


def batch_norm(name: str) -> layers.BatchNormalization:
    """BatchNormalization with torch's epsilon and momentum, so pretrained statistics carry over."""
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _encoder_conv(x, filters: int, kernel: int, stride: int, name: str, conv: str):
    """A bias-free (1, k, k) convolution padded like torch's symmetric `padding=k // 2`."""
    conv3d, _ = conv_layers(conv)
    if stride == 1:
        # For stride 1 and an odd kernel, Keras "same" pads symmetrically, exactly like torch.
        return conv3d(filters, (1, kernel, kernel), padding="same", use_bias=False, name=name)(x)
    # Keras "same" on a stride-2 layer pads (k//2 - 1) before and k//2 after, torch pads k//2 on
    # both sides: every pretrained feature would shift by a pixel. Pad explicitly, then "valid".
    pad = kernel // 2
    x = layers.ZeroPadding3D((0, pad, pad), name=f"{name}_pad")(x)
    return conv3d(
        filters, (1, kernel, kernel), strides=(1, stride, stride), padding="valid", use_bias=False, name=name
    )(x)


def apply_basic_block(x, filters: int, stride: int, name: str, conv: str = "folded"):
    """ResNet BasicBlock: conv(1,3,3), BN, ReLU, conv(1,3,3), BN, add shortcut, ReLU.

    Args:
        x: input tensor (B, D, H, W, C).
        filters: output channels.
        stride: in-plane stride of the first convolution (1 or 2); a stride of 2 or a change of
            width adds a 1x1x1 convolution + BN shortcut (`{name}_downsample_*`).
        name: prefix of every layer name, e.g. "layer2_block0".
        conv: the convolution implementation, "folded" or "keras".

    Returns:
        The block's output tensor, named `{name}_out`.

    Example:
        >>> x = keras.Input((None, 32, 32, 64))
        >>> apply_basic_block(x, 128, stride=2, name="layer2_block0").shape
        (None, None, 16, 16, 128)
    """
    conv3d, _ = conv_layers(conv)
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = conv3d(filters, 1, strides=(1, stride, stride), use_bias=False, name=f"{name}_downsample_conv")(x)
        shortcut = batch_norm(f"{name}_downsample_bn")(shortcut)
    y = _encoder_conv(x, filters, 3, stride, name=f"{name}_conv1", conv=conv)
    y = batch_norm(f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = _encoder_conv(y, filters, 3, 1, name=f"{name}_conv2", conv=conv)
    y = batch_norm(f"{name}_bn2")(y)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def apply_resnet34(x, conv: str = "folded") -> dict:
    """The lifted ResNet34 on a tensor: its features by name (`FEATURE_LAYERS` gives the scales).

    The stem is conv 64 (1,7,7)/(1,2,2), BN, ReLU and the paper's 2x2 max pooling (not ResNet's
    3x3/2 with padding); then 3, 4, 6, 3 BasicBlocks of 64, 128, 256, 512 channels, the first block
    of layers 2-4 with stride (1,2,2). Depth is never reduced and slices never meet.

    Args:
        x: input tensor (B, D, H, W, C), H and W multiples of 32.
        conv: the convolution implementation, "folded" or "keras".

    Returns:
        `{"stem": 1/2, "c1": 1/4, "c2": 1/8, "c3": 1/16, "c4": 1/32}` in-plane, 64, 64, 128, 256
        and 512 channels.

    Example:
        >>> features = apply_resnet34(keras.Input((None, 64, 64, 3)))
        >>> {name: feature.shape[2:] for name, feature in features.items()}
        {'stem': (32, 32, 64), 'c1': (16, 16, 64), 'c2': (8, 8, 128), 'c3': (4, 4, 256), 'c4': (2, 2, 512)}
    """
    x = _encoder_conv(x, 64, 7, 2, name="stem_conv", conv=conv)
    x = batch_norm("stem_bn")(x)
    features = {"stem": layers.ReLU(name="stem_relu")(x)}
    x = layers.MaxPooling3D((1, 2, 2), strides=(1, 2, 2), name="stem_pool")(features["stem"])
    for index, (filters, blocks) in enumerate(zip(RESNET34_FILTERS, RESNET34_BLOCKS), start=1):
        for block in range(blocks):
            stride = 2 if index > 1 and block == 0 else 1
            x = apply_basic_block(x, filters, stride, name=f"layer{index}_block{block}", conv=conv)
        features[f"c{index}"] = x
    return features


def resnet34_encoder(input_channels: int = 3, conv: str = "folded") -> keras.Model:
    """The lifted ResNet34 alone, as a functional model from `image` to its named features.

    Its layers carry the same names as an AlbuNet's encoder, so weights move between the two by
    name (tools/convert_weights.py saves this model's weights).

    Args:
        input_channels: channels of the input (3: FLAIR, T1c, T2 as R, G, B).
        conv: the convolution implementation, "folded" or "keras".

    Example:
        >>> encoder = resnet34_encoder()
        >>> encoder.count_params()  # 21,284,672 trainable + 17,024 BatchNorm statistics
        21301696
        >>> import numpy as np
        >>> tuple(encoder(np.zeros((1, 2, 64, 64, 3), "float32"))["c4"].shape)
        (1, 2, 2, 2, 512)
    """
    inputs = keras.Input(shape=(None, None, None, input_channels), name="image")
    return keras.Model(inputs, apply_resnet34(inputs, conv=conv), name="resnet34_encoder")
