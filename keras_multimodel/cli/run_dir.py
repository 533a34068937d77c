"""A `train` run's directory: the files in it, and loading its trained model.

`train` writes, `evaluate`, `predict`, `export` and `experiment` read:

| file | written | holds |
|---|---|---|
| `train_settings.json` | at the start | the `TrainConfig` and backend (a resume must match) |
| `tokenizer.model` | at the start | the shared SentencePiece vocabulary |
| `mixing.json` | at the start | each task's examples per step and training examples |
| `backup/` | every epoch | the state a killed run resumes from (removed at the end) |
| `history.csv`, `logs/` | every epoch | `fit`'s logs; TensorBoard's |
| `epoch_seconds.csv` | every epoch | wall time of each epoch |
| `model.keras` | at the end | the trained model, its tokenizer inside |
| `train_time.json` | at the end | seconds and steps of the run |
| `evaluation.json` | by `evaluate` | the test table's rows |
"""

import json
import pathlib
import zipfile

import keras

from keras_multimodel.data import bundled
from keras_multimodel.errors import DataError
from keras_multimodel.modalities import Image
from keras_multimodel.models import MultiModel

SETTINGS_FILE = "train_settings.json"
TOKENIZER_FILE = "tokenizer.model"
MIXING_FILE = "mixing.json"
BACKUP_DIR = "backup"
HISTORY_FILE = "history.csv"
LOGS_DIR = "logs"
EPOCH_TIMES_FILE = "epoch_seconds.csv"
MODEL_FILE = "model.keras"
TRAIN_TIME_FILE = "train_time.json"
EVALUATION_FILE = "evaluation.json"

KERAS_FILE_MEMBERS = ("config.json", "model.weights.h5")  # what keras.saving writes


def load_run(model_dir):
    """The trained model of a `train` run and its settings; one-line errors otherwise."""
    model_dir = pathlib.Path(model_dir)
    path = model_dir / MODEL_FILE
    if not path.exists():
        hint = (
            " (training has not finished: run train again with this --output_dir to resume)"
            if (model_dir / SETTINGS_FILE).exists()
            else ""
        )
        raise DataError(f"no trained model at {path}{hint}")
    config = None
    try:  # a .keras file is a zip archive: check every member's CRC before loading
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
            missing = [name for name in KERAS_FILE_MEMBERS if name not in archive.namelist()]
            if damaged is None and not missing:
                config = archive.read("config.json")
    except (zipfile.BadZipFile, EOFError) as error:
        damaged, missing = f"not a complete archive: {error}", []
    if damaged is None and missing:
        raise DataError(
            f"{path} is not a Keras model file (a zip archive without {', '.join(missing)}); "
            "point --model_dir at the --output_dir of a train run"
        )
    if damaged is not None:
        raise DataError(
            f"{path} is damaged ({damaged}); train again into a new --output_dir, or restore "
            "the file from a copy"
        )
    _check_holds_a_multimodel(path, config)
    settings_path = model_dir / SETTINGS_FILE
    settings = json.loads(settings_path.read_text()) if settings_path.exists() else {}
    model = keras.saving.load_model(path)
    _use_bundled_image_sizes(model)
    return model, settings


def _check_holds_a_multimodel(path, config):
    """A one-line error unless the archive's `config.json` describes a MultiModel
    (read before loading, so an error while loading one keeps its traceback)."""
    try:
        config = json.loads(config)
        name = config.get("registered_name") or config.get("class_name")
    except (ValueError, AttributeError):
        name = None
    if name is None:
        raise DataError(
            f"{path} is not a Keras model file (its config.json is not a model's "
            "configuration); point --model_dir at the --output_dir of a train run"
        )
    model_class = keras.saving.get_registered_object(name)
    if not (isinstance(model_class, type) and issubclass(model_class, MultiModel)):
        raise DataError(
            f"{path} holds a {name}, not a keras_multimodel MultiModel; point --model_dir "
            "at the --output_dir of a train run"
        )


def _use_bundled_image_sizes(model):
    """A bundled image task whose `Image` was saved without `image_size` takes the
    size its record was trained on, so every entry point refuses other sizes alike."""
    registered = set(bundled.names())
    for task in model.tasks:
        input_net = model.nets_of(task.name)[0]
        if task.name not in registered or not isinstance(input_net, Image):
            continue
        image_format = bundled.get(task.name).inputs
        if input_net.image_size is None and isinstance(image_format, bundled.ImageFormat):
            input_net.image_size = tuple(image_format.shape[:2])
