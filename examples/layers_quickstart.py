"""Quickstart: compose ConvBlock, AttentionBlock and MoELayer into a Keras model.

    KERAS_BACKEND=jax python examples/layers_quickstart.py [--epochs 3 --samples 256]
"""

import keras
import numpy as np
from absl import app, flags

import keras_multimodel as kmm

FLAGS = flags.FLAGS


def main(argv):
    del argv
    # A toy sequence task on random features: predict the running mean of each channel.
    x = np.random.default_rng(0).normal(size=(FLAGS.samples, 16, 32)).astype("float32")
    y = np.cumsum(x, axis=1) / np.arange(1, 17)[None, :, None]

    inputs = keras.Input((None, 32))
    h = kmm.layers.ConvBlock(32, causal=True)(inputs)  # decoder-style: no peeking ahead
    h = kmm.layers.AttentionBlock(num_heads=4, causal=True)(h)
    h = kmm.layers.MoELayer(num_experts=8, hidden_dim=64, top_k=2)(h)  # adds its aux loss
    outputs = keras.layers.Dense(32)(h)
    model = keras.Model(inputs, outputs)

    model.compile(optimizer="adam", loss="mse", jit_compile=True)
    history = model.fit(x, y, batch_size=32, epochs=FLAGS.epochs, verbose=2)
    print("loss per epoch:", [round(v, 4) for v in history.history["loss"]])


if __name__ == "__main__":
    # Flags are defined only when run as a script, so the file can also be imported.
    flags.DEFINE_integer("epochs", 3, "Training epochs.", lower_bound=1)
    flags.DEFINE_integer("samples", 256, "Training sequences.", lower_bound=1)
    app.run(main)
