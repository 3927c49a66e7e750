"""The AlbuNet decoder: a U-Net decoder over the ResNet34 features, with optional depth layers.

Every decoder convolution has a bias and is followed by BatchNormalization and ReLU. In-plane
convolutions have kernel (1, 3, 3); upsampling is a (1, 4, 4)/(1, 2, 2) transposed convolution;
the four depth layers, kernel (3, 1, 1), are the only place where slices meet (AlbuNet2D leaves
them out). Layer names (`center_conv`, `dec5_deconv`, `depth2_bn`, ...) are the contract with
reference-checkpoint conversion in `tfbrats.models.weights`.
"""

from __future__ import annotations

from keras import layers

from tfbrats.models.resnet import batch_norm, conv_layers


def apply_conv_bn_relu(x, filters: int, kernel: tuple[int, int, int], name: str, conv: str = "folded"):
    """ConvBnRelu: a biased convolution ("same", stride 1: symmetric like torch), BN, ReLU.

    Args:
        x: input tensor (B, D, H, W, C).
        filters: output channels.
        kernel: (1, 3, 3) in-plane or (3, 1, 1) along depth.
        name: prefix of the layer names (`{name}_conv`, `{name}_bn`, `{name}_relu`).
        conv: the convolution implementation, "folded" or "keras".

    Example:
        >>> import keras
        >>> apply_conv_bn_relu(keras.Input((None, 8, 8, 32)), 16, (1, 3, 3), name="center").shape
        (None, None, 8, 8, 16)
    """
    conv3d, _ = conv_layers(conv)
    x = conv3d(filters, kernel, padding="same", name=f"{name}_conv")(x)
    x = batch_norm(f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def apply_depth_layer(x, name: str, conv: str = "folded"):
    """ConvBnRelu of kernel (3, 1, 1) keeping the width: the decoder's only mixing across slices.

    Example:
        >>> import keras
        >>> apply_depth_layer(keras.Input((None, 8, 8, 32)), name="depth1").shape
        (None, None, 8, 8, 32)
    """
    return apply_conv_bn_relu(x, x.shape[-1], (3, 1, 1), name=name, conv=conv)


def apply_up_block(x, middle: int, filters: int, name: str, conv: str = "folded"):
    """Up(in, mid, out): ConvBnRelu (1,3,3) in->mid, Conv3DTranspose (1,4,4)/(1,2,2) mid->out, ReLU.

    Example:
        >>> import keras
        >>> apply_up_block(keras.Input((None, 8, 8, 32)), 64, 16, name="dec1").shape
        (None, None, 16, 16, 16)
    """
    _, transpose = conv_layers(conv)
    x = apply_conv_bn_relu(x, middle, (1, 3, 3), name=name, conv=conv)
    # Keras "same" here equals torch's ConvTranspose3d padding (0, 1, 1): output = 2 x input.
    x = transpose(filters, (1, 4, 4), strides=(1, 2, 2), padding="same", name=f"{name}_deconv")(x)
    return layers.ReLU(name=f"{name}_deconv_relu")(x)


def apply_albunet_decoder(features: dict, num_filters: int = 16, depth_layers: bool = True, conv: str = "folded"):
    """The AlbuNet decoder over the encoder's features c1..c4, up to the input's resolution.

    With nf = `num_filters`: depth1 on c4; center = ConvBnRelu(512 -> 8nf); dec5 and dec4 give 8nf
    channels (depth2 after dec4), dec3 2nf, dec2 4nf (depth3 after), dec1 nf at 1/2 scale; dec0 a
    last ConvBnRelu nf -> nf, then depth4. Skips concatenate decoder and encoder features.

    Args:
        features: the encoder's features by name (`apply_resnet34`); "stem" is not used.
        num_filters: decoder width nf (the paper's 16).
        depth_layers: the four (3, 1, 1) layers; False gives the slice-wise AlbuNet2D decoder.
        conv: the convolution implementation, "folded" or "keras".

    Returns:
        The decoded tensor (B, D, H, W, nf) at the input's resolution.

    Example:
        >>> import keras
        >>> from tfbrats.models.resnet import apply_resnet34
        >>> features = apply_resnet34(keras.Input((None, 64, 64, 3)))
        >>> apply_albunet_decoder(features, num_filters=16).shape
        (None, None, 64, 64, 16)
    """
    nf = num_filters

    def depth(x, name):
        return apply_depth_layer(x, name, conv=conv) if depth_layers else x

    def up(skips, middle, filters, name):
        x = layers.Concatenate(name=f"{name}_concat")(skips) if len(skips) > 1 else skips[0]
        return apply_up_block(x, middle, filters, name, conv=conv)

    c4 = depth(features["c4"], "depth1")
    center = apply_conv_bn_relu(c4, 8 * nf, (1, 3, 3), name="center", conv=conv)
    d5 = up([center, c4], 16 * nf, 8 * nf, "dec5")
    d4 = depth(up([d5, features["c3"]], 16 * nf, 8 * nf, "dec4"), "depth2")
    d3 = up([d4, features["c2"]], 8 * nf, 2 * nf, "dec3")
    d2 = depth(up([d3, features["c1"]], 4 * nf, 4 * nf, "dec2"), "depth3")
    d1 = up([d2], 4 * nf, nf, "dec1")
    return depth(apply_conv_bn_relu(d1, nf, (1, 3, 3), name="dec0", conv=conv), "depth4")

