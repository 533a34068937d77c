"""Faults and bad input: kills during backups, two runs in one directory, bad flags,
bad numbers, damaged files, diverging training. Each case gets a one-line error or
correct handling, on every backend."""

import os
import pathlib
import random
import signal
import subprocess
import sys
import threading
import time
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_multimodel as kmm
from keras_multimodel.callbacks import (
    AtomicBackupAndRestore,
    StopAtStep,
    TrainingDiverged,
    optimizer_step,
)
from keras_multimodel.cli.config import TrainConfig
from keras_multimodel.cli.run_dir import load_run
from keras_multimodel.cli.run_lock import run_lock
from keras_multimodel.cli.train import train, train_callbacks
from keras_multimodel.data import DataError
from keras_multimodel.data.bundled import formats
from keras_multimodel.errors import InputError
from keras_multimodel.modalities import Audio, ClassLabel, Image, Text


def _run(*args, code=None, timeout=600):
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend()}
    command = ["-c", code, *args] if code else ["-m", "keras_multimodel", *args]
    return subprocess.run(
        [sys.executable, *command], env=env, capture_output=True, text=True, timeout=timeout
    )


# ----- backups ------------------------------------------------------------------------


def _small_model():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


def _fit(model, backup_dir, epochs):
    x, y = np.ones((16, 8), "float32"), np.zeros((16, 1), "float32")
    backup = AtomicBackupAndRestore(backup_dir, delete_on_finish=False)
    return model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=[backup])


def test_a_damaged_newest_backup_falls_back_to_the_previous_one(tmp_path, capsys):
    _fit(_small_model(), tmp_path, epochs=3)
    backups = sorted(tmp_path.glob("epoch-*"))
    assert [b.name for b in backups] == ["epoch-000002", "epoch-000003"]  # the last two kept
    weights = backups[-1] / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a cut-off write
    model = _small_model()
    history = _fit(model, tmp_path, epochs=5)
    assert history.epoch == [2, 3, 4]  # resumed after epoch 2, not 3, and not from scratch
    assert "epoch-000003" in capsys.readouterr().out  # and said so
    assert int(model.optimizer.iterations) == 5 * 2


def test_no_readable_backup_is_a_one_line_error(tmp_path):
    _fit(_small_model(), tmp_path, epochs=2)
    for weights in tmp_path.glob("epoch-*/model.weights.h5"):
        weights.write_bytes(b"garbage")
    with pytest.raises(DataError, match="no backup in .* can be read.*delete the folder"):
        _fit(_small_model(), tmp_path, epochs=3)


KILLABLE_TRAINING = """
import sys, keras, numpy as np
from keras_multimodel.callbacks import AtomicBackupAndRestore
model = keras.Sequential([keras.Input((512,)), keras.layers.Dense(2048), keras.layers.Dense(512)])
model.compile(optimizer="adam", loss="mse")
x = np.ones((8, 512), "float32")
backup = AtomicBackupAndRestore(sys.argv[1], delete_on_finish=False)
model.fit(x, x, batch_size=8, epochs=40, verbose=0, callbacks=[backup])
print("steps", int(model.optimizer.iterations))
"""


@pytest.mark.large
@pytest.mark.backends(
    "jax", reason="kills a training process; JAX's saving path is the least exercised elsewhere"
)
def test_killing_a_run_at_random_moments_during_backups_never_breaks_resuming(tmp_path):
    """Each epoch is one step and writes a 12 MB backup, so most kills land in a write."""
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend()}
    command = [sys.executable, "-c", KILLABLE_TRAINING, str(tmp_path)]
    rng = random.Random(0)
    kills = 0
    while kills < 4:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        while not any(tmp_path.glob("epoch-*")) and process.poll() is None:
            time.sleep(0.05)  # wait for the first backup of this start
        time.sleep(rng.uniform(0.0, 1.5))
        if process.poll() is not None:
            break
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        kills += 1
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ["steps", "40"]
    assert kills == 4


# ----- run directories ------------------------------------------------------------------


@pytest.mark.large
@pytest.mark.backends("torch", reason="two train processes; the lock is backend-independent")
def test_a_second_run_in_the_same_directory_is_refused_with_the_holders_pid(tmp_path):
    run_dir = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "keras_multimodel", "train", f"--output_dir={run_dir}",
         "--tasks=classify_image", "--train_steps=100000", "--batch_size=4"],
        env={**os.environ, "KERAS_BACKEND": keras.backend.backend()},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lock = run_dir / ".lock"
        deadline = time.time() + 300
        while time.time() < deadline and not (lock.exists() and lock.read_text().strip()):
            assert first.poll() is None, first.stderr.read()[-3000:]
            time.sleep(0.2)
        second = _run("train", f"--output_dir={run_dir}", "--tasks=classify_image",
                      "--train_steps=100000", "--batch_size=4")  # fmt: skip
        assert second.returncode == 1 and "Traceback" not in second.stderr
        assert f"in use by another train run (process {first.pid})" in second.stderr
    finally:
        first.kill()
        first.wait()


def test_the_lock_of_a_run_that_died_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its process id is gone, its lock file stays
    (tmp_path / ".lock").write_text(f"{dead.pid}\n")
    with run_lock(tmp_path):
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
    with run_lock(tmp_path):  # released on exit
        pass


# ----- flags and settings ------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"steps_per_epoch": 0}, "--steps_per_epoch must be a positive integer; received 0"),
        ({"batch_size": 0}, "--batch_size must be a positive integer; received 0"),
        ({"train_steps": -5}, "--train_steps must be a positive integer"),
        ({"learning_rate": 0.0}, "--learning_rate must be a finite number > 0 .*received 0.0"),
        ({"batch_size": 1}, r"smaller than the number of task groups \(2.*at least --batch_size 2"),
        ({"preset": "huge"}, "Unknown preset 'huge'"),
        ({"tasks": ("mnist",)}, "unknown task 'mnist'"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, settings, message):
    config = TrainConfig(**{"tasks": ("classify_image", "parse_en"), **settings})
    with pytest.raises(InputError, match=message):
        train(tmp_path / "run", config)
    assert not (tmp_path / "run").exists()


@pytest.mark.backends("torch", reason="backend-independent: the command line's flag checks")
def test_flags_of_zero_are_refused_on_the_command_line(tmp_path):
    result = _run("train", f"--output_dir={tmp_path / 'run'}", "--steps_per_epoch=0")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: --steps_per_epoch must be a positive integer; received 0" in result.stderr
    assert not (tmp_path / "run").exists()
    result = _run("evaluate", f"--model_dir={tmp_path}", "--max_examples=-999")
    assert result.returncode == 1 and "error: --max_examples must be a positive" in result.stderr


def test_output_directories_that_cannot_be_used_are_one_line_errors(tmp_path):
    config = TrainConfig(tasks=("classify_image",), batch_size=4, train_steps=1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is a file; give a directory"):
        train(tmp_path / "file", config)
    with pytest.raises(DataError, match="cannot create --output_dir"):
        train(tmp_path / "file" / "run", config)
    with pytest.raises(DataError, match="cannot create --output_dir"):
        train(pathlib.Path("/proc/keras_multimodel_run"), config)  # a read-only file system


# ----- damaged files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("faults")
    config = TrainConfig(tasks=("classify_image",), batch_size=4, train_steps=2)
    train(run_dir, config, verbose=0)
    return run_dir


@pytest.mark.backends("torch", reason="backend-independent: the .keras archive is checked")
def test_a_damaged_model_file_is_a_one_line_error(saved_run, tmp_path):
    data = bytearray((saved_run / "model.keras").read_bytes())
    (tmp_path / "train_settings.json").write_text("{}")
    with zipfile.ZipFile(saved_run / "model.keras") as archive:
        member = archive.getinfo("model.weights.h5")
    middle = member.header_offset + member.compress_size // 2
    data[middle] ^= 0xFF  # one flipped bit inside the weights: a bad CRC
    (tmp_path / "model.keras").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"model.keras is damaged.*train again"):
        load_run(tmp_path)
    (tmp_path / "model.keras").write_bytes(bytes(data[: len(data) // 2]))  # cut short
    with pytest.raises(DataError, match=r"model.keras is damaged \(not a complete archive"):
        load_run(tmp_path)


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    from PIL import Image as PILImage

    gradient = np.linspace(0, 65535, 28 * 28).reshape(28, 28).astype("uint16")
    PILImage.fromarray(gradient).save(tmp_path / "deep.png")
    pixels = formats.read_image(tmp_path / "deep.png", (28, 28, 1))[..., 0]
    np.testing.assert_allclose(pixels, gradient / 257.0, atol=1.0)
    assert (pixels == 255).mean() < 0.01


def test_an_image_too_large_to_decode_safely_is_a_one_line_error(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    PILImage.new("L", (100, 100)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)  # 10,000 pixels: a "bomb"
    with pytest.raises(DataError, match="too large to read safely"):
        formats.read_image(tmp_path / "bomb.png", (28, 28, 1))


# ----- bad numbers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def label_model():
    text = Text(vocab_size=12, max_length=8)
    return kmm.MultiModel(
        [kmm.Task("label", Image(channels=1), ClassLabel(3)), kmm.Task("copy", text, text)],
        hidden_size=16,
        num_experts=2,
        encoder_blocks=1,  # the smallest body: these tests are about fit, not depth
        decoder_layers=1,
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_pixels_are_refused(label_model, bad):
    images = np.zeros((2, 8, 8, 1), "float32")
    images[1, 3, 4, 0] = bad
    with pytest.raises(InputError, match=r"pixels must be finite numbers; entry \(1, 3, 4, 0\)"):
        label_model.generate("label", images)


def test_non_finite_audio_is_refused():
    text = Text(vocab_size=12, max_length=8)
    model = kmm.MultiModel(
        [kmm.Task("listen", Audio(num_mel_bins=8, max_length=800), text)],
        hidden_size=16,
        num_experts=2,
    )
    waveform = np.zeros((1, 400), "float32")
    waveform[0, 7] = np.nan
    with pytest.raises(InputError, match=r"audio samples must be finite.*\(0, 7\) is nan"):
        model.generate("listen", waveform)


def test_an_empty_batch_and_an_empty_text_are_refused(label_model):
    with pytest.raises(InputError, match="the batch is empty"):
        label_model.generate("label", np.zeros((0, 8, 8, 1), "uint8"))
    with pytest.raises(InputError, match="row 1 has no tokens"):
        label_model.generate("copy", np.array([[3, 4], [0, 0]], "int32"))


def _label_batch(labels):
    return {
        "image_to_class_label": {
            "inputs": np.zeros((len(labels), 8, 8, 1), "uint8"),
            "targets": np.array(labels, "int32"),
            "task_id": np.zeros(len(labels), "int32"),
        }
    }


def test_out_of_range_targets_stop_training_with_an_error_naming_the_task(label_model):
    label_model.compile(optimizer="adam")
    data = tf.data.Dataset.from_tensors(_label_batch([0, 7])).repeat()
    with pytest.raises(TrainingDiverged, match=r"step 1: the loss became nan \(tasks: label"):
        label_model.fit(data, steps_per_epoch=3, epochs=2, verbose=0)


def test_train_callbacks_let_keras_dispatch_steps_asynchronously(
    label_model, tmp_path, monkeypatch
):
    """Keras runs the per-step callbacks on a worker thread, so that a step need not
    wait for the last one to finish, only when every callback allows it (on JAX and
    torch; never on TensorFlow). `train`'s callbacks and the StopOnNonFiniteLoss
    `fit` adds all allow it, and StopAtStep still stops after exactly its steps.
    None of them may touch `self.model` on the worker thread: on JAX that syncs the
    model's state from a step whose buffers the next step has already donated."""
    on_main_thread, syncs_on_main_thread = [], []

    class Probe(keras.callbacks.Callback):
        async_safe = True

        def on_train_batch_end(self, batch, logs=None):
            on_main_thread.append(threading.current_thread() is threading.main_thread())

    if hasattr(label_model, "jax_state_sync"):
        sync = label_model.jax_state_sync

        def recorded_sync():
            syncs_on_main_thread.append(threading.current_thread() is threading.main_thread())
            return sync()

        monkeypatch.setattr(label_model, "jax_state_sync", recorded_sync)
    label_model.compile(optimizer="adam")
    callbacks = train_callbacks(tmp_path, 5, AtomicBackupAndRestore(tmp_path / "backup"))
    data = tf.data.Dataset.from_tensors(_label_batch([0, 1, 2, 1])).repeat()
    label_model.fit(data, steps_per_epoch=3, epochs=4, callbacks=[*callbacks, Probe()], verbose=0)
    assert len(on_main_thread) == 5  # epochs of 3 steps, stopped after 5 in all
    times = (tmp_path / "epoch_seconds.csv").read_text().splitlines()
    assert times[0] == "epoch,seconds" and [row.split(",")[0] for row in times[1:]] == ["0", "1"]
    assert all(float(row.split(",")[1]) > 0 for row in times[1:])
    assert all(syncs_on_main_thread)
    if keras.backend.backend() == "tensorflow":
        assert all(on_main_thread)
    else:
        assert not any(on_main_thread)


# Each case compiles a step: one step per call with the stop inside an epoch, and
# calls of 2 and of 3 steps in epochs they do not divide.
# Keras's torch trainer refuses steps_per_execution > 1; the two cases of several
# steps per call run once each (large), one on each backend that compiles them.
@pytest.mark.parametrize(
    "steps_per_epoch, steps_per_execution",
    [
        (5, 1),
        pytest.param(
            3, 2,
            marks=[pytest.mark.large, pytest.mark.backends("tensorflow", reason="2 steps a call")],
        ),
        pytest.param(
            5, 3, marks=[pytest.mark.large, pytest.mark.backends("jax", reason="3 steps a call")]
        ),
    ],
)  # fmt: skip
def test_stop_at_step_takes_exactly_its_steps(label_model, steps_per_epoch, steps_per_execution):
    label_model.compile(optimizer="adam", steps_per_execution=steps_per_execution)
    data = tf.data.Dataset.from_tensors(_label_batch([0, 1, 2, 1])).repeat()
    stop = StopAtStep(6)  # 6 steps: a whole number of calls in every case
    label_model.fit(data, steps_per_epoch=steps_per_epoch, epochs=5, callbacks=[stop], verbose=0)
    assert optimizer_step(label_model) == 6


def test_fit_works_again_after_a_fit_that_failed(label_model):
    """A failed fit (a bad batch structure) must not break the model for later fits."""
    label_model.compile(optimizer="adam")
    bad = tf.data.Dataset.from_tensors({"image_to_text": _label_batch([1])["image_to_class_label"]})
    with pytest.raises(InputError, match="Unknown group 'image_to_text'"):
        label_model.fit(bad.repeat(), steps_per_epoch=1, verbose=0)
    with pytest.raises(InputError, match="Unknown group 'image_to_text'"):
        label_model.evaluate(bad, verbose=0)
    good = tf.data.Dataset.from_tensors(_label_batch([0, 1, 2, 1]))
    history = label_model.fit(good.repeat(), steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert np.isfinite(label_model.evaluate(good, verbose=0, return_dict=True)["loss"])
