"""The in-graph sliding window places, batches and averages windows exactly like the numpy one."""

import numpy as np
import pytest
import tensorflow as tf

from tfbrats.inference import sliding_window
from tfbrats.serving.window import sliding_window_graph

NUM_CLASSES = 4


def position_aware_predictor(windows: tf.Tensor) -> tf.Tensor:
    """Softmax of the input mixed with each voxel's position in its window: misplaced windows show."""
    windows = tf.convert_to_tensor(windows)
    shape = tf.shape(windows)
    depth = tf.reshape(tf.range(shape[1], dtype=tf.float32), (1, -1, 1, 1, 1))
    width = tf.reshape(tf.range(shape[3], dtype=tf.float32), (1, 1, 1, -1, 1))
    logits = tf.concat(
        [2.0 * windows[..., :1], windows[..., 1:2] + 0.3 * depth, windows[..., 2:3] - 0.05 * width,
         tf.zeros_like(windows[..., :1])],
        axis=-1,
    )
    return tf.nn.softmax(logits)


def numpy_reference(volume, patch, steps, batch):
    return sliding_window(volume, lambda w: position_aware_predictor(w).numpy(), patch, steps, batch)


@pytest.mark.parametrize(
    "shape, patch, steps, batch",
    [
        ((6, 40, 50, 3), (4, 32, 32), (2, 16, 16), 3),  # end-aligned extra windows on every axis
        ((3, 20, 70, 3), (4, 32, 32), (4, 32, 32), 4),  # depth and height padded, width end-aligned
        ((4, 32, 32, 3), (4, 32, 32), (1, 5, 7), 2),  # exactly one window
        ((9, 64, 96, 3), (4, 32, 32), (4, 32, 32), 5),  # windows that tile exactly, last batch short
    ],
)
def test_graph_window_equals_numpy_window(shape, patch, steps, batch):
    volume = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    graph = tf.function(
        lambda v: sliding_window_graph(v, position_aware_predictor, patch, steps, NUM_CLASSES, batch),
        input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)],
    )
    result = graph(volume).numpy()
    assert result.shape == shape[:3] + (NUM_CLASSES,)
    # Same windows, same order of additions, same division: equal to the last bit.
    np.testing.assert_array_equal(result, numpy_reference(volume, patch, steps, batch))


def test_one_traced_function_serves_every_volume_size():
    graph = tf.function(
        lambda v: sliding_window_graph(v, position_aware_predictor, (4, 32, 32), (2, 16, 16), NUM_CLASSES, 3),
        input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)],
    )
    for shape in [(5, 33, 47, 3), (2, 10, 10, 3)]:
        volume = np.random.default_rng(1).normal(size=shape).astype(np.float32)
        np.testing.assert_array_equal(graph(volume).numpy(), numpy_reference(volume, (4, 32, 32), (2, 16, 16), 3))
    assert graph.experimental_get_tracing_count() == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": (5, 16, 16)}, r"must be in 1..patch_size\[0\] = 4"),
        ({"patch_size": (4, 32)}, "three positive integers"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_window_settings_are_refused(kwargs, message):
    arguments = {"patch_size": (4, 32, 32), "steps": (2, 16, 16), "num_classes": NUM_CLASSES, "batch_size": 2}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        sliding_window_graph(tf.zeros((4, 32, 32, 3)), position_aware_predictor, **arguments)


def test_a_volume_without_channels_is_refused():
    with pytest.raises(ValueError, match=r"\(D, H, W, C\)"):
        sliding_window_graph(tf.zeros((4, 32, 32)), position_aware_predictor, (4, 32, 32), (2, 16, 16), NUM_CLASSES)
