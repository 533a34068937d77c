"""AttentionBlock: multi-head dot-product attention with timing signals and a KV cache."""

import math

import keras
from keras import ops

from keras_multimodel.errors import InputError
from keras_multimodel.layers import layer_utils
from keras_multimodel.layers.masking import attention_mask
from keras_multimodel.layers.timing_signal import add_timing_signal


@keras.saving.register_keras_serializable(package="keras_multimodel")
class AttentionBlock(keras.layers.Layer):
    """Multi-head dot-product attention followed by residual and LayerNorm.

    MultiModel's attention block (Kaiser et al., 2017, section 2.2): sinusoidal timing
    signals are added to the attention inputs, queries attend to `context`
    (cross-attention) or to `x` itself (self-attention), and the result is
    `LayerNorm(x + Dropout(attention))`.

    Masking: `mask` `(B, T)` marks real query positions (and real keys in
    self-attention); `context_mask` `(B, S)` marks real context positions. Masked
    keys get no weight. With `causal=True` (self-attention only) position t attends
    to positions <= t.

    Decoding: `init_cache(batch_size, max_length)` allocates a fixed-size key/value
    cache `(B, max_length, heads, key_dim)`; `step(x_t, cache, index)` writes
    position `index` in place and attends to positions <= index, so one compiled
    step serves every position. For cross-attention, `init_cache(..., context=c)`
    projects the context once. Steps equal a full call.

    Args:
        num_heads: number of attention heads.
        key_dim: size of each head for queries and keys; defaults to
            `channels // num_heads`.
        value_dim: size of each head for values; defaults to `key_dim`.
        causal: mask future positions in self-attention (decoder).
        dropout: dropout rate on the attention output before the residual.
        use_timing_signal: add sinusoidal timing signals to the attention inputs.
        epsilon: LayerNormalization epsilon.
        kernel_initializer: initializer of the projection kernels.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        x: `(batch, length, channels)` queries (and keys/values in self-attention).
        context: optional `(batch, context_length, context_channels)` keys/values.
        mask: optional `(batch, length)` padding mask of `x`.
        context_mask: optional `(batch, context_length)` padding mask of `context`.
        training: whether dropout is active.

    Returns:
        `(batch, length, channels)`, same shape as `x`.

    Example:
    >>> import numpy as np
    >>> block = AttentionBlock(num_heads=2, causal=True)
    >>> x = np.random.rand(2, 7, 8).astype("float32")
    >>> tuple(block(x).shape)
    (2, 7, 8)
    """

    def __init__(
        self,
        num_heads,
        key_dim=None,
        value_dim=None,
        causal=False,
        dropout=0.0,
        use_timing_signal=True,
        epsilon=1e-6,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        name = "AttentionBlock"
        self.num_heads = layer_utils.check_positive_int(name, "num_heads", num_heads)
        if key_dim is not None:
            layer_utils.check_positive_int(name, "key_dim", key_dim)
        if value_dim is not None:
            layer_utils.check_positive_int(name, "value_dim", value_dim)
        self.key_dim = key_dim
        self.value_dim = value_dim
        self.causal = bool(causal)
        self.dropout = layer_utils.check_rate(name, "dropout", dropout)
        self.use_timing_signal = bool(use_timing_signal)
        self.epsilon = epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = True

    def build(self, x_shape, context_shape=None):
        layer_utils.check_rank("AttentionBlock", x_shape, 3)
        channels = x_shape[-1]
        if context_shape is not None:
            layer_utils.check_rank("AttentionBlock", context_shape, 3, what="context")
        source_channels = channels if context_shape is None else context_shape[-1]
        if self.key_dim is None and channels % self.num_heads:
            raise InputError(
                f"AttentionBlock: channels ({channels}) must be divisible by num_heads "
                f"({self.num_heads}) when `key_dim` is not given; pass `key_dim` or change "
                "`num_heads`."
            )
        self._key_dim = self.key_dim or channels // self.num_heads
        self._value_dim = self.value_dim or self._key_dim
        self._is_cross_attention = context_shape is not None

        def projection(name, equation, output_shape, input_shape):
            layer = keras.layers.EinsumDense(
                equation,
                output_shape=output_shape,
                kernel_initializer=layer_utils.clone_initializer(self.kernel_initializer),
                dtype=self.dtype_policy,
                name=name,
            )
            layer.build(input_shape)
            return layer

        heads, key_dim, value_dim = self.num_heads, self._key_dim, self._value_dim
        x_in, source_in = (None, None, channels), (None, None, source_channels)
        self.query_dense = projection("query", "btd,dnh->btnh", (None, heads, key_dim), x_in)
        self.key_dense = projection("key", "bsd,dnh->bsnh", (None, heads, key_dim), source_in)
        self.value_dense = projection("value", "bsd,dnh->bsnh", (None, heads, value_dim), source_in)
        self.output_dense = projection(
            "attention_output", "btnh,nhd->btd", (None, channels), (None, None, heads, value_dim)
        )
        self.norm = keras.layers.LayerNormalization(
            epsilon=self.epsilon, dtype=self.dtype_policy, name="norm"
        )
        self.norm.build(x_shape)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.built = True

    def _timed(self, x, start=0):
        return add_timing_signal(x, start) if self.use_timing_signal else x

    def _attend(self, x, query, key, value, mask, training):
        # query (B, T, N, H); key, value (B, S, N, H); mask broadcastable to (B, N, T, S).
        attended = ops.dot_product_attention(
            query, key, value, mask=mask, scale=1.0 / math.sqrt(self._key_dim)
        )
        output = self.output_dense(attended)  # (B, T, C)
        return self.norm(x + self.dropout_layer(output, training=training))

    def _check_context(self, context):
        if self._is_cross_attention and context is None:
            raise InputError(
                "AttentionBlock: this block was built for cross-attention; pass `context`."
            )
        if not self._is_cross_attention and context is not None:
            raise InputError(
                "AttentionBlock: this block was built for self-attention (first called "
                "without `context`); use a separate block for cross-attention."
            )

    def call(self, x, context=None, mask=None, context_mask=None, training=None):
        if context is not None and self.causal:
            raise InputError(
                "AttentionBlock: `causal=True` applies to self-attention; call it without "
                "`context`, or create the cross-attention block with `causal=False`."
            )
        self._check_context(context)
        source, source_mask = (x, mask) if context is None else (context, context_mask)
        query = self.query_dense(self._timed(x))  # (B, T, N, H)
        timed_source = self._timed(source)
        key = self.key_dense(timed_source)  # (B, S, N, H)
        value = self.value_dense(timed_source)  # (B, S, N, H)
        mask = attention_mask(ops.shape(x)[1], key_mask=source_mask, causal=self.causal)
        return self._attend(x, query, key, value, mask, training)

    def init_cache(self, batch_size, max_length, context=None):
        """Decoding state: `{"key", "value"}` of shape `(batch, max_length, heads, dim)`.

        For cross-attention pass `context` `(batch, S, channels)`; its keys and values
        are projected once here and `max_length` is ignored.
        """
        if not self.built:
            raise InputError("AttentionBlock.init_cache() needs a built block: call it once first.")
        self._check_context(context)
        if context is not None:
            timed = self._timed(ops.cast(context, self.compute_dtype))
            return {"key": self.key_dense(timed), "value": self.value_dense(timed)}
        if not self.causal:
            raise InputError(
                "AttentionBlock.init_cache(): step-by-step self-attention needs a causal "
                "block; create it with `causal=True`."
            )
        shape = (batch_size, max_length, self.num_heads)
        return {
            "key": ops.zeros(shape + (self._key_dim,), dtype=self.compute_dtype),
            "value": ops.zeros(shape + (self._value_dim,), dtype=self.compute_dtype),
        }

    def step(self, x, cache, index, context_mask=None):
        """Runs decoding position `index` (an int or a scalar int tensor).

        Args:
            x: `(batch, 1, channels)` input at position `index`.
            cache: the state from `init_cache` or the previous `step`.
            index: the position being decoded.
            context_mask: `(batch, S)` padding mask of the context (cross-attention).

        Returns:
            `(outputs, cache)`: outputs `(batch, 1, channels)` and the updated cache.
        """
        x = ops.cast(x, self.compute_dtype)
        timed = self._timed(x, start=index)
        query = self.query_dense(timed)  # (B, 1, N, H)
        if self._is_cross_attention:
            key, value = cache["key"], cache["value"]
            mask = attention_mask(1, key_mask=context_mask)
        else:
            start = (0, index, 0, 0)
            key = ops.slice_update(cache["key"], start, self.key_dense(timed))
            value = ops.slice_update(cache["value"], start, self.value_dense(timed))
            cache = {"key": key, "value": value}
            length_mask = ops.ones(ops.shape(key)[:2], dtype="bool")  # (B, max_length)
            mask = attention_mask(1, key_mask=length_mask, causal=True, query_offset=index)
        return self._attend(x, query, key, value, mask, training=False), cache

    def compute_output_shape(self, x_shape, context_shape=None):
        return tuple(x_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "value_dim": self.value_dim,
                "causal": self.causal,
                "dropout": self.dropout,
                "use_timing_signal": self.use_timing_signal,
                "epsilon": self.epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
