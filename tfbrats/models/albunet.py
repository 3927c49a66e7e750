"""AlbuNet3D and AlbuNet2D: a U-Net on an ImageNet ResNet34 encoder lifted to volumes.

Every 2-D kernel k x k of torchvision's ResNet34 becomes a Conv3D of kernel (1, k, k), so the
encoder works slice by slice and takes ImageNet weights unchanged; the decoder's four (3, 1, 1)
depth layers are the only place where slices meet. Layer names are the weight-conversion contract
(`tfbrats.models.weights` maps torchvision and reference-checkpoint keys onto them).
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
SPATIAL_MULTIPLE = 32


def _batch_norm(name: str) -> layers.BatchNormalization:
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _encoder_conv(x, filters: int, kernel: int, stride: int, name: str):
    """A bias-free (1, k, k) convolution padded like torch's symmetric `padding=k // 2`."""
    if stride == 1:
        # For stride 1 and an odd kernel, Keras "same" pads symmetrically, exactly like torch.
        return FoldedConv3D(filters, (1, kernel, kernel), padding="same", use_bias=False, name=name)(x)
    # Keras "same" on a stride-2 layer pads (k//2 - 1) before and k//2 after, torch pads k//2 on
    # both sides: every pretrained feature would shift by a pixel. Pad explicitly, then "valid".
    pad = kernel // 2
    x = layers.ZeroPadding3D((0, pad, pad), name=f"{name}_pad")(x)
    return FoldedConv3D(
        filters, (1, kernel, kernel), strides=(1, stride, stride), padding="valid", use_bias=False, name=name
    )(x)


def apply_basic_block(x, filters: int, stride: int, name: str):
    """ResNet BasicBlock: conv(1,3,3), BN, ReLU, conv(1,3,3), BN, add shortcut, ReLU.

    Args:
        x: input tensor (B, D, H, W, C).
        filters: output channels.
        stride: in-plane stride of the first convolution (1 or 2); a stride of 2 or a change of
            width adds a 1x1x1 convolution + BN shortcut (`{name}_downsample_*`).
        name: prefix of every layer name, e.g. "layer2_block0".

    Returns:
        The block's output tensor.
    """
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = FoldedConv3D(
            filters, 1, strides=(1, stride, stride), use_bias=False, name=f"{name}_downsample_conv"
        )(x)
        shortcut = _batch_norm(f"{name}_downsample_bn")(shortcut)
    y = _encoder_conv(x, filters, 3, stride, name=f"{name}_conv1")
    y = _batch_norm(f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = _encoder_conv(y, filters, 3, 1, name=f"{name}_conv2")
    y = _batch_norm(f"{name}_bn2")(y)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def apply_resnet34_encoder(x):
    """The lifted ResNet34: returns the features c1 (1/4), c2 (1/8), c3 (1/16), c4 (1/32)."""
    x = _encoder_conv(x, 64, 7, 2, name="stem_conv")
    x = _batch_norm("stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    # The paper's 2x2 pooling, not ResNet's 3x3/2 with padding.
    x = layers.MaxPooling3D((1, 2, 2), strides=(1, 2, 2), name="stem_pool")(x)
    features = []
    for index, (filters, blocks) in enumerate(zip(RESNET34_FILTERS, RESNET34_BLOCKS), start=1):
        for block in range(blocks):
            stride = 2 if index > 1 and block == 0 else 1
            x = apply_basic_block(x, filters, stride, name=f"layer{index}_block{block}")
        features.append(x)
    return features


def apply_conv_bn_relu(x, filters: int, kernel: tuple[int, int, int], name: str):
    """Decoder ConvBnRelu: a biased convolution ("same", stride 1: symmetric like torch), BN, ReLU."""
    x = FoldedConv3D(filters, kernel, padding="same", name=f"{name}_conv")(x)
    x = _batch_norm(f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def apply_depth_layer(x, name: str):
    """ConvBnRelu of kernel (3, 1, 1): the decoder's only mixing across slices."""
    return apply_conv_bn_relu(x, x.shape[-1], (3, 1, 1), name=name)


def apply_up_block(x, middle: int, filters: int, name: str):
    """Up(in, mid, out): ConvBnRelu (1,3,3) in->mid, Conv3DTranspose (1,4,4)/(1,2,2) mid->out, ReLU."""
    x = apply_conv_bn_relu(x, middle, (1, 3, 3), name=name)
    # Keras "same" here equals torch's ConvTranspose3d padding (0, 1, 1): output = 2 x input.
    x = FoldedConv3DTranspose(filters, (1, 4, 4), strides=(1, 2, 2), padding="same", name=f"{name}_deconv")(x)
    return layers.ReLU(name=f"{name}_deconv_relu")(x)


def _build_albunet(inputs, num_classes: int, num_filters: int, depth_layers: bool, head: str):
    nf = num_filters
    c1, c2, c3, c4 = apply_resnet34_encoder(inputs)

    def depth(x, name):
        return apply_depth_layer(x, name) if depth_layers else x

    c4 = depth(c4, "depth1")
    center = apply_conv_bn_relu(c4, 8 * nf, (1, 3, 3), name="center")
    d5 = apply_up_block(layers.Concatenate(name="dec5_concat")([center, c4]), 16 * nf, 8 * nf, "dec5")
    d4 = apply_up_block(layers.Concatenate(name="dec4_concat")([d5, c3]), 16 * nf, 8 * nf, "dec4")
    d4 = depth(d4, "depth2")
    d3 = apply_up_block(layers.Concatenate(name="dec3_concat")([d4, c2]), 8 * nf, 2 * nf, "dec3")
    d2 = apply_up_block(layers.Concatenate(name="dec2_concat")([d3, c1]), 4 * nf, 4 * nf, "dec2")
    d2 = depth(d2, "depth3")
    d1 = apply_up_block(d2, 4 * nf, nf, "dec1")
    d0 = apply_conv_bn_relu(d1, nf, (1, 3, 3), name="dec0")
    d0 = depth(d0, "depth4")
    # Logits in float32 also under a mixed-precision policy: the loss and softmax need the range.
    outputs = FoldedConv3D(num_classes, 1, name="final", dtype="float32")(d0)
    if head == "softmax":
        outputs = layers.Softmax(axis=-1, name="probabilities", dtype="float32")(outputs)
    return outputs


HEADS = ("logits", "softmax")


@keras.saving.register_keras_serializable(package="tfbrats")
class AlbuNet3D(keras.Model):
    """AlbuNet3D: U-Net with a slice-wise ResNet34 encoder and (3,1,1) depth layers in the decoder.

    Args:
        num_classes: output channels (4: background, necrosis/non-enhancing, edema, enhancing).
        num_filters: decoder width `nf` (the paper's 16).
        input_channels: 3 (FLAIR, T1c, T2 as R, G, B) or 4 (T1 added).
        depth_layers: the four (3,1,1) decoder layers; off gives AlbuNet2D.
        encoder_weights: path of torchvision-format ResNet34 ImageNet weights (`.safetensors`,
            `.pth`, or tfbrats' `.weights.h5`) loaded into the encoder, or None for random init.
        head: "logits" (default) or "softmax" for class probabilities.
        name: model name.

    Input `(batch, D, H, W, input_channels)` channels-last, H and W multiples of 32, any D >= 1;
    output `(batch, D, H, W, num_classes)`.

    Example:
        >>> model = AlbuNet3D(num_classes=4)
        >>> model(np.zeros((1, 4, 64, 64, 3), "float32")).shape
        (1, 4, 64, 64, 4)
    """

    def __init__(
        self,
        num_classes: int = 4,
        num_filters: int = 16,
        input_channels: int = 3,
        depth_layers: bool = True,
        encoder_weights: str | None = None,
        head: str = "logits",
        name: str = "albunet3d",
        segmentation: dict | None = None,
        **kwargs,
    ):
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if input_channels < 1:
            raise ValueError(f"input_channels must be >= 1, got {input_channels}")
        inputs = keras.Input(shape=(None, None, None, input_channels), name="image")
        outputs = _build_albunet(inputs, num_classes, num_filters, depth_layers, head)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.num_classes = num_classes
        self.num_filters = num_filters
        self.input_channels = input_channels
        self.depth_layers = depth_layers
        self.head = head
        # How outputs become a segmentation (target, channels, window, post-processing): JSON that
        # travels inside the .keras file; tfbrats.inference reads it, the network never does.
        self.segmentation = segmentation
        if encoder_weights is not None:
            from tfbrats.models.weights import load_encoder_weights

            load_encoder_weights(self, encoder_weights)

    def call(self, inputs, training=None, mask=None):
        check_spatial_shape(inputs.shape)
        return super().call(inputs, training=training, mask=mask)

    def get_config(self) -> dict:
        # Pretrained weights are part of the saved weights, never re-read from their source file.
        return {
            "num_classes": self.num_classes,
            "num_filters": self.num_filters,
            "input_channels": self.input_channels,
            "depth_layers": self.depth_layers,
            "head": self.head,
            "name": self.name,
            "segmentation": self.segmentation,
        }

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfbrats")
class AlbuNet2D(AlbuNet3D):
    """AlbuNet2D: AlbuNet3D without its depth layers, so every slice is segmented on its own.

    Trained on patches of depth 1; at prediction time any depth works (slices are independent).
    Arguments as `AlbuNet3D`, without `depth_layers`.

    Example:
        >>> model = AlbuNet2D(num_classes=4)
        >>> model(np.zeros((2, 1, 128, 128, 3), "float32")).shape
        (2, 1, 128, 128, 4)
    """

    def __init__(self, num_classes: int = 4, num_filters: int = 16, input_channels: int = 3,
                 encoder_weights: str | None = None, head: str = "logits", name: str = "albunet2d",
                 segmentation: dict | None = None, **kwargs):
        kwargs.pop("depth_layers", None)
        super().__init__(num_classes=num_classes, num_filters=num_filters, input_channels=input_channels,
                         depth_layers=False, encoder_weights=encoder_weights, head=head, name=name,
                         segmentation=segmentation, **kwargs)

    def get_config(self) -> dict:
        config = super().get_config()
        del config["depth_layers"]
        return config


def check_spatial_shape(shape) -> None:
    """Raise ValueError when a static H or W of a (B, D, H, W, C) shape is not a multiple of 32."""
    if len(shape) != 5:
        raise ValueError(f"AlbuNet expects a 5-D input (batch, D, H, W, channels), got shape {tuple(shape)}")
    for axis, size in (("H", shape[2]), ("W", shape[3])):
        if size is not None and size % SPATIAL_MULTIPLE:
            raise ValueError(
                f"AlbuNet needs {axis} to be a multiple of {SPATIAL_MULTIPLE} (the encoder halves it 5 times); "
                f"got {axis} = {size} in input shape {tuple(shape)}. Pad or crop the input."
            )


def encoder_feature_model(model: keras.Model) -> keras.Model:
    """A model sharing `model`'s layers that returns the encoder features [c1, c2, c3, c4]."""
    names = [f"layer{i}_block{n - 1}_out" for i, n in enumerate(RESNET34_BLOCKS, start=1)]
    return keras.Model(model.input, [model.get_layer(n).output for n in names], name=f"{model.name}_encoder")
