"""FoldedConv3D / FoldedConv3DTranspose give Keras' Conv3D / Conv3DTranspose outputs and gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from tfbrats.models.layers import FoldedConv3D, FoldedConv3DTranspose

CONV_CASES = [
    # kernel, strides, padding, use_bias
    ((1, 3, 3), (1, 1, 1), "same", False),
    ((1, 7, 7), (1, 2, 2), "valid", False),
    ((1, 1, 1), (1, 2, 2), "valid", False),  # oneDNN's strided 1x1 Conv2D filter gradient is wrong
    ((1, 1, 1), (1, 2, 2), "same", False),
    ((1, 1, 1), (1, 1, 1), "valid", True),
    ((3, 1, 1), (1, 1, 1), "same", True),
    ((3, 1, 1), (2, 1, 1), "valid", False),
]


def _pair(folded_class, plain_class, x, **kwargs):
    folded = folded_class(**kwargs)
    plain = plain_class(**kwargs)
    folded.build(x.shape)
    plain.build(x.shape)
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=w.shape).astype("float32") for w in plain.get_weights()]
    plain.set_weights(weights)
    folded.set_weights(weights)
    return folded, plain


def _outputs_and_gradients(layer, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * tf.sin(y))
    return [y.numpy(), *(g.numpy() for g in tape.gradient(loss, [x, *layer.trainable_variables]))]


@pytest.mark.parametrize(("kernel", "strides", "padding", "use_bias"), CONV_CASES)
def test_folded_conv_equals_conv3d(kernel, strides, padding, use_bias):
    x = np.random.default_rng(0).normal(size=(2, 5, 13, 10, 3)).astype("float32")
    folded, plain = _pair(FoldedConv3D, layers.Conv3D, x, filters=4, kernel_size=kernel, strides=strides,
                          padding=padding, use_bias=use_bias)
    for ours, theirs in zip(_outputs_and_gradients(folded, x), _outputs_and_gradients(plain, x)):
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())


def test_folded_conv_transpose_equals_conv3d_transpose():
    x = np.random.default_rng(0).normal(size=(2, 3, 6, 8, 5)).astype("float32")
    folded, plain = _pair(FoldedConv3DTranspose, layers.Conv3DTranspose, x, filters=4, kernel_size=(1, 4, 4),
                          strides=(1, 2, 2), padding="same")
    ours, theirs = _outputs_and_gradients(folded, x), _outputs_and_gradients(plain, x)
    assert ours[0].shape == (2, 3, 12, 16, 4)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())


def test_folded_conv_takes_unknown_batch_and_depth():
    inputs = keras.Input((None, 16, 16, 2))
    model = keras.Model(inputs, FoldedConv3D(3, (3, 1, 1), padding="same")(FoldedConv3D(3, (1, 3, 3))(inputs)))
    assert model(np.zeros((3, 7, 16, 16, 2), "float32")).shape == (3, 7, 14, 14, 3)


@pytest.mark.parametrize(
    ("layer_class", "kwargs", "message"),
    [
        (FoldedConv3D, {"kernel_size": (3, 3, 3)}, "flat along depth"),
        (FoldedConv3D, {"kernel_size": (1, 3, 3), "strides": (2, 1, 1)}, "flat along depth"),
        (FoldedConv3D, {"kernel_size": (1, 3, 3), "data_format": "channels_first"}, "channels_last"),
        (FoldedConv3DTranspose, {"kernel_size": (2, 4, 4)}, r"\(1, kh, kw\)"),
    ],
)
def test_unsupported_kernels_are_refused(layer_class, kwargs, message):
    with pytest.raises(ValueError, match=message):
        layer_class(filters=2, **kwargs)


def test_config_round_trip():
    layer = FoldedConv3D(5, (1, 3, 3), strides=(1, 2, 2), name="conv")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone) is FoldedConv3D
    assert clone.get_config() == layer.get_config()
