"""Per-device work of MoELayer under data parallelism: 8 virtual devices against one.

    python benchmarks/moe_data_parallel.py            # JAX, 8 virtual CPU devices

One MoELayer's train step (forward + backward of mean(y²) + the balancing loss) is
compiled three ways, and XLA's cost analysis of each compiled program gives the
FLOPs one device executes, the bytes it moves through collectives, and the
collectives it runs:

  one device       the whole batch on one device (no distribution);
  DataParallel     `keras.distribution.DataParallel` over 8 devices, routing one
                   group per data shard (`num_groups=None`, the default);
  global routing   the same, but routing the global batch as one group
                   (`num_groups=1`: what a layer that ignores the sharding does).

Per-device FLOPs should fall about 8x from "one device" to "DataParallel". No
timing: the 8 devices are virtual (they share this machine's cores), so only the
compiled programs' work is compared.
"""

import os
import re

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from keras_multimodel.layers import MoELayer  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch", 64, "Sequences per global batch.")
flags.DEFINE_integer("length", 64, "Tokens per sequence.")
flags.DEFINE_integer("channels", 256, "Model width d.")
flags.DEFINE_integer("hidden_dim", 1024, "Hidden width of one expert.")
flags.DEFINE_integer("experts", 16, "Experts E.")
flags.DEFINE_integer("top_k", 2, "Experts per token k.")


def compiled_step(num_groups, distribution):
    """The layer's train step for one global batch, compiled under `distribution`."""
    single = keras.distribution.DataParallel(devices=jax.devices()[:1])  # one device
    with (distribution or single).scope():
        keras.utils.set_random_seed(0)
        layer = MoELayer(
            FLAGS.experts, FLAGS.hidden_dim, top_k=FLAGS.top_k, num_groups=num_groups
        )
        shape = (FLAGS.batch, FLAGS.length, FLAGS.channels)
        layer.build(shape)
        x = np.random.default_rng(0).normal(size=shape).astype("float32")
        if distribution:
            x = keras.distribution.distribute_tensor(x, distribution.get_data_layout(shape))
        trainable = [v.value for v in layer.trainable_variables]
        others = [v.value for v in layer.non_trainable_variables]

        def loss(trainable, others, x):
            y, _, losses = layer.stateless_call(
                trainable, others, x, training=True, return_losses=True
            )
            return keras.ops.mean(keras.ops.square(y)) + sum(losses)

        step = jax.jit(jax.value_and_grad(loss))
        return step.lower(trainable, others, x).compile()


def collective_bytes(compiled):
    total, kinds = 0, {}
    for line in compiled.as_text().splitlines():
        kind = r"(all-gather|all-to-all|all-reduce|reduce-scatter)"
        match = re.search(rf"= (.*?) {kind}(?:-start)?\(", line)
        if match:
            kinds[match.group(2)] = kinds.get(match.group(2), 0) + 1
            for dtype, dims in re.findall(r"(\w+)\[([\d,]*)\]", match.group(1)):
                size = int(np.prod([int(d) for d in dims.split(",") if d]))
                total += size * (2 if "16" in dtype else 1 if dtype == "pred" else 4)
    return total, kinds


def main(argv):
    del argv
    devices = len(jax.devices())
    assert devices == 8, f"needs 8 devices, found {devices}"
    rows = []
    data_parallel = keras.distribution.DataParallel()
    for name, groups, distribution in (
        ("one device", 1, None),
        ("DataParallel (group per shard)", None, data_parallel),
        ("DataParallel, global routing", 1, data_parallel),
    ):
        compiled = compiled_step(groups, distribution)
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        moved, kinds = collective_bytes(compiled)
        rows.append((name, float(cost["flops"]), moved, kinds))
    tokens = FLAGS.batch * FLAGS.length
    print(
        f"MoELayer train step: {tokens} tokens, d={FLAGS.channels}, hidden={FLAGS.hidden_dim}, "
        f"E={FLAGS.experts}, k={FLAGS.top_k}; jax {jax.__version__}, {devices} virtual devices"
    )
    print("| program | per-device GFLOPs | one device / this | collective MB | collectives |")
    print("|---|---|---|---|---|")
    for name, gflops, moved, kinds in rows:
        ratio = rows[0][1] / gflops
        described = ", ".join(f"{k} x{v}" for k, v in sorted(kinds.items())) or "none"
        print(f"| {name} | {gflops / 1e9:.3f} | {ratio:.2f}x | {moved / 1e6:.2f} | {described} |")


if __name__ == "__main__":
    app.run(main)
