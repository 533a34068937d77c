"""`MultiModel.generate`: cached greedy and beam decoding with keras-hub samplers."""

import collections.abc
import numbers
from typing import NamedTuple

import keras
import keras_hub
import numpy as np
from keras import ops

from keras_multimodel import samplers
from keras_multimodel.errors import InputError
from keras_multimodel.modalities import Text
from keras_multimodel.models.compiling import compile_function
from keras_multimodel.tokenization import (
    ids_to_texts,
    normalize_texts,
    pad_rows,
    texts_to_ids,
)


def _clear_after_end(tokens, end_token_id):
    """Zeroes the end token and everything after it: `(B, L)` ids, 0 = padding."""
    ended = ops.cumsum(ops.cast(ops.equal(tokens, end_token_id), "int32"), axis=1) > 0
    return ops.where(ended, ops.zeros_like(tokens), tokens)


class Decoding(NamedTuple):
    """A task's decoding function, the variables it updates, and its compile key."""

    function: object
    state: tuple
    key: tuple


class GenerationMixin:
    """Decoding for `MultiModel`: `generate(task, inputs, ...)`."""

    def generate(
        self,
        task,
        inputs,
        max_length=None,
        sampler="greedy",
        use_cache=True,
        stop_at_end=True,
        detokenize=None,
    ):
        """Decodes the outputs of `task` for a batch of raw inputs.

        Sequence targets are decoded one position at a time; with `use_cache=True`
        each step reuses the causal-conv states and attention keys/values of the
        previous ones (constant cost per step), otherwise every step recomputes the
        whole prefix (the reference the cache is tested against). The first call for
        a task group and input shape compiles; later calls reuse it.

        Args:
            task: task name.
            inputs: raw inputs of the task's input modality (numpy or tensors).
            max_length: output positions for sequence targets; defaults to the
                target modality's `max_length` and may not exceed it.
            sampler: a name of `keras_multimodel.samplers.NAMES` ("greedy", "beam"),
                or a `keras_hub.samplers.Sampler`.
            use_cache: decode with caches (fast) or by recomputation.
            stop_at_end: stop once every sequence has produced its end token and
                return 0 (padding) from each end token on; with False, decode all
                `max_length` positions and return them as produced.
            detokenize: return text targets as strings; by default when the model
                has a `tokenizer`. With a tokenizer, text inputs may also be given as
                a list of strings.

        Returns:
            numpy int32: class ids `(B,)` for label targets; token ids `(B,
            max_length)` for sequence targets, with the end token and what follows
            set to 0 (padding) when `stop_at_end`. A list of strings for text
            targets when detokenizing.
        """
        task = self.plan.task(task)
        input_net, target_net = self.nets_of(task.name)
        inputs = self._tokenize_inputs(task.name, input_net, inputs)
        if detokenize is None:
            detokenize = self.tokenizer is not None and isinstance(target_net, Text)
        if detokenize:
            if self.tokenizer is None or not isinstance(target_net, Text):
                raise InputError(
                    f"generate({task.name!r}, detokenize=True) needs a model built with a "
                    "`tokenizer` and a task with text targets."
                )
            tokens = self.generate(
                task.name, inputs, max_length, sampler, use_cache, stop_at_end, detokenize=False
            )
            return ids_to_texts(self.tokenizer, tokens)
        inputs = input_net.check_inputs(inputs, task.name)
        if int(ops.shape(keras.tree.flatten(inputs)[0])[0]) == 0:
            raise InputError(
                f"generate({task.name!r}): the batch is empty; give at least one input."
            )
        decoding = self.decoding_function(task.name, max_length, sampler, use_cache, stop_at_end)
        if decoding.key not in self._generate_functions:
            self._generate_functions[decoding.key] = compile_function(
                self, decoding.function, state=decoding.state
            )
        command = np.asarray(self.plan.command_index[task.name], "int32")
        outputs = self._generate_functions[decoding.key](inputs, command)
        name = "token_ids" if target_net.is_sequence else "class_id"
        return np.asarray(ops.convert_to_numpy(outputs[name]))

    def decoding_function(
        self, task, max_length=None, sampler="greedy", use_cache=True, stop_at_end=True
    ):
        """The numeric decoding of `task` as one function of raw input tensors.

        `generate` compiles it; `export` converts it. It is pure `keras.ops` and
        shape-polymorphic in the batch (no Python int is taken of a symbolic
        dimension), so it traces with an unknown batch size on every backend.

        Args: as `generate`.

        Returns:
            A `Decoding`: `function(inputs, command)` (`command`: the int32 scalar
            command-token index of the task), returning `{"class_id" (B,),
            "probability" (B,)}` for label targets and `{"token_ids" (B,
            max_length)}` for sequence targets; `state`, the variables it updates
            (a random sampler's seed); `key`, what identifies its compiled program.
        """
        task = self.plan.task(task)
        input_net, target_net = self.nets_of(task.name)
        group = self.plan.group[task.name]
        if not target_net.is_sequence:

            def classify(inputs, command):
                logits = self._label_logits(input_net, target_net, inputs, command)
                probabilities = ops.softmax(logits, axis=-1)  # (B, classes)
                return {
                    "class_id": ops.cast(ops.argmax(logits, axis=-1), "int32"),
                    "probability": ops.max(probabilities, axis=-1),
                }

            return Decoding(classify, (), (group, "label"))
        limit = target_net.max_length
        max_length = limit if max_length is None else max_length
        if isinstance(max_length, numbers.Integral) and not isinstance(max_length, bool):
            max_length = int(max_length)
        if (
            isinstance(max_length, bool)
            or not isinstance(max_length, int)
            or not (0 < max_length <= limit)
        ):
            raise InputError(
                f"generate({task.name!r}): `max_length` must be an int in [1, {limit}] (the "
                f"target modality's max_length); received {max_length!r}."
            )
        if isinstance(sampler, str):
            if sampler not in samplers.NAMES:
                raise InputError(
                    f"generate: unknown sampler {sampler!r}; use one of "
                    f"{', '.join(samplers.NAMES)} or a keras_hub.samplers.Sampler instance."
                )
            sampler_key, sampler = sampler, samplers.get(sampler)
        elif isinstance(sampler, keras_hub.samplers.Sampler):
            sampler_key = id(sampler)
        else:
            raise InputError(
                f"generate: `sampler` must be 'greedy', 'beam' or a keras_hub Sampler; "
                f"received {sampler!r}."
            )
        end = target_net.end_token_id if stop_at_end else None

        def decode(inputs, command):
            batch = ops.shape(keras.tree.flatten(inputs)[0])[0]  # may be symbolic
            prompt = ops.zeros((batch, max_length), "int32")
            tokens = self._decode_sequences(
                input_net, target_net, inputs, command, prompt, sampler, use_cache, end
            )
            if end is not None:
                tokens = _clear_after_end(tokens, end)
            return {"token_ids": tokens}

        key = (group, sampler_key, bool(use_cache), end, max_length)
        return Decoding(decode, tuple(sampler.variables), key)

    def _tokenize_inputs(self, task_name, input_net, inputs):
        """Raw inputs in canonical containers: texts (str, UTF-8 bytes, lists or numpy
        arrays of them) -> padded token ids when the model has a tokenizer; lists of
        numbers -> numpy arrays; None, empty batches, ragged lists and arrays of other
        objects are errors."""
        where = f"generate({task_name!r})"
        if inputs is None:
            raise InputError(
                f"{where}: `inputs` is None; give a batch of the task's inputs (e.g. a list "
                "of strings for a text task, a uint8 array of images)."
            )
        unordered = isinstance(inputs, collections.abc.Set) or (
            isinstance(inputs, collections.abc.Mapping) and isinstance(input_net, Text)
        )  # (audio takes a mapping: {"waveform", "length"})
        if unordered:
            normalize_texts(inputs, f"{where}: `inputs`")  # raises, naming the type
        elif hasattr(inputs, "element_spec"):  # a tf.data.Dataset
            raise InputError(
                f"{where}: `inputs` is a tf.data.Dataset; give one batch of inputs (e.g. "
                "`next(iter(dataset.batch(32)))`), or call it per batch."
            )
        elif isinstance(inputs, collections.abc.Iterator):
            inputs = list(inputs)
        elif "string" in str(getattr(inputs, "dtype", "")):  # a tf.string tensor
            inputs = normalize_texts(inputs, f"{where}: text")
        if isinstance(inputs, (list, tuple)):
            if not inputs:
                raise InputError(f"{where}: the batch is empty; give at least one input.")
            if not any(isinstance(value, (str, bytes)) for value in inputs):
                try:
                    inputs = np.asarray(inputs)
                except ValueError:
                    raise InputError(
                        f"{where}: `inputs` is a list of rows of different shapes; give one "
                        "array (token ids padded with 0 to one length; waveforms padded with "
                        'zeros, as {"waveform", "length"}), or a list of strings for text.'
                    ) from None
        text_array = isinstance(inputs, np.ndarray) and inputs.dtype.kind in "USO"
        if text_array:
            if inputs.size == 0:
                raise InputError(f"{where}: the batch is empty; give at least one input.")
            if inputs.dtype.kind == "O" and not any(
                isinstance(value, (str, bytes)) for value in inputs.flat
            ):
                raise InputError(
                    f"{where}: `inputs` is an array of Python objects; give a numeric array "
                    "(token ids, pixels) or strings for a text task."
                )
        if text_array or isinstance(inputs, (str, bytes, list, tuple)):  # lists: of texts
            if self.tokenizer is None or not isinstance(input_net, Text):
                raise InputError(
                    f"Task {task_name!r} received strings; only text tasks of a model built "
                    "with a `tokenizer` take strings (give token ids otherwise)."
                )
            return pad_rows(texts_to_ids(self.tokenizer, inputs, False, f"{where}: text"))
        return inputs

    def _commands(self, inputs, command):
        """The command token's embedding for every example: `(B, 1, d)`."""
        batch = ops.shape(keras.tree.flatten(inputs)[0])[0]
        commands = ops.full((batch,), command, dtype="int32")  # (B,)
        return self.command_embedding(commands)[:, None, :]

    def _label_logits(self, input_net, target_net, inputs, command):
        encoded, encoded_mask = self.encode(input_net, inputs, training=False)
        shifted = self._commands(inputs, command)  # (B, 1, d)
        decoded = self.decode(shifted, encoded, None, encoded_mask, training=False, decoding=True)
        return ops.cast(target_net.top(decoded)[:, 0], "float32")  # (B, classes)

    def _decode_sequences(
        self, input_net, target_net, inputs, command, prompt, sampler, use_cache, end_token_id
    ):
        encoded, encoded_mask = self.encode(input_net, inputs, training=False)
        # Everything per example goes in the cache, so beam search can repeat it.
        state = {
            "encoded": encoded,
            "encoded_mask": encoded_mask,
            "command": self._commands(inputs, command),  # (B, 1, d)
        }
        if use_cache:
            state["mixer"] = self.mixer.init_cache(encoded)
            state["decoder"] = self.decoder.init_cache(encoded)

        def next_logits(prompt, cache, index):
            # Input at position `index`: the command token, or the previous output.
            previous = ops.take(prompt, ops.maximum(index - 1, 0), axis=1)[:, None]  # (B, 1)
            embedded = ops.cast(target_net.targets_bottom(previous), cache["command"].dtype)
            shifted = ops.where(ops.equal(index, 0), cache["command"], embedded)  # (B, 1, d)
            if use_cache:
                mixed, mixer_cache = self.mixer.step(
                    shifted, cache["mixer"], index, cache["encoded_mask"]
                )
                output, decoder_cache = self.decoder.step(
                    mixed, cache["decoder"], index, cache["encoded_mask"]
                )
                cache = {**cache, "mixer": mixer_cache, "decoder": decoder_cache}
            else:
                rest = ops.cast(target_net.targets_bottom(prompt[:, :-1]), embedded.dtype)
                sequence = ops.concatenate([cache["command"], rest], axis=1)  # (B, L, d)
                decoded = self.decode(
                    sequence,
                    cache["encoded"],
                    None,
                    cache["encoded_mask"],
                    training=False,
                    decoding=True,
                )
                output = ops.take(decoded, index, axis=1)[:, None]  # (B, 1, d)
            logits = ops.cast(target_net.top(output)[:, 0], "float32")  # (B, V)
            return logits, None, cache

        stop = None if end_token_id is None else [end_token_id]
        return sampler(next_logits, prompt, cache=state, index=0, stop_token_ids=stop, model=self)
