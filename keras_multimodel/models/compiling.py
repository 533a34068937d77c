"""Compiling a model function for inference: one XLA program per input shape."""

import keras


def compile_function(model, fn, state=()):
    """`fn(*tensors)` compiled once per input shape, reading the model's current weights.

    `state` holds variables `fn` updates, such as a random sampler's seed: on JAX
    (pure functions) their new values come back out of the compiled function and
    are assigned, so every call draws new random numbers, as on TensorFlow.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        variables, state = list(model.variables), list(state)

        def stateless(values, state_values, *args):
            mapping = zip(variables + state, values + state_values, strict=True)
            with keras.StatelessScope(state_mapping=mapping) as scope:
                outputs = fn(*args)
            return outputs, [scope.get_current_value(v) for v in state]

        jitted = jax.jit(stateless)

        def call(*args):
            outputs, new_state = jitted(
                [v.value for v in variables], [v.value for v in state], *args
            )
            for variable, value in zip(state, new_state, strict=True):
                variable.assign(value)
            return outputs

        return call
    if backend == "tensorflow":
        import tensorflow as tf

        # XLA cannot read a tf.distribute strategy's mirrored variables (their
        # copies live on other devices): a model built in a strategy's scope decodes
        # in a plain graph.
        mirrored = any(
            isinstance(v.value, tf.distribute.DistributedValues) for v in model.variables
        )
        return tf.function(fn, jit_compile=not mirrored, reduce_retracing=True)
    return fn
