"""MultiModel's body: encoder, I/O mixer and decoder (Kaiser et al., 2017, section 2.4).

Notation: B batch, S encoded input positions, T target positions, d hidden size.
Each part has `init_cache`/`step` for decoding one target position at a time with
the same outputs as a full call (causal convolutions keep their last inputs,
attention keeps its keys and values, the MoE runs without drops).
"""

import keras
from keras import ops

from keras_multimodel.layers import AttentionBlock, ConvBlock, MoELayer
from keras_multimodel.layers.layer_utils import built
from keras_multimodel.models.presets import BodyConfig


class _BodyPart(keras.layers.Layer):
    """Shared constructor: the body configuration and sublayer factories.

    Args:
        config: a `BodyConfig` (or its `to_dict()`).
        **kwargs: base `keras.layers.Layer` arguments.
    """

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = config if isinstance(config, BodyConfig) else BodyConfig.from_dict(config)
        self.supports_masking = True  # masks are passed explicitly

    def _conv_block(self, name, causal, input_channels=None):
        c = self.config
        block = ConvBlock(
            c.hidden_size,
            c.kernel_sizes,
            c.dilation_rates,
            causal=causal,
            dropout=c.dropout,
            dtype=self.dtype_policy,
            name=name,
        )
        return built(block, (None, None, input_channels or c.hidden_size))

    def _attention(self, name):
        c = self.config
        shape = (None, None, c.hidden_size)
        if not c.use_attention:
            return built(MeanContext(dtype=self.dtype_policy, name=name), shape, shape)
        attention = AttentionBlock(
            c.num_heads, dropout=c.dropout, dtype=self.dtype_policy, name=name
        )
        return built(attention, shape, shape)

    def _moe(self, name):
        c = self.config
        if not c.use_moe:
            return None
        moe = MoELayer(
            c.num_experts,
            c.expert_hidden_size,
            top_k=c.top_k,
            capacity_factor=c.capacity_factor,
            eval_capacity_factor=c.eval_capacity_factor,
            loss_coef=c.moe_loss_coef,
            dropout=c.dropout,
            num_groups=c.moe_num_groups,
            dtype=self.dtype_policy,
            name=name,
        )
        return built(moe, (None, None, c.hidden_size))

    def get_config(self):
        config = super().get_config()
        config.update({"config": self.config.to_dict()})
        return config


@keras.saving.register_keras_serializable(package="keras_multimodel")
class Encoder(_BodyPart):
    """`encoder_blocks` ConvBlocks ("same" padding) with an MoELayer in the middle.

    Call: `encoder(x (B, S, d), mask (B, S))` -> `(B, S, d)`; with
    `return_moe_terms=True`, `((B, S, d), terms)`: the list of the MoE's terms
    (`MoELayer(..., return_terms=True)`), empty without an MoE.
    """

    def build(self, input_shape=None):
        blocks = self.config.encoder_blocks
        self.blocks = [self._conv_block(f"conv_block_{i}", causal=False) for i in range(blocks)]
        self.moe_position = blocks // 2
        self.moe = self._moe("moe")
        self.built = True

    def call(self, x, mask=None, training=None, return_moe_terms=False):
        terms = []
        for i, block in enumerate(self.blocks):
            if i == self.moe_position and self.moe is not None:
                x = _moe_call(self.moe, x, mask, training, return_moe_terms, terms)
            x = block(x, mask=mask, training=training)
        return (x, terms) if return_moe_terms else x


@keras.saving.register_keras_serializable(package="keras_multimodel")
class IOMixer(_BodyPart):
    """Mixes the encoded inputs into the shifted targets.

    `q = ConvBlock_causal(shifted)`, `a = Attention(q -> encoded)`, then
    `ConvBlock_causal(concat[a, shifted])` -> `(B, T, d)`. Causal, so position t
    sees targets before t only.
    """

    def build(self, input_shape=None):
        d = self.config.hidden_size
        self.query_conv = self._conv_block("query_conv_block", causal=True)
        self.attention = self._attention("attention")
        self.output_conv = self._conv_block("output_conv_block", causal=True, input_channels=2 * d)
        self.built = True

    def call(self, shifted, encoded, mask=None, encoded_mask=None, training=None):
        query = self.query_conv(shifted, mask=mask, training=training)  # (B, T, d)
        attended = self.attention(
            query, context=encoded, mask=mask, context_mask=encoded_mask, training=training
        )
        mixed = ops.concatenate([attended, shifted], axis=-1)  # (B, T, 2d)
        return self.output_conv(mixed, mask=mask, training=training)  # (B, T, d)

    def init_cache(self, encoded):
        batch = ops.shape(encoded)[0]
        return {
            "query_conv": self.query_conv.init_cache(batch),
            "attention": self.attention.init_cache(batch, None, context=encoded),
            "output_conv": self.output_conv.init_cache(batch),
        }

    def step(self, shifted, cache, index, encoded_mask):
        query, query_cache = self.query_conv.step(shifted, cache["query_conv"])
        attended, _ = self.attention.step(
            query, cache["attention"], index, context_mask=encoded_mask
        )
        mixed = ops.concatenate([attended, ops.cast(shifted, attended.dtype)], axis=-1)
        output, output_cache = self.output_conv.step(mixed, cache["output_conv"])
        return output, {
            "query_conv": query_cache,
            "attention": cache["attention"],
            "output_conv": output_cache,
        }


@keras.saving.register_keras_serializable(package="keras_multimodel")
class Decoder(_BodyPart):
    """`decoder_layers` of causal ConvBlock + attention to the encoded inputs, with an
    MoELayer in the middle. Call: `decoder(x (B, T, d), encoded (B, S, d), ...)`;
    `return_moe_terms` as for the `Encoder`.
    """

    def build(self, input_shape=None):
        layers = self.config.decoder_layers
        self.blocks = [self._conv_block(f"conv_block_{i}", causal=True) for i in range(layers)]
        self.attentions = [self._attention(f"attention_{i}") for i in range(layers)]
        self.moe_position = layers // 2
        self.moe = self._moe("moe")
        self.built = True

    def call(
        self,
        x,
        encoded,
        mask=None,
        encoded_mask=None,
        training=None,
        decoding=False,
        return_moe_terms=False,
    ):
        terms = []
        for i, (block, attention) in enumerate(zip(self.blocks, self.attentions, strict=True)):
            if i == self.moe_position and self.moe is not None:
                if decoding:  # no drops and no balancing loss, like `step`
                    x = self.moe.step(x, mask)
                else:
                    x = _moe_call(self.moe, x, mask, training, return_moe_terms, terms)
            x = block(x, mask=mask, training=training)
            x = attention(
                x, context=encoded, mask=mask, context_mask=encoded_mask, training=training
            )
        return (x, terms) if return_moe_terms else x

    def init_cache(self, encoded):
        batch = ops.shape(encoded)[0]
        return {
            "conv": [block.init_cache(batch) for block in self.blocks],
            "attention": [a.init_cache(batch, None, context=encoded) for a in self.attentions],
        }

    def step(self, x, cache, index, encoded_mask):
        conv_caches = []
        for i, (block, attention, conv_cache, attention_cache) in enumerate(
            zip(self.blocks, self.attentions, cache["conv"], cache["attention"], strict=True)
        ):
            if i == self.moe_position and self.moe is not None:
                x = self.moe.step(x)
            x, conv_cache = block.step(x, conv_cache)
            x, _ = attention.step(x, attention_cache, index, context_mask=encoded_mask)
            conv_caches.append(conv_cache)
        return x, {"conv": conv_caches, "attention": cache["attention"]}


def _moe_call(moe, x, mask, training, return_terms, terms):
    """`moe(x)`; with `return_terms`, its terms go into the list `terms`."""
    if not return_terms:
        return moe(x, mask=mask, training=training)
    x, moe_terms = moe(x, mask=mask, training=training, return_terms=True)
    terms.append(moe_terms)
    return x


class MeanContext(keras.layers.Layer):
    """Attention's stand-in for the "without attention" ablation: every position
    gets the same context, the masked mean of the encoded inputs, projected and
    added residually, then layer-normalised (as `AttentionBlock` does).

    It keeps `AttentionBlock`'s cross-attention interface (`call`, `init_cache`,
    `step`), so the body and cached decoding run unchanged.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # masks are passed explicitly

    def build(self, x_shape, context_shape=None):
        self.projection = keras.layers.Dense(
            x_shape[-1], dtype=self.dtype_policy, name="projection"
        )
        self.projection.build(tuple(context_shape or x_shape))
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6, dtype=self.dtype_policy)
        self.norm.build(x_shape)
        self.built = True

    def call(self, x, context=None, mask=None, context_mask=None, training=None):
        context = ops.cast(context, self.compute_dtype)
        if context_mask is None:
            mean = ops.mean(context, axis=1, keepdims=True)
        else:
            weights = ops.cast(context_mask, self.compute_dtype)[:, :, None]  # (B, S, 1)
            total = ops.sum(context * weights, axis=1, keepdims=True)
            mean = total / ops.maximum(ops.sum(weights, axis=1, keepdims=True), 1.0)
        return self.norm(ops.cast(x, self.compute_dtype) + self.projection(mean))

    def init_cache(self, batch_size, max_length, context=None):
        return {"context": ops.cast(context, self.compute_dtype)}

    def step(self, x, cache, index, context_mask=None):
        return self.call(x, cache["context"], context_mask=context_mask), cache

    def compute_output_shape(self, x_shape, context_shape=None):
        return tuple(x_shape)
