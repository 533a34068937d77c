"""Loads a `.keras` file on this process's backend and writes what it computes.

    KERAS_BACKEND=jax python tests/distribution/load_elsewhere.py model.keras out.npz

`out.npz` holds the logits of `common.make_batch()` per group (`logits/<group>`),
every optimizer variable (`optimizer/<index>`) and one more training step's loss
without gating noise (`next_loss`). `tests/test_portable_checkpoints.py` compares
them with the saving backend's.
"""

import sys

import keras
import numpy as np
from common import logits_and_optimizer_state, make_batch, one_more_step_without_noise


def main(model_path, out_path):
    model = keras.saving.load_model(model_path)
    batch = make_batch()
    results = logits_and_optimizer_state(model, batch)
    results["next_loss"] = one_more_step_without_noise(model, batch)
    results["backend"] = np.array(keras.backend.backend())
    np.savez(out_path, **results)


if __name__ == "__main__":
    main(*sys.argv[1:])
