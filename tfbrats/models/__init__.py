"""AlbuNet models and their pretrained weights (Keras layers and `keras.ops` only).

The parts, upstream first: `layers` (Conv3D computed as 2-D convolutions), `resnet` (the
backbone: ResNet34 lifted to volumes, named features), `decoder` (the AlbuNet decoder),
`albunet` (the assembled `AlbuNet3D` / `AlbuNet2D` and their head), `state_dict` (reading torch
files) and `weights` (torch names onto Keras layer names). No module imports a later one.

Example:
    >>> from tfbrats import models
    >>> sorted(models.resnet34_encoder().output)
    ['c1', 'c2', 'c3', 'c4', 'stem']
"""

from tfbrats.models.albunet import AlbuNet2D, AlbuNet3D, apply_head, encoder_feature_model
from tfbrats.models.decoder import apply_albunet_decoder
from tfbrats.models.resnet import apply_resnet34, resnet34_encoder
from tfbrats.models.state_dict import WeightsError, read_state_dict
from tfbrats.models.weights import load_encoder_weights, load_reference_checkpoint

__all__ = [
    "AlbuNet2D",
    "AlbuNet3D",
    "WeightsError",
    "apply_albunet_decoder",
    "apply_head",
    "apply_resnet34",
    "encoder_feature_model",
    "load_encoder_weights",
    "load_reference_checkpoint",
    "read_state_dict",
    "resnet34_encoder",
]
