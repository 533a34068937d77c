"""Separable 1-D convolution built from shifted multiply-adds, with a hand-written gradient.

XLA on CPU runs a depthwise convolution (`feature_group_count = channels`) through
its generic convolution emitter, far slower than this formulation, above all
backward. A depthwise convolution is k shifted copies of the input scaled per
channel; written that way it fuses into one elementwise loop. Its gradient is
written out too (`ops.custom_gradient`), because the automatic one (k pads, k
reductions) does not fuse (benchmarks/README.md#separable_convpy-our-depthwise-
convolution-against-the-backends).
"""

import keras
from keras import ops

from keras_multimodel.layers import layer_utils


def _shifted_sum(x, kernel, dilation, length, offset=0, step=1):
    # sum_j x[:, offset + step*j*dilation : ... + length] * kernel[j]
    out = None
    for j in range(kernel.shape[0]):
        start = offset + step * j * dilation
        term = x[:, start : start + length] * kernel[j]
        out = term if out is None else out + term
    return out


def depthwise_conv1d(x, kernel, dilation=1):
    """ "Valid" depthwise convolution: `x` `(B, T + (k-1)*dilation, C)`, `kernel` `(k, C)`.

    Returns `(B, T, C)` with `out[t] = sum_j x[t + j * dilation] * kernel[j]`.

    >>> import numpy as np
    >>> x = np.arange(5, dtype="float32").reshape(1, 5, 1)
    >>> np.asarray(depthwise_conv1d(x, np.array([[1.0], [10.0]], "float32")))[0, :, 0]
    array([10., 21., 32., 43.], dtype=float32)
    """
    x = ops.convert_to_tensor(x)  # (torch: numpy arrays do not mix with tensors)
    kernel = ops.copy(kernel)  # a tensor, not a variable, inside the custom gradient
    k = kernel.shape[0]
    field = (k - 1) * dilation

    @ops.custom_gradient
    def conv(x, kernel):
        length = ops.shape(x)[1] - field
        y = _shifted_sum(x, kernel, dilation, length)

        def grad(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream  # (B, T, C)
            # d x[s] = sum_j upstream[s - j*dilation] * kernel[j]: a depthwise
            # convolution of the zero-padded upstream with the reversed kernel.
            padded = ops.pad(upstream, [[0, 0], [field, field], [0, 0]])
            dx = _shifted_sum(padded, kernel, dilation, length + field, offset=field, step=-1)
            dkernel = ops.stack(
                [
                    ops.sum(upstream * x[:, j * dilation : j * dilation + length], axis=(0, 1))
                    for j in range(k)
                ]
            )  # (k, C)
            return dx, dkernel

        return y, grad

    return conv(x, kernel)


@keras.saving.register_keras_serializable(package="keras_multimodel")
class SeparableConv1D(keras.layers.Layer):
    """Bias-free separable convolution on pre-padded inputs ("valid" padding).

    A depthwise convolution (`kernel_size` taps per channel, dilated) followed by
    a pointwise projection to `filters`. Callers pad: `ConvBlock` left-pads for
    causal convolutions and pads both sides for "same" ones.

    Args:
        filters: output channels.
        kernel_size: taps of the depthwise convolution.
        dilation_rate: spacing of the taps.
        kernel_initializer: initializer of both kernels.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        x: `(batch, length + (kernel_size - 1) * dilation_rate, channels)`.

    Returns:
        `(batch, length, filters)`.
    """

    def __init__(
        self, filters, kernel_size, dilation_rate=1, kernel_initializer="glorot_uniform", **kwargs
    ):
        super().__init__(**kwargs)
        name = "SeparableConv1D"
        self.filters = layer_utils.check_positive_int(name, "filters", filters)
        self.kernel_size = layer_utils.check_positive_int(name, "kernel_size", kernel_size)
        self.dilation_rate = layer_utils.check_positive_int(name, "dilation_rate", dilation_rate)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    @property
    def receptive_field(self):
        return (self.kernel_size - 1) * self.dilation_rate

    def build(self, input_shape):
        channels = input_shape[-1]
        self.depthwise_kernel = self.add_weight(
            name="depthwise_kernel",
            shape=(self.kernel_size, channels),
            initializer=layer_utils.clone_initializer(self.kernel_initializer),
        )
        self.pointwise_kernel = self.add_weight(
            name="pointwise_kernel",
            shape=(channels, self.filters),
            initializer=layer_utils.clone_initializer(self.kernel_initializer),
        )
        self.built = True

    def call(self, x):
        if self.kernel_size == 1:
            h = x * self.depthwise_kernel[0]
        else:
            h = depthwise_conv1d(x, self.depthwise_kernel, self.dilation_rate)  # (B, T, C)
        return ops.matmul(h, self.pointwise_kernel)  # (B, T, filters)

    def compute_output_shape(self, input_shape):
        length = input_shape[1]
        if length is not None:
            length -= self.receptive_field
        return (input_shape[0], length, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "dilation_rate": self.dilation_rate,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config


def depthwise_conv2d(x, kernel):
    """ "Same"-padded, stride-1 depthwise convolution of images with `kernel` `(kh, kw, C)`.

    One `depthwise_conv1d` along the width per kernel row, on the rows shifted by
    that row's offset, so it shares the fast fused path and its gradient.
    `x` is `(B, H, W, C)`; returns the same shape.
    """
    kernel = ops.copy(kernel)
    kh, kw = kernel.shape[0], kernel.shape[1]
    top, left = (kh - 1) // 2, (kw - 1) // 2
    x = ops.pad(x, [[0, 0], [top, kh - 1 - top], [left, kw - 1 - left], [0, 0]])
    batch, height = ops.shape(x)[0], ops.shape(x)[1] - (kh - 1)
    width, channels = ops.shape(x)[2], ops.shape(x)[3]
    out = None
    for r in range(kh):
        rows = ops.reshape(x[:, r : r + height], (-1, width, channels))  # (B*H, W+kw-1, C)
        term = depthwise_conv1d(rows, kernel[r])  # (B*H, W, C)
        out = term if out is None else out + term
    return ops.reshape(out, (batch, height, width - (kw - 1), channels))


@keras.saving.register_keras_serializable(package="keras_multimodel")
class SeparableConv2D(keras.layers.Layer):
    """Bias-free 3x3 "same" separable convolution on the fast depthwise path.

    The 2-D twin of `SeparableConv1D` (the image modality's entry flow): replaces
    `keras.layers.SeparableConv2D`, whose grouped convolution is slow under XLA on
    CPU (see `benchmarks/separable_conv.py`).
    """

    def __init__(self, filters, kernel_size=3, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size

    def build(self, input_shape):
        channels = input_shape[-1]
        size = self.kernel_size
        self.depthwise_kernel = self.add_weight(
            name="depthwise_kernel", shape=(size, size, channels), initializer="glorot_uniform"
        )
        self.pointwise_kernel = self.add_weight(
            name="pointwise_kernel", shape=(channels, self.filters), initializer="glorot_uniform"
        )
        self.built = True

    def call(self, x):
        return ops.matmul(depthwise_conv2d(x, self.depthwise_kernel), self.pointwise_kernel)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "kernel_size": self.kernel_size})
        return config
