"""ConvBlock: MultiModel's stack of separable convolution steps with residuals."""

import keras
from keras import ops

from keras_multimodel.errors import InputError
from keras_multimodel.layers import layer_utils
from keras_multimodel.layers.masking import zero_padding
from keras_multimodel.layers.separable_conv import SeparableConv1D


@keras.saving.register_keras_serializable(package="keras_multimodel")
class ConvBlock(keras.layers.Layer):
    """A stack of conv steps `LayerNorm(SeparableConv1D(ReLU(x)))` with residuals.

    This is the convolutional block of MultiModel (Kaiser et al., 2017, section 2.1).
    The paper's block has four steps with kernels 3, 3, 15, 15 (the last dilated by 8)
    and adds a residual after the 2nd and the 4th step: the defaults. Steps are
    grouped `residual_every` at a time and each group's input is added to its output.

    With `causal=False` convolutions are "same"-padded (the encoder); with
    `causal=True` they are left-padded, so the output at position t depends on
    inputs at positions <= t only (the decoder). Padded positions (mask False) are
    zeroed before every convolution, so padding never leaks into real positions.

    For step-by-step decoding, `init_cache` and `step` keep the last
    `(kernel - 1) * dilation` inputs of each conv step; `step` then costs the same
    at every position and its outputs equal those of a full causal call.

    Args:
        filters: output channels. If the input has other channels, the first
            residual is projected with a bias-free dense layer.
        kernel_sizes: one kernel size per conv step.
        dilation_rates: one dilation rate per conv step (same length).
        causal: left-pad the convolutions (decoder) instead of "same" padding.
        residual_every: number of steps between residual connections.
        dropout: dropout rate on each residual branch.
        epsilon: LayerNormalization epsilon.
        kernel_initializer: initializer of the separable convolution kernels.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, length, channels)` tensor.
        mask: optional `(batch, length)` padding mask, True at real positions.
        training: whether dropout is active.

    Returns:
        `(batch, length, filters)` tensor; the mask passes through unchanged.

    Example:
    >>> import numpy as np
    >>> block = ConvBlock(16, causal=True)
    >>> x = np.random.rand(2, 10, 16).astype("float32")
    >>> tuple(block(x).shape)
    (2, 10, 16)
    """

    def __init__(
        self,
        filters,
        kernel_sizes=(3, 3, 15, 15),
        dilation_rates=(1, 1, 1, 8),
        causal=False,
        residual_every=2,
        dropout=0.0,
        epsilon=1e-6,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        name = "ConvBlock"
        self.filters = layer_utils.check_positive_int(name, "filters", filters)
        self.kernel_sizes = layer_utils.check_positive_int_tuple(name, "kernel_sizes", kernel_sizes)
        self.dilation_rates = layer_utils.check_positive_int_tuple(
            name, "dilation_rates", dilation_rates
        )
        if len(self.kernel_sizes) != len(self.dilation_rates):
            raise InputError(
                f"{name}: `kernel_sizes` and `dilation_rates` need one entry per conv step; "
                f"received {len(self.kernel_sizes)} kernel sizes {self.kernel_sizes} and "
                f"{len(self.dilation_rates)} dilation rates {self.dilation_rates}."
            )
        self.causal = bool(causal)
        self.residual_every = layer_utils.check_positive_int(name, "residual_every", residual_every)
        self.dropout = layer_utils.check_rate(name, "dropout", dropout)
        self.epsilon = epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = True

    @property
    def receptive_fields(self):
        """Past inputs each conv step needs: `(kernel - 1) * dilation` per step."""
        return tuple(
            (k - 1) * d for k, d in zip(self.kernel_sizes, self.dilation_rates, strict=True)
        )

    def build(self, input_shape):
        layer_utils.check_rank("ConvBlock", input_shape, 3)
        channels = self._input_channels = input_shape[-1]
        self.projection = None
        if channels != self.filters:
            self.projection = keras.layers.Dense(
                self.filters, use_bias=False, dtype=self.dtype_policy, name="projection"
            )
            self.projection.build(input_shape)
        self.convs, self.norms = [], []
        for i, (kernel, dilation) in enumerate(
            zip(self.kernel_sizes, self.dilation_rates, strict=True)
        ):
            conv = SeparableConv1D(
                self.filters,
                kernel,
                dilation_rate=dilation,
                kernel_initializer=self.kernel_initializer,
                dtype=self.dtype_policy,
                name=f"conv_{i}",
            )
            conv.build((None, None, channels if i == 0 else self.filters))
            norm = keras.layers.LayerNormalization(
                epsilon=self.epsilon, dtype=self.dtype_policy, name=f"norm_{i}"
            )
            norm.build((None, None, self.filters))
            self.convs.append(conv)
            self.norms.append(norm)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.built = True

    def _closes_residual(self, i):
        return (i + 1) % self.residual_every == 0 or i == len(self.convs) - 1

    def _residual(self, x):
        return x if self.projection is None else self.projection(x)

    def call(self, inputs, mask=None, training=None):
        x = inputs
        residual = self._residual(x)
        for i, (conv, norm, field) in enumerate(
            zip(self.convs, self.norms, self.receptive_fields, strict=True)
        ):
            h = zero_padding(ops.relu(x), mask)  # (B, T, C)
            before = field if self.causal else field // 2
            h = ops.pad(h, [[0, 0], [before, field - before], [0, 0]])  # (B, field + T, C)
            x = norm(conv(h))  # (B, T, filters)
            if self._closes_residual(i):
                x = residual + self.dropout_layer(x, training=training)
                residual = x
        return x

    def init_cache(self, batch_size):
        """Zero state for `step`: one `(batch, receptive_field, channels)` buffer per step."""
        self._check_causal("init_cache")
        channels = [self._input_channels] + [self.filters] * (len(self.convs) - 1)
        return tuple(
            ops.zeros((batch_size, field, c), dtype=self.compute_dtype)
            for field, c in zip(self.receptive_fields, channels, strict=True)
        )

    def step(self, inputs, cache):
        """Runs one decoding position.

        Args:
            inputs: `(batch, 1, channels)`, the input at the current position.
            cache: the state from `init_cache` or the previous `step`.

        Returns:
            `(outputs, cache)`: outputs `(batch, 1, filters)` equal to position t of a
            full causal call, and the state for position t + 1.
        """
        self._check_causal("step")
        x = ops.cast(inputs, self.compute_dtype)
        residual = self._residual(x)
        new_cache = []
        for i, (conv, norm, buffer) in enumerate(zip(self.convs, self.norms, cache, strict=True)):
            window = ops.concatenate([buffer, ops.relu(x)], axis=1)  # (B, field + 1, C)
            new_cache.append(window[:, 1:])
            x = norm(conv(window))  # (B, 1, filters)
            if self._closes_residual(i):
                x = residual + x
                residual = x
        return x, tuple(new_cache)

    def _check_causal(self, method):
        if not self.causal:
            raise InputError(
                f"ConvBlock.{method}() is for step-by-step decoding, which needs a causal "
                "block; create the block with `causal=True`."
            )
        if not self.built:
            raise InputError(
                f"ConvBlock.{method}() needs a built block: call it once on an input of "
                "shape (batch, length, channels) or call `build(input_shape)` first."
            )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_sizes": self.kernel_sizes,
                "dilation_rates": self.dilation_rates,
                "causal": self.causal,
                "residual_every": self.residual_every,
                "dropout": self.dropout,
                "epsilon": self.epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
