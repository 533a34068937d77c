"""`python -m keras_multimodel predict`: one input (image, WAV file or text) to its output."""

import pathlib

import numpy as np

from keras_multimodel.cli.evaluate import load_run, model_inputs
from keras_multimodel.data import DataError, paper, read_wav

IMAGE_SHAPES = {"classify_image": (28, 28, 1), "caption_image": (32, 32, 3)}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")


def read_image(path, shape):
    """An image file as uint8 `shape` (converted to grey or RGB and resized)."""
    from PIL import Image, UnidentifiedImageError

    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"image file {path} does not exist")
    try:
        with Image.open(path) as image:
            image = image.convert("L" if shape[-1] == 1 else "RGB")
            image = image.resize(shape[1::-1], Image.LANCZOS)
            pixels = np.asarray(image, "uint8")
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"{path} is not a readable image ({error})") from None
    return pixels.reshape(shape)


def predict(model_dir, task, value):
    """Decodes one input of `task`: a path for image and speech tasks, text otherwise."""
    model, _ = load_run(model_dir)
    known = [t.name for t in model.tasks]
    if task not in known:
        raise DataError(f"unknown task {task!r}; this model has {', '.join(known)}")
    if value is None or value == "":
        raise DataError("give the input with --input (a file path, or text)")
    if task in IMAGE_SHAPES:
        if pathlib.Path(value).suffix.lower() not in IMAGE_SUFFIXES and not pathlib.Path(
            value
        ).is_file():
            raise DataError(f"{task} takes an image file; {value!r} is not one")
        inputs = read_image(value, IMAGE_SHAPES[task])[None]
    elif task == "transcribe_speech":
        inputs = [read_wav(value)]
    else:
        inputs = [value]
    output = model.generate(task, model_inputs(model, task, inputs))[0]
    if task == "classify_image":
        return paper.FASHION_MNIST_CLASSES[int(output)]
    return output
