"""Argument checks and small helpers shared by the layers.

Every error names the layer, what was expected, what was given and how to fix it.
"""

import keras

from keras_multimodel.errors import InputError


def check_positive_int(layer, name, value):
    """Raises an InputError unless `value` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(
            f"{layer}: `{name}` must be a positive integer. Received {name}={value!r}."
        )
    return value


def check_positive_int_tuple(layer, name, values):
    """Returns `values` as a tuple of positive ints, or raises an InputError."""
    if isinstance(values, int):
        values = (values,)
    values = tuple(values)
    if not values:
        raise InputError(f"{layer}: `{name}` must not be empty. Received {name}=().")
    for value in values:
        check_positive_int(layer, name, value)
    return values


def check_rate(layer, name, value):
    """Raises an InputError unless 0 <= value < 1 (a dropout rate)."""
    if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise InputError(
            f"{layer}: `{name}` must be a number in [0, 1). Received {name}={value!r}."
        )
    return float(value)


def check_rank(layer, shape, ranks, what="inputs", layout="(batch, length, channels)"):
    """Raises an InputError unless `len(shape)` is one of `ranks` with a known last axis."""
    ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    if len(shape) not in ranks:
        expected = " or ".join(str(rank) for rank in ranks)
        raise InputError(
            f"{layer}: expected {what} of rank {expected} with layout {layout}; "
            f"received shape {tuple(shape)} (rank {len(shape)}). Reshape the tensor, "
            "e.g. flatten image positions into one sequence axis."
        )
    if shape[-1] is None:
        raise InputError(
            f"{layer}: the last axis of {what} (channels) must be known when the layer "
            f"is built; received shape {tuple(shape)}."
        )


def clone_initializer(initializer):
    """A fresh copy of a Keras initializer, so that sublayers never share seeded draws."""
    return initializer.__class__.from_config(initializer.get_config())


def built(layer, *shapes):
    """`layer` after `layer.build(*shapes)`: sublayers built with known shapes."""
    layer.build(*shapes)
    return layer


def data_parallel_degree():
    """Data shards of the active `keras.distribution` (JAX; its batch axis size), else 1."""
    if keras.backend.backend() != "jax":
        return 1
    distribution = keras.distribution.distribution()
    if distribution is None or distribution.batch_dim_name is None:
        return 1
    mesh = distribution.device_mesh
    return mesh.shape[mesh.axis_names.index(distribution.batch_dim_name)]


def replicas_in_sync():
    """Replicas of the `tf.distribute` strategy this call runs under (1 outside one)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync
