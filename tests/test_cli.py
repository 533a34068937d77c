"""The command line: train (killed and resumed), evaluate, predict and its one-line errors."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
import wave

import keras
import numpy as np
import pytest

from keras_multimodel.data import DataError, paper

TRAIN_ARGS = [
    "--tasks=classify_image,parse_en",
    "--train_steps=40",
    "--steps_per_epoch=2",
    "--batch_size=8",
]


def cli(*args, **kwargs):
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend()}
    return subprocess.Popen(
        [sys.executable, "-m", "keras_multimodel", *args],
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


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run killed (SIGKILL) after its first backups, then started again to finish."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    metadata = run_dir / "backup" / "training_metadata.json"
    first = cli("train", f"--output_dir={run_dir}", *TRAIN_ARGS)
    deadline = time.time() + 600
    while time.time() < deadline and first.poll() is None:
        if metadata.exists() and json.loads(metadata.read_text() or "{}").get("epoch", 0) >= 2:
            break
        time.sleep(0.2)
    assert first.poll() is None, "the first run ended before it could be killed:\n" + (
        first.stderr.read()[-3000:]
    )
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    resumed_from = json.loads(metadata.read_text())["epoch"]
    epochs_before = logged_epochs(run_dir)
    assert not (run_dir / "model.keras").exists()
    code, out, err = finish(cli("train", f"--output_dir={run_dir}", *TRAIN_ARGS))
    assert code == 0, err[-3000:]
    return run_dir, resumed_from, epochs_before, out


def test_killed_training_resumes_where_it_stopped(trained_run):
    run_dir, resumed_from, epochs_before, _ = trained_run
    epochs = logged_epochs(run_dir)
    after = epochs[len(epochs_before) :]
    assert after[0] == resumed_from > 0, (epochs_before, after)  # not from scratch
    assert after[-1] == 19  # 40 steps / 2 per epoch, and no more
    assert (run_dir / "model.keras").exists() and (run_dir / "tokenizer.model").exists()
    assert list((run_dir / "logs").rglob("*tfevents*")), "no TensorBoard logs"
    with open(run_dir / "history.csv") as f:
        columns = next(csv.reader(f))
    for name in ("val_classify_image_accuracy", "val_parse_en_token_accuracy", "val_loss"):
        assert name in columns  # per-task validation metrics each epoch


def test_training_again_into_a_finished_run_is_refused(trained_run):
    run_dir = trained_run[0]
    code, _, err = finish(cli("train", f"--output_dir={run_dir}", *TRAIN_ARGS))
    assert code == 1 and "this run is finished" in err and "Traceback" not in err


def test_resuming_with_other_settings_is_refused(tmp_path):
    from keras_multimodel.cli.train import _check_settings

    _check_settings(tmp_path, {"preset": "tiny", "train_steps": 10})
    with pytest.raises(DataError, match=r"other settings \(train_steps: 10 -> 20\)"):
        _check_settings(tmp_path, {"preset": "tiny", "train_steps": 20})


def test_evaluate_prints_the_table(trained_run):
    run_dir = trained_run[0]
    code, out, err = finish(cli("evaluate", f"--model_dir={run_dir}", "--max_examples=16"))
    assert code == 0, err[-3000:]
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| task | metric | model | baseline")
    rows = {tuple(cell.strip() for cell in line.split("|")[1:3]) for line in table[1:]}
    assert rows == {("classify_image", "accuracy"), ("parse_en", "LAS"),
                    ("parse_en", "exact match"), ("parse_en", "UAS")}  # fmt: skip
    saved = json.loads((run_dir / "evaluation.json").read_text())
    assert len(saved["rows"]) == 4


def test_predict(trained_run, tmp_path):
    from PIL import Image

    from keras_multimodel.cli.predict import predict

    run_dir = trained_run[0]
    images, _ = paper.load_examples("classify_image", "test")
    path = tmp_path / "shirt.png"
    Image.fromarray(images[0, ..., 0]).save(path)
    assert predict(run_dir, "classify_image", str(path)) in paper.FASHION_MNIST_CLASSES
    parse = predict(run_dir, "parse_en", "The earth was formless .")
    assert isinstance(parse, str)


def _wav(path, seconds):
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(np.zeros(int(16000 * seconds), "<i2").tobytes())


def test_predict_bad_input_errors(trained_run, tmp_path):
    from keras_multimodel.cli.evaluate import load_run
    from keras_multimodel.cli.predict import predict, read_image

    run_dir = trained_run[0]
    with pytest.raises(DataError, match="unknown task 'translate'; this model has"):
        predict(run_dir, "translate", "hola")
    with pytest.raises(DataError, match="image file .*missing.png does not exist"):
        predict(run_dir, "classify_image", str(tmp_path / "missing.png"))
    not_image = tmp_path / "notes.png"
    not_image.write_text("not a picture")
    with pytest.raises(DataError, match="notes.png is not a readable image"):
        predict(run_dir, "classify_image", str(not_image))
    with pytest.raises(DataError, match="classify_image takes an image file"):
        predict(run_dir, "classify_image", "a sentence")
    with pytest.raises(DataError, match="give the input with --input"):
        predict(run_dir, "parse_en", "")
    with pytest.raises(DataError, match="no trained model at"):
        load_run(tmp_path)
    assert read_image(_save_rgb(tmp_path), (28, 28, 1)).shape == (28, 28, 1)


def _save_rgb(tmp_path):
    from PIL import Image

    path = tmp_path / "big.jpg"
    Image.fromarray(np.full((90, 60, 3), 200, "uint8")).save(path)
    return path


def test_speech_input_errors(tmp_path):
    """Corrupt and too-long WAVs are one-line errors before any model runs."""
    from keras_multimodel.data import read_wav

    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVE")
    with pytest.raises(DataError, match="corrupt.wav is not a readable PCM WAV"):
        read_wav(str(corrupt))
    _wav(tmp_path / "long.wav", 9.0)
    assert read_wav(str(tmp_path / "long.wav")).shape == (144000,)


def test_command_line_errors_are_one_line(trained_run, tmp_path):
    run_dir = trained_run[0]
    code, _, err = finish(
        cli("predict", f"--model_dir={run_dir}", "--task=classify_image",
            f"--input={tmp_path / 'nothing.png'}")  # fmt: skip
    )
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("error: image file")
    assert "Traceback" not in err
    code, _, err = finish(cli("evaluate", f"--model_dir={tmp_path}"))
    assert code == 1 and "error: no trained model at" in err and "Traceback" not in err
