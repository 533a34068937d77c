"""MultiModel train-step throughput and model FLOPs utilisation (MFU), per backend.

    python benchmarks/train_step.py                      # both backends, tiny and base
    python benchmarks/train_step.py --presets=base --backends=jax

Each (backend, preset) runs in its own process (the backend is fixed at import),
one after the other. A process builds a two-task MultiModel (28x28 image ->
10 classes; 32-token text -> 32-token text), compiles `train_on_batch`, and times
`--steps` steps after `--warmup`; it reports the median step time and
examples/s. In the same process it times a compiled `--matmul_size`^2 float32
matmul, the machine's attainable matmul rate. MFU = model FLOPs per step / step
time / matmul rate, with model FLOPs per step counted by XLA's cost analysis of
the jitted forward+backward pass (on JAX, for both backends: the math is the same).
"""

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("backends", ["jax", "tensorflow"], "Backends to compare.")
flags.DEFINE_list("presets", ["tiny", "base"], "MultiModel presets.")
flags.DEFINE_integer("batch_size", 32, "Examples per step, split evenly over the two tasks.")
flags.DEFINE_integer("steps", 20, "Timed steps.")
flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.")
flags.DEFINE_integer("matmul_size", 1024, "Side of the square matmul that measures GFLOP/s.")
flags.DEFINE_string("worker", None, "Internal: run one preset on this process's backend.")
flags.DEFINE_bool("count_flops", False, "Internal: print the FLOPs of one step (JAX).")
flags.DEFINE_string("dtype_policy", "float32", "Keras dtype policy, e.g. mixed_bfloat16.")

TEXT_LENGTH = 32


def _model_and_batch(preset, batch_size):
    import numpy as np

    import keras_multimodel as kmm
    from keras_multimodel.modalities import ClassLabel, Image, Text

    text = Text(vocab_size=8000, max_length=TEXT_LENGTH)
    model = kmm.MultiModel(
        [kmm.Task("classify", Image(channels=1), ClassLabel(10)), kmm.Task("copy", text, text)],
        preset=preset,
        dtype=FLAGS.dtype_policy,
    )
    rng = np.random.default_rng(0)
    half = batch_size // 2
    tokens = rng.integers(2, 8000, (half, TEXT_LENGTH)).astype("int32")
    batch = {
        "image_to_class_label": {
            "inputs": rng.integers(0, 256, (half, 28, 28, 1)).astype("uint8"),
            "targets": rng.integers(0, 10, half).astype("int32"),
            "task_id": np.zeros(half, "int32"),
        },
        "text_to_text": {"inputs": tokens, "targets": tokens, "task_id": np.ones(half, "int32")},
    }
    return model, batch


def count_flops(preset, batch_size):
    """FLOPs of one forward+backward pass, from XLA's cost analysis (JAX backend)."""
    import jax

    model, batch = _model_and_batch(preset, batch_size)

    def loss(trainable, non_trainable):
        outputs, _ = model.stateless_call(trainable, non_trainable, batch, training=True)
        return model.compute_loss(batch, None, outputs)

    grad = jax.jit(jax.grad(loss))
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    analysis = grad.lower(trainable, non_trainable).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return float(analysis["flops"])


def _median_seconds(fn, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _sync(value):
    from keras import ops

    ops.convert_to_numpy(value)


def worker(preset):
    """Runs in a worker process: step time, examples/s and matmul GFLOP/s."""
    import keras
    import numpy as np
    from keras import ops

    keras.utils.set_random_seed(0)
    model, batch = _model_and_batch(preset, FLAGS.batch_size)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), jit_compile=True)
    start = time.perf_counter()
    model.train_on_batch(batch)
    compile_seconds = time.perf_counter() - start
    for _ in range(FLAGS.warmup):
        model.train_on_batch(batch)
    step = _median_seconds(lambda: model.train_on_batch(batch), FLAGS.steps)

    n = FLAGS.matmul_size
    a = ops.convert_to_tensor(np.random.default_rng(0).normal(size=(n, n)).astype("float32"))
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        matmul = jax.jit(lambda x: x @ x)
    else:
        import tensorflow as tf

        matmul = tf.function(lambda x: tf.matmul(x, x), jit_compile=True)
    for _ in range(3):
        _sync(matmul(a))
    matmul_seconds = _median_seconds(lambda: _sync(matmul(a)), 20)
    return {
        "backend": backend,
        "preset": preset,
        "params": model.count_params(),
        "compile_s": compile_seconds,
        "step_ms": 1000 * step,
        "examples_per_s": FLAGS.batch_size / step,
        "matmul_gflops": 2 * n**3 / matmul_seconds / 1e9,
    }


def _run(backend, args):
    env = {**os.environ, "KERAS_BACKEND": backend}
    command = [
        sys.executable,
        __file__,
        *args,
        f"--batch_size={FLAGS.batch_size}",
        f"--steps={FLAGS.steps}",
        f"--warmup={FLAGS.warmup}",
        f"--matmul_size={FLAGS.matmul_size}",
        f"--dtype_policy={FLAGS.dtype_policy}",
    ]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv):
    if FLAGS.count_flops:
        print(json.dumps({"flops": count_flops(FLAGS.worker, FLAGS.batch_size)}))
        return
    if FLAGS.worker:
        print(json.dumps(worker(FLAGS.worker)))
        return
    print(
        f"batch_size={FLAGS.batch_size} steps={FLAGS.steps} (median), text length "
        f"{TEXT_LENGTH}, image 28x28, dtype policy {FLAGS.dtype_policy}"
    )
    rows = []
    for preset in FLAGS.presets:
        flops = _run("jax", [f"--worker={preset}", "--count_flops"])["flops"]
        for backend in FLAGS.backends:
            result = _run(backend, [f"--worker={preset}"])
            step_flops_per_s = flops / (result["step_ms"] / 1000)
            result["gflop_per_step"] = flops / 1e9
            result["mfu"] = step_flops_per_s / (result["matmul_gflops"] * 1e9)
            rows.append(result)
            print(json.dumps(result), flush=True)
    print()
    print(
        "| preset | backend | params | compile s | step ms | examples/s | GFLOP/step | "
        "matmul GFLOP/s | MFU |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['preset']} | {r['backend']} | {r['params'] / 1e6:.2f}M | "
            f"{r['compile_s']:.1f} | {r['step_ms']:.1f} | {r['examples_per_s']:.1f} | "
            f"{r['gflop_per_step']:.2f} | {r['matmul_gflops']:.0f} | {100 * r['mfu']:.1f}% |"
        )
    for preset in FLAGS.presets:
        times = {r["backend"]: r["step_ms"] for r in rows if r["preset"] == preset}
        if len(times) == 2:
            slow, fast = max(times.values()), min(times.values())
            print(f"{preset}: slower/faster backend step time = {slow / fast:.2f}")


if __name__ == "__main__":
    app.run(main)
