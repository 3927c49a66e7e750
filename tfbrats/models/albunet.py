"""AlbuNet3D and AlbuNet2D: a U-Net on an ImageNet ResNet34 encoder lifted to volumes.

The model is assembled from three parts: the backbone (`tfbrats.models.resnet.apply_resnet34`,
named features stem, c1..c4), the decoder (`tfbrats.models.decoder.apply_albunet_decoder`) and a
head (a 1x1x1 convolution to logits, optionally a softmax). Building never reads a file:
pretrained weights come in through `AlbuNet3D.from_encoder_weights` /
`AlbuNet3D.from_reference_checkpoint` or through the caller (`tfbrats.models.weights`).
"""

from __future__ import annotations

import os

import keras
from keras import layers

from tfbrats.conventions import SIZE_MULTIPLE
from tfbrats.models.decoder import apply_albunet_decoder
from tfbrats.models.resnet import FEATURE_LAYERS, apply_resnet34, conv_layers
from tfbrats.models.weights import load_encoder_weights, load_reference_checkpoint

HEADS = ("logits", "softmax")


def apply_head(x, num_classes: int, head: str = "logits", conv: str = "folded"):
    """The segmentation head: a biased 1x1x1 convolution to `num_classes` logits, in float32.

    Logits stay float32 also under a mixed-precision policy: the loss and the softmax need the range.

    Args:
        x: the decoder's output (B, D, H, W, nf).
        num_classes: output channels.
        head: "logits", or "softmax" for class probabilities (layer `probabilities`).
        conv: the convolution implementation, "folded" or "keras".

    Example:
        >>> import keras
        >>> apply_head(keras.Input((None, 32, 32, 16)), 4, head="softmax").shape
        (None, None, 32, 32, 4)
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    conv3d, _ = conv_layers(conv)
    outputs = conv3d(num_classes, 1, name="final", dtype="float32")(x)
    if head == "softmax":
        outputs = layers.Softmax(axis=-1, name="probabilities", dtype="float32")(outputs)
    return outputs


@keras.saving.register_keras_serializable(package="tfbrats")
class AlbuNet3D(keras.Model):
    """AlbuNet3D: U-Net with a slice-wise ResNet34 encoder and (3,1,1) depth layers in the decoder.

    Every 2-D kernel k x k of torchvision's ResNet34 is a Conv3D of kernel (1, k, k), so the
    encoder works slice by slice and takes ImageNet weights unchanged; the decoder's four (3, 1, 1)
    depth layers are the only place where slices meet. Layer names are the weight-conversion
    contract (`tfbrats.models.weights`). Weights start random: pretrained ones come in through
    `from_encoder_weights`, `from_reference_checkpoint` or `tfbrats.models.load_encoder_weights`.

    Args:
        num_classes: output channels (4: background, necrosis/non-enhancing, edema, enhancing).
        num_filters: decoder width `nf` (the paper's 16).
        input_channels: 3 (FLAIR, T1c, T2 as R, G, B) or 4 (T1 added).
        depth_layers: the four (3,1,1) decoder layers; off gives AlbuNet2D.
        head: "logits" (default) or "softmax" for class probabilities.
        conv: the convolution implementation: "folded" (default; tfbrats' `FoldedConv3D`, computed
            as 2-D convolutions) or "keras" (`keras.layers.Conv3D`); the same weights and outputs.
        name: model name.
        segmentation: how outputs become a segmentation (target, channels, window,
            post-processing) as JSON-serialisable metadata; stored, never read by the network.

    Input `(batch, D, H, W, input_channels)` channels-last, H and W multiples of 32, any D >= 1;
    output `(batch, D, H, W, num_classes)`.

    Example:
        >>> import numpy as np
        >>> model = AlbuNet3D(num_classes=4)
        >>> tuple(model(np.zeros((1, 2, 32, 32, 3), "float32")).shape)
        (1, 2, 32, 32, 4)
        >>> model.count_params()
        26693460
    """

    def __init__(
        self,
        num_classes: int = 4,
        num_filters: int = 16,
        input_channels: int = 3,
        depth_layers: bool = True,
        head: str = "logits",
        conv: str = "folded",
        name: str = "albunet3d",
        segmentation: dict | None = None,
        **kwargs,
    ):
        if "encoder_weights" in kwargs:
            raise TypeError(
                f"{type(self).__name__} no longer reads weight files (encoder_weights="
                f"{kwargs['encoder_weights']!r}); build with {type(self).__name__}.from_encoder_weights(path, ...) "
                "or call tfbrats.models.load_encoder_weights(model, path) after building"
            )
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if input_channels < 1:
            raise ValueError(f"input_channels must be >= 1, got {input_channels}")
        conv_layers(conv)  # an unknown name fails here, before any layer is built
        inputs = keras.Input(shape=(None, None, None, input_channels), name="image")
        features = apply_resnet34(inputs, conv=conv)
        decoded = apply_albunet_decoder(features, num_filters=num_filters, depth_layers=depth_layers, conv=conv)
        outputs = apply_head(decoded, num_classes, head=head, conv=conv)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.num_classes = num_classes
        self.num_filters = num_filters
        self.input_channels = input_channels
        self.depth_layers = depth_layers
        self.head = head
        self.conv = conv
        # How outputs become a segmentation (target, channels, window, post-processing): JSON that
        # travels inside the .keras file; tfbrats.inference reads it, the network never does.
        self.segmentation = segmentation

    @classmethod
    def from_encoder_weights(cls, path: str | os.PathLike, **kwargs) -> AlbuNet3D:
        """Build the model and load ImageNet ResNet34 weights into its encoder.

        Args:
            path: torchvision-format weights (`.safetensors`, `.pth` with torch) or tfbrats'
                `.weights.h5` from tools/convert_weights.py.
            **kwargs: the constructor's arguments.

        With a converted file the encoder holds its weights (``input_channels=4`` adds T1, its stem
        kernel the mean of the RGB ones); a path that is no file says where such weights come from.

        Example:
            >>> model = AlbuNet2D.from_encoder_weights("encoder.weights.h5", num_filters=4)  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            FileNotFoundError: encoder weights file not found: encoder.weights.h5. ImageNet ResNet34 weights ...
        """
        model = cls(**kwargs)
        load_encoder_weights(model, path)
        return model

    @classmethod
    def from_reference_checkpoint(cls, path: str | os.PathLike, **kwargs) -> AlbuNet3D:
        """Build the model holding a trained checkpoint of the published PyTorch AlbuNet3D.

        Args:
            path: `torch.save(state_dict)` file (`.pth`, needs torch) or `.safetensors`.
            **kwargs: the constructor's arguments; `num_classes` and `num_filters` must be the
                checkpoint's (4 and 16 for the published BraTS model).

        Example:
            >>> model = AlbuNet3D.from_reference_checkpoint("albunet3d_brats.pth", num_classes=4)  # doctest: +SKIP
        """
        model = cls(**kwargs)
        load_reference_checkpoint(model, path)
        return model

    def call(self, inputs, training=None, mask=None):
        check_spatial_shape(inputs.shape)
        return super().call(inputs, training=training, mask=mask)

    def get_config(self) -> dict:
        # Every constructor argument; pretrained weights are part of the saved weights.
        return {
            "num_classes": self.num_classes,
            "num_filters": self.num_filters,
            "input_channels": self.input_channels,
            "depth_layers": self.depth_layers,
            "head": self.head,
            "conv": self.conv,
            "name": self.name,
            "segmentation": self.segmentation,
        }

    @classmethod
    def from_config(cls, config: dict):
        # A config may name an `encoder_weights` file (a constructor argument in older tfbrats):
        # the pretrained numbers are in the saved weights, so the path is dropped, never read.
        config = {key: value for key, value in config.items() if key != "encoder_weights"}
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfbrats")
class AlbuNet2D(AlbuNet3D):
    """AlbuNet2D: AlbuNet3D without its depth layers, so every slice is segmented on its own.

    Trained on patches of depth 1; at prediction time any depth works (slices are independent).
    Arguments as `AlbuNet3D`, without `depth_layers`.

    Example:
        >>> import numpy as np
        >>> model = AlbuNet2D(num_classes=4)
        >>> tuple(model(np.zeros((2, 1, 32, 32, 3), "float32")).shape)
        (2, 1, 32, 32, 4)
        >>> model.count_params()
        25841220
    """

    def __init__(self, num_classes: int = 4, num_filters: int = 16, input_channels: int = 3,
                 head: str = "logits", conv: str = "folded", name: str = "albunet2d",
                 segmentation: dict | None = None, **kwargs):
        kwargs.pop("depth_layers", None)
        super().__init__(num_classes=num_classes, num_filters=num_filters, input_channels=input_channels,
                         depth_layers=False, head=head, conv=conv, name=name, segmentation=segmentation,
                         **kwargs)

    def get_config(self) -> dict:
        config = super().get_config()
        del config["depth_layers"]
        return config


def check_spatial_shape(shape) -> None:
    """Raise ValueError when a static H or W of a (B, D, H, W, C) shape is not a multiple of 32.

    Example:
        >>> check_spatial_shape((1, 4, 64, 96, 3))
        >>> check_spatial_shape((1, 4, 64, 100, 3))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: AlbuNet needs W to be a multiple of 32 (...); got W = 100 in input shape (1, 4, 64, 100, 3)...
    """
    if len(shape) != 5:
        raise ValueError(f"AlbuNet expects a 5-D input (batch, D, H, W, channels), got shape {tuple(shape)}")
    for axis, size in (("H", shape[2]), ("W", shape[3])):
        if size is not None and size % SIZE_MULTIPLE:
            raise ValueError(
                f"AlbuNet needs {axis} to be a multiple of {SIZE_MULTIPLE} (the encoder halves it 5 times); "
                f"got {axis} = {size} in input shape {tuple(shape)}. Pad or crop the input."
            )


def encoder_feature_model(model: keras.Model) -> keras.Model:
    """A model sharing `model`'s layers that returns its encoder's features by name.

    Args:
        model: an `AlbuNet3D` or `AlbuNet2D`.

    Returns:
        A functional model from the AlbuNet's input to `{"stem", "c1", "c2", "c3", "c4"}`.

    Example:
        >>> import numpy as np
        >>> encoder = encoder_feature_model(AlbuNet2D())
        >>> tuple(encoder(np.zeros((1, 1, 64, 64, 3), "float32"))["c2"].shape)
        (1, 1, 8, 8, 128)
    """
    outputs = {feature: model.get_layer(layer).output for feature, layer in FEATURE_LAYERS.items()}
    return keras.Model(model.input, outputs, name=f"{model.name}_encoder")
