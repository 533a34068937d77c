"""A small demo that trains MultiModel's three layers: sorting sequences of digits.

Each example is a sequence of random digits; the target at position t is the t-th
smallest digit. Solving it needs every position to see the whole sequence, so the
model uses all three layers: ConvBlock (local features), AttentionBlock (global
mixing with timing signals) and MoELayer (sparse experts).

    python -m keras_multimodel demo --steps_per_epoch 200 --epochs 3
"""

import os
import time

import keras
import numpy as np

from keras_multimodel.layers import AttentionBlock, ConvBlock, MoELayer

VOCABULARY = 10


def sorting_data(num_examples, length, seed):
    """`(digits, sorted_digits)` int32 arrays of shape `(num_examples, length)`."""
    rng = np.random.default_rng(seed)
    digits = rng.integers(0, VOCABULARY, size=(num_examples, length)).astype("int32")
    return digits, np.sort(digits, axis=1)


def build_sorter(hidden=64, num_heads=4, num_experts=8, top_k=2):
    """Embedding -> ConvBlock -> AttentionBlock -> MoELayer -> AttentionBlock -> logits."""
    tokens = keras.Input((None,), dtype="int32", name="digits")
    x = keras.layers.Embedding(VOCABULARY, hidden, name="embedding")(tokens)
    x = ConvBlock(hidden, kernel_sizes=(3, 3), dilation_rates=(1, 1), name="conv_block")(x)
    x = AttentionBlock(num_heads, name="attention_0")(x)
    x = MoELayer(num_experts, 2 * hidden, top_k=top_k, name="moe")(x)
    x = AttentionBlock(num_heads, name="attention_1")(x)
    logits = keras.layers.Dense(VOCABULARY, name="logits")(x)
    return keras.Model(tokens, logits, name="digit_sorter")


def run(steps_per_epoch=200, epochs=3, batch_size=64, length=12, output_dir=None, verbose=1):
    """Trains the sorter and returns `{"accuracy", "baseline_accuracy", "seconds"}`."""
    keras.utils.set_random_seed(0)
    x_train, y_train = sorting_data(steps_per_epoch * batch_size, length, seed=0)
    x_test, y_test = sorting_data(1024, length, seed=1)
    model = build_sorter()
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=(x_test, y_test),
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    # Trivial baseline: predict the most frequent digit at each position.
    majority = np.array([np.bincount(y_train[:, t]).argmax() for t in range(length)])
    baseline = float((y_test == majority[None, :]).mean())
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        model.save(os.path.join(output_dir, "digit_sorter.keras"))
    return {"accuracy": float(accuracy), "baseline_accuracy": baseline, "seconds": seconds}
