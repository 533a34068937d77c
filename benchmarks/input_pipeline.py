"""Is the input pipeline ever the bottleneck? The mixture's examples/s vs the train step's.

    python benchmarks/input_pipeline.py                # the main job's six tasks, tiny
    KERAS_BACKEND=jax python benchmarks/input_pipeline.py --preset=base

In one process, on the main job's setting (all six bundled tasks, small data, the
shared tokenizer, batch 48, 2 buckets):
1. the mixture alone: batches per second drawn from the `tf.data` pipeline after
   `--warmup` batches (its shuffle buffers filled), median of `--repeats` timings of
   `--batches` batches each;
2. the train step: the model's compiled `train_on_batch` on batches taken from the
   same pipeline beforehand (so no input work is timed), median of `--steps` steps.
Target: pipeline examples/s >= 5x train-step examples/s.
"""

import statistics
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "tiny", "MultiModel preset.")
flags.DEFINE_integer("batch_size", 48, "Examples per batch.")
flags.DEFINE_integer("batches", 50, "Batches per pipeline timing.")
flags.DEFINE_integer("repeats", 5, "Pipeline timings (the median is reported).")
flags.DEFINE_integer("warmup", 20, "Untimed batches before timing.")
flags.DEFINE_integer("steps", 20, "Timed train steps.")


def main(argv):
    del argv
    import keras

    import keras_multimodel as kmm

    tokenizer = kmm.data.train_tokenizer(kmm.data.training_texts(), 4000)
    model = kmm.MultiModel(kmm.data.make_tasks(tokenizer), FLAGS.preset, tokenizer=tokenizer)
    sets = {task: kmm.data.load(task, "train", tokenizer) for task in kmm.data.PAPER_TASKS}
    data = kmm.data.mixture(sets, FLAGS.batch_size, model, num_buckets=2, seed=0)
    batches = iter(data)
    for _ in range(FLAGS.warmup):
        next(batches)
    pipeline = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        for _ in range(FLAGS.batches):
            next(batches)
        pipeline.append(FLAGS.batch_size * FLAGS.batches / (time.perf_counter() - start))

    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    # Both buckets compiled before timing; steps alternate over pre-fetched batches.
    numpy_batches = data.as_numpy_iterator()  # JAX's train_on_batch takes numpy, not tf
    held = [next(numpy_batches) for _ in range(FLAGS.steps + 10)]
    for batch in held[:10]:
        model.train_on_batch(batch)
    steps = []
    for batch in held[10:]:
        start = time.perf_counter()
        model.train_on_batch(batch)
        steps.append(FLAGS.batch_size / (time.perf_counter() - start))
    rate, train = statistics.median(pipeline), statistics.median(steps)
    print(f"backend {keras.backend.backend()}, preset {FLAGS.preset}, batch {FLAGS.batch_size}")
    print(f"mixture:    {rate:9.0f} examples/s (median of {FLAGS.repeats} x {FLAGS.batches})")
    print(f"train step: {train:9.0f} examples/s (median of {FLAGS.steps} steps)")
    verdict = "met" if rate >= 5 * train else "NOT met"
    print(f"ratio {rate / train:.1f}x (target >= 5x: {verdict})")


if __name__ == "__main__":
    app.run(main)
