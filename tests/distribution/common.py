"""A small two-group MultiModel and one fixed batch, for the distribution checks.

The checks run in their own processes (the device count is fixed when a backend
starts), from `tests/test_distribution.py`.
"""

import keras
import numpy as np

import keras_multimodel as kmm
from keras_multimodel.modalities import ClassLabel, Image, Text

TEXT = Text(vocab_size=40, max_length=16)


def make_model(**overrides):
    """The smallest body with every kind of part (a dilated ConvBlock step, the MoE,
    attention), width 32, 8 experts; `overrides` are body settings."""
    tasks = [
        kmm.Task("label", Image(channels=1), ClassLabel(4)),
        kmm.Task("copy", TEXT, TEXT),
        kmm.Task("reverse", TEXT, TEXT, loss_weight=0.5),
    ]
    settings = {
        "hidden_size": 32,
        "num_experts": 8,
        "expert_hidden_size": 32,
        "encoder_blocks": 1,
        "decoder_layers": 1,
        "kernel_sizes": (3, 5),
        "dilation_rates": (1, 2),
        **overrides,
    }
    return kmm.MultiModel(tasks, **settings)


def make_batch(per_group=8, seed=0):
    """One batch with `per_group` examples in each group, padding included."""
    rng = np.random.default_rng(seed)
    text = rng.integers(2, 40, (per_group, 9)).astype("int32")
    text[::3, 6:] = 0  # padded rows
    return {
        "image_to_class_label": {
            "inputs": rng.integers(0, 256, (per_group, 8, 8, 1)).astype("uint8"),
            "targets": rng.integers(0, 4, (per_group,)).astype("int32"),
            "task_id": np.zeros((per_group,), "int32"),
        },
        "text_to_text": {
            "inputs": text,
            "targets": text[:, ::-1].copy(),
            "task_id": (1 + np.arange(per_group) % 2).astype("int32"),
        },
    }


def train_one_step(model, weights, batch, learning_rate=0.5):
    """Loads `weights`, takes one SGD step with `fit` on `batch`.

    Returns `(logs, updates)`: the step's logs and each weight's change.
    """
    import tensorflow as tf

    model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate))
    dataset = tf.data.Dataset.from_tensors(batch)
    history = model.fit(dataset, epochs=1, verbose=0)
    logs = {key: float(values[-1]) for key, values in history.history.items()}
    after = [keras.ops.convert_to_numpy(w) for w in model.get_weights()]
    return logs, [new - old for new, old in zip(after, weights, strict=True)]


def assert_same_step(reference, other, what, rtol=1e-3, atol=1e-6):
    """Equal logs (loss, per-task metrics) and equal weight updates, within float error."""
    (ref_logs, ref_updates), (logs, updates) = reference, other
    assert set(ref_logs) == set(logs), (what, sorted(ref_logs), sorted(logs))
    for key in ref_logs:
        np.testing.assert_allclose(
            logs[key], ref_logs[key], rtol=rtol, atol=atol, err_msg=f"{what}: {key}"
        )
    assert max(np.abs(u).max() for u in ref_updates) > 1e-2, "the step must move the weights"
    for index, (a, b) in enumerate(zip(ref_updates, updates, strict=True)):
        scale = max(np.abs(a).max(), 1e-3)  # relative to the weight's largest update
        np.testing.assert_allclose(
            b, a, rtol=0, atol=max(atol, rtol * scale), err_msg=f"{what}: update of weight {index}"
        )


def initial_weights(model):
    """A MultiModel's weights as built (it builds every variable when created)."""
    return [np.array(keras.ops.convert_to_numpy(w)) for w in model.get_weights()]


def one_more_step_without_noise(model, batch):
    """The loss of one more `fit` step with the gating noise off (each backend draws
    different random numbers, so only a noiseless step compares across backends)."""
    import tensorflow as tf

    if any(moe.noisy_gating for moe in model.moe_layers):
        for moe in model.moe_layers:
            moe.noisy_gating = False
        model.train_function = None  # traced again, without the noise
    history = model.fit(tf.data.Dataset.from_tensors(batch), verbose=0)
    return np.array(history.history["loss"][-1])


def logits_and_optimizer_state(model, batch):
    """`{"logits/<group>": ..., "optimizer/<index>": ...}` of `model` on `batch` (numpy)."""
    outputs = model(batch)
    results = {
        f"logits/{group}": keras.ops.convert_to_numpy(outputs[group]) for group in model.groups
    }
    for index, variable in enumerate(model.optimizer.variables):
        results[f"optimizer/{index}"] = keras.ops.convert_to_numpy(variable)
    return results
