"""`python -m keras_multimodel train`: one MultiModel on bundled tasks, resumable."""

import dataclasses
import json
import os
import pathlib
import shutil
import sys
import time

import keras

from keras_multimodel.callbacks import (
    AdaptiveMixing,
    AtomicBackupAndRestore,
    EpochTimes,
    StopAtStep,
    optimizer_step,
)
from keras_multimodel.cli.config import TrainConfig
from keras_multimodel.cli.run_dir import (
    BACKUP_DIR,
    EPOCH_TIMES_FILE,
    HISTORY_FILE,
    LOGS_DIR,
    MIXING_FILE,
    MODEL_FILE,
    SETTINGS_FILE,
    TOKENIZER_FILE,
    TRAIN_TIME_FILE,
)
from keras_multimodel.cli.run_lock import run_lock
from keras_multimodel.cli.scale import describe, distribution_scope
from keras_multimodel.data import AdaptiveRates, bundled, examples_per_step, mixture
from keras_multimodel.data.vocabulary import train_tokenizer
from keras_multimodel.errors import DataError

# Keras's jit_compile="auto" runs TensorFlow on a CPU in its graph executor. XLA's
# fused programs take the main job's step in about half the time but compile for
# about 2 minutes longer (benchmarks/README.md#xla-for-tensorflow-on-a-cpu): from
# about 1,400 steps they pay, so longer TensorFlow runs compile with XLA.
XLA_MIN_STEPS = 1500


def jit_compile(config):
    """`Model.compile`'s `jit_compile` for a `train` run: True for a TensorFlow run
    of at least `XLA_MIN_STEPS` steps on one device, else Keras's "auto" (XLA on JAX,
    and on TensorFlow where Keras sees an accelerator).

    >>> import keras
    >>> want = True if keras.backend.backend() == "tensorflow" else "auto"
    >>> jit_compile(TrainConfig(train_steps=2100)) == want
    True
    >>> jit_compile(TrainConfig(train_steps=20))
    'auto'
    """
    long_run = config.train_steps >= XLA_MIN_STEPS and config.distribution == "none"
    return True if long_run and keras.backend.backend() == "tensorflow" else "auto"


def _tokenizer(output_dir, config):
    """The run's shared vocabulary (trained on first use, then read back); None
    when no task has text."""
    import keras_hub

    if not any(bundled.get(name).needs_text for name in config.tasks):  # no text to read
        return None
    path = output_dir / TOKENIZER_FILE
    if path.exists():
        return keras_hub.tokenizers.SentencePieceTokenizer(proto=str(path))
    print(f"Training a shared {config.vocabulary_size}-piece SentencePiece vocabulary...")
    texts = bundled.training_texts(config.vocabulary_tasks or config.tasks, config.data_size)
    tokenizer = train_tokenizer(
        texts, config.vocabulary_size, fit_to_texts=True, model_type=config.tokenizer
    )
    path.write_bytes(tokenizer.proto)
    return tokenizer


# Settings added after runs were saved without them: the value those runs used.
SETTINGS_BEFORE_THEY_EXISTED = {
    "bucketing": "doubling",
    "tokenizer": "unigram",
    "body": {},
    "train_fractions": {},
    "vocabulary_tasks": [],
}


def _saved_settings(output_dir):
    """The settings of the run in `output_dir` (None for a new run), with the values
    of settings added since it was saved filled in."""
    path = output_dir / SETTINGS_FILE
    if not path.exists():
        return None
    return {**SETTINGS_BEFORE_THEY_EXISTED, **json.loads(path.read_text())}


def resumed_config(output_dir, config):
    """`config` for the run in `output_dir`: a run saved before a setting existed
    resumes with the value it was started with, where `config` has the default."""
    saved = _saved_settings(output_dir)
    if saved is None:
        return config
    defaults = TrainConfig()
    kept = {
        key: saved[key]
        for key in SETTINGS_BEFORE_THEY_EXISTED
        if getattr(config, key) == getattr(defaults, key) != saved[key]
    }
    return dataclasses.replace(config, **kept)


def _check_settings(output_dir, settings):
    path = output_dir / SETTINGS_FILE
    saved = _saved_settings(output_dir)
    if saved is not None:
        changed = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
        if changed:
            described = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            flags = " ".join(
                _as_flag(key, old) for key, (old, _) in changed.items() if old is not None
            )
            how = (
                f"the flags it was started with ({flags}; a default may have changed since)"
                if flags
                else "the settings it was started with"
            )
            raise DataError(
                f"{output_dir} holds a run with other settings ({described}); resume it with "
                f"{how}, or train into a new --output_dir"
            )
    else:
        path.write_text(json.dumps(settings, indent=2) + "\n")


# TrainConfig settings that `train` takes no flag for (only Python callers set them).
SETTINGS_WITHOUT_FLAGS = (
    "num_buckets", "bucketing", "validation_steps", "body", "train_fractions",
    "vocabulary_tasks",
)  # fmt: skip


def _as_flag(key, value):
    """A saved setting as what sets it: a flag, the backend's variable, or key=value."""
    if key == "backend":
        return f"KERAS_BACKEND={value}"
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return f"{key}={text}" if key in SETTINGS_WITHOUT_FLAGS else f"--{key}={text}"


def progress_verbosity():
    """A live progress bar on a terminal; one line per epoch in a log file or pipe."""
    return 1 if sys.stdout.isatty() else 2


def train(output_dir, config=None, verbose=None):
    """Trains (or resumes training) a MultiModel on bundled tasks; returns its history.

    The run lives in `output_dir`: the tokenizer, the settings, a backup taken after
    every epoch of `config.steps_per_epoch` steps (a killed run started again with
    the same `output_dir` resumes from the last one), TensorBoard logs in `logs/`,
    `history.csv`, and at the end the trained model, `model.keras`, with its
    tokenizer inside. Exactly `config.train_steps` optimizer steps are taken;
    `config` defaults to `TrainConfig()`.
    """
    output_dir = pathlib.Path(output_dir)
    config = TrainConfig() if config is None else config
    config.validate()  # everything is checked before anything is written
    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"--output_dir {output_dir} is a file; give a directory")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create --output_dir {output_dir}: {error.strerror}") from None
    with run_lock(output_dir):
        return _train(output_dir, config, verbose)


def _train(output_dir, config, verbose):
    from keras_multimodel.models import BodyConfig

    if (output_dir / MODEL_FILE).exists():
        raise DataError(
            f"{output_dir / MODEL_FILE} exists: this run is finished; evaluate it with "
            f"`evaluate --model_dir {output_dir}` or train into a new --output_dir"
        )
    config = resumed_config(output_dir, config)
    _check_settings(output_dir, {**config.to_dict(), "backend": keras.backend.backend()})
    keras.utils.set_random_seed(config.seed)
    start = time.time()
    tokenizer = _tokenizer(output_dir, config)
    tasks = bundled.make_tasks(tokenizer, config.tasks, config.data_size)
    body = BodyConfig.from_preset(config.preset, **config.body)
    scope, degree = distribution_scope(config.distribution, body)
    with scope:  # the model's variables are created, and trained, where they belong
        return _fit(output_dir, config, tokenizer, tasks, degree, start, verbose)


def _subset(dataset, fraction, seed):
    """A fixed random `fraction` of `dataset` (at least one example)."""
    size = int(dataset.cardinality())
    keep = max(1, round(size * fraction))
    return dataset.shuffle(size, seed=seed, reshuffle_each_iteration=False).take(keep).cache()


def train_callbacks(output_dir, steps, backup):
    """`train`'s callbacks: `backup`, a stop after `steps` steps, TensorBoard logs in
    `output_dir/logs`, and `output_dir/history.csv` and `epoch_seconds.csv`, one line
    per epoch.

    None of them needs a step's results as soon as it ends, so Keras may dispatch
    the per-step callbacks to a worker thread (on JAX and torch; never on
    TensorFlow) and queue the next step without waiting for the last one to finish.
    """
    # TensorBoard writes only at epoch ends here (update_freq "epoch", no profiling;
    # batch summaries on a worker thread would find no writer and be lost), so its
    # per-step work is safe on a worker thread (Keras cannot tell, so it is told),
    # except writing the train graph: it reads `self.model`, which on JAX syncs the
    # state from the worker thread, racing the next step that donates those
    # buffers. Only TensorFlow has a graph to write, and there Keras never
    # dispatches callbacks to a thread.
    tensorboard = keras.callbacks.TensorBoard(
        str(output_dir / LOGS_DIR),
        update_freq="epoch",
        write_graph=keras.backend.backend() == "tensorflow",
    )
    tensorboard.async_safe = True
    return [
        backup,
        StopAtStep(steps),
        tensorboard,
        keras.callbacks.CSVLogger(str(output_dir / HISTORY_FILE), append=True),
        EpochTimes(output_dir / EPOCH_TIMES_FILE),
    ]


def _fit(output_dir, config, tokenizer, tasks, degree, start, verbose):
    from keras_multimodel.models import MultiModel

    model = MultiModel(tasks, preset=config.preset, tokenizer=tokenizer, **config.body)

    def data_sets(split):
        sets = {
            name: bundled.load(name, split, tokenizer, config.data_size) for name in config.tasks
        }
        if split == "train":
            for name, fraction in config.train_fractions.items():
                sets[name] = _subset(sets[name], fraction, config.seed)
        return sets

    def data(sets, seed, num_buckets, rates, autotune=True):
        return mixture(
            sets,
            config.batch_size,
            model,
            rates=rates,
            num_buckets=num_buckets,
            bucketing=config.bucketing,
            seed=seed,
            batch_multiple=degree,
            autotune=autotune,
        )

    steps = config.train_steps
    train_sets = data_sets("train")
    rates = AdaptiveRates(config.tasks) if config.mixing == "adaptive" else config.mixing
    shares = examples_per_step(train_sets, config.batch_size, model, rates, batch_multiple=degree)
    sizes = {name: int(dataset.cardinality()) for name, dataset in train_sets.items()}
    (output_dir / MIXING_FILE).write_text(
        json.dumps({"examples_per_step": shares, "training_examples": sizes}) + "\n"
    )
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, steps - steps // 10), warmup_target=config.peak_learning_rate,
        warmup_steps=steps // 10, alpha=0.1,
    )  # fmt: skip
    model.compile(
        optimizer=keras.optimizers.Adam(schedule, global_clipnorm=1.0),
        jit_compile=jit_compile(config),
    )
    backup = AtomicBackupAndRestore(output_dir / BACKUP_DIR, delete_on_finish=False)
    # A resumed run continues with a fresh data order (seeded by the epoch it resumes
    # at), not from the exact position it was killed at.
    data_seed = config.seed + 1000 * backup.latest_epoch()
    callbacks = train_callbacks(output_dir, steps, backup)
    if isinstance(rates, AdaptiveRates):  # before the loggers, which record its rates
        callbacks.insert(2, AdaptiveMixing(rates))
    print(
        f"Training {config.preset!r} on {', '.join(config.tasks)} ({config.data_size} data) "
        f"for {steps} steps of {config.batch_size} examples"
        + (f", body {config.body}" if config.body else "")
        + (f", training on a share of {config.train_fractions}" if config.train_fractions else "")
        + (f", {config.mixing} mixing" if config.mixing != "uniform" else "")
        + (f", each task group's share a multiple of {degree}" if degree > 1 else "")
        + " (peak learning rate "
        f"{config.peak_learning_rate:g}); backend {keras.backend.backend()}, "
        f"{describe(config.distribution, degree)}."
    )
    # Validation (a few batches an epoch) pads to one length (with "fitted" bucketing,
    # its longest example): one evaluation program to compile, not one per bucket. It
    # does not autotune: fit drops its iterator every epoch, and dropping one that
    # autotunes can stall for up to a minute (see `mixture`).
    history = model.fit(
        data(train_sets, data_seed, config.num_buckets, rates),
        epochs=config.epochs,
        steps_per_epoch=min(config.steps_per_epoch, steps),
        validation_data=data(
            data_sets("validation"),
            config.seed + 1,
            1,
            "uniform" if config.mixing == "adaptive" else config.mixing,
            autotune=False,
        ),
        validation_steps=config.validation_steps,
        callbacks=callbacks,
        verbose=progress_verbosity() if verbose is None else verbose,
    )
    staging = output_dir / f".tmp-{os.getpid()}.keras"
    model.save(staging)
    os.replace(staging, output_dir / MODEL_FILE)  # atomic: complete or absent
    shutil.rmtree(output_dir / BACKUP_DIR, ignore_errors=True)  # only once the model is saved
    seconds = time.time() - start
    steps_taken = optimizer_step(model)
    (output_dir / TRAIN_TIME_FILE).write_text(
        json.dumps({"seconds": seconds, "steps": steps_taken}) + "\n"
    )
    print(f"Saved {output_dir / MODEL_FILE} after {seconds:.0f} s.")
    return history
