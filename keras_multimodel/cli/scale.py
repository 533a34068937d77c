"""`train --distribution`: the engine that spreads a run over the visible devices."""

import contextlib
import functools
import math

import keras

from keras_multimodel.errors import InputError


def distribution_scope(name, body_config):
    """`(scope, data-parallel degree)` for `--distribution name`.

    Build, compile and fit the model inside `scope`; every sub-batch must be a
    multiple of the degree (`mixture(batch_multiple=...)`).

    - "none": one device.
    - "data_parallel" (JAX): `keras.distribution.DataParallel` over every device.
    - "expert_parallel" (JAX): `keras.distribution.ModelParallel` on a
      `("batch", "model")` mesh whose model axis has as many devices as divide the
      expert count (`gcd(num_experts, devices)`); the experts (and the attention
      heads, when they divide too) are split over it, the batch over the rest.
    - "mirrored" (TensorFlow): `tf.distribute.MirroredStrategy` over every device.
    """
    if name == "none":
        return contextlib.nullcontext(), 1
    if name == "mirrored":
        strategy = mirrored_strategy()
        return strategy.scope(), strategy.num_replicas_in_sync
    devices = keras.distribution.list_devices()
    if name == "data_parallel":
        return keras.distribution.DataParallel(devices=devices).scope(), len(devices)
    if name != "expert_parallel":
        raise InputError(f"unknown --distribution {name!r}")
    from keras_multimodel.models import MultiModel

    experts = math.gcd(body_config.num_experts, len(devices))
    mesh = keras.distribution.DeviceMesh(
        (len(devices) // experts, experts), ["batch", "model"], devices
    )
    layout_map = MultiModel.get_layout_map(
        mesh, shard_attention=body_config.num_heads % experts == 0
    )
    distribution = keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")
    return distribution.scope(), len(devices) // experts


@functools.cache
def mirrored_strategy():
    """The process's one `tf.distribute.MirroredStrategy` over every device.

    One per process: TensorFlow can mix up the collective ops of several
    strategies in one process ("Shape mismatch in the collective instance"), so
    a second `train` in the same notebook reuses the first one's.
    """
    import tensorflow as tf

    return tf.distribute.MirroredStrategy()


def describe(name, degree):
    """One line for the run's log."""
    if name == "none":
        return "one device"
    devices = len(keras.distribution.list_devices()) if name != "mirrored" else degree
    return f"{name} over {devices} devices ({degree} data shards)"
