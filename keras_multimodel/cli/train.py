"""`python -m keras_multimodel train`: one MultiModel on the bundled tasks, resumable."""

import json
import pathlib
import time

import keras

from keras_multimodel.data import DataError, mixture, paper
from keras_multimodel.data.tokenizer import train_tokenizer
from keras_multimodel.models import MultiModel

TOKENIZER_FILE = "tokenizer.model"
SETTINGS_FILE = "train_settings.json"
MODEL_FILE = "model.keras"


def _tokenizer(output_dir, data_size, vocabulary_size):
    import keras_hub

    path = output_dir / TOKENIZER_FILE
    if path.exists():
        return keras_hub.tokenizers.SentencePieceTokenizer(proto=str(path))
    print(f"Training a shared {vocabulary_size}-piece SentencePiece vocabulary...")
    tokenizer = train_tokenizer(paper.training_texts(data_size), vocabulary_size)
    path.write_bytes(tokenizer.proto)
    return tokenizer


def _check_settings(output_dir, settings):
    path = output_dir / SETTINGS_FILE
    if path.exists():
        saved = json.loads(path.read_text())
        changed = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
        if changed:
            described = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise DataError(
                f"{output_dir} holds a run with other settings ({described}); resume it with "
                "the same flags, or train into a new --output_dir"
            )
    else:
        path.write_text(json.dumps(settings, indent=2) + "\n")


def train(
    output_dir,
    tasks=paper.TASKS,
    preset="tiny",
    train_steps=1200,
    steps_per_epoch=100,
    batch_size=48,
    data_size="small",
    mixing="uniform",
    vocabulary_size=4000,
    num_buckets=2,
    validation_steps=4,
    learning_rate=2e-3,
    seed=0,
    verbose="auto",
):
    """Trains (or resumes training) a MultiModel on bundled tasks; returns its history.

    The run lives in `output_dir`: the tokenizer, the settings, a backup taken after
    every epoch of `steps_per_epoch` steps (a killed run started again with the same
    `output_dir` resumes from the last one), TensorBoard logs in `logs/`, and at the
    end the trained model, `model.keras`, with its tokenizer inside.
    """
    output_dir = pathlib.Path(output_dir)
    tasks = list(tasks)
    for name in tasks:
        paper.check_args(name, "train", data_size)
    if (output_dir / MODEL_FILE).exists():
        raise DataError(
            f"{output_dir / MODEL_FILE} exists: this run is finished; evaluate it with "
            f"`evaluate --model_dir {output_dir}` or train into a new --output_dir"
        )
    if train_steps < 1 or steps_per_epoch < 1:
        raise DataError("--train_steps and --steps_per_epoch must be positive")
    output_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "tasks": tasks,
        "preset": preset,
        "train_steps": train_steps,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": batch_size,
        "data_size": data_size,
        "mixing": mixing,
        "vocabulary_size": vocabulary_size,
        "num_buckets": num_buckets,
        "learning_rate": learning_rate,
        "seed": seed,
        "backend": keras.backend.backend(),
    }
    _check_settings(output_dir, settings)
    keras.utils.set_random_seed(seed)
    start = time.time()
    tokenizer = _tokenizer(output_dir, data_size, vocabulary_size)
    model_tasks = paper.make_tasks(tokenizer, tasks, data_size)
    model = MultiModel(model_tasks, preset=preset, tokenizer=tokenizer)

    def data(split, repeat_seed):
        sets = {name: paper.load(name, split, tokenizer, data_size) for name in tasks}
        return mixture(
            sets, batch_size, model, rates=mixing, num_buckets=num_buckets, seed=repeat_seed
        )

    train_data = data("train", seed)
    validation_data = data("validation", seed + 1)
    epochs = -(-train_steps // steps_per_epoch)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, train_steps - train_steps // 10), warmup_target=learning_rate,
        warmup_steps=train_steps // 10, alpha=0.1,
    )  # fmt: skip
    model.compile(optimizer=keras.optimizers.Adam(schedule, global_clipnorm=1.0))
    callbacks = [
        keras.callbacks.BackupAndRestore(str(output_dir / "backup")),
        keras.callbacks.TensorBoard(str(output_dir / "logs")),
        keras.callbacks.CSVLogger(str(output_dir / "history.csv"), append=True),
    ]
    print(
        f"Training {preset!r} on {', '.join(tasks)} ({data_size} data) for {train_steps} steps "
        f"of {batch_size} examples; backend {keras.backend.backend()}."
    )
    history = model.fit(
        train_data,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=validation_data,
        validation_steps=validation_steps,
        callbacks=callbacks,
        verbose=verbose,
    )
    model.save(output_dir / MODEL_FILE)
    seconds = time.time() - start
    (output_dir / "train_time.json").write_text(json.dumps({"seconds": seconds}) + "\n")
    print(f"Saved {output_dir / MODEL_FILE} after {seconds:.0f} s.")
    return history
