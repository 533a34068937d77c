"""Class-label modality: the decoder's first output -> class logits."""

import keras
from keras import ops

from keras_multimodel.modalities.base import Modality, register_modality


@register_modality
class ClassLabel(Modality):
    """Class-label modality net (target only): one decoder position -> class logits.

    For a label target the decoder runs one position, the task's command token;
    the top maps its output to `num_classes` logits. Targets are int class ids
    `(batch,)`; `generate` returns the argmax class ids.

    Args:
        num_classes: number of classes.
        label_smoothing: label smoothing of the loss (0 by default).
        **kwargs: `Modality` arguments.

    Example:
    >>> import numpy as np
    >>> net = ClassLabel(10).bind(hidden_size=16)
    >>> tuple(net.top(np.zeros((2, 1, 16), "float32")).shape)
    (2, 1, 10)
    """

    can_be_input = False
    is_sequence = False

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                f"ClassLabel: `num_classes` must be an int >= 2; received {num_classes!r}."
            )
        self.num_classes = num_classes

    def build(self, input_shape=None):
        d = self._require_hidden_size()
        self.logits = keras.layers.Dense(self.num_classes, dtype=self.dtype_policy, name="logits")
        self.logits.build((None, None, d))
        self.built = True

    def target_tokens(self, targets):
        return ops.reshape(ops.cast(targets, "int32"), (-1, 1))  # (B, 1)

    def target_mask(self, tokens):
        return ops.ones(ops.shape(tokens), dtype="float32")

    def top(self, outputs):
        return self.logits(outputs)

    def prepare(self, value, role):
        import tensorflow as tf

        label = tf.reshape(tf.cast(value, "int32"), [])
        tf.debugging.assert_less(
            label, self.num_classes, message=f"class ids must be < num_classes={self.num_classes}"
        )
        tf.debugging.assert_non_negative(label, message="class ids must be >= 0")
        return label

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes})
        return config
