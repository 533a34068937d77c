"""Bundled tasks: the paper's five kinds of task on real data that works offline.

| task | input -> target | data (license) |
|---|---|---|
| classify_image | 28x28 grey image -> 10 classes | Fashion-MNIST (MIT) |
| caption_image | 32x32 emoji -> its Unicode name | Noto Color Emoji (Apache-2.0), names |
| transcribe_speech | 16 kHz speech -> lower-case words | sentences below, spoken by espeak-ng |
| translate_en_es | English verse -> Spanish | World English Bible, Reina-Valera 1909 (PD) |
| translate_es_en | Spanish verse -> English | the same pairs, reversed |
| parse_en | English sentence -> linearised parse | spaCy en_core_web_sm silver parses |

Each task is one `BundledTask` record in its own module (data, formats, metrics,
baselines); `register` adds one of your own, and the command line then trains,
evaluates and predicts it like these. `data_size="small"` (the default) keeps the
main job within minutes on a CPU; `"full"` uses all bundled examples (see each
module). Examples are selected by documented rules, never truncated.
"""

from keras_multimodel.data.bundled import (  # noqa: F401 (each module registers its task)
    caption_image,
    classify_image,
    parse_en,
    transcribe_speech,
    translation,
)
from keras_multimodel.data.bundled.formats import (
    AudioFormat,
    Format,
    ImageFormat,
    LabelFormat,
    TextFormat,
)
from keras_multimodel.data.bundled.record import (
    Baseline,
    BundledTask,
    Metric,
    check_data_size,
    get,
    names,
    register,
    unregister,
)
from keras_multimodel.data.bundled.sources import DATA_SIZES, SPLITS, cache_dir
from keras_multimodel.errors import DataError
from keras_multimodel.tokenization import END_ID

PAPER_TASKS = (
    "classify_image",
    "caption_image",
    "transcribe_speech",
    "translate_en_es",
    "translate_es_en",
    "parse_en",
)
"""The bundled tasks of the main job: the paper's five kinds of task, in order."""
SCARCE_TASK = "parse_en"
"""The task `experiment scarce` cuts to a share of its data by default (the paper's
small task: parsing)."""
TRANSFER_SOURCE = "classify_image"
"""The task `experiment scarce` pairs the cut task with alone (the paper's transfer
from ImageNet to parsing)."""
TEXT_MAX_LENGTH = {"small": 64, "full": 256}  # tokens of the shared Text modality


def load_examples(task, split, data_size="small"):
    """One split of a bundled task as raw `(inputs, targets)`.

    Raw means: images as uint8 arrays `(N, H, W, C)`, labels as ints, text as
    Python strings, speech as a list of float32 waveforms in [-1, 1] at 16 kHz (the
    task record's own `load_examples` keeps them as stored, int16 PCM at half the
    memory). Use `load` for a tokenized `tf.data.Dataset`.

    >>> images, labels = load_examples("classify_image", "test")
    >>> images.shape, images.dtype.name, labels[:3].tolist()
    ((1000, 28, 28, 1), 'uint8', [1, 5, 7])
    """
    record = get(task)
    inputs, targets = record.load_examples(split, data_size)
    return record.inputs.as_raw(inputs), record.targets.as_raw(targets)


def training_texts(tasks=PAPER_TASKS, data_size="small"):
    """The training texts of `tasks`' text sides: the corpus of the shared vocabulary."""
    return [text for name in tasks for text in get(name).training_texts(data_size)]


def shared_text(tokenizer, data_size="small"):
    """The one `Text` modality every text side of the bundled tasks shares."""
    from keras_multimodel.modalities import Text

    check_data_size(data_size)
    return Text(
        vocab_size=tokenizer.vocabulary_size(),
        max_length=TEXT_MAX_LENGTH[data_size],
        end_token_id=END_ID,
    )


def make_tasks(tokenizer, tasks=PAPER_TASKS, data_size="small"):
    """The bundled tasks as `Task`s; every text side shares one `Text` net.

    >>> import keras_multimodel as kmm
    >>> tokenizer = kmm.data.train_tokenizer(["a cat sat on the mat", "the dog"] * 50, 16)
    >>> [t.name for t in make_tasks(tokenizer, ["classify_image", "parse_en"])]
    ['classify_image', 'parse_en']
    """
    records = [get(name) for name in tasks]
    if not records:
        raise DataError(f"no tasks given; the bundled tasks are {', '.join(names())}")
    needs_text = any(record.needs_text for record in records)
    if needs_text and tokenizer is None:
        raise DataError("text tasks need the shared `tokenizer` (kmm.data.train_tokenizer)")
    text = shared_text(tokenizer, data_size) if needs_text else None
    return [record.make_task(text) for record in records]


def label_names(tasks):
    """`{task: [class names]}` of the bundled label `tasks`, for `MultiModel.export`."""
    records = [get(name) for name in tasks]
    return {r.name: list(r.targets.label_names) for r in records if r.targets.label_names}


def load(task, split, tokenizer=None, data_size="small", max_length=None):
    """One split of a bundled task as a `tf.data.Dataset` of `(inputs, targets)`.

    Text is tokenized with `tokenizer` (targets end with the end id); images stay
    uint8; speech is `{"waveform", "length"}` with int16 PCM waveforms (the `Audio`
    net scales them to [-1, 1]). Text longer than `max_length` tokens
    (default: the shared `Text` modality's limit) is an error, never truncated.

    Args:
        task: a bundled task's name.
        split: "train", "validation" or "test" (and the record's extra splits).
        tokenizer: the shared tokenizer; required by tasks with text.
        data_size: "small" or "full".
        max_length: longest text accepted, in tokens.

    >>> dataset = load("classify_image", "validation")
    >>> image, label = next(iter(dataset))
    >>> image.shape.as_list(), image.dtype.name
    ([28, 28, 1], 'uint8')
    """
    import tensorflow as tf

    record = get(task)
    inputs, targets = record.load_examples(split, data_size)
    max_length = max_length or TEXT_MAX_LENGTH[data_size]
    (input_slices, input_fn), (target_slices, target_fn) = (
        side.dataset_values(raw, role, tokenizer, max_length, f"{task} {split} {role}")
        for side, raw, role in ((record.inputs, inputs, "inputs"),
                                (record.targets, targets, "targets"))
    )  # fmt: skip
    dataset = tf.data.Dataset.from_tensor_slices((input_slices, target_slices))
    if input_fn is None and target_fn is None:
        return dataset
    input_fn, target_fn = (fn or (lambda value: value) for fn in (input_fn, target_fn))
    return dataset.map(lambda x, y: (input_fn(x), target_fn(y)))


__all__ = [
    "AudioFormat",
    "Baseline",
    "BundledTask",
    "DATA_SIZES",
    "Format",
    "ImageFormat",
    "LabelFormat",
    "Metric",
    "PAPER_TASKS",
    "SPLITS",
    "TEXT_MAX_LENGTH",
    "TextFormat",
    "cache_dir",
    "get",
    "label_names",
    "load",
    "load_examples",
    "make_tasks",
    "names",
    "register",
    "shared_text",
    "training_texts",
    "unregister",
]
