"""The modality base class and its registry.

A modality net turns one kind of raw data into the body's representation and back
(Kaiser et al., 2017, section 2.3). Each has:

- a **bottom**: raw inputs -> `(batch, length, hidden_size)` body input and a
  `(batch, length)` padding mask, when the modality can be an input;
- a **top**: decoder output `(batch, positions, hidden_size)` -> logits
  `(batch, positions, classes)`, a per-position **loss**, and, for sequence targets,
  a **targets bottom** that embeds the target tokens fed back to the decoder.

A `Task` names modalities without sizes (`Text(vocab_size=8000)`); a `MultiModel`
binds them to its hidden size, one net per distinct configuration, so tasks that
use the same modality with the same settings share its net.

The data side (`prepare`, `max_lengths`) runs in `tf.data` pipelines only: it
states how one example is laid out and padded, so `keras_multimodel.data.mixture`
can batch and bucket any modality, including a user's.
"""

import keras
import numpy as np
from keras import ops

from keras_multimodel.errors import InputError

_REGISTRY = {}


def register_modality(cls=None, *, package="keras_multimodel"):
    """Class decorator: registers a `Modality` subclass for lookup and serialization.

    Registered modalities can be named by string in a `Task`
    (`Task("t", inputs="image", targets=("class_label", {"num_classes": 10}))`)
    and are restored by `keras.saving.load_model`.

    Example:
    >>> import keras_multimodel as kmm
    >>> @kmm.modalities.register_modality(package="my_project")
    ... class Ones(kmm.modalities.Text):
    ...     pass
    >>> kmm.modalities.get("ones", vocab_size=5).vocab_size
    5
    """

    def register(cls):
        if not (isinstance(cls, type) and issubclass(cls, Modality)):
            raise TypeError(
                f"register_modality: expected a subclass of Modality; received {cls!r}."
            )
        keras.saving.register_keras_serializable(package=package)(cls)
        _REGISTRY[cls.modality_name()] = cls
        return cls

    return register(cls) if cls is not None else register


def get(identifier, **settings):
    """A modality instance from a registered name (`"image"`, `"text"`, ...) and settings.

    Also accepts a `Modality` (returned as is, without `settings`) or a
    `(name, settings_dict)` pair.
    """
    if isinstance(identifier, Modality):
        if settings:
            raise InputError(
                f"modalities.get: settings {sorted(settings)} cannot be applied to an "
                f"existing {type(identifier).__name__}; create a new one instead."
            )
        return identifier
    if isinstance(identifier, (tuple, list)) and len(identifier) == 2:
        name, extra = identifier
        return get(name, **{**dict(extra), **settings})
    if isinstance(identifier, str) and identifier in _REGISTRY:
        return _REGISTRY[identifier](**settings)
    raise InputError(
        f"Unknown modality {identifier!r}. Registered modalities: {sorted(_REGISTRY)}. "
        "Pass a Modality instance, a registered name, or register your own subclass with "
        "`keras_multimodel.modalities.register_modality`."
    )


def pick_tokens(values, tokens):
    """Each target token's entry of `values`: `(B, T, V), (B, T)` -> `(picked (B, T),
    valid (B, T))`. A token outside `[0, V)` is `valid` False and picks entry 0, so
    no backend gathers out of range (one raises, another returns 0).

    >>> import numpy as np
    >>> picked, valid = pick_tokens(np.array([[[1.0, 2.0], [3.0, 4.0]]]), np.array([[1, 5]]))
    >>> np.asarray(picked).tolist(), np.asarray(valid).tolist()
    ([[2.0, 3.0]], [[True, False]])
    """
    values, tokens = ops.convert_to_tensor(values), ops.cast(tokens, "int32")
    valid = ops.logical_and(tokens >= 0, tokens < ops.shape(values)[-1])
    safe = ops.where(valid, tokens, 0)
    return ops.take_along_axis(values, safe[..., None], axis=-1)[..., 0], valid


class Modality(keras.layers.Layer):
    """Base class of modality nets: a bottom, and a top with its loss where it can be a target.

    Subclasses set the class attributes `can_be_input`, `can_be_target` and
    `is_sequence`, take their settings in `__init__` (plus `hidden_size` and the
    base layer keyword arguments), create their sublayers in `build()` from
    `self.hidden_size`, and implement the methods of the roles they support:

    - inputs: `bottom`, `check_inputs`;
    - targets: `top`, `target_tokens`, `target_mask`, and for sequence targets
      `targets_bottom`; `loss` defaults to softmax cross-entropy with
      `label_smoothing`.

    `settings()` (the config without the name, dtype and hidden size) decides when
    two tasks share a net. Decorate subclasses with `register_modality`.

    Args:
        hidden_size: the body's width d; set by `MultiModel` when it binds the
            modality, leave it None when naming a modality in a `Task`.
        label_smoothing: label smoothing of the target loss.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).
    """

    can_be_input = True
    can_be_target = True
    is_sequence = True

    def __init__(self, hidden_size=None, label_smoothing=0.0, **kwargs):
        super().__init__(**kwargs)
        if hidden_size is not None and (not isinstance(hidden_size, int) or hidden_size < 1):
            raise InputError(
                f"{type(self).__name__}: `hidden_size` must be a positive int or None; "
                f"received {hidden_size!r}."
            )
        if not isinstance(label_smoothing, (int, float)) or not 0 <= label_smoothing < 1:
            raise InputError(
                f"{type(self).__name__}: `label_smoothing` must be in [0, 1); received "
                f"{label_smoothing!r}."
            )
        self.hidden_size = hidden_size
        self.label_smoothing = float(label_smoothing)

    @classmethod
    def modality_name(cls):
        """Registry name: the class name in snake case (`ClassLabel` -> `class_label`)."""
        name = cls.__name__
        return "".join(
            f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name)
        )

    def settings(self):
        """The configuration that decides sharing: config minus name, dtype, sizes and
        the seed of random augmentation (tasks that differ only there share one net)."""
        config = self.get_config()
        for key in ("name", "dtype", "trainable", "hidden_size", "seed"):
            config.pop(key, None)
        return config

    def bind(self, hidden_size, name=None, dtype=None):
        """A new, built net of this modality with the body width `hidden_size`."""
        config = {**self.get_config(), "hidden_size": hidden_size}
        config["name"] = name or self.modality_name()
        if dtype is not None:
            config["dtype"] = dtype
        net = type(self).from_config(config)
        net.build()
        return net

    def _require_hidden_size(self):
        if self.hidden_size is None:
            raise InputError(
                f"{type(self).__name__} has no `hidden_size`: it is a modality spec. Use "
                "it in a `Task`; `MultiModel` binds it to the body's width."
            )
        return self.hidden_size

    # ----- inputs -----------------------------------------------------------------
    def bottom(self, inputs, training=None):
        """Raw inputs -> `(x, mask)`: `(batch, length, hidden_size)` and `(batch, length)`."""
        raise NotImplementedError(f"{type(self).__name__} cannot be an input modality.")

    def check_inputs(self, inputs, task_name):
        """Validates raw inputs (numpy or tensors) and returns them in canonical form.

        Raises an InputError that names the task, what was expected and what came.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot be an input modality.")

    # ----- targets ----------------------------------------------------------------
    def target_tokens(self, targets):
        """Targets -> `(batch, positions)` int32 token or class ids."""
        raise NotImplementedError(f"{type(self).__name__} cannot be a target modality.")

    def target_mask(self, tokens):
        """`(batch, positions)` float32 mask of the real target positions."""
        return ops.cast(ops.not_equal(tokens, 0), "float32")

    def targets_bottom(self, tokens):
        """`(batch, positions)` ids -> `(batch, positions, hidden_size)` decoder inputs."""
        raise NotImplementedError(f"{type(self).__name__} targets are not sequences.")

    def top(self, outputs):
        """Decoder outputs `(batch, positions, hidden_size)` -> logits `(..., classes)`."""
        raise NotImplementedError(f"{type(self).__name__} cannot be a target modality.")

    def loss(self, tokens, logits):
        """Per-position loss `(batch, positions)`: cross-entropy with label smoothing.

        A target id outside `[0, classes)` gives a NaN loss on every backend (the
        gather alone would raise on one device and return 0 on another), which
        `fit` reports as an error (`keras_multimodel.callbacks.StopOnNonFiniteLoss`).
        """
        log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)  # (B, T, V)
        picked, valid = pick_tokens(log_probs, tokens)  # (B, T)
        nll = -picked
        if self.label_smoothing:
            uniform = -ops.mean(log_probs, axis=-1)  # (B, T)
            nll = (1.0 - self.label_smoothing) * nll + self.label_smoothing * uniform
        return ops.where(valid, nll, float("nan"))

    # ----- data (tf.data only) -------------------------------------------------------
    def prepare(self, value, role):
        """One raw example (a `tf.Tensor` structure) in canonical form, for `tf.data`.

        `role` is "inputs" or "targets". The default casts nothing.
        """
        return value

    def check_spec(self, spec, role, task_name):
        """Checks one example's `tf.data` element spec against this modality.

        `keras_multimodel.data.mixture` calls it for each task's dataset before any
        data flows, so a dataset that does not fit its task fails here, naming the
        task, what was expected, what came and the fix. The default accepts any.
        """

    def max_lengths(self, role):
        """For `prepare`'s structure: the maximum length of each variable-length
        tensor (padded along its first axis), None for fixed-size tensors."""
        return None

    # ----- serving (SavedModel export; TensorFlow only) --------------------------------
    def serving_spec(self, sentence_piece=None):
        """The raw serving inputs, `{name: tf.TensorSpec}`, each with a batch axis.

        `sentence_piece` is the model's `tensorflow_text.SentencepieceTokenizer`,
        or None when the model has no tokenizer.
        """
        raise InputError(
            f"{type(self).__name__} has no serving format: implement `serving_spec`, "
            "`serving_inputs` and `serving_example` to export a task that takes it."
        )

    def serving_inputs(self, raw, sentence_piece=None):
        """Raw serving tensors (a dict like `serving_spec`) -> `(inputs, valid)`.

        `inputs` is what the bottom takes; `valid` `(B,)` bool marks examples with
        content (an empty text gets an empty output). Values the model cannot
        take fail with a `tf.errors.InvalidArgumentError` that names the limit.
        """
        raise NotImplementedError

    def serving_example(self, spec):
        """One stand-in example for `spec` (decodes a batch of zero without a
        zero-sized dimension): zeros, and empty strings."""
        import tensorflow as tf

        def one(tensor_spec):
            shape = [1] + [d or 1 for d in tensor_spec.shape[1:]]
            if tensor_spec.dtype == tf.string:
                return tf.fill(shape, "")
            return tf.zeros(shape, tensor_spec.dtype)

        return {name: one(tensor_spec) for name, tensor_spec in spec.items()}

    def serving_outputs(self, outputs, valid, sentence_piece=None, names=None):
        """Decoded outputs (`MultiModel.decoding_function`'s dict) -> the named
        serving outputs; examples that are not `valid` get empty outputs."""
        raise InputError(
            f"{type(self).__name__} has no serving format: implement `serving_outputs` to "
            "export a task that predicts it."
        )

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_size": self.hidden_size, "label_smoothing": self.label_smoothing})
        return config


def describe(value):
    """`shape=(2, 28, 28) dtype=uint8` for error messages (arrays, tensors, specs)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in value.items()) + "}"
    shape = getattr(value, "shape", ())
    shape = "unknown" if getattr(shape, "rank", 0) is None else tuple(shape)
    dtype = getattr(value, "dtype", type(value).__name__)
    dtype = getattr(dtype, "name", dtype)
    return f"shape={shape} dtype={dtype}"


def spec_error(task_name, role, expected, spec, fix):
    """The InputError of `check_spec`: task, expected, received, fix."""
    return InputError(
        f"Task {task_name!r}: each example's {role} must be {expected}; the dataset gives "
        f"{describe(spec)}. {fix}"
    )


def spec_dtype(spec):
    """The dtype name of a `tf.TensorSpec` ("string", "int64", "float32", ...)."""
    return getattr(spec.dtype, "name", str(spec.dtype))


def spec_rank(spec):
    return spec.shape.rank


def check_finite(values, task_name, what):
    """An InputError naming the first bad entry unless every float value is finite."""
    array = np.asarray(values)
    if array.dtype.kind == "f" and array.size and not np.isfinite(array).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise InputError(
            f"Task {task_name!r}: {what} must be finite numbers; entry {index} is "
            f"{array[index]}. Replace NaN and infinite values before calling the model."
        )
