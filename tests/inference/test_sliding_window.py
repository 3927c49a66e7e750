"""Sliding-window prediction: coverage, exact reconstruction, batching, blending and mirroring."""

import numpy as np
import pytest
from scipy import ndimage

from tfbrats.inference import sliding_window

NUM_CLASSES = 4


def make_volume(shape, seed=0):
    """A (D, H, W, 2) volume whose channel 0 holds random labels 0..3, and those labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, shape)
    noise = rng.normal(size=shape)
    return np.stack([labels, noise], axis=-1).astype(np.float32), labels


def one_hot_predictor(calls=None):
    """Returns the one-hot of the labels in channel 0, recording each batch shape in `calls`."""

    def predict(batch):
        if calls is not None:
            calls.append(batch.shape)
        return np.eye(NUM_CLASSES, dtype=np.float32)[np.rint(batch[..., 0]).astype(int)]

    return predict


def smoothing_predictor(calls):
    """A flip-equivariant but non-pointwise predictor: softmax of a 3x3x3 box-filtered input."""

    def predict(batch):
        calls.append(batch.shape)
        logits = ndimage.uniform_filter(batch[..., :1], size=(1, 3, 3, 3, 1), mode="constant")
        logits = logits * np.arange(1, NUM_CLASSES + 1, dtype=np.float32)
        exp = np.exp(logits - logits.max(-1, keepdims=True))
        return exp / exp.sum(-1, keepdims=True)

    return predict


@pytest.mark.parametrize("blend", ["mean", "gaussian"])
@pytest.mark.parametrize(
    "shape, patch, steps",
    [
        ((13, 37, 45), (4, 16, 16), (3, 8, 8)),  # odd shape, overlapping windows
        ((9, 35, 33), (4, 16, 16), (4, 16, 16)),  # no overlap but the end-aligned windows
        ((3, 10, 7), (4, 16, 16), (4, 8, 8)),  # smaller than a patch on every axis
        ((7, 10, 40), (1, 16, 16), (1, 8, 8)),  # 2-D windows, one axis smaller than a patch
    ],
)
def test_reconstructs_labels_exactly(shape, patch, steps, blend):
    volume, labels = make_volume(shape)
    probs = sliding_window(volume, one_hot_predictor(), patch, steps, batch_size=3, blend=blend)
    assert probs.shape == shape + (NUM_CLASSES,)
    assert probs.dtype == np.float32
    np.testing.assert_array_equal(probs.argmax(-1), labels)
    np.testing.assert_allclose(probs, np.eye(NUM_CLASSES)[labels], atol=1e-6)


def test_windows_are_batched():
    volume, labels = make_volume((8, 20, 20))
    calls = []
    probs = sliding_window(volume, one_hot_predictor(calls), (4, 8, 8), (4, 4, 4), batch_size=5)
    # 2 x 4 x 4 = 32 windows in calls of 5
    assert calls == [(5, 4, 8, 8, 2)] * 6 + [(2, 4, 8, 8, 2)]
    np.testing.assert_array_equal(probs.argmax(-1), labels)


def test_full_volume_pass_pads_height_and_width_to_multiples_of_32():
    volume, labels = make_volume((5, 40, 33))
    calls = []
    probs = sliding_window(volume, one_hot_predictor(calls), patch_size=None)
    assert calls == [(1, 5, 64, 64, 2)]
    np.testing.assert_array_equal(probs.argmax(-1), labels)
    np.testing.assert_allclose(probs, np.eye(NUM_CLASSES)[labels], atol=1e-6)


def stride_grid_predictor(calls):
    """Class = which half of a 32-voxel stride cell (of its own input) a voxel falls in, along H and W:
    like a strided network, its answer depends on where the input starts."""

    def predict(batch):
        calls.append(batch.shape)
        h = (np.arange(batch.shape[2]) % 32 >= 16)[:, None]
        w = (np.arange(batch.shape[3]) % 32 >= 16)[None, :]
        classes = np.broadcast_to(h + 2 * w, batch.shape[:4])
        return np.eye(NUM_CLASSES, dtype=np.float32)[classes]

    return predict


@pytest.mark.parametrize("patch", [None, (5, 64, 64)])
def test_padding_goes_after_so_the_volume_starts_on_the_stride_grid(patch):
    volume, _ = make_volume((5, 40, 33))
    calls = []
    probs = sliding_window(volume, stride_grid_predictor(calls), patch_size=patch, steps=(5, 32, 32))
    assert calls == [(1, 5, 64, 64, 2)]  # padded to 64 x 64, one pass
    expected = (np.arange(40) % 32 >= 16)[:, None] + 2 * (np.arange(33) % 32 >= 16)[None, :]
    np.testing.assert_array_equal(probs.argmax(-1), np.broadcast_to(expected, (5, 40, 33)))


def test_single_pass_shares_the_stride_grid_of_windows_starting_at_zero():
    volume, _ = make_volume((5, 70, 64))
    calls = []
    single = sliding_window(volume, stride_grid_predictor(calls), patch_size=None)
    windows = sliding_window(volume, stride_grid_predictor(calls), (5, 32, 32), (5, 32, 32))
    # the windows start at H 0, 32 (and 38, end-aligned) and W 0, 32: the voxels before H 38 see the grid at 0
    np.testing.assert_array_equal(single[:, :38].argmax(-1), windows[:, :38].argmax(-1))


@pytest.mark.parametrize(
    "patch, steps, flips",
    [((4, 16, 16), (2, 8, 8), 8), ((1, 16, 16), (1, 8, 8), 4), (None, (1, 1, 1), 8)],
)
def test_mirror_tta_with_equivariant_predictor_changes_nothing(patch, steps, flips):
    volume, labels = make_volume((6, 21, 19))
    plain_calls, tta_calls = [], []
    plain = sliding_window(volume, smoothing_predictor(plain_calls), patch, steps, blend="gaussian")
    tta = sliding_window(volume, smoothing_predictor(tta_calls), patch, steps, blend="gaussian", mirror_tta=True)
    assert len(tta_calls) == flips * len(plain_calls)
    np.testing.assert_allclose(tta, plain, atol=1e-6)
    exact = sliding_window(volume, one_hot_predictor(), patch, steps, mirror_tta=True)
    np.testing.assert_array_equal(exact.argmax(-1), labels)


def test_gaussian_blend_favours_the_nearer_window_centre():
    # Two windows along W start at 0 and 4; the predictor answers class 0 in the first, 1 in the
    # second (channel 0 holds the W coordinate, so a window knows where it starts).
    volume = np.broadcast_to(np.arange(12, dtype=np.float32), (1, 8, 12))[..., None]

    def by_window(batch):
        classes = (batch[:, 0, 0, 0, 0] > 0).astype(int)
        return np.broadcast_to(np.eye(2, dtype=np.float32)[classes][:, None, None, None], batch.shape[:4] + (2,))

    mean = sliding_window(volume, by_window, (1, 8, 8), (1, 4, 4), blend="mean")
    gauss = sliding_window(volume, by_window, (1, 8, 8), (1, 4, 4), blend="gaussian")
    np.testing.assert_allclose(mean[0, 0, 4:8, 1], 0.5)
    # x = 5 lies 1.5 from the first window's centre (3.5) and 2.5 from the second's (7.5).
    assert gauss[0, 0, 5, 0] > 0.5 > gauss[0, 0, 6, 0]
    np.testing.assert_allclose(gauss.sum(-1), 1.0, atol=1e-6)


def test_accepts_a_single_output_mapping_like_a_savedmodel_signature():
    volume, labels = make_volume((4, 16, 16))
    predictor = one_hot_predictor()
    probs = sliding_window(volume, lambda x: {"output_0": predictor(x)}, (4, 16, 16), (4, 8, 8))
    np.testing.assert_array_equal(probs.argmax(-1), labels)


def test_rejects_bad_arguments_and_outputs():
    volume, _ = make_volume((4, 16, 16))
    with pytest.raises(ValueError, match="steps"):
        sliding_window(volume, one_hot_predictor(), (4, 8, 8), (4, 9, 8))
    with pytest.raises(ValueError, match="expected 4 classes|expected 3"):
        sliding_window(volume, one_hot_predictor(), (4, 8, 8), (4, 8, 8), num_classes=3)
    with pytest.raises(ValueError, match="expected"):
        sliding_window(volume, lambda x: x[:, :2], (4, 8, 8), (4, 8, 8))
    with pytest.raises(ValueError, match="blend"):
        sliding_window(volume, one_hot_predictor(), (4, 8, 8), (4, 8, 8), blend="max")
