"""The command line: train (killed and resumed), evaluate, predict and their one-line errors."""

import contextlib
import csv
import dataclasses
import json
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time
import warnings
import wave
import zipfile

import keras
import numpy as np
import pytest

from keras_multimodel import metrics
from keras_multimodel.cli import main
from keras_multimodel.cli.config import TrainConfig
from keras_multimodel.cli.evaluate import evaluate
from keras_multimodel.cli.export import export
from keras_multimodel.cli.predict import predict
from keras_multimodel.cli.run_dir import load_run
from keras_multimodel.cli.train import (
    SETTINGS_WITHOUT_FLAGS,
    _check_settings,
    resumed_config,
    train,
)
from keras_multimodel.data import DataError, bundled
from keras_multimodel.data.bundled import classify_image, formats
from keras_multimodel.errors import InputError
from keras_multimodel.models import MultiModel

TRAIN_ARGS = [
    "--tasks=classify_image,parse_en",
    "--train_steps=15",  # not a multiple of the epoch: the last epoch is cut short
    "--steps_per_epoch=2",
    "--batch_size=8",
]
CLI = pathlib.Path(__file__).parents[1] / "keras_multimodel" / "cli"


def cli(*args, code=None, **kwargs):
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend()}
    command = ["-c", code, *args] if code else ["-m", "keras_multimodel", *args]
    return subprocess.Popen(
        [sys.executable, *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def finish(process, timeout=600):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def logged_epochs(run_dir):
    with open(run_dir / "history.csv") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def finished_epochs(run_dir):
    """The epoch of the newest complete backup (0 when there is none)."""
    backups = sorted((run_dir / "backup").glob("epoch-*"))
    return int(backups[-1].name.split("-")[1]) if backups else 0


# Backend-independent command-line logic runs on torch, where nothing compiles; the
# command line's backend-specific paths (fit, generate, export) run in the tiny
# run's test on every backend.
INDEPENDENT = pytest.mark.backends(
    "torch", reason="backend-independent command-line logic (torch compiles nothing)"
)
# The train command killed and resumed, as a user would see it (subprocesses, large).
KILLED_AND_RESUMED_BACKEND = pytest.mark.backends(
        "torch",
        reason="the command line's resume logic is backend-independent, backups are checked "
        "on every backend in test_faults.py, and torch's end to end runs nowhere else",
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished `train` run of an image and a text task (4 steps), in this process.

    The warnings `train` gave are in `WARNED["train"]`."""
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    config = TrainConfig(
        tasks=("classify_image", "parse_en"), train_steps=4, steps_per_epoch=2, batch_size=8
    )
    with recorded_warnings() as WARNED["train"]:
        train(run_dir, config, verbose=0)
    return run_dir


WARNED = {}


@contextlib.contextmanager
def recorded_warnings():
    """The Python warnings a user sees (Python's default filters hide deprecation,
    import and resource warnings) and WARNING-or-worse log records (TensorFlow's
    retracing warning is one) while in the context, as a list of strings."""
    caught = []

    class Handler(logging.Handler):
        def emit(self, record):
            caught.append(f"{record.name}: {record.getMessage()}")

    handler = Handler(logging.WARNING)
    loggers = [logging.getLogger(), logging.getLogger("tensorflow"), logging.getLogger("jax")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as python_warnings:
            warnings.simplefilter("always")
            for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                           ResourceWarning):  # fmt: skip
                warnings.filterwarnings("ignore", category=hidden)
            yield caught
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    caught += [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
               for w in python_warnings]  # fmt: skip


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run killed (SIGKILL) after its first backups, then started again to finish."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    first = cli("train", f"--output_dir={run_dir}", *TRAIN_ARGS)
    deadline = time.time() + 600
    while time.time() < deadline and first.poll() is None and finished_epochs(run_dir) < 2:
        time.sleep(0.2)
    assert first.poll() is None, "the first run ended before it could be killed:\n" + (
        first.stderr.read()[-3000:]
    )
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    resumed_from = finished_epochs(run_dir)
    assert 2 <= resumed_from < 8, f"killed after backup {resumed_from}: too late to resume"
    epochs_before = logged_epochs(run_dir)
    assert not (run_dir / "model.keras").exists()
    code, out, err = finish(cli("train", f"--output_dir={run_dir}", *TRAIN_ARGS))
    assert code == 0, err[-3000:]
    return run_dir, resumed_from, epochs_before, out


@pytest.mark.large
@KILLED_AND_RESUMED_BACKEND
def test_killed_training_resumes_where_it_stopped_and_takes_exactly_train_steps(trained_run):
    run_dir, resumed_from, epochs_before, _ = trained_run
    epochs = logged_epochs(run_dir)
    after = epochs[len(epochs_before) :]
    assert after[0] == resumed_from >= 2, (epochs_before, after)  # not from scratch
    assert after[-1] == 7  # 15 steps / 2 per epoch: 8 epochs, the last one of 1 step
    assert json.loads((run_dir / "train_time.json").read_text())["steps"] == 15
    assert (run_dir / "model.keras").exists() and (run_dir / "tokenizer.model").exists()
    assert not (run_dir / "backup").exists()  # deleted once the model is saved
    assert list((run_dir / "logs").rglob("*tfevents*")), "no TensorBoard logs"
    with open(run_dir / "history.csv") as f:
        columns = next(csv.reader(f))
    for name in ("val_classify_image_accuracy", "val_parse_en_token_accuracy", "val_loss"):
        assert name in columns  # per-task validation metrics each epoch


@pytest.mark.large
@KILLED_AND_RESUMED_BACKEND
def test_training_output_to_a_pipe_is_one_line_per_epoch(trained_run):
    run_dir, resumed_from, _, out = trained_run
    assert "\r" not in out and "\x08" not in out  # no progress-bar refreshes in a log
    epoch_lines = [line for line in out.splitlines() if " - loss: " in line]
    assert len(epoch_lines) == 8 - resumed_from, out[-2000:]


@INDEPENDENT
def test_train_steps_below_one_epoch_train_exactly_that_many(tmp_path):
    config = TrainConfig(tasks=("classify_image",), train_steps=3, batch_size=4)
    history = train(tmp_path / "run", config, verbose=0)
    assert len(history.history["loss"]) == 1  # one epoch, cut short (150 steps per epoch)
    assert json.loads((tmp_path / "run" / "train_time.json").read_text())["steps"] == 3
    assert not (tmp_path / "run" / "tokenizer.model").exists()  # no text task, no vocabulary
    settings = json.loads((tmp_path / "run" / "train_settings.json").read_text())
    assert settings["learning_rate"] == 0.005  # the default peak, resolved, is recorded


@INDEPENDENT
def test_validation_data_does_not_autotune(tmp_path, monkeypatch):
    # fit drops its validation iterator every epoch, and dropping one that autotunes
    # waits for the tuning thread (up to 60 s); the training data keeps autotuning.
    from keras_multimodel.models import MultiModel

    fit, autotuned = MultiModel.fit, {}

    def recording_fit(self, x=None, **kwargs):
        autotuned["train"] = x.options().autotune.enabled is not False
        autotuned["validation"] = kwargs["validation_data"].options().autotune.enabled
        return fit(self, x, **kwargs)

    monkeypatch.setattr(MultiModel, "fit", recording_fit)
    config = TrainConfig(tasks=("classify_image",), train_steps=2, batch_size=4)
    train(tmp_path / "run", config, verbose=0)
    assert autotuned == {"train": True, "validation": False}


@INDEPENDENT
@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0.0, -1e-3, 1e39])
def test_the_learning_rate_must_be_finite_and_positive(value):
    with pytest.raises(InputError, match="--learning_rate must be a finite number > 0"):
        TrainConfig(learning_rate=value).validate()


def test_the_default_learning_rate_scales_with_the_presets_width():
    assert TrainConfig().peak_learning_rate == 0.005  # tiny: 0.04 / sqrt(64)
    assert TrainConfig(preset="base").peak_learning_rate == 0.0025  # 0.04 / sqrt(256)
    assert TrainConfig(preset="base", learning_rate=1e-4).peak_learning_rate == 1e-4
    assert TrainConfig().to_dict()["learning_rate"] == 0.005  # what a run records


@pytest.mark.large
@KILLED_AND_RESUMED_BACKEND
def test_training_again_into_a_finished_run_is_refused(trained_run):
    run_dir = trained_run[0]
    code, _, err = finish(cli("train", f"--output_dir={run_dir}", *TRAIN_ARGS))
    assert code == 1 and "this run is finished" in err and "Traceback" not in err


def test_the_vocabulary_model_is_a_checked_setting():
    assert TrainConfig().tokenizer == "bpe"
    with pytest.raises(ValueError, match="--tokenizer must be one of bpe, unigram"):
        TrainConfig(tasks=("parse_en",), tokenizer="word").validate()


def test_resuming_with_other_settings_is_refused(tmp_path):
    _check_settings(tmp_path, {"preset": "tiny", "train_steps": 10})
    with pytest.raises(DataError, match=r"other settings \(train_steps: 10 -> 20\)"):
        _check_settings(tmp_path, {"preset": "tiny", "train_steps": 20})
    # The message names the flags to resume with: a default may have changed since.
    with pytest.raises(DataError, match=r"started with \(--preset=tiny --train_steps=10;"):
        _check_settings(tmp_path, {"preset": "base", "train_steps": 20})
    (tmp_path / "other").mkdir()
    _check_settings(tmp_path / "other", {"tasks": ["parse_en", "classify_image"], "backend": "jax"})
    with pytest.raises(DataError, match=r"\(--tasks=parse_en,classify_image KERAS_BACKEND=jax;"):
        _check_settings(tmp_path / "other", {"tasks": ["parse_en"], "backend": "tensorflow"})
    # A setting the saved run lacks has no flag to name.
    with pytest.raises(DataError, match=r"-> 3\); resume it with the settings it was started"):
        _check_settings(tmp_path / "other", {"tasks": ["parse_en", "classify_image"],
                                             "backend": "jax", "new_setting": 3})  # fmt: skip


def test_every_train_setting_is_a_flag_unless_listed_as_not_one():
    import inspect

    flagged = inspect.getsource(main.train_config)
    for field in dataclasses.fields(TrainConfig):
        is_flag = f"{field.name}=" in flagged and f"FLAGS.{field.name}" in flagged
        assert is_flag != (field.name in SETTINGS_WITHOUT_FLAGS), field.name


def test_a_run_saved_before_a_setting_existed_resumes_with_what_it_used(tmp_path):
    settings = {**TrainConfig().to_dict(), "backend": keras.backend.backend()}
    del settings["bucketing"]  # saved before fitted bucket lengths (and the setting) existed
    (tmp_path / "train_settings.json").write_text(json.dumps(settings))
    assert resumed_config(tmp_path, TrainConfig()).bucketing == "doubling"
    _check_settings(tmp_path, {**settings, "bucketing": "doubling"})  # not refused
    with pytest.raises(DataError, match="bucketing: 'doubling' -> 'fitted'"):
        _check_settings(tmp_path, {**settings, "bucketing": "fitted"})
    assert resumed_config(tmp_path / "new", TrainConfig()).bucketing == "fitted"
    # Saved before the byte-pair vocabulary (and the setting): its unigram one is in the run.
    del settings["tokenizer"]
    (tmp_path / "train_settings.json").write_text(json.dumps(settings))
    resumed = resumed_config(tmp_path, TrainConfig())
    assert (resumed.bucketing, resumed.tokenizer) == ("doubling", "unigram")
    _check_settings(tmp_path, {**settings, "bucketing": "doubling", "tokenizer": "unigram"})
    assert resumed_config(tmp_path / "new", TrainConfig()).tokenizer == "bpe"


@pytest.mark.large
@pytest.mark.backends("jax", reason="only JAX keeps compiled programs across processes")
def test_a_second_predict_reads_its_programs_from_the_compilation_cache(tiny_run, tmp_path):
    def predict_in_a_new_process(cache, *flags):
        env = {
            **os.environ,
            "KERAS_BACKEND": "jax",
            "JAX_COMPILATION_CACHE_DIR": str(cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",  # every program is kept
        }
        args = ["predict", f"--model_dir={tiny_run}", "--task=parse_en", "--input=Hi .", *flags]
        done = subprocess.run(
            [sys.executable, "-m", "keras_multimodel", *args],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        entries = sorted(p.name for p in cache.glob("*-cache")) if cache.exists() else []
        return done.stdout.splitlines()[-1], entries

    first, written = predict_in_a_new_process(tmp_path / "cache")
    assert written, "the first predict kept no compiled program"
    second, read = predict_in_a_new_process(tmp_path / "cache")
    assert (second, read) == (first, written)  # the same answer, no new program
    third, none = predict_in_a_new_process(tmp_path / "off", "--nocompilation_cache")
    assert (third, none) == (first, [])


def test_a_tiny_run_evaluates_predicts_and_exports(tiny_run, tmp_path, capsys):
    """train -> evaluate -> predict -> export, in this process, on every backend,
    with no warning a user would read as a bug."""
    from PIL import Image

    with recorded_warnings() as caught:
        rows = evaluate(tiny_run, max_examples=4)
    out = capsys.readouterr().out
    with recorded_warnings() as more:
        evaluate(tiny_run, max_examples=4)  # again: the compiled programs are reused
    assert not WARNED["train"] + caught + more, WARNED["train"] + caught + more
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| task | metric | model | trivial baseline | learned baseline")
    cells = {tuple(c.strip() for c in line.split("|")[1:6]) for line in table[1:]}
    assert {cell[:2] for cell in cells} == {(row["task"], row["metric"]) for row in rows} == {
        ("classify_image", "accuracy"), ("classify_image", "log-loss"),
        ("parse_en", "LAS"), ("parse_en", "UAS"), ("parse_en", "exact match"),
        ("parse_en", "token accuracy (teacher forced)"),
        ("parse_en", "log-perplexity (teacher forced)"),
    }  # fmt: skip
    accuracy = next(cell for cell in cells if cell[:2] == ("classify_image", "accuracy"))
    assert accuracy[3].startswith("majority class ")  # the trivial baseline, scored
    assert accuracy[4].startswith("nearest class centroid ")  # the learned one
    saved = json.loads((tiny_run / "evaluation.json").read_text())
    assert len(saved["rows"]) == 7 and saved["skipped"] == []
    las = next(r for r in saved["rows"] if r["metric"] == "LAS")
    assert set(las["baselines"]) == {"majority label+head", "per-word majority"}
    assert las["learned"] == ["per-word majority"]
    # parse_en decodes with its record's beam search; labels have no decoding.
    assert "parse_en: decoding 4 examples (beam search, 4 beams)" in out
    decodings = {(r["task"], r["metric"]): r.get("decoding") for r in saved["rows"]}
    assert decodings[("parse_en", "LAS")] == "beam"
    assert decodings[("classify_image", "accuracy")] is None

    images, _ = bundled.load_examples("classify_image", "test")
    Image.fromarray(images[0, ..., 0]).save(tmp_path / "shirt.png")
    with recorded_warnings() as caught:
        class_name = predict(tiny_run, "classify_image", str(tmp_path / "shirt.png"))
        assert isinstance(predict(tiny_run, "parse_en", "The earth was formless ."), str)
    assert not caught, caught
    assert class_name in classify_image.CLASSES

    if keras.backend.backend() == "torch":
        with pytest.raises(InputError, match="written from the TensorFlow or JAX backend"):
            export(tiny_run, tmp_path / "saved_model", tasks=["classify_image"])
        return
    with recorded_warnings() as caught:
        export(tiny_run, tmp_path / "saved_model", tasks=["classify_image"])
    assert not caught, caught
    import tensorflow as tf

    served = tf.saved_model.load(str(tmp_path / "saved_model"))
    answer = served.signatures["classify_image"](image=tf.constant(images[:1]))
    assert answer["class_name"].numpy().tolist() == [class_name.encode()]


@INDEPENDENT
def test_evaluate_refuses_a_test_set_it_cannot_read_unless_told_to_skip_it(tiny_run):
    original = bundled.get("parse_en")

    def unreadable(split, data_size):
        if split == "test":
            raise DataError("the test file is gone")
        return original.examples(split, data_size)

    bundled.register(dataclasses.replace(original, examples=unreadable), replace=True)
    run_dir = tiny_run
    try:
        with pytest.raises(DataError, match=r"cannot score parse_en: the test file is gone.*skip"):
            evaluate(run_dir, max_examples=4)
        rows = evaluate(run_dir, max_examples=4, skip_unavailable=True)
    finally:
        bundled.register(original, replace=True)
    assert {row["task"] for row in rows} == {"classify_image"}
    saved = json.loads((run_dir / "evaluation.json").read_text())
    assert saved["skipped"] == [{"task": "parse_en", "reason": "the test file is gone"}]


@INDEPENDENT
def test_predict_and_evaluate_decode_with_the_task_s_sampler_unless_told(
    tiny_run, monkeypatch, tmp_path
):
    run_dir = tiny_run
    used = []
    generate = MultiModel.generate

    def spy(self, task, inputs, *args, **kwargs):
        if "sampler" in kwargs:  # (not generate's own call to itself, to detokenize)
            used.append((task, kwargs["sampler"]))
        return generate(self, task, inputs, *args, **kwargs)

    monkeypatch.setattr(MultiModel, "generate", spy)
    text = "The earth was formless ."
    assert predict(run_dir, "parse_en", text) == predict(run_dir, "parse_en", text, "beam")
    predict(run_dir, "parse_en", text, sampler="greedy")
    assert used == [("parse_en", "beam")] * 2 + [("parse_en", "greedy")]
    for sampler, other in ((None, "greedy"), ("greedy", "beam")):
        used.clear()
        rows = evaluate(run_dir, max_examples=2, sampler=sampler)
        expected = sampler or "beam"  # parse_en's own
        assert ("parse_en", expected) in used and ("parse_en", other) not in used
        assert next(r for r in rows if r["metric"] == "LAS")["decoding"] == expected
    for call in (lambda: predict(run_dir, "parse_en", text, sampler="top_k"),
                 lambda: evaluate(tmp_path / "not_a_run", sampler="top_k")):  # fmt: skip
        with pytest.raises(InputError, match="must be one of greedy, beam.*received 'top_k'"):
            call()  # (checked before the model is loaded)
    code, _, err = finish(cli("evaluate", f"--model_dir={run_dir}", "--sampler=top_k"))
    assert code == 1 and "greedy" in err and "Traceback" not in err


def _wav(path, seconds):
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(np.zeros(int(16000 * seconds), "<i2").tobytes())


def saved_model_cli(*args):
    """TensorFlow's `saved_model_cli`, with the tensorflow-text ops registered (its
    `run` imports the whole graph, SentencePiece ops included), as the README says."""
    code = (
        "import sys, tensorflow_text; from tensorflow.python.tools import saved_model_cli; "
        "sys.argv[0] = 'saved_model_cli'; saved_model_cli.main()"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600
    )


@pytest.mark.large
@pytest.mark.backends(
    "tensorflow", reason="the export command end to end, from the default backend"
)
def test_export_writes_a_saved_model_that_saved_model_cli_describes_and_runs(tiny_run, tmp_path):
    run_dir = tiny_run
    export_dir = tmp_path / "saved_model"
    code, out, err = finish(cli("export", f"--model_dir={run_dir}", f"--export_dir={export_dir}"))
    assert code == 0, err[-3000:]
    assert f"Exported classify_image, parse_en (beam) to {export_dir}." in out  # the record's
    shown = saved_model_cli("show", "--all", "--dir", str(export_dir))
    assert shown.returncode == 0, shown.stderr[-2000:]
    for signature in ("classify_image", "parse_en", "serving_default"):
        assert f"signature_def['{signature}']" in shown.stdout
    for name in ("inputs['image'] tensor_info", "dtype: DT_UINT8", "shape: (-1, 28, 28, 1)",
                 "outputs['class_name']", "inputs['text']", "outputs['token_ids']"):  # fmt: skip
        assert name in shown.stdout, name
    images, _ = bundled.load_examples("classify_image", "test")
    np.save(tmp_path / "images.npy", images[:2])
    ran = saved_model_cli("run", "--dir", str(export_dir), "--tag_set", "serve",
                          "--signature_def", "classify_image",
                          "--inputs", f"image={tmp_path / 'images.npy'}")  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-2000:]
    from PIL import Image

    Image.fromarray(images[0, ..., 0]).save(tmp_path / "first.png")
    expected = predict(run_dir, "classify_image", str(tmp_path / "first.png"))
    assert expected in ran.stdout  # the same class name as predict
    code, _, err = finish(cli("export", f"--model_dir={run_dir}", f"--export_dir={export_dir}"))
    assert code == 1 and "exists; give a new directory" in err and "Traceback" not in err


@INDEPENDENT
def test_predict_bad_input_gets_one_line_errors(tiny_run, tmp_path):
    run_dir = tiny_run
    with pytest.raises(DataError, match="unknown task 'translate'; this model has"):
        predict(run_dir, "translate", "hola")
    with pytest.raises(DataError, match="image file .*missing.png does not exist"):
        predict(run_dir, "classify_image", str(tmp_path / "missing.png"))
    not_image = tmp_path / "notes.png"
    not_image.write_text("not a picture")
    with pytest.raises(DataError, match="notes.png is not a readable image"):
        predict(run_dir, "classify_image", str(not_image))
    with pytest.raises(DataError, match="this task takes an image file"):
        predict(run_dir, "classify_image", "a sentence")
    with pytest.raises(DataError, match="give the input with --input"):
        predict(run_dir, "parse_en", "")
    with pytest.raises(DataError, match="no trained model at"):
        load_run(tmp_path)
    # Text that is not UTF-8 (undecodable bytes on the command line arrive as surrogates).
    with pytest.raises(InputError, match=r"text 0 is not valid UTF-8 \(byte 0xe9 at position 3"):
        predict(run_dir, "parse_en", os.fsdecode(b"caf\xe9 \xff\xfe"))
    # A zip archive that is not a Keras model.
    (tmp_path / "fake").mkdir()
    with zipfile.ZipFile(tmp_path / "fake" / "model.keras", "w") as archive:
        archive.writestr("notes.txt", "not a model")
    with pytest.raises(DataError, match="is not a Keras model file .*without config.json"):
        predict(tmp_path / "fake", "parse_en", "The earth .")
    # A Keras model that is not a MultiModel.
    (tmp_path / "other").mkdir()
    other = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    other.save(tmp_path / "other" / "model.keras")
    with pytest.raises(DataError, match="holds a Sequential, not a keras_multimodel MultiModel"):
        load_run(tmp_path / "other")
    # A bundled image task saved without `image_size` takes its record's size.
    model, _ = load_run(run_dir)
    model.nets_of("classify_image")[0].image_size = None
    (tmp_path / "unsized").mkdir()
    model.save(tmp_path / "unsized" / "model.keras")
    unsized, _ = load_run(tmp_path / "unsized")
    assert unsized.nets_of("classify_image")[0].image_size == (28, 28)


@INDEPENDENT
def test_teacher_forced_metrics_do_not_depend_on_the_batch_size(tiny_run):
    from keras_multimodel.cli.evaluate import teacher_forced

    model, _ = load_run(tiny_run)
    for task in ("classify_image", "parse_en"):  # a label, and a sequence
        inputs, targets = bundled.load_examples(task, "test")
        inputs, targets = list(inputs[:5]), list(targets[:5])
        whole = teacher_forced(model, bundled.get(task), inputs, targets, batch_size=8)
        padded = teacher_forced(model, bundled.get(task), inputs, targets, batch_size=3)
        assert whole.keys() == padded.keys()
        for name, (value, higher_is_better) in whole.items():
            assert padded[name][1] == higher_is_better
            np.testing.assert_allclose(padded[name][0], value, rtol=1e-4, err_msg=task)


@INDEPENDENT
def test_export_checks_its_destination_before_any_work(tiny_run, tmp_path, monkeypatch):
    import keras_multimodel.cli.export as export_command

    def no_loading(model_dir):
        raise AssertionError("the model was loaded before the destination was checked")

    monkeypatch.setattr(export_command, "load_run", no_loading)
    with pytest.raises(DataError, match=r"--export_dir /proc/kmm/saved_model: cannot write in"):
        export(tiny_run, "/proc/kmm/saved_model")
    (tmp_path / "taken").mkdir()
    with pytest.raises(DataError, match="exists; give a new directory"):
        export(tiny_run, tmp_path / "taken")


@INDEPENDENT
def test_each_command_has_its_own_help(capsys):
    for command, flag, other in (("predict", "--input", "--train_steps"),
                                 ("train", "--learning_rate", "--export_dir")):  # fmt: skip
        with pytest.raises(SystemExit) as exit_status:
            main.run(["keras_multimodel", command, "--help"])
        assert exit_status.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: python -m keras_multimodel {command} [--flags]")
        assert flag in out and other not in out
    assert not main._asks_for_help(["--input", "-h"])  # the text "-h"
    assert main._asks_for_help(["--input=-h", "-h"])


def test_read_image_converts_colour_and_size(tmp_path):
    from PIL import Image

    path = tmp_path / "big.jpg"
    Image.fromarray(np.full((90, 60, 3), 200, "uint8")).save(path)
    assert formats.read_image(path, (28, 28, 1)).shape == (28, 28, 1)


def test_speech_longer_than_the_model_takes_is_a_one_line_error(tmp_path):
    """A 9 s WAV reads fine, but the speech task's model takes at most 8 s."""
    from keras_multimodel.data import read_wav
    from keras_multimodel.modalities import Audio

    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVE")
    with pytest.raises(DataError, match="corrupt.wav is not a readable PCM WAV"):
        read_wav(str(corrupt))
    _wav(tmp_path / "long.wav", 9.0)
    record = bundled.get("transcribe_speech")
    waveform = record.inputs.read(str(tmp_path / "long.wav"))
    assert waveform.shape == (144000,)
    net = record.inputs.modality(None)  # Audio with the task's max_length
    assert isinstance(net, Audio) and net.max_length == 128000
    with pytest.raises(DataError, match=r"audio of 9.0 s is longer than the model's 8.0 s"):
        record.inputs.model_inputs([waveform], net, None)


@INDEPENDENT
def test_command_line_errors_are_one_line(tiny_run, tmp_path):
    run_dir = tiny_run
    code, _, err = finish(
        cli("predict", f"--model_dir={run_dir}", "--task=classify_image",
            f"--input={tmp_path / 'nothing.png'}")  # fmt: skip
    )
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("error: image file")
    assert "Traceback" not in err
    code, _, err = finish(cli("evaluate", f"--model_dir={tmp_path}"))
    assert code == 1 and "error: no trained model at" in err and "Traceback" not in err
    code, _, err = finish(cli("evaluate", f"--model_dir={run_dir}", "--tasks=bogus"))
    assert code == 1 and "error: evaluate does not take --tasks; see" in err


@pytest.mark.backends("tensorflow", reason="backend-independent: how the command line exits")
def test_a_bug_keeps_its_traceback_on_the_command_line():
    """Only the package's InputError becomes one line; a ValueError from elsewhere
    (here raised where evaluate would run) is a bug and keeps its traceback."""
    code = (
        "import keras_multimodel.cli.main as m\n"
        "def broken(*args):\n"
        "    raise ValueError('deep inside a backend')\n"
        "m._run = broken\n"
        "m.run()\n"
    )
    status, _, err = finish(cli("evaluate", code=code))
    assert status != 0
    assert "Traceback" in err and "ValueError: deep inside a backend" in err


def test_no_bundled_task_is_named_in_the_command_line_code():
    source = "\n".join(path.read_text() for path in CLI.glob("*.py"))
    for name in bundled.names():
        assert name not in source, name


WORDS = ("red", "green", "blue", "cat", "dog", "sun", "moon", "tree", "sea", "sky")
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")


def _reverse_words(split, data_size):
    rng = np.random.default_rng(bundled.SPLITS.index(split))
    count = {"train": 400, "validation": 16, "test": 16}[split]
    sentences = [" ".join(rng.choice(WORDS, rng.integers(2, 5))) for _ in range(count)]
    return sentences, [" ".join(reversed(s.split())) for s in sentences]


def _bright_quadrant(split, data_size):
    rng = np.random.default_rng(10 + bundled.SPLITS.index(split))
    count = {"train": 400, "validation": 16, "test": 16}[split]
    images = rng.integers(0, 80, (count, 16, 16, 1)).astype("uint8")
    labels = rng.integers(0, 4, count)
    for image, label in zip(images, labels, strict=True):
        row, col = divmod(int(label), 2)
        image[row * 8 : row * 8 + 8, col * 8 : col * 8 + 8] += 150
    return images, labels.astype("int32")


@pytest.fixture
def toy_tasks():
    """Two bundled tasks that exist only in this test, registered the public way."""
    records = [
        bundled.BundledTask(
            name="reverse_words",
            description="words -> the same words reversed",
            inputs=bundled.TextFormat(),
            targets=bundled.TextFormat(),
            examples=_reverse_words,
            metrics=(bundled.Metric("exact match", metrics.exact_match),),
            baselines=(bundled.Baseline("copy the input", lambda x, y: lambda xs: list(xs)),),
        ),
        bundled.BundledTask(
            name="bright_quadrant",
            description="16x16 grey image -> its bright quadrant",
            inputs=bundled.ImageFormat((16, 16, 1)),
            targets=bundled.LabelFormat(QUADRANTS),
            examples=_bright_quadrant,
            metrics=(bundled.Metric("accuracy", metrics.accuracy),),
        ),
    ]
    for record in records:
        bundled.register(record)
    yield records
    for record in records:
        bundled.unregister(record.name)


@INDEPENDENT
def test_a_task_registered_outside_the_package_trains_evaluates_and_predicts(
    toy_tasks, tmp_path
):
    from PIL import Image

    config = TrainConfig(
        tasks=("reverse_words", "bright_quadrant"),
        train_steps=12,
        steps_per_epoch=6,
        batch_size=8,
    )
    train(tmp_path, config, verbose=0)
    rows = evaluate(tmp_path)
    assert {(row["task"], row["metric"], tuple(row["baselines"])) for row in rows} == {
        ("reverse_words", "exact match", ("copy the input",)),
        ("reverse_words", "token accuracy (teacher forced)", ()),
        ("reverse_words", "log-perplexity (teacher forced)", ()),
        ("bright_quadrant", "accuracy", ()),
        ("bright_quadrant", "log-loss", ()),
    }
    assert all(row["examples"] == 16 for row in rows)
    assert isinstance(predict(tmp_path, "reverse_words", "red cat"), str)
    path = tmp_path / "quadrant.png"
    Image.fromarray(_bright_quadrant("test", "small")[0][0, ..., 0]).save(path)
    assert predict(tmp_path, "bright_quadrant", str(path)) in QUADRANTS


def test_readme_example_registers_a_bundled_task():
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    start = readme.index("### Add your own bundled task")
    begin = readme.index("```python", start) + len("```python")
    code = readme[begin : readme.index("```", begin)]
    try:
        exec(compile(code, "README.md", "exec"), {})
        record = bundled.get("reverse_words")
        assert record.load_examples("test") == (["c d e"], ["e d c"])
        assert record.make_task(bundled.shared_text(_TinyTokenizer())).targets.vocab_size == 9
    finally:
        bundled.unregister("reverse_words")


class _TinyTokenizer:
    def vocabulary_size(self):
        return 9
