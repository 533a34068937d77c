"""A `.keras` file trained on one backend loads on every other backend (in another
process) with equal outputs and optimizer state, and trains on."""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

HELPERS = pathlib.Path(__file__).parent / "distribution"
sys.path.insert(0, str(HELPERS))
from common import (  # noqa: E402
    logits_and_optimizer_state,
    make_batch,
    make_model,
    one_more_step_without_noise,
)

# (saved on, loaded on): every backend's file loads on each other backend, except
# that JAX's is not loaded on torch (TensorFlow and JAX save alike). Each pair runs
# once, in the suite of the backend that saves.
PAIRS = [
    ("tensorflow", "jax"),
    ("tensorflow", "torch"),
    ("jax", "tensorflow"),
    ("torch", "tensorflow"),
    ("torch", "jax"),
]


@pytest.fixture(scope="module")
def trained_file(tmp_path_factory):
    """A model trained 3 Adam steps here, saved; its logits, optimizer state, and the
    loss of one more (noiseless) step."""
    path = tmp_path_factory.mktemp("portable") / "model.keras"
    model = make_model()
    for moe in model.moe_layers:  # noiseless from the start: one compiled step
        moe.noisy_gating = False
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    batch = make_batch()
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(3), verbose=0)
    model.save(path)
    expected = logits_and_optimizer_state(model, batch)
    expected["next_loss"] = one_more_step_without_noise(model, batch)
    return path, expected


@pytest.mark.large
@pytest.mark.parametrize(
    "backend",
    [
        pytest.param(
            loaded_on,
            id=f"{saved_on}-to-{loaded_on}",
            marks=pytest.mark.backends(saved_on, reason="the file is saved on this backend"),
        )
        for saved_on, loaded_on in PAIRS
    ],
)
def test_a_keras_file_loads_on_another_backend_with_equal_outputs_and_optimizer_state(
    trained_file, backend, tmp_path
):
    path, expected = trained_file
    out = tmp_path / "loaded.npz"
    env = {**os.environ, "KERAS_BACKEND": backend}
    result = subprocess.run(
        [sys.executable, str(HELPERS / "load_elsewhere.py"), str(path), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = dict(np.load(out))
    assert str(loaded.pop("backend")) == backend
    assert int(expected["optimizer/0"]) == 3  # the optimizer's step count travels too
    assert sorted(loaded) == sorted(expected)
    for key, value in expected.items():
        tolerance = 1e-3 if key == "next_loss" else 1e-4
        np.testing.assert_allclose(loaded[key], value, rtol=tolerance, atol=tolerance, err_msg=key)
