"""Keras callbacks for long multi-task runs."""

import json
import math
import os
import pathlib
import shutil
import tempfile
import time

import keras

from keras_multimodel import compat
from keras_multimodel.errors import DataError, InputError


def optimizer_step(model):
    """The optimizer's step count as an int (its variable may be mirrored by tf.distribute)."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


class StopAtStep(keras.callbacks.Callback):
    """Stops `fit` once the optimizer has taken `steps` steps in all.

    `fit` counts whole epochs; this ends the last one early, so a run of
    `steps` steps trains exactly that many, also when `steps` is not a multiple of
    `steps_per_epoch`, and also after resuming from a backup (the optimizer's step
    count is part of it: put this callback after the one that restores it).
    With `steps_per_execution` k, it stops after the call that reaches `steps`, up
    to k - 1 steps later. Keras looks at `stop_training` only after a step, so a
    `fit` started with `steps` already taken still takes one.

    Example:
    >>> stop = StopAtStep(30)  # model.fit(..., epochs=2, steps_per_epoch=20, callbacks=[stop])
    """

    def __init__(self, steps):
        super().__init__()
        self.steps = int(steps)
        self._epoch_start = 0
        self._per_call = 1

    # The step count is read from the optimizer at each epoch's start, when Keras's
    # JAX trainer has just put its state back into the variables (reading one
    # mid-epoch makes it sync the whole state). The last call is recognised before
    # it runs (`fit` checks `stop_training` after each): with no
    # `on_train_batch_end`, this callback leaves Keras free to dispatch the steps
    # asynchronously (JAX, torch) instead of waiting for each one.
    def on_train_begin(self, logs=None):
        self._per_call = getattr(self.model, "steps_per_execution", 1) or 1

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = optimizer_step(self.model)
        if self._epoch_start >= self.steps:
            self.model.stop_training = True

    def on_train_batch_begin(self, batch, logs=None):
        # `batch`: the epoch's step this call starts at; it runs `steps_per_execution`.
        if self._epoch_start + batch + self._per_call >= self.steps:
            self.model.stop_training = True


class AdaptiveMixing(keras.callbacks.Callback):
    """Feeds each epoch's per-task training losses (`<task>_loss`) to an
    `keras_multimodel.data.AdaptiveRates`, so the `mixture` built with it samples
    the tasks the model fits worst more often, and logs each task's new rate as
    `mixing_rate_<task>` (before `CSVLogger` and `TensorBoard` in the callbacks,
    they record it).

    Example:
    >>> from keras_multimodel.data import AdaptiveRates
    >>> rates = AdaptiveRates(["copy", "label"])
    >>> callback = AdaptiveMixing(rates)  # mixture(..., rates=rates); fit(callbacks=[callback])
    >>> logs = {"copy_loss": 2.0, "label_loss": 0.5}
    >>> callback.on_epoch_end(0, logs)
    >>> round(logs["mixing_rate_copy"], 2), round(logs["mixing_rate_label"], 2)
    (0.77, 0.23)
    """

    def __init__(self, rates):
        super().__init__()
        self.rates = rates

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        losses = {name: logs[f"{name}_loss"] for name in self.rates.tasks
                  if f"{name}_loss" in logs}  # fmt: skip
        self.rates.update(losses)
        for name, rate in self.rates.rates.items():
            logs[f"mixing_rate_{name}"] = rate


class EpochTimes(keras.callbacks.Callback):
    """Appends `epoch,seconds` (wall time, validation included) to a CSV file after
    every epoch, so steady-state speed can be told apart from the first epoch's
    compiling (`history.csv` keeps only what the model logs).

    Example:
    >>> times = EpochTimes("/tmp/epoch_seconds.csv")  # model.fit(..., callbacks=[times])
    """

    def __init__(self, path):
        super().__init__()
        self.path = pathlib.Path(path)
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        new = not self.path.exists()
        with self.path.open("a") as file:
            file.write(("epoch,seconds\n" if new else "") + f"{epoch},{seconds:.3f}\n")


class AtomicBackupAndRestore(keras.callbacks.Callback):
    """Backs up the training state after every epoch, atomically, and restores it.

    Like `keras.callbacks.BackupAndRestore`, but a process killed at any moment
    (even while a backup is being written) leaves a run that resumes: each backup
    (weights with the optimizer state, and the epoch) is written into a
    temporary folder and renamed into place only when complete, and the
    previous backups stay until then. `keep` backups are kept; on restart the
    newest one that loads is used, and falling back to an older one is said.

    Layout: `backup_dir/epoch-000012/{model.weights.h5, state.json}`, where 12
    is the number of finished epochs.

    Args:
        backup_dir: folder of the backups (created if needed).
        keep: how many of the latest backups to keep (at least 1).
        delete_on_finish: delete `backup_dir` when `fit` returns (False: the caller
            deletes it once the trained model is safely saved).

    Example:
    >>> backup = AtomicBackupAndRestore("/tmp/run/backup")  # fit(..., callbacks=[backup])
    """

    def __init__(self, backup_dir, keep=2, delete_on_finish=True):
        super().__init__()
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise InputError(f"AtomicBackupAndRestore: `keep` must be an int >= 1; got {keep!r}")
        self.backup_dir = pathlib.Path(backup_dir)
        self.keep = keep
        self.delete_on_finish = delete_on_finish

    def backups(self):
        """The complete backups, newest first."""
        if not self.backup_dir.is_dir():
            return []
        return sorted(self.backup_dir.glob("epoch-[0-9]*"), reverse=True)

    def latest_epoch(self):
        """The epoch of the newest backup whose state reads back; 0 without one."""
        for backup in self.backups():
            try:
                return int(json.loads((backup / STATE_FILE).read_text())["epoch"])
            except (OSError, ValueError, KeyError):
                continue
        return 0

    def on_train_begin(self, logs=None):
        for leftover in self.backup_dir.glob(".tmp-*"):  # a backup a killed run did not finish
            shutil.rmtree(leftover, ignore_errors=True)
        failures = []
        for backup in self.backups():
            try:
                self._restore(backup)
            except (OSError, ValueError, KeyError) as error:  # unreadable: try an older one
                failures.append(f"{backup.name} ({type(error).__name__}: {error})")
                continue
            if failures:
                print(
                    f"Backup {', '.join(failures)} could not be read; resumed from the older "
                    f"backup {backup.name} instead."
                )
            return
        if failures:
            raise DataError(
                f"no backup in {self.backup_dir} can be read ({'; '.join(failures)}); delete "
                "the folder to train from the start"
            )

    def _restore(self, backup):
        state = json.loads((backup / STATE_FILE).read_text())
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(backup / WEIGHTS_FILE)
        compat.set_initial_epoch(self.model, state["epoch"])

    def on_epoch_end(self, epoch, logs=None):
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        final = self.backup_dir / f"epoch-{epoch + 1:06d}"
        staging = pathlib.Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.backup_dir))
        self.model.save_weights(staging / WEIGHTS_FILE)
        state = {"epoch": epoch + 1, "steps": optimizer_step(self.model)}
        (staging / STATE_FILE).write_text(json.dumps(state) + "\n")
        _sync(staging)
        if final.exists():  # a backup of this epoch from an earlier, killed attempt
            shutil.rmtree(final)
        os.rename(staging, final)  # atomic: the backup appears complete or not at all
        for old in self.backups()[self.keep :]:
            shutil.rmtree(old, ignore_errors=True)

    def on_train_end(self, logs=None):
        if self.delete_on_finish:
            shutil.rmtree(self.backup_dir, ignore_errors=True)


WEIGHTS_FILE = "model.weights.h5"
"""The model's weights in each backup folder of `AtomicBackupAndRestore`."""
STATE_FILE = "state.json"
"""The epoch (and what resuming needs) in each backup folder of `AtomicBackupAndRestore`."""


def _sync(folder):
    """Flushes a folder's files to disk before it is renamed into place."""
    for path in folder.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


class TrainingDiverged(DataError):
    """The loss became NaN or infinite; training stopped before saving anything."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops `fit` with a clear error once a step's loss is NaN or infinite.

    `keras.callbacks.TerminateOnNaN` stops quietly and `fit` returns as if it had
    finished, so a script would go on to save a broken model. This raises
    `TrainingDiverged` instead, naming the step and every task whose loss (a
    `{task}_loss` log) went bad; nothing after `fit` runs.

    It is safe for Keras's asynchronous dispatch (`async_safe`): on JAX and torch
    the loss is checked on a worker thread while the next steps run, so a step
    never waits for the previous one to finish; the error reaches `fit` a few
    steps later (the step it names may then be a later bad one), at the latest
    before the epoch's end callbacks (a backup, say) run, after the epoch's
    validation if there is one.

    Example:
    >>> stop = StopOnNonFiniteLoss()  # model.fit(..., callbacks=[stop])
    """

    async_safe = True

    def __init__(self):
        super().__init__()
        self._epoch_start = 0

    # The optimizer's step count is read once per epoch, on the main thread: on a
    # worker thread, `self.model` makes Keras's JAX trainer sync its state there,
    # racing the next step, which donates those buffers.
    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = optimizer_step(self.model)

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        if "loss" not in logs or math.isfinite(float(logs["loss"])):
            return
        bad = [
            f"{key[: -len('_loss')]} ({float(value)})"
            for key, value in logs.items()
            if key.endswith("_loss") and key != "moe_loss" and not math.isfinite(float(value))
        ]
        if "moe_loss" in logs and not math.isfinite(float(logs["moe_loss"])):
            bad.append(f"the MoE balancing loss ({float(logs['moe_loss'])})")
        step = self._epoch_start + batch + 1  # `batch`: this step's index in the epoch
        data_hint = (  # TensorFlow and torch refuse such ids with their own error
            ": target ids outside their modality's range give a NaN loss on JAX"
            if keras.backend.backend() == "jax"
            else ""
        )
        raise TrainingDiverged(
            f"training stopped at step {step}: the loss became {float(logs['loss'])}"
            + (f" (tasks: {', '.join(bad)})" if bad else "")
            + f". Lower the learning rate, or check the data{data_hint}."
        )
