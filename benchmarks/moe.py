"""Forward+backward time of MoELayer against a dense FFN and an all-experts MoE.

Run once per backend; every configuration is timed side by side in one process,
in alternating blocks, and the median of all timed runs is reported:

    KERAS_BACKEND=jax python benchmarks/moe.py
    KERAS_BACKEND=tensorflow python benchmarks/moe.py
    KERAS_BACKEND=jax python benchmarks/moe.py --whole_step --top_k=2 --noall_experts

`--whole_step` times the whole train step instead (forward, backward and an Adam
update in one compiled function), where the optimizer's cost, proportional to the
parameters (E experts' weights for the MoE), counts too.

Models (all jitted with XLA, all with residual + LayerNorm around the FFN part):
  moe          MoELayer: noisy top-k gating, capacity slots, sparse dispatch.
  dense        one FFN of width top_k * hidden_dim: the same active FLOPs per token.
  all_experts  the same gating, but every expert computed on every token and
               combined with the (mostly zero) gate matrix: the pattern of
               keras-hub's MoE blocks, E / k times the expert FLOPs.
"""

import statistics
import time

import keras
import numpy as np
from absl import app, flags
from keras import ops

from keras_multimodel.layers import MoELayer

FLAGS = flags.FLAGS
flags.DEFINE_integer("tokens", 4096, "Tokens per batch.")
flags.DEFINE_integer("channels", 256, "Model width d.")
flags.DEFINE_integer("hidden_dim", 1024, "Hidden width of one expert.")
flags.DEFINE_list("experts", ["4", "16", "64"], "Expert counts E.")
flags.DEFINE_list("top_k", ["1", "2"], "Experts per token k.")
flags.DEFINE_float("capacity_factor", 1.25, "MoE capacity factor.")
flags.DEFINE_integer("repeats", 4, "Timed runs per model per cycle (2 cycles; median).")
flags.DEFINE_bool("all_experts", True, "Also time the all-experts baseline.")
flags.DEFINE_bool(
    "whole_step",
    False,
    "Time a whole train step (forward, backward and an Adam update of the layer's "
    "weights, one compiled function) instead of forward + backward.",
)


class DenseFFN(keras.layers.Layer):
    """LayerNorm(x + Dense(d)(relu(Dense(width)(x)))): the dense baseline."""

    def __init__(self, width, **kwargs):
        super().__init__(**kwargs)
        self.width = width

    def build(self, input_shape):
        self.inner = keras.layers.Dense(self.width, activation="relu")
        self.outer = keras.layers.Dense(input_shape[-1])
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6)
        self.inner.build(input_shape)
        self.outer.build(tuple(input_shape[:-1]) + (self.width,))
        self.norm.build(input_shape)

    def call(self, x, training=None):
        return self.norm(x + self.outer(self.inner(x)))


class AllExpertsMoE(MoELayer):
    """MoELayer's gating, but every expert runs on every token (no dispatch)."""

    def call(self, x, mask=None, training=None):
        tokens = ops.reshape(x, (-1, ops.shape(x)[-1]))  # (N, d)
        routing = self._route(tokens[None], self._valid(tokens, mask)[None], training)
        routing = routing._replace(gates=routing.gates[0], experts=routing.experts[0])
        all_outputs = self._experts(
            ops.broadcast_to(tokens, (1, self.num_experts) + tuple(tokens.shape))
        )[0]  # (E, N, d): one routing group
        dense_gates = ops.sum(
            ops.one_hot(routing.experts, self.num_experts) * routing.gates[..., None], axis=1
        )  # (N, E), k non-zeros per row
        mixture = ops.einsum("ne,end->nd", dense_gates, all_outputs)
        self.add_loss(self.loss_coef * routing.aux_loss)
        return self.norm(x + ops.reshape(mixture, ops.shape(x)))


def _train_step_fn(layer, x):
    """A jitted function computing loss and gradients w.r.t. the layer's weights
    (and, with --whole_step, applying them with Adam)."""
    backend = keras.backend.backend()
    if FLAGS.whole_step:
        return _whole_step_fn(layer, x, backend)
    if backend == "jax":
        import jax

        def loss_fn(trainable, non_trainable):
            y, non_trainable, losses = layer.stateless_call(
                trainable, non_trainable, x, training=True, return_losses=True
            )
            return ops.mean(ops.square(y)) + sum(losses), non_trainable

        grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
        state = {
            "trainable": [v.value for v in layer.trainable_variables],
            "non_trainable": [v.value for v in layer.non_trainable_variables],
        }

        def run():
            (loss, non_trainable), grads = grad_fn(state["trainable"], state["non_trainable"])
            state["non_trainable"] = non_trainable
            jax.block_until_ready(grads)
            return loss

        return run
    if backend == "tensorflow":
        return _tf_step_fn(layer, x)
    raise SystemExit(f"benchmarks/moe.py supports the jax and tensorflow backends, not {backend}.")


def _tf_step_fn(layer, x, optimizer=None):
    """TensorFlow: loss and gradients in one XLA-compiled function, and with an
    `optimizer` their update too; `run()` waits for the results."""
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            y = layer(x, training=True)
            loss = ops.mean(ops.square(y)) + sum(layer.losses)
        grads = tape.gradient(loss, layer.trainable_variables)
        if optimizer is None:
            return loss, grads
        optimizer.apply_gradients(zip(grads, layer.trainable_variables, strict=True))
        return loss, []

    def run():
        loss, grads = step()
        _ = [g.numpy() for g in grads if g is not None]
        return loss.numpy()

    return run


def _whole_step_fn(layer, x, backend):
    """Forward, backward and an Adam update, compiled as one function."""
    optimizer = keras.optimizers.Adam(1e-4)
    optimizer.build(layer.trainable_variables)
    if backend == "jax":
        import jax

        def loss_fn(trainable, non_trainable):
            y, non_trainable, losses = layer.stateless_call(
                trainable, non_trainable, x, training=True, return_losses=True
            )
            return ops.mean(ops.square(y)) + sum(losses), non_trainable

        def step(trainable, non_trainable, optimizer_variables):
            (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                trainable, non_trainable
            )
            trainable, optimizer_variables = optimizer.stateless_apply(
                optimizer_variables, grads, trainable
            )
            return loss, trainable, non_trainable, optimizer_variables

        jitted = jax.jit(step)  # no donation: the layers (dense) are reused across runs
        state = [
            [v.value for v in variables]
            for variables in (
                layer.trainable_variables,
                layer.non_trainable_variables,
                optimizer.variables,
            )
        ]

        def run():
            loss, *new_state = jitted(*state)
            state[:] = new_state
            jax.block_until_ready(loss)
            return loss

        return run
    if backend == "tensorflow":
        return _tf_step_fn(layer, x, optimizer)
    raise SystemExit(f"benchmarks/moe.py supports the jax and tensorflow backends, not {backend}.")


def _time_side_by_side(runs, repeats, cycles=2):
    """Times every model in one process, in blocks that alternate between models.

    Each block starts with one untimed run, so that no model pays for the memory
    another one left behind (the all-experts model allocates E times the buffers).
    """
    times = {name: [] for name in runs}
    for _ in range(cycles):
        for name, run in runs.items():
            run()  # compile (first cycle) and settle after the switch
            for _ in range(repeats):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) * 1e3 for name, values in times.items()}


def main(argv):
    del argv
    keras.utils.set_random_seed(0)
    d, hidden, n = FLAGS.channels, FLAGS.hidden_dim, FLAGS.tokens
    x = ops.convert_to_tensor(
        np.random.default_rng(0).normal(size=(8, n // 8, d)).astype("float32")
    )
    print(
        f"backend={keras.backend.backend()} tokens={n} d={d} hidden={hidden} "
        f"capacity_factor={FLAGS.capacity_factor} repeats={FLAGS.repeats} (median ms, "
        + ("whole train step: fwd+bwd+Adam)" if FLAGS.whole_step else "fwd+bwd)")
    )
    header = "| E | k | MoE ms | dense ms | all-experts ms | MoE/dense | all-experts/MoE |"
    print(header)
    print("|" + "---|" * 7)
    results = {}
    for k in map(int, FLAGS.top_k):
        dense = DenseFFN(k * hidden)
        dense.build(x.shape)
        for e in map(int, FLAGS.experts):
            moe = MoELayer(e, hidden, top_k=k, capacity_factor=FLAGS.capacity_factor)
            moe.build(x.shape)
            # Random router weights: a realistic, not perfectly balanced, routing.
            moe.gate_kernel.assign(
                np.random.default_rng(e).normal(size=(d, e)).astype("float32") * 0.05
            )
            runs = {"moe": _train_step_fn(moe, x), "dense": _train_step_fn(dense, x)}
            if FLAGS.all_experts:
                all_experts = AllExpertsMoE(e, hidden, top_k=k)
                all_experts.build(x.shape)
                runs["all_experts"] = _train_step_fn(all_experts, x)
            ms = _time_side_by_side(runs, FLAGS.repeats)
            results[(e, k)] = ms
            all_ms = ms.get("all_experts", float("nan"))
            print(
                f"| {e} | {k} | {ms['moe']:.1f} | {ms['dense']:.1f} | {all_ms:.1f} | "
                f"{ms['moe'] / ms['dense']:.2f} | {all_ms / ms['moe']:.2f} |",
                flush=True,
            )
    for k in map(int, FLAGS.top_k):
        experts = sorted(map(int, FLAGS.experts))
        flat = results[(experts[-1], k)]["moe"] / results[(experts[0], k)]["moe"]
        print(f"k={k}: MoE time at E={experts[-1]} / E={experts[0]} = {flat:.2f}")


if __name__ == "__main__":
    app.run(main)
