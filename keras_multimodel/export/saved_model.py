"""`MultiModel.export`: a SavedModel with one serving signature per task.

Each signature is a TensorFlow function over raw inputs (strings, uint8 images,
float waveforms with lengths) around one numeric core, the task's
`MultiModel.decoding_function` (encoder and the whole decoding loop with its
caches, one compiled program):

    raw inputs -> modality.serving_inputs (tokenize, pad, check) -> numeric core
               -> modality.serving_outputs (detokenize, class names) -> outputs

The weights are stored once, as plain variables, however many signatures there
are; each core is a stateless function of them. On TensorFlow it is a
`tf.function(jit_compile=True)`; on JAX it goes through jax2tf (as Keras's own
`ExportArchive` does), with native serialization for CPU and CUDA and a symbolic
batch (and text length); strings never enter JAX.
"""

import itertools

import keras
import numpy as np

from keras_multimodel import compat, samplers
from keras_multimodel.errors import InputError

PLATFORMS = ("cpu", "cuda")  # JAX lowering targets of the numeric cores


def export_saved_model(
    model,
    filepath,
    tasks=None,
    sampler="greedy",
    input_signatures=None,
    label_names=None,
    verbose=True,
):
    """Writes `model` as a SavedModel with one signature per task.

    Args:
        model: a `MultiModel`.
        filepath: the SavedModel directory to write.
        tasks: task names to export (default: all); the first is also
            `serving_default`.
        sampler: "greedy" or "beam" decoding for sequence targets, or a
            `{task: sampler}` dict (tasks it leaves out decode greedily).
        input_signatures: `{task: {name: tf.TensorSpec}}` replacing a task's default
            raw inputs (`Modality.serving_spec`), e.g. a fixed image size.
        label_names: `{task: [class names]}`; label tasks with names also return
            `class_name`.
        verbose: print the signatures written.

    Returns:
        `{signature name: [input names]}`.
    """
    import tensorflow as tf

    if keras.backend.backend() not in ("tensorflow", "jax"):
        raise InputError(
            f"export: a SavedModel is written from the TensorFlow or JAX backend; this is "
            f"{keras.backend.backend()!r}. Load the .keras file with KERAS_BACKEND=tensorflow."
        )
    names = [t.name for t in model.tasks] if tasks is None else list(tasks)
    if not names:
        raise InputError("export: `tasks` is empty; name at least one task.")
    tasks = [model.plan.task(name) for name in names]
    samplers = _samplers(sampler, names, model)
    input_signatures = dict(input_signatures or {})
    label_names = dict(label_names or {})
    for name in input_signatures:
        model.plan.task(name)  # an unknown name lists the model's tasks
    for name, classes in label_names.items():
        target_net = model.nets_of(model.plan.task(name).name)[1]
        if len(classes) != getattr(target_net, "num_classes", -1):
            raise InputError(
                f"export: `label_names[{name!r}]` must name the task's "
                f"{getattr(target_net, 'num_classes', 'label')} classes; received "
                f"{len(classes)} names."
            )

    module = tf.Module()
    module.sentence_piece = _sentence_piece(model)
    core_of = _Cores(model, module)
    signatures = {}
    for task in tasks:
        serve = _serving_function(
            model, task, samplers[task.name], core_of, module.sentence_piece,
            input_signatures.get(task.name), label_names.get(task.name),
        )  # fmt: skip
        setattr(module, f"serve_{task.name}", serve)  # kept apart from the module's own
        signatures[task.name] = serve.get_concrete_function()
    signatures.setdefault("serving_default", signatures[tasks[0].name])
    tf.saved_model.save(module, str(filepath), signatures=signatures)
    described = {
        name: [spec.name for spec in fn.structured_input_signature[0]]
        for name, fn in signatures.items()
    }
    if verbose:
        for name, inputs in described.items():
            outputs = sorted(signatures[name].structured_outputs)
            print(f"signature {name!r}: inputs {inputs} -> outputs {outputs}")
        print(f"Saved the SavedModel at {filepath}.")
    return described


def _samplers(sampler, names, model):
    """`{task name: "greedy" or "beam"}` for the exported tasks, from `sampler` (one
    name for all, or a dict by task)."""
    by_task = dict(sampler) if isinstance(sampler, dict) else dict.fromkeys(names, sampler)
    for name, value in by_task.items():
        model.plan.task(name)  # an unknown name lists the model's tasks
        if name not in names:
            raise InputError(
                f"export: `sampler` names {name!r}, which is not among the exported tasks "
                f"{names}; add it to `tasks` or leave it out of `sampler`."
            )
        if not isinstance(value, str) or value not in samplers.NAMES:
            raise InputError(
                f"export: `sampler` must be one of {samplers.NAMES} (random samplers are not "
                f"exported), or a dict of them by task; received {value!r}"
                + (f" for {name!r}." if isinstance(sampler, dict) else ".")
            )
    return {name: by_task.get(name, samplers.DEFAULT) for name in names}


def _sentence_piece(model):
    """The tokenizer as a tensorflow-text op that the SavedModel tracks (or None)."""
    if model.tokenizer is None:
        return None
    import keras_hub

    if not isinstance(model.tokenizer, keras_hub.tokenizers.SentencePieceTokenizer):
        raise InputError(
            "export: only a keras_hub SentencePieceTokenizer can be exported with the model; "
            f"this model has a {type(model.tokenizer).__name__}."
        )
    import tensorflow as tf
    import tensorflow_text as tf_text

    return tf_text.SentencepieceTokenizer(model=model.tokenizer.proto, out_type=tf.int32)


def _serving_function(model, task, sampler, core_of, sentence_piece, spec, names):
    """The `tf.function` of one signature: raw inputs -> decoded outputs."""
    import tensorflow as tf

    input_net, target_net = model.nets_of(task.name)
    spec = spec or input_net.serving_spec(sentence_piece)
    spec = {name: tf.TensorSpec(s.shape, s.dtype, name=name) for name, s in spec.items()}
    keys = list(spec)
    decoding = model.decoding_function(task.name, sampler=sampler)
    command = model.plan.command_index[task.name]
    core = core_of(decoding)  # shared by the tasks of a group: the command is an input

    def serve(*tensors):
        # A signature does not check the shapes it declares (a (None,) text input
        # would take a 2-D tensor and answer a part of it): each input is checked
        # here, and a wrong shape fails naming the input, its shape and the expected.
        tensors = [tf.ensure_shape(t, spec[k].shape) for k, t in zip(keys, tensors, strict=True)]
        raw = dict(zip(keys, tensors, strict=True))
        batch = tf.shape(tensors[0])[0]
        same_rows = [
            tf.debugging.assert_equal(
                tf.shape(t)[0], batch, message=f"{k} needs as many rows as {keys[0]}"
            )
            for k, t in zip(keys[1:], tensors[1:], strict=True)
        ]  # (checked before a batch of zero is swapped for a stand-in below)
        with tf.control_dependencies(same_rows):
            batch = tf.identity(batch)
        # A batch of zero is decoded as one stand-in example, then sliced away: the
        # numeric core only ever sees batches of one or more.
        example = input_net.serving_example(spec)
        raw = {
            key: tf.cond(batch > 0, lambda value=value: value, lambda key=key: example[key])
            for key, value in raw.items()
        }
        inputs, valid = input_net.serving_inputs(raw, sentence_piece)
        outputs = core(inputs, tf.constant(command, tf.int32))
        outputs = target_net.serving_outputs(outputs, valid, sentence_piece, names)
        return {key: value[:batch] for key, value in outputs.items()}

    return tf.function(serve, input_signature=[spec[key] for key in keys], autograph=False)


class _Cores:
    """Turns a model function into a numeric core of the SavedModel.

    The weights become plain `tf.Variable`s of the SavedModel, created once and
    shared by every core; each core reads them through a `keras.StatelessScope`
    (so serving never updates the model's own variables). On TensorFlow a core is a
    `tf.function(jit_compile=True)`; on JAX the same stateless function goes
    through jax2tf, with the weights as its first argument.
    """

    def __init__(self, model, module):
        import tensorflow as tf

        self.variables = list(model.variables)
        module.model_variables = [
            tf.Variable(np.asarray(keras.ops.convert_to_numpy(v.value)), trainable=v.trainable,
                        name=v.path)
            for v in self.variables
        ]  # fmt: skip
        self.tf_variables = module.model_variables
        self.cores = {}

    def __call__(self, decoding):
        """The core of a `MultiModel.Decoding`: `core(inputs, command)`; one per
        compile key, so the tasks of a group (same nets, other command) share it."""
        if decoding.key not in self.cores:
            self.cores[decoding.key] = self._convert(decoding.function)
        return self.cores[decoding.key]

    def _convert(self, function):
        import tensorflow as tf

        variables = self.variables

        def stateless(values, inputs, command):
            with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
                return function(inputs, command)

        if keras.backend.backend() == "tensorflow":
            compiled = tf.function(stateless, jit_compile=True, autograph=False)
            return lambda inputs, command: compiled(
                [v.read_value() for v in self.tf_variables], inputs, command
            )
        from jax.experimental import jax2tf

        converted = {}

        def core(inputs, command):  # called while a serving function is traced
            shapes = _polymorphic_shapes(inputs)
            key = str(shapes)
            if key not in converted:  # one function in the SavedModel per input shape
                converted[key] = tf.function(
                    jax2tf.convert(
                        stateless,
                        polymorphic_shapes=[None, shapes, "()"],
                        native_serialization_platforms=PLATFORMS,
                        with_gradient=False,
                    ),
                    autograph=False,
                )
            with compat.top_k_lowered_by_sorting():
                return converted[key](list(self.tf_variables), inputs, command)

        return core


def _polymorphic_shapes(inputs):
    """jax2tf shapes for `inputs` (TF tensors or specs): one shared symbolic batch
    `b`, a fresh symbol for every other unknown size, known sizes as they are.

    >>> import tensorflow as tf
    >>> spec = {"ids": tf.TensorSpec([None, None]), "length": tf.TensorSpec([None])}
    >>> _polymorphic_shapes(spec)
    {'ids': '(b, d0)', 'length': '(b,)'}
    """
    symbols = (f"d{i}" for i in itertools.count())

    def shape(tensor):
        dims = ["b"] + [str(d) if d is not None else next(symbols) for d in tensor.shape[1:]]
        return f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"

    return keras.tree.map_structure(shape, inputs)
