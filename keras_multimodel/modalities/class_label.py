"""Class-label modality: the decoder's first output -> class logits."""

import keras
from keras import ops

from keras_multimodel.errors import InputError
from keras_multimodel.modalities.base import (
    Modality,
    register_modality,
    spec_dtype,
    spec_error,
    spec_rank,
)


@register_modality
class ClassLabel(Modality):
    """Class-label modality net (target only): one decoder position -> class logits.

    For a label target the decoder runs one position, the task's command token;
    the top maps its output to `num_classes` logits. Targets are int class ids
    `(batch,)`; `generate` returns the argmax class ids.

    Args:
        num_classes: number of classes.
        **kwargs: `Modality` arguments, e.g. `label_smoothing` of the loss (0 by
            default).

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
            raise InputError(
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

    def check_spec(self, spec, role, task_name):
        expected = f"one integer class id in [0, {self.num_classes}) (a scalar)"
        dtype, rank = spec_dtype(spec), spec_rank(spec)
        if "int" not in dtype:
            fix = (
                "Give integer class ids; map names to ids first (e.g. a dict lookup or "
                "tf.lookup.StaticHashTable), or cast whole-number floats with tf.cast."
            )
        elif rank not in (0, 1) or (rank == 1 and spec.shape[0] != 1):
            fix = (
                "Give one id per example (not one-hot, not a batch: `.unbatch()` a "
                "batched dataset, `tf.argmax` one-hot labels)."
            )
        else:
            return
        raise spec_error(task_name, role, expected, spec, fix)

    def serving_outputs(self, outputs, valid, sentence_piece=None, names=None):
        import tensorflow as tf

        class_id = tf.where(valid, outputs["class_id"], -1)
        result = {
            "class_id": class_id,
            "probability": tf.where(valid, outputs["probability"], 0.0),
        }
        if names is not None:
            named = tf.gather(tf.constant(list(names)), tf.maximum(class_id, 0))
            result["class_name"] = tf.where(valid, named, "")
        return result

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes})
        return config
