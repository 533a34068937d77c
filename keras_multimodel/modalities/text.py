"""Text (symbol) modality: token ids <-> the body's representation."""

import math

import keras
import numpy as np
from keras import ops

from keras_multimodel.errors import InputError
from keras_multimodel.modalities.base import (
    Modality,
    describe,
    register_modality,
    spec_dtype,
    spec_error,
    spec_rank,
)
from keras_multimodel.tokenization import BOS_ID, UNK_ID


def check_token_ids(inputs, task_name, what, vocab_size, max_length, hint=""):
    """Validates `(batch, length)` integer ids: dtype, rank, range, length."""
    shape = tuple(getattr(inputs, "shape", np.shape(inputs)))
    dtype = keras.backend.standardize_dtype(getattr(inputs, "dtype", np.asarray(inputs).dtype))
    if len(shape) != 2 or "int" not in dtype:
        raise InputError(
            f"Task {task_name!r} takes {what}: integer token ids of shape (batch, length) "
            f"with 0 as padding; received {describe(inputs)}.{hint}"
        )
    if shape[1] is not None and shape[1] > max_length:
        raise InputError(
            f"Task {task_name!r}: {what} of length {shape[1]} exceeds the configured maximum "
            f"max_length={max_length}. Shorten the longest, or build the modality with a larger "
            "`max_length`."
        )
    if isinstance(inputs, np.ndarray) and inputs.size:
        low, high = int(inputs.min()), int(inputs.max())
        if low < 0 or high >= vocab_size:
            raise InputError(
                f"Task {task_name!r}: {what} must be token ids in [0, {vocab_size}); "
                f"received ids in [{low}, {high}]."
            )
        empty = np.flatnonzero(~(inputs != 0).any(axis=1))
        if empty.size:
            raise InputError(
                f"Task {task_name!r}: {what} row {int(empty[0])} has no tokens (an empty or "
                "whitespace-only text, or a row of padding); give each example at least "
                "one token."
            )
    return ops.convert_to_tensor(inputs, dtype="int32")


@register_modality
class Text(Modality):
    """Text (symbol) modality net: token ids, 0 as padding, in and out.

    Bottom: ids `(batch, length)` -> embeddings scaled by `sqrt(hidden_size)`, with
    the mask `ids != 0`. Top: a linear softmax over the vocabulary; loss is
    cross-entropy with label smoothing 0.1 by default. Targets are embedded by the
    same embedding to feed the decoder, so one vocabulary serves inputs and targets
    of every text task that shares this configuration, as in the paper.

    Args:
        vocab_size: number of token ids, padding (0) included.
        max_length: the longest sequence accepted, in tokens; longer inputs are an
            error, never truncated. It also bounds `generate`'s output length.
        end_token_id: id that ends a target sequence (`generate` stops there and
            returns 0 from it on); None when targets have no end token.
        label_smoothing: label smoothing of the target loss.
        **kwargs: `Modality` arguments.

    Example:
    >>> import numpy as np
    >>> net = Text(vocab_size=100).bind(hidden_size=16)
    >>> x, mask = net.bottom(np.array([[5, 6, 1, 0]]))
    >>> tuple(x.shape), np.asarray(mask).tolist()
    ((1, 4, 16), [[True, True, True, False]])
    """

    def __init__(self, vocab_size, max_length=256, end_token_id=1, label_smoothing=0.1, **kwargs):
        super().__init__(label_smoothing=label_smoothing, **kwargs)
        for arg, value in (("vocab_size", vocab_size), ("max_length", max_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise InputError(f"Text: `{arg}` must be an int >= 2; received {value!r}.")
        if end_token_id is not None and not 0 < end_token_id < vocab_size:
            raise InputError(
                f"Text: `end_token_id` must be in [1, vocab_size) or None (0 is padding); "
                f"received {end_token_id!r} with vocab_size={vocab_size}."
            )
        self.vocab_size = vocab_size
        self.max_length = max_length
        self.end_token_id = end_token_id

    def build(self, input_shape=None):
        d = self._require_hidden_size()
        self.embedding = keras.layers.Embedding(
            self.vocab_size,
            d,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=d**-0.5),
            dtype=self.dtype_policy,
            name="embedding",
        )
        self.embedding.build((None, None))
        self.softmax = keras.layers.Dense(
            self.vocab_size, use_bias=False, dtype=self.dtype_policy, name="softmax"
        )
        self.softmax.build((None, None, d))
        self.built = True

    def targets_bottom(self, tokens):
        return self.embedding(tokens) * ops.cast(math.sqrt(self.hidden_size), self.compute_dtype)

    def bottom(self, inputs, training=None):
        return self.targets_bottom(inputs), ops.not_equal(inputs, 0)

    def check_inputs(self, inputs, task_name):
        hint = ""
        if len(np.shape(inputs)) == 4:
            hint = " A rank-4 array looks like images: use an image task."
        return check_token_ids(
            inputs, task_name, "text", self.vocab_size, self.max_length, hint=hint
        )

    def target_tokens(self, targets):
        return ops.cast(targets, "int32")

    def top(self, outputs):
        return self.softmax(outputs)

    def prepare(self, value, role):
        import tensorflow as tf

        ids = tf.cast(value, "int32")
        tf.debugging.assert_rank(ids, 1, message=f"text {role} must be 1-D token ids")
        tf.debugging.assert_less(
            ids,
            self.vocab_size,
            message=f"text {role}: token ids must be < vocab_size={self.vocab_size}",
        )
        tf.debugging.assert_non_negative(ids, message=f"text {role}: token ids must be >= 0")
        return ids

    def check_spec(self, spec, role, task_name):
        expected = "a 1-D sequence of integer token ids (0 = padding)"
        dtype, rank = spec_dtype(spec), spec_rank(spec)
        if dtype == "string":
            fix = (
                "Tokenize the text first, e.g. `dataset.map(lambda x, y: (tokenizer(x), "
                "tokenizer(y)))` with a keras_hub tokenizer, or kmm.data.texts_to_ids."
            )
        elif "int" not in dtype:
            fix = (
                "Token ids must be integers; cast them (`tf.cast(ids, 'int32')`) only if they "
                "are whole numbers (nothing is truncated silently)."
            )
        elif rank == 2:
            fix = "The dataset looks batched: give mixture single examples (`.unbatch()`)."
        elif rank != 1:
            fix = "Give each example as a 1-D sequence of ids."
        else:
            return
        raise spec_error(task_name, role, expected, spec, fix)

    def serving_spec(self, sentence_piece=None):
        import tensorflow as tf

        if sentence_piece is None:  # no tokenizer: token ids, 0 = padding
            return {"token_ids": tf.TensorSpec([None, None], tf.int32, name="token_ids")}
        return {"text": tf.TensorSpec([None], tf.string, name="text")}

    def serving_inputs(self, raw, sentence_piece=None):
        import tensorflow as tf

        if sentence_piece is None:
            ids = raw["token_ids"]
            lengths = tf.reduce_sum(tf.cast(ids != 0, tf.int32), axis=1)
            checks = [
                tf.debugging.assert_non_negative(ids, message="token ids must be >= 0"),
                tf.debugging.assert_less(
                    ids, self.vocab_size, message=f"token ids must be < {self.vocab_size}"
                ),
            ]
        else:
            text = raw["text"]
            # Text must be UTF-8, as in `generate` and the command line: a string that
            # transcoding would change has bytes that are not.
            utf8 = tf.equal(
                tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace"), text
            )
            first_bad = tf.reduce_min(
                tf.concat([tf.cast(tf.where(~utf8)[:, 0], tf.int32), tf.shape(text)], axis=0)
            )
            checks = [
                tf.debugging.Assert(
                    tf.reduce_all(utf8),
                    [tf.strings.format(
                        "text inputs must be valid UTF-8; entry {} is not: decode it with its "
                        "own encoding and send UTF-8", first_bad)],
                )
            ]  # fmt: skip
            tokens = sentence_piece.tokenize(text)  # ragged (B, None)
            lengths = tf.cast(tokens.row_lengths(), tf.int32)
            ids = tokens.to_tensor()
        checks.append(
            tf.debugging.assert_less_equal(
                tf.shape(ids)[1],
                self.max_length,
                message=f"a text input is longer than {self.max_length} tokens, the most this "
                "model takes (its Text modality's max_length)",
            )
        )
        width = tf.maximum(tf.shape(ids)[1], 1)  # at least one position
        ids = tf.pad(ids, [[0, 0], [0, width - tf.shape(ids)[1]]])
        valid = lengths > 0
        # An empty text is decoded from one unknown token, and its output is emptied.
        first = tf.where(valid, ids[:, 0], UNK_ID)
        with tf.control_dependencies(checks):
            return tf.concat([first[:, None], ids[:, 1:]], axis=1), valid

    def serving_outputs(self, outputs, valid, sentence_piece=None, names=None):
        import tensorflow as tf

        ids = tf.where(valid[:, None], outputs["token_ids"], 0)  # (B, T), 0 after the end
        result = {"token_ids": ids}
        if sentence_piece is not None:
            kept = tf.logical_and(ids != 0, ids != BOS_ID)  # as `ids_to_texts`
            result["text"] = sentence_piece.detokenize(tf.ragged.boolean_mask(ids, kept))
        return result

    def max_lengths(self, role):
        return self.max_length

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocab_size": self.vocab_size,
                "max_length": self.max_length,
                "end_token_id": self.end_token_id,
            }
        )
        return config
