"""The sliding window of `tfbrats.inference.sliding_window` written in TensorFlow ops.

It runs inside a graph (a SavedModel signature), so a server can take a whole volume of any
size and return its segmentation in one request. Window placement is the numpy version's: both
call `tfbrats.inference.window_geometry` (here with TensorFlow's range and minimum, as the sizes
are known only when a volume arrives), and overlapping outputs are averaged uniformly ("mean"
blending). Window outputs are added in the same order as the numpy version,
so the two agree to the last bit when the predictor does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from tfbrats.inference.window_geometry import check_window, padding, window_starts

GraphPredictor = Callable[[tf.Tensor], tf.Tensor]


def sliding_window_graph(
    volume: tf.Tensor,
    predictor: GraphPredictor,
    patch_size: Sequence[int],
    steps: Sequence[int],
    num_classes: int,
    batch_size: int = 4,
) -> tf.Tensor:
    """Class probabilities of a whole volume from overlapping windows, with TensorFlow ops only.

    Args:
        volume: float32 image `(D, H, W, C)` of any spatial size; C must be known statically.
        predictor: maps a batch of windows `(B, d, h, w, C)` to probabilities `(B, d, h, w, K)`
            with TensorFlow ops (e.g. a Keras model).
        patch_size: window size `(d, h, w)`.
        steps: distance `(d, h, w)` between window starts; each in 1..patch size.
        num_classes: K, the predictor's number of output channels.
        batch_size: windows per predictor call.

    Returns:
        float32 probabilities `(D, H, W, K)`.

    Example:
        >>> uniform = lambda x: tf.fill(tf.concat([tf.shape(x)[:4], [4]], 0), 0.25)
        >>> volume = tf.zeros((30, 100, 90, 3))
        >>> sliding_window_graph(volume, uniform, (8, 64, 64), (8, 32, 32), num_classes=4).shape
        TensorShape([30, 100, 90, 4])
    """
    volume, patch, step = _checked_arguments(volume, patch_size, steps, batch_size)
    channels = volume.shape[-1]

    shape = tf.shape(volume)[:3]
    patch_t = tf.constant(patch, tf.int32)
    # Pad an axis shorter than the window after its end up to the window (the numpy rule).
    before, after = padding(shape, patch_t, tf.maximum)
    padded = tf.pad(volume, tf.concat([tf.stack([before, after], axis=1), [[0, 0]]], axis=0))
    padded_shape = tf.shape(padded)[:3]

    starts = [window_starts(padded_shape[axis], patch[axis], step[axis], tf.range, tf.minimum) for axis in range(3)]
    # Depth-major order, as itertools.product in the numpy version: the sums match bit for bit.
    corners = tf.reshape(tf.stack(tf.meshgrid(*starts, indexing="ij"), axis=-1), (-1, 3))
    num_windows = tf.shape(corners)[0]
    window_spec = tf.TensorSpec(patch + (channels,), tf.float32)

    def cut(corner: tf.Tensor) -> tf.Tensor:
        return tf.slice(padded, tf.concat([corner, [0]], axis=0), patch + (channels,))

    def predict_group(first: tf.Tensor, total: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        group = corners[first : first + batch_size]
        probabilities = tf.cast(predictor(tf.map_fn(cut, group, fn_output_signature=window_spec)), tf.float32)
        probabilities = tf.ensure_shape(probabilities, (None,) + patch + (num_classes,))

        def add_window(index: tf.Tensor, total: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            corner = group[index]
            placement = tf.stack([corner, padded_shape - corner - patch_t], axis=1)
            return index + 1, total + tf.pad(probabilities[index], tf.concat([placement, [[0, 0]]], axis=0))

        _, total = tf.while_loop(
            lambda index, _: index < tf.shape(group)[0],
            add_window,
            (tf.constant(0), total),
            shape_invariants=(tf.TensorShape([]), _probability_shape(num_classes)),
        )
        return first + batch_size, total

    _, total = tf.while_loop(
        lambda first, _: first < num_windows,
        predict_group,
        (tf.constant(0), tf.zeros(tf.concat([padded_shape, [num_classes]], axis=0))),
        shape_invariants=(tf.TensorShape([]), _probability_shape(num_classes)),
    )
    probabilities = total / _window_counts(padded_shape, starts, patch)[..., None]
    return tf.slice(probabilities, tf.concat([before, [0]], axis=0), tf.concat([shape, [num_classes]], axis=0))


def _checked_arguments(
    volume: tf.Tensor, patch_size: Sequence[int], steps: Sequence[int], batch_size: int
) -> tuple[tf.Tensor, tuple[int, int, int], tuple[int, int, int]]:
    """The volume as float32 with its window and step, or a ValueError naming the bad argument."""
    patch, step = check_window(patch_size, steps)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    volume = tf.convert_to_tensor(volume, tf.float32)
    if volume.shape.rank != 4 or volume.shape[-1] is None:
        raise ValueError(f"sliding_window_graph needs a volume (D, H, W, C) with a known C; got shape {volume.shape}")
    return volume, patch, step


def _window_counts(padded_shape: tf.Tensor, starts: list[tf.Tensor], patch: tuple[int, int, int]) -> tf.Tensor:
    """float32 `(D, H, W)`: how many windows cover each voxel of the padded volume."""
    # Every window covers a box, so the number of windows over a voxel is a product of per-axis counts.
    counts = [_coverage(padded_shape[axis], starts[axis], patch[axis]) for axis in range(3)]
    return counts[0][:, None, None] * counts[1][None, :, None] * counts[2][None, None, :]


def _probability_shape(num_classes: int) -> tf.TensorShape:
    return tf.TensorShape([None, None, None, num_classes])


def _coverage(size: tf.Tensor, starts: tf.Tensor, patch: int) -> tf.Tensor:
    """float32 `(size,)`: how many windows of width `patch` starting at `starts` cover each position."""
    position = tf.range(size)[:, None]
    inside = tf.logical_and(position >= starts[None, :], position < starts[None, :] + patch)
    return tf.reduce_sum(tf.cast(inside, tf.float32), axis=1)
