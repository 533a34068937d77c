"""`tf.distribute.MirroredStrategy` on 2 logical CPU devices (TensorFlow).

Run as a script (logical devices are fixed when TensorFlow starts):
    KERAS_BACKEND=tensorflow python tests/distribution/tf_checks.py [check ...]
All checks share the process's one strategy (`keras_multimodel.cli.scale.mirrored_strategy`).
Each check raises on failure and prints one line when it passes.
"""

import os
import sys
import tempfile

os.environ["KERAS_BACKEND"] = "tensorflow"

import tensorflow as tf  # noqa: E402

tf.config.set_visible_devices([], "GPU")  # the strategy takes every device: CPUs only
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from common import assert_same_step, initial_weights, make_batch, make_model, train_one_step  # noqa: E402

from keras_multimodel.cli import scale  # noqa: E402

REPLICAS = 2
BATCH = make_batch(per_group=8)


def fresh(**overrides):
    keras.utils.set_random_seed(1)
    model = make_model(**overrides)
    for moe in model.moe_layers:
        # Each replica would draw its own gating noise; the comparison needs none.
        moe.noisy_gating = False
    return model


def strategy():
    """The one MirroredStrategy of the process, the one `train` uses too
    (TensorFlow's collective ops can mix up several strategies in one process)."""
    mirrored = scale.mirrored_strategy()
    assert mirrored.num_replicas_in_sync == REPLICAS, mirrored.extended.worker_devices
    return mirrored


def check_mirrored_step_equals_one_device():
    """Loss, per-task metrics and updates equal one device's (2 routing groups there)."""
    reference_model = fresh(moe_num_groups=REPLICAS)
    weights = initial_weights(reference_model)
    reference = train_one_step(reference_model, weights, BATCH)
    with strategy().scope():
        model = fresh()  # num_groups=None: one routing group per replica
        result = train_one_step(model, weights, BATCH)
    assert_same_step(reference, result, "MirroredStrategy")
    logs = reference[0]
    print(f"PASS mirrored_step_equals_one_device (loss {logs['loss']:.4f} on both)")


def check_mirrored_save_and_load_in_scope():
    """A model saved after mirrored training loads inside the scope and trains on."""
    mirrored = strategy()
    with mirrored.scope():
        model = fresh()
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        dataset = tf.data.Dataset.from_tensors(BATCH).repeat()
        first = model.fit(dataset, epochs=2, steps_per_epoch=3, verbose=0).history["loss"]
        assert first[-1] < first[0], first
        path = os.path.join(tempfile.mkdtemp(), "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        outputs, reloaded = model(BATCH), loaded(BATCH)
        for group in model.groups:
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(reloaded[group]),
                keras.ops.convert_to_numpy(outputs[group]),
                atol=1e-5,
            )
        more = loaded.fit(dataset, epochs=1, steps_per_epoch=2, verbose=0).history["loss"]
        assert np.isfinite(more).all(), more
        answers = loaded.generate("label", BATCH["image_to_class_label"]["inputs"])
        assert np.asarray(answers).shape == (8,)
    print(f"PASS mirrored_save_and_load_in_scope (losses {first} then {more})")


def check_train_command():
    """`train` with `distribution="mirrored"` (`--distribution mirrored`) uses both
    devices. In-process: the two logical devices exist only in this process."""
    import contextlib
    import io
    import json
    import pathlib

    from keras_multimodel.cli.config import TrainConfig
    from keras_multimodel.cli.train import train

    config = TrainConfig(
        tasks=("classify_image",), train_steps=4, steps_per_epoch=2, batch_size=8,
        distribution="mirrored",
    )  # fmt: skip
    output_dir = pathlib.Path(tempfile.mkdtemp())
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        train(output_dir, config, verbose=0)
    assert "mirrored over 2 devices (2 data shards)" in printed.getvalue(), printed.getvalue()
    assert json.loads((output_dir / "train_time.json").read_text())["steps"] == 4
    assert (output_dir / "model.keras").exists()
    print("PASS train_command (mirrored)")


CHECKS = {
    "mirrored_step_equals_one_device": check_mirrored_step_equals_one_device,
    "mirrored_save_and_load_in_scope": check_mirrored_save_and_load_in_scope,
    "train_command": check_train_command,
}

if __name__ == "__main__":
    assert len(tf.config.list_logical_devices("CPU")) == REPLICAS
    for name in sys.argv[1:] or CHECKS:
        CHECKS[name]()
