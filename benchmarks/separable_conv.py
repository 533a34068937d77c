"""Depthwise convolution, forward + backward: ours (shifted multiply-adds, hand-written
gradient) against the backend's grouped convolution (`keras.ops.depthwise_conv`).

    KERAS_BACKEND=jax python benchmarks/separable_conv.py
    KERAS_BACKEND=tensorflow python benchmarks/separable_conv.py

Input (16, 64 + field, 256), XLA-compiled, gradients of the input and the kernel;
each variant is timed in blocks after one untimed run; medians in ms.
"""

import statistics
import time

import keras
import numpy as np
from absl import app, flags
from keras import ops

from keras_multimodel.layers.separable_conv import depthwise_conv1d

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 20, "Timed runs per variant.")


def _grad_fn(conv, x, kernel):
    backend = keras.backend.backend()

    def loss(x, kernel):
        return ops.sum(ops.square(conv(x, kernel)))

    if backend == "jax":
        import jax

        step = jax.jit(jax.grad(loss, argnums=(0, 1)))
        return lambda: jax.block_until_ready(step(x, kernel))
    import tensorflow as tf

    x, kernel = tf.constant(x), tf.constant(kernel)

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            value = loss(x, kernel)
        return tape.gradient(value, [x, kernel])

    return lambda: [g.numpy() for g in step()]


def main(argv):
    rng = np.random.default_rng(0)
    print(f"backend={keras.backend.backend()} (median ms, forward + backward)")
    print("| kernel | dilation | ours | ops.depthwise_conv | speed-up |")
    print("|---|---|---|---|---|")
    for kernel_size, dilation in ((3, 1), (15, 8)):
        field = (kernel_size - 1) * dilation
        x = rng.normal(size=(16, 64 + field, 256)).astype("float32")
        kernel = rng.normal(size=(kernel_size, 256)).astype("float32")
        variants = {
            "ours": lambda x, k, d=dilation: depthwise_conv1d(x, k, d),
            "native": lambda x, k, d=dilation: ops.depthwise_conv(
                x, k[:, :, None], padding="valid", dilation_rate=d
            ),
        }
        ms = {}
        for name, conv in variants.items():
            run = _grad_fn(conv, x, kernel)
            run()
            times = []
            for _ in range(FLAGS.repeats):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            ms[name] = 1000 * statistics.median(times)
        print(
            f"| {kernel_size} | {dilation} | {ms['ours']:.2f} | {ms['native']:.2f} | "
            f"{ms['native'] / ms['ours']:.1f}x |"
        )


if __name__ == "__main__":
    app.run(main)
