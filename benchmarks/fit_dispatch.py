"""What a per-step callback that waits for each step costs `MultiModel.fit`.

    KERAS_BACKEND=jax python benchmarks/fit_dispatch.py

Keras dispatches a step's `on_train_batch_end` callbacks to a worker thread (JAX,
torch) only when every callback is `async_safe` or defines no per-step hook;
otherwise each step's logs are turned into Python floats at once, so the host
waits for every step before it queues the next. `MultiModel.fit` always adds a
`StopOnNonFiniteLoss`, which is async-safe. This times `fit` on a small two-task
model (a step of a few ms, where dispatch matters most, as on an accelerator)
with that callback as it is and with it forced synchronous (the behaviour before
it was async-safe), alternating, and prints the medians (ms per step) and their
ratio. TensorFlow never dispatches callbacks asynchronously, so both match there.
"""

import statistics
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 200, "Steps per timed fit.")
flags.DEFINE_integer("repeats", 5, "Timed fits per variant (alternating).")
flags.DEFINE_integer("hidden_size", 32, "Width of the model.")


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_multimodel as kmm
    from keras_multimodel.callbacks import StopOnNonFiniteLoss
    from keras_multimodel.modalities import ClassLabel, Image, Text

    class Synchronous(StopOnNonFiniteLoss):
        async_safe = False

    text = Text(vocab_size=64, max_length=16)
    model = kmm.MultiModel(
        [kmm.Task("label", Image(channels=1), ClassLabel(4)), kmm.Task("copy", text, text)],
        hidden_size=FLAGS.hidden_size,
        num_experts=2,
    )
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, 64, (8, 16)).astype("int32")
    batch = {
        "image_to_class_label": {
            "inputs": rng.integers(0, 256, (8, 8, 8, 1)).astype("uint8"),
            "targets": rng.integers(0, 4, 8).astype("int32"),
            "task_id": np.zeros(8, "int32"),
        },
        "text_to_text": {"inputs": tokens, "targets": tokens, "task_id": np.ones(8, "int32")},
    }
    data = tf.data.Dataset.from_tensors(batch).repeat()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    variants = {"async-safe (now)": [], "synchronous (before)": []}

    def fit(callbacks):
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=FLAGS.steps, callbacks=callbacks, verbose=0)
        return 1000 * (time.perf_counter() - start) / FLAGS.steps

    fit([])  # compiles
    for _ in range(FLAGS.repeats):
        variants["async-safe (now)"].append(fit([]))
        variants["synchronous (before)"].append(fit([Synchronous()]))
    backend = keras.backend.backend()
    medians = {name: statistics.median(times) for name, times in variants.items()}
    for name, ms in medians.items():
        print(f"{backend}: {name}: median {ms:.2f} ms/step over {FLAGS.repeats} fits")
    ratio = medians["synchronous (before)"] / medians["async-safe (now)"]
    print(f"{backend}: synchronous / async-safe = {ratio:.2f}")


if __name__ == "__main__":
    app.run(main)
