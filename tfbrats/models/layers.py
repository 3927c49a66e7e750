"""Conv3D layers whose kernel is flat along depth or in-plane, computed as 2-D convolutions.

AlbuNet's kernels are (1, k, k) (encoder, decoder convs, transposed convs) or (k, 1, 1) (depth
layers). Each is exactly a 2-D convolution on a reshaped tensor: (1, k, k) folds depth into the
batch, (k, 1, 1) folds height and width into one axis. The weights keep the Conv3D shape, so
pretrained and saved weights load unchanged, and the outputs are the same numbers; what changes is
the kernel TensorFlow runs on the CPU: its Conv3D gradients are several times slower than the
Conv2D ones (the (1, 7, 7) stem's filter gradient on batch 2 of 8x64x64 took 1.9 s against 0.012 s
folded; `python tools/benchmark.py train_step` measures the whole step).
"""

from __future__ import annotations

import keras
from keras import layers, ops


def _fold_depth(inputs):
    """(B, D, H, W, C) -> (B * D, H, W, C) and the original dynamic shape."""
    shape = ops.shape(inputs)
    return ops.reshape(inputs, (-1, shape[2], shape[3], shape[4])), shape


def _unfold_depth(outputs, shape):
    """(B * D, H', W', F) -> (B, D, H', W', F)."""
    folded = ops.shape(outputs)
    return ops.reshape(outputs, (shape[0], shape[1], folded[1], folded[2], folded[3]))


@keras.saving.register_keras_serializable(package="tfbrats")
class FoldedConv3D(layers.Conv3D):
    """`keras.layers.Conv3D` for kernels (1, kh, kw) or (kd, 1, 1), run as a 2-D convolution.

    Same arguments, weights and outputs as `Conv3D` (channels-last only). A (1, kh, kw) kernel with
    depth stride 1 convolves every slice on its own: depth goes into the batch. A (kd, 1, 1) kernel
    with in-plane stride 1 convolves along depth only: height and width become one axis.

    Example:
        >>> import numpy as np
        >>> layer = FoldedConv3D(8, (1, 3, 3), padding="same")
        >>> tuple(layer(np.zeros((2, 4, 16, 16, 3), "float32")).shape)
        (2, 4, 16, 16, 8)
    """

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if self.data_format != "channels_last":
            raise ValueError(f"{type(self).__name__} supports data_format='channels_last' only")
        if self.groups != 1:
            raise ValueError(f"{type(self).__name__} supports groups=1 only, got {self.groups}")
        kd, kh, kw = self.kernel_size
        self._slice_wise = kd == 1 and self.strides[0] == 1 and self.dilation_rate[0] == 1
        depth_wise = kh == kw == 1 and self.strides[1:] == (1, 1) and self.dilation_rate[1:] == (1, 1)
        if not (self._slice_wise or depth_wise):
            raise ValueError(
                f"{type(self).__name__} needs a kernel flat along depth (1, kh, kw) or in-plane (kd, 1, 1) "
                f"with stride 1 along the flat axes; got kernel {self.kernel_size}, strides {self.strides}"
            )

    def convolution_op(self, inputs, kernel):
        if self._slice_wise:
            strides = self.strides[1:]
            if self.kernel_size[1:] == (1, 1) and strides != (1, 1):
                # A 1x1 kernel only samples the grid: slice, then convolve with stride 1 (the same
                # outputs for "same" and "valid", on a quarter of the input). TF 2.16's oneDNN Conv2D
                # filter gradient for a strided 1x1 kernel was measured wrong (off by 92 where it is
                # 200) on a CPU without AVX512; on one with AVX512_BF16 neither TF 2.16 nor 2.21 shows
                # it. tests/models/test_layers.py compares the gradients with Conv3D's on every stack.
                inputs = inputs[:, :, :: strides[0], :: strides[1], :]
                strides = (1, 1)
            folded, shape = _fold_depth(inputs)
            outputs = ops.conv(folded, kernel[0], strides=strides, padding=self.padding,
                               dilation_rate=self.dilation_rate[1:], data_format="channels_last")
            return _unfold_depth(outputs, shape)
        shape = ops.shape(inputs)
        folded = ops.reshape(inputs, (shape[0], shape[1], -1, shape[4]))  # (B, D, H * W, C)
        outputs = ops.conv(folded, kernel[:, 0], strides=(self.strides[0], 1), padding=self.padding,
                           dilation_rate=(self.dilation_rate[0], 1), data_format="channels_last")
        return ops.reshape(outputs, (shape[0], ops.shape(outputs)[1], shape[2], shape[3], self.filters))


@keras.saving.register_keras_serializable(package="tfbrats")
class FoldedConv3DTranspose(layers.Conv3DTranspose):
    """`keras.layers.Conv3DTranspose` for kernels (1, kh, kw) with depth stride 1, run slice by slice.

    Same arguments, weights and outputs as `Conv3DTranspose` (channels-last, no output padding).

    Example:
        >>> import numpy as np
        >>> layer = FoldedConv3DTranspose(8, (1, 4, 4), strides=(1, 2, 2), padding="same")
        >>> tuple(layer(np.zeros((2, 4, 16, 16, 3), "float32")).shape)
        (2, 4, 32, 32, 8)
    """

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if self.data_format != "channels_last" or self.output_padding is not None:
            raise ValueError(f"{type(self).__name__} supports channels_last without output_padding only")
        if self.kernel_size[0] != 1 or self.strides[0] != 1 or self.dilation_rate[0] != 1:
            raise ValueError(
                f"{type(self).__name__} needs a (1, kh, kw) kernel with depth stride 1; "
                f"got kernel {self.kernel_size}, strides {self.strides}"
            )

    def call(self, inputs):
        folded, shape = _fold_depth(inputs)
        outputs = ops.conv_transpose(folded, self.kernel[0], strides=self.strides[1:], padding=self.padding,
                                     dilation_rate=self.dilation_rate[1:], data_format="channels_last")
        outputs = _unfold_depth(outputs, shape)
        if self.use_bias:
            outputs = ops.add(outputs, self.bias)
        if self.activation is not None:
            return self.activation(outputs)
        return outputs
