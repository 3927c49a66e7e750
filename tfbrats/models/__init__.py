"""AlbuNet models and their pretrained weights (Keras layers and `keras.ops` only)."""

from tfbrats.models.albunet import AlbuNet2D, AlbuNet3D, encoder_feature_model
from tfbrats.models.weights import (
    WeightsError,
    from_reference_checkpoint,
    load_encoder_weights,
    read_state_dict,
    resnet34_encoder,
)

__all__ = [
    "AlbuNet2D",
    "AlbuNet3D",
    "WeightsError",
    "encoder_feature_model",
    "from_reference_checkpoint",
    "load_encoder_weights",
    "read_state_dict",
    "resnet34_encoder",
]
