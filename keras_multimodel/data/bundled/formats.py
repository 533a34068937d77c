"""Raw formats: what one side (inputs or targets) of a bundled task looks like.

A task record names one format per side; everything that depends only on the
kind of data goes through it, so the command line never branches on a task:

| format | raw example | modality | predict reads |
|---|---|---|---|
| `ImageFormat(shape, **aug)` | uint8 `(H, W, C)` | `Image(channels=C, **aug)` | an image file |
| `AudioFormat(rate, seconds, **aug)` | int16 PCM (kept) | `Audio(rate, ..., **aug)` | a WAV file |
| `TextFormat()` | a string | the shared `Text` | the text itself |
| `LabelFormat(names)` | an int class id | `ClassLabel(len(names))` | - |

`aug`: the modality's training-time augmentation settings (off unless given).
"""

import pathlib

import numpy as np

from keras_multimodel.data import speech
from keras_multimodel.errors import DataError
from keras_multimodel.tokenization import pad_rows, texts_to_ids

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")


class Format:
    """Base class: one side of a bundled task's examples.

    Subclasses implement what their side can do: `modality`, `dataset_values`
    (raw examples -> arrays for `tf.data.Dataset.from_tensor_slices`, and a function
    to map its elements with, or None), and for
    inputs `model_inputs` (raw examples -> one model-ready batch) and `read` (a
    `predict` argument -> one raw example). `show` and `texts` have defaults.
    """

    is_text = False

    def modality(self, text):
        """The modality of this side; `text` is the shared `Text` of text sides."""
        raise NotImplementedError

    def dataset_values(self, values, role, tokenizer, max_length, where):
        """Raw examples -> `(slices, fn)`: what `tf.data.Dataset.from_tensor_slices`
        takes, and a function to map each slice to an example, or None.

        `role` is "inputs" or "targets"; `where` names the task, split and role in
        errors.
        """
        raise NotImplementedError

    def as_raw(self, values):
        """Stored examples as `bundled.load_examples` gives them (the same, but audio)."""
        return values

    def model_inputs(self, values, net, tokenizer):
        """Raw examples -> one batch for `MultiModel.generate`, padded to fixed shapes."""
        raise DataError(f"{type(self).__name__} cannot be a task's input")

    def model_targets(self, values, net, tokenizer):
        """Raw targets -> one batch of target ids for `MultiModel.score`."""
        raise DataError(f"{type(self).__name__} cannot be a task's target")


    def read(self, value):
        """One raw example from a `predict --input` value (a path or text)."""
        raise DataError(f"{type(self).__name__} cannot be read as an input")

    def show(self, value):
        """A short readable form of one example or output."""
        return str(value)

    @property
    def label_names(self):
        """Class names of a label side; None otherwise."""
        return None

    def texts(self, values):
        """The texts among `values`, for training the shared vocabulary."""
        return []


class ImageFormat(Format):
    """uint8 images of one `shape` `(height, width, channels)`; `augmentation`: the
    `Image` modality's training-time settings (`random_shift`, `random_flip`)."""

    def __init__(self, shape, **augmentation):
        self.shape = tuple(shape)
        self.augmentation = augmentation

    def modality(self, text):
        from keras_multimodel.modalities import Image

        return Image(channels=self.shape[-1], image_size=self.shape[:2], **self.augmentation)

    def dataset_values(self, values, role, tokenizer, max_length, where):
        return np.asarray(values, "uint8"), None

    def model_inputs(self, values, net, tokenizer):
        return np.stack([np.asarray(value, "uint8") for value in values])

    def read(self, value):
        path = pathlib.Path(value)
        if path.suffix.lower() not in IMAGE_SUFFIXES and not path.is_file():
            raise DataError(f"this task takes an image file; {value!r} is not one")
        return read_image(path, self.shape)

    def show(self, value):
        return f"<image {'x'.join(map(str, np.shape(value)))}>"


class AudioFormat(Format):
    """Mono int16 PCM waveforms at `sample_rate`, at most `max_seconds` long (float32
    ones in [-1, 1] are taken too); `augmentation`: the `Audio` modality's SpecAugment
    settings (`time_masks`, ...). Datasets hold int16 PCM, at half the memory of
    float32, up to the `Audio` net, which scales it."""

    def __init__(self, sample_rate, max_seconds, **augmentation):
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.augmentation = augmentation

    def as_raw(self, values):
        return [speech.to_float(w) for w in values]

    def modality(self, text):
        from keras_multimodel.modalities import Audio

        return Audio(
            sample_rate=self.sample_rate,
            max_length=int(self.max_seconds * self.sample_rate),
            **self.augmentation,
        )

    def dataset_values(self, values, role, tokenizer, max_length, where):
        import tensorflow as tf

        # One int16 tensor, sliced per example: a ragged tensor's slices would hold
        # a second copy of every waveform.
        lengths = np.array([len(w) for w in values], "int32")
        pcm = tf.constant(np.concatenate([speech.to_pcm16(w) for w in values]))
        starts = np.concatenate([[0], np.cumsum(lengths[:-1], dtype="int64")])

        def example(value):
            start, length = value["start"], value["length"]
            return {"waveform": pcm[start : start + tf.cast(length, "int64")], "length": length}

        return {"start": starts, "length": lengths}, example

    def model_inputs(self, values, net, tokenizer):
        longest = max(len(w) for w in values)
        if longest > net.max_length:
            raise DataError(
                f"audio of {longest / net.sample_rate:.1f} s is longer than the model's "
                f"{net.max_length / net.sample_rate:.1f} s; split it into shorter pieces"
            )
        waveform = pad_rows([speech.to_float(w) for w in values], net.max_length, "float32")
        return {"waveform": waveform, "length": np.array([len(w) for w in values], "int32")}

    def read(self, value):
        return speech.read_wav(value, self.sample_rate)

    def show(self, value):
        return f"<{len(value) / self.sample_rate:.1f} s of audio>"


class TextFormat(Format):
    """Strings, tokenized with the shared vocabulary (targets end with the end id)."""

    is_text = True

    def modality(self, text):
        if text is None:
            raise DataError("a text task needs the shared tokenizer; pass `tokenizer`")
        return text

    def dataset_values(self, values, role, tokenizer, max_length, where):
        import tensorflow as tf

        if tokenizer is None:
            raise DataError(f"{where} is text: pass the shared `tokenizer`")
        rows = texts_to_ids(tokenizer, values, add_end=role == "targets", where=f"{where}: text")
        longest = max(len(row) for row in rows)
        if longest > max_length:
            raise DataError(
                f"{where} of {longest} tokens exceed max_length={max_length}; raise "
                "max_length or use a larger vocabulary"
            )
        return tf.ragged.constant(rows, dtype="int32", ragged_rank=1), None

    def model_inputs(self, values, net, tokenizer):
        return _padded_ids(values, net, tokenizer, add_end=False, what="the text")

    def model_targets(self, values, net, tokenizer):
        return _padded_ids(values, net, tokenizer, add_end=True, what="a target")

    def read(self, value):
        return value

    def texts(self, values):
        return list(values)


class LabelFormat(Format):
    """Integer class ids, with the classes' `names`."""

    def __init__(self, names):
        self.names = tuple(names)

    def modality(self, text):
        from keras_multimodel.modalities import ClassLabel

        return ClassLabel(len(self.names))

    def dataset_values(self, values, role, tokenizer, max_length, where):
        return np.asarray(values, "int32"), None

    def model_targets(self, values, net, tokenizer):
        return np.asarray(values, "int32")

    def show(self, value):
        return self.names[int(value)]

    @property
    def label_names(self):
        return self.names


def read_image(path, shape):
    """An image file as uint8 `shape`: converted to grey or RGB and resized.

    16-bit images (e.g. 16-bit PNGs) are scaled to 8 bits, not clipped.
    """
    from PIL import Image, UnidentifiedImageError

    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"image file {path} does not exist")
    try:
        with Image.open(path) as image:
            if image.mode.startswith("I"):  # 16- or 32-bit integer grey levels
                levels = np.asarray(image, "float64")
                top = 65535.0 if levels.max() <= 65535 else float(levels.max())
                image = Image.fromarray(np.round(levels * 255.0 / top).astype("uint8"), "L")
            elif image.mode == "F":
                raise DataError(f"{path} has floating-point pixels; save it as 8- or 16-bit")
            image = image.convert("L" if shape[-1] == 1 else "RGB")
            image = image.resize(shape[1::-1], Image.LANCZOS)
            pixels = np.asarray(image, "uint8")
    except Image.DecompressionBombError as error:
        raise DataError(f"{path} is too large to read safely ({error})") from None
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"{path} is not a readable image ({error})") from None
    return pixels.reshape(shape)


def _padded_ids(values, net, tokenizer, add_end, what):
    """Texts -> ids padded to the net's `max_length`; longer ones are an error."""
    rows = texts_to_ids(tokenizer, values, add_end=add_end, where="text")
    longest = max(len(row) for row in rows)
    if longest > net.max_length:
        raise DataError(
            f"{what} is {longest} tokens long; the model takes at most {net.max_length}"
        )
    return pad_rows(rows, net.max_length)
