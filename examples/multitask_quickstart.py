"""Quickstart: one MultiModel learns an image task and a text task from numpy arrays.

- `quadrant`: which quadrant of a noisy 16x16 grayscale image is bright (4 classes);
- `reverse`: a sequence of word ids -> the same ids reversed, then the end token.

Both train together with `model.fit` on a `keras_multimodel.data.mixture`, then
`generate` answers both tasks, and the model survives a `.keras` round trip.

    KERAS_BACKEND=jax python examples/multitask_quickstart.py [--epochs 4 --steps_per_epoch 60]
"""

import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

import keras_multimodel as kmm
from keras_multimodel.modalities import ClassLabel, Image, Text

VOCAB, MAX_LENGTH, END = 32, 16, 1  # ids: 0 padding, 1 end, 2.. words


def quadrant_data(n, rng):
    images = rng.integers(0, 80, (n, 16, 16, 1)).astype("uint8")
    labels = rng.integers(0, 4, n)
    for image, label in zip(images, labels, strict=True):
        row, col = divmod(label, 2)
        image[row * 8 : row * 8 + 8, col * 8 : col * 8 + 8] += 120
    return images, labels


def reverse_data(n, rng, max_words=10):
    sources = np.zeros((n, max_words), "int32")
    targets = np.zeros((n, max_words + 1), "int32")
    for i, length in enumerate(rng.integers(2, max_words + 1, n)):
        words = rng.integers(2, VOCAB, length)
        sources[i, :length] = words
        targets[i, :length] = words[::-1]
        targets[i, length] = END
    return sources, targets


def main(steps_per_epoch=60, epochs=4, batch_size=32, verbose=2):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    train_images, train_labels = quadrant_data(2048, rng)
    test_images, test_labels = quadrant_data(256, rng)
    train_sources, train_targets = reverse_data(2048, rng)
    test_sources, test_targets = reverse_data(64, rng)

    # === The model: one task per modality pair, sizes from the "tiny" preset ===
    text = Text(vocab_size=VOCAB, max_length=MAX_LENGTH, end_token_id=END)
    model = kmm.MultiModel(
        [
            kmm.Task("quadrant", inputs=Image(channels=1), targets=ClassLabel(4)),
            kmm.Task("reverse", inputs=text, targets=text),
        ],
        preset="tiny",
    )
    # === Multi-task data: one sub-batch per group, padded to a few bucket lengths ===
    dataset = kmm.data.mixture(
        {
            "quadrant": tf.data.Dataset.from_tensor_slices((train_images, train_labels)),
            "reverse": tf.data.Dataset.from_tensor_slices((train_sources, train_targets)),
        },
        batch_size=batch_size,
        tasks=model,
        seed=0,
    )
    # === Train: no loss to pass; per-task losses and metrics appear in the logs ===
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    start = time.time()
    history = model.fit(dataset, steps_per_epoch=steps_per_epoch, epochs=epochs, verbose=verbose)
    seconds = time.time() - start

    # === Decode both tasks ===
    predicted_labels = model.generate("quadrant", test_images)
    predicted_tokens = model.generate("reverse", test_sources, max_length=MAX_LENGTH)
    expected = np.zeros_like(predicted_tokens)
    expected[:, : test_targets.shape[1]] = np.where(test_targets == END, 0, test_targets)
    results = {
        "seconds": seconds,
        "loss": history.history["loss"],
        "quadrant_accuracy": float(np.mean(predicted_labels == test_labels)),
        "chance": 0.25,
        "reverse_exact_match": float(np.mean(np.all(predicted_tokens == expected, axis=1))),
        "example": (test_sources[0], predicted_tokens[0]),
    }

    # === Save, load, compare ===
    path = os.path.join(tempfile.mkdtemp(), "multimodel.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    results["same_after_load"] = bool(
        np.array_equal(restored.generate("quadrant", test_images), predicted_labels)
        and np.array_equal(
            restored.generate("reverse", test_sources, max_length=MAX_LENGTH), predicted_tokens
        )
    )
    return results


def run(argv):
    del argv
    flag = flags.FLAGS
    results = main(flag.steps_per_epoch, flag.epochs, flag.batch_size)
    source, output = results.pop("example")
    print(f"reverse {source[source > 0].tolist()} -> {output[output > 0].tolist()}")
    for key, value in results.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    # Flags are defined only when run as a script: tests import `main` from this file.
    flags.DEFINE_integer("epochs", 4, "Training epochs.", lower_bound=1)
    flags.DEFINE_integer("steps_per_epoch", 60, "Steps per epoch.", lower_bound=1)
    flags.DEFINE_integer("batch_size", 32, "Examples per step, both tasks.", lower_bound=2)
    app.run(run)
