"""Data and expert parallelism with `keras.distribution` on 8 virtual CPU devices (JAX).

Run as a script (the device count is fixed when JAX starts):
    XLA_FLAGS=--xla_force_host_platform_device_count=8 KERAS_BACKEND=jax \\
        python tests/distribution/jax_checks.py [check ...]
Each check raises on failure and prints one line when it passes.
"""

import functools
import os
import re
import sys

os.environ["KERAS_BACKEND"] = "jax"
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=8".strip()

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from common import assert_same_step, initial_weights, make_batch, make_model, train_one_step  # noqa: E402

from keras_multimodel import MultiModel  # noqa: E402

DEVICES = 8
BATCH = make_batch(per_group=16)


def fresh(**overrides):
    keras.utils.set_random_seed(1)
    return make_model(**overrides)


@functools.cache
def reference_step(num_groups):
    """One device, `num_groups` routing groups: what every distribution must reproduce."""
    model = fresh(moe_num_groups=num_groups)
    weights = initial_weights(model)
    return weights, train_one_step(model, weights, BATCH)


def compiled_train_step(model):
    """Keras's JAX train step for `BATCH`, compiled as `fit` compiles it."""
    distribution = keras.distribution.distribution()
    state = tuple(
        [v.value for v in variables]
        for variables in (
            model.trainable_variables,
            model.non_trainable_variables,
            model.optimizer.variables,
            model.metrics_variables,
        )
    )
    data = jax.tree.map(
        lambda a: keras.distribution.distribute_tensor(a, distribution.get_data_layout(a.shape)),
        BATCH,
    )
    step = jax.jit(model.train_step, out_shardings=(None, model._get_state_sharding_spec()))
    return step.lower(state, data).compile()


def collectives(compiled, kind):
    """Element counts of every `kind` (e.g. "all-gather") result in the compiled HLO."""
    sizes = []
    for line in compiled.as_text().splitlines():
        match = re.search(rf"= (.*?) {kind}(?:-start)?\(", line)
        if match:  # the result: one shape, or a tuple of them
            shapes = re.findall(r"\w+\[([\d,]*)\]", match.group(1))
            sizes.append(sum(int(np.prod([int(d) for d in s.split(",") if d])) for s in shapes))
    return sizes


def check_data_parallel():
    weights, reference = reference_step(DEVICES)
    distribution = keras.distribution.DataParallel()
    with distribution.scope():
        model = fresh()  # num_groups=None: one routing group per data shard
        assert model.encoder.moe.routing_groups() == DEVICES
        result = train_one_step(model, weights, BATCH)
        assert_same_step(reference, result, "DataParallel")
        # No device gathers the batch's tokens: the MoE routes on each shard.
        tokens_by_width = 16 * model.body_config.hidden_size  # the smallest (tokens, d)
        compiled = compiled_train_step(model)
        gathers = collectives(compiled, "all-gather")
        assert not [g for g in gathers if g >= tokens_by_width], gathers
        for kind in ("all-to-all", "collective-permute"):  # nor moves them otherwise
            assert not [g for g in collectives(compiled, kind) if g >= tokens_by_width], kind
    print(f"PASS data_parallel (all-gathers: {gathers})")


def check_model_parallel():
    weights, reference = reference_step(2)
    mesh = keras.distribution.DeviceMesh((2, 4), ["batch", "model"])
    layout_map = MultiModel.get_layout_map(mesh)
    distribution = keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")
    with distribution.scope():
        model = fresh()
        spec = model.encoder.moe.expert_kernel_in.value.sharding.spec
        assert tuple(spec)[:1] == ("model",), spec
        shard = model.encoder.moe.expert_kernel_in.value.addressable_shards[0].data.shape
        assert shard[0] == 8 // 4, shard
        for path in ("decoder/attention_0/query/kernel", "io_mixer/attention/value/kernel"):
            kernel = next(v for v in model.weights if v.path == path)
            assert tuple(kernel.value.sharding.spec) == (None, "model", None), path
        result = train_one_step(model, weights, BATCH)
        assert_same_step(reference, result, "ModelParallel")
    print(f"PASS model_parallel (expert kernel {spec}, shard {shard}; heads over 'model')")


def check_expert_parallel():
    """One mesh axis for data and experts: each device holds 1 of 8 experts."""
    weights, reference = reference_step(DEVICES)
    mesh = keras.distribution.DeviceMesh((DEVICES,), ["batch"])
    layout_map = MultiModel.get_layout_map(mesh, expert_parallel_dim_name="batch")
    distribution = keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")
    with distribution.scope():
        model = fresh()
        shard = model.encoder.moe.expert_kernel_out.value.addressable_shards[0].data.shape
        assert shard[0] == 1, shard
        result = train_one_step(model, weights, BATCH)
        assert_same_step(reference, result, "expert parallel")
        compiled = compiled_train_step(model)
        all_to_all = collectives(compiled, "all-to-all")
        assert all_to_all, "tokens reach their experts by all-to-all"
        # Experts stay where they are: no device gathers another's expert weights.
        expert_size = int(np.prod(model.encoder.moe.expert_kernel_in.shape))
        gathers = collectives(compiled, "all-gather")
        assert not [g for g in gathers if g >= expert_size], gathers
    print(f"PASS expert_parallel (all-to-alls: {all_to_all})")


def check_fit_and_generate():
    import tensorflow as tf

    distribution = keras.distribution.DataParallel()
    with distribution.scope():
        model = fresh()
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        history = model.fit(
            tf.data.Dataset.from_tensors(BATCH).repeat(), epochs=2, steps_per_epoch=3, verbose=0
        )
        losses = history.history["loss"]
        assert losses[-1] < losses[0], losses
        answers = model.generate("copy", BATCH["text_to_text"]["inputs"], max_length=5)
        labels = model.generate("label", BATCH["image_to_class_label"]["inputs"])
        assert np.asarray(answers).shape[0] == 16 and np.asarray(labels).shape == (16,)
        # A batch that does not split over the devices still decodes (one group).
        # (Its answers may differ from the same rows' in the batch of 16: an expert
        # over its evaluation capacity drops tokens, as on one device.)
        three = model.generate("copy", BATCH["text_to_text"]["inputs"][:3], max_length=5)
        assert np.asarray(three).shape == (3, 5), np.asarray(three).shape
        odd = jax.tree.map(lambda a: a[:6], BATCH)
        try:
            model.fit(tf.data.Dataset.from_tensors(odd), verbose=0)
        except Exception as error:  # noqa: BLE001
            assert "batch_multiple=8" in str(error), error
        else:
            raise AssertionError("a batch of 6 cannot split over 8 devices")
    print(f"PASS fit_and_generate (losses {losses})")


def check_train_command():
    """`train --distribution data_parallel` uses all 8 devices (the command a user
    types); `expert_parallel` builds its ("batch", "model") mesh from the same code."""
    import tempfile

    from train_command import run

    from keras_multimodel.cli import scale
    from keras_multimodel.models.presets import PRESETS

    output = run("data_parallel", tempfile.mkdtemp())
    assert "data_parallel over 8 devices (8 data shards)" in output, output[-2000:]
    # tiny has 4 experts: expert_parallel splits them over 4 devices, data over 2.
    scope, degree = scale.distribution_scope("expert_parallel", PRESETS["tiny"])
    assert degree == 2, degree
    described = scale.describe("expert_parallel", degree)
    assert described == "expert_parallel over 8 devices (2 data shards)", described
    with scope:
        mesh = keras.distribution.distribution().device_mesh
        assert (tuple(mesh.axis_names), tuple(mesh.shape)) == (("batch", "model"), (2, 4)), mesh
        model = fresh(num_experts=4)
        spec = tuple(model.encoder.moe.expert_kernel_in.value.sharding.spec)
        assert spec[:1] == ("model",), spec
    print("PASS train_command (data_parallel run; expert_parallel mesh 2 x 4)")


CHECKS = {
    "data_parallel": check_data_parallel,
    "model_parallel": check_model_parallel,
    "expert_parallel": check_expert_parallel,
    "fit_and_generate": check_fit_and_generate,
    "train_command": check_train_command,
}

if __name__ == "__main__":
    assert len(jax.devices()) == DEVICES, jax.devices()
    for name in sys.argv[1:] or CHECKS:
        CHECKS[name]()
