"""The three layers MultiModel is built from, and their helpers."""

from keras_multimodel.layers.attention_block import AttentionBlock
from keras_multimodel.layers.conv_block import ConvBlock
from keras_multimodel.layers.masking import attention_mask, zero_padding
from keras_multimodel.layers.moe_layer import MoELayer
from keras_multimodel.layers.timing_signal import add_timing_signal, timing_signal

__all__ = [
    "AttentionBlock",
    "ConvBlock",
    "MoELayer",
    "add_timing_signal",
    "attention_mask",
    "timing_signal",
    "zero_padding",
]
