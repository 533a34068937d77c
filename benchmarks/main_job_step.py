"""The main job's own train step: real batches of its six tasks, per length bucket.

    python benchmarks/main_job_step.py                       # the backend of KERAS_BACKEND
    KERAS_BACKEND=jax python benchmarks/main_job_step.py --profile_dir /tmp/trace

`train_step.py` times a two-task toy; this times what `train` runs: the `tiny`
MultiModel of the six bundled tasks, its shared 4,000-piece vocabulary, and batches
of 48 drawn by `data.mixture` as `train` draws them (one batch per length bucket,
`--bucketing` as `train`'s "fitted" or the "doubling" of 32 and 64 tokens). It
prints the first step of each bucket (which compiles), the median of `--steps`
steps after 3 warm-up steps, and their mean weighted by how often each bucket
comes in the first 300 batches. With `--profile_dir` (JAX) it also writes a
profiler trace of 5 steps of the longest bucket and prints the XLA kernels that
took the most time.

    python benchmarks/main_job_step.py --bucketing=doubling  # before fitted buckets
"""

import ast
import collections
import glob
import gzip
import json
import os
import statistics
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 15, "Timed steps per bucket.")
flags.DEFINE_string("profile_dir", None, "JAX: write a trace of 5 steps here and summarise it.")
flags.DEFINE_enum("bucketing", "fitted", ["fitted", "doubling"], "mixture's bucket lengths.")
flags.DEFINE_enum("tokenizer", "bpe", ["bpe", "unigram"], "The shared vocabulary's model.")
# (the choices of keras_multimodel.data.vocabulary.MODEL_TYPES; flags are defined before
# the package is imported, so that its backend follows KERAS_BACKEND)
flags.DEFINE_integer("batch_size", None, "Examples per step (default: train's).")
flags.DEFINE_list("body", [], "Body settings over the preset's, e.g. hidden_size=128.")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                  "Model.compile's jit_compile (Keras's auto: no XLA for TensorFlow on a CPU).")


def _top_kernels(profile_dir, steps, count=12):
    """(ms per step, kernel name) of the XLA kernels in a JAX trace, largest first."""
    traces = glob.glob(f"{profile_dir}/plugins/profile/*/*.trace.json.gz")
    if not traces:
        raise SystemExit(f"no *.trace.json.gz under {profile_dir}/plugins/profile/")
    path = max(traces, key=os.path.getmtime)  # this run's, if the folder was reused
    with gzip.open(path) as f:
        events = json.load(f)["traceEvents"]
    totals = collections.Counter()
    for event in events:
        name = event.get("name", "")
        python_or_runtime = name.startswith("$") or "::" in name or "(" in name
        if event.get("ph") == "X" and not python_or_runtime:
            totals[name] += event.get("dur", 0)
    return [(us / 1000 / steps, name) for name, us in totals.most_common(count)]


def main(argv):
    del argv
    import keras
    import tensorflow as tf

    from keras_multimodel.cli.config import TrainConfig
    from keras_multimodel.data import bundled, mixture, train_tokenizer
    from keras_multimodel.models import MultiModel

    config = TrainConfig()
    batch_size = FLAGS.batch_size or config.batch_size
    body = {key: ast.literal_eval(value) for key, value in (i.split("=") for i in FLAGS.body)}
    texts = bundled.training_texts(config.tasks, config.data_size)
    tokenizer = train_tokenizer(
        texts, config.vocabulary_size, fit_to_texts=True, model_type=FLAGS.tokenizer
    )
    tasks = bundled.make_tasks(tokenizer, config.tasks, config.data_size)
    model = MultiModel(tasks, preset=config.preset, tokenizer=tokenizer, **body)
    sets = {name: bundled.load(name, "train", tokenizer, config.data_size) for name in config.tasks}
    data = mixture(
        sets, batch_size, model, num_buckets=config.num_buckets,
        bucketing=FLAGS.bucketing, seed=0,
    )  # fmt: skip
    batches, counts = {}, collections.Counter()
    for batch in data.take(300):  # the first batch of each bucket, and how often each comes
        length = int(batch["text_to_text"]["targets"].shape[1])
        batches.setdefault(length, tf.nest.map_structure(lambda t: t.numpy(), batch))
        counts[length] += 1
    jit_compile = {"auto": "auto", "true": True, "false": False}[FLAGS.jit_compile]
    optimizer = keras.optimizers.Adam(1e-3, global_clipnorm=1.0)
    model.compile(optimizer=optimizer, jit_compile=jit_compile)
    backend = keras.backend.backend()
    for length, batch in sorted(batches.items()):
        start = time.perf_counter()
        model.train_on_batch(batch)
        print(f"{backend}: {length}-token bucket, first step {time.perf_counter() - start:.1f} s")
    medians = {}
    for length, batch in sorted(batches.items()):
        for _ in range(3):
            model.train_on_batch(batch)
        times = []
        for _ in range(FLAGS.steps):
            start = time.perf_counter()
            model.train_on_batch(batch)
            times.append(time.perf_counter() - start)
        median = medians[length] = 1000 * statistics.median(times)
        print(f"{backend}: {length}-token bucket, median step {median:.1f} ms")
    total = sum(counts.values())
    mean = sum(medians[n] * counts[n] for n in counts) / total
    shares = ", ".join(f"{n} tokens {100 * counts[n] / total:.0f}%" for n in sorted(counts))
    print(f"{backend}: {FLAGS.bucketing} buckets ({shares}): {mean:.1f} ms per batch")
    if FLAGS.profile_dir and backend == "jax":
        import jax

        with jax.profiler.trace(FLAGS.profile_dir, create_perfetto_trace=True):
            for _ in range(5):
                model.train_on_batch(batches[max(batches)])
        print("XLA kernels, ms per step (they run on two threads, so they add up to more "
              "than the step):")  # fmt: skip
        for ms, name in _top_kernels(FLAGS.profile_dir, 5):
            print(f"  {ms:7.1f}  {name}")


if __name__ == "__main__":
    app.run(main)
