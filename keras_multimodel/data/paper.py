"""The paper's five kinds of task on real data that works offline (six tasks).

| task | input -> target | data (license) |
|---|---|---|
| classify_image | 28x28 grey image -> 10 classes | Fashion-MNIST (MIT) |
| caption_image | 32x32 emoji -> its Unicode name | Noto Color Emoji (Apache-2.0), names |
| transcribe_speech | 16 kHz speech -> lower-case words | sentences below, spoken by espeak-ng |
| translate_en_es | English verse -> Spanish | World English Bible, Reina-Valera 1909 (PD) |
| translate_es_en | Spanish verse -> English | the same pairs, reversed |
| parse_en | English sentence -> linearised parse | spaCy en_core_web_sm silver parses |

Prepared copies live in `keras_multimodel/data/files/` (see its README for licenses
and `scripts/data/` for the scripts that rebuilt them). Speech is synthesised by
espeak-ng on first use and cached (`cache_dir()`). Every split is fixed.

`data_size="small"` (the default) keeps the main job within minutes on a CPU:
translation pairs of at most 16 English (20 Spanish) words, parse sentences of at
most 12 tokens, 1,200 training utterances; `"full"` uses pairs of up to 60 (70)
words, all bundled sentences, 6,000 utterances and, when the Debian package
`dataset-fashion-mnist` is installed, all 60,000 Fashion-MNIST training images.
Examples are selected by these documented rules, never truncated.
"""

import functools
import gzip
import hashlib
import lzma
import os
import pathlib
import re
from concurrent import futures

import numpy as np

from keras_multimodel.data import speech
from keras_multimodel.data.speech import DataError

FILES = pathlib.Path(__file__).parent / "files"
TASKS = (
    "classify_image",
    "caption_image",
    "transcribe_speech",
    "translate_en_es",
    "translate_es_en",
    "parse_en",
)
SPLITS = ("train", "validation", "test")
DATA_SIZES = ("small", "full")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
DEBIAN_FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")
SPEECH_COUNTS = {"small": (1200, 100, 100), "full": (6000, 300, 300)}  # train, val, test
SPEECH_MAX_SECONDS = 6.0
PUNCTUATION = re.compile(r"[^\w\s']")


def cache_dir():
    """Where synthesised data is cached: $KERAS_MULTIMODEL_CACHE or ~/.cache/keras_multimodel."""
    default = pathlib.Path.home() / ".cache" / "keras_multimodel"
    return pathlib.Path(os.environ.get("KERAS_MULTIMODEL_CACHE", default))


def check_args(task, split, data_size, splits=SPLITS):
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}; the bundled tasks are {', '.join(TASKS)}")
    if split not in splits:
        raise DataError(f"unknown split {split!r} of {task}; choose one of {', '.join(splits)}")
    if data_size not in DATA_SIZES:
        raise DataError(f"unknown data_size {data_size!r}; choose one of {', '.join(DATA_SIZES)}")


def load_examples(task, split, data_size="small"):
    """One split of a bundled task as raw `(inputs, targets)`.

    Raw means: images as uint8 arrays `(N, H, W, C)`, labels as ints, text as
    Python strings, speech as a list of float32 waveforms at 16 kHz. Use `load` for
    a tokenized `tf.data.Dataset`.

    The `transcribe_speech` task has a fourth split, "real": the LibriVox and
    spoken-card recordings of Debian's `pocketsphinx-testdata` (test only).

    >>> images, labels = load_examples("classify_image", "test")
    >>> images.shape, images.dtype.name, labels[:3].tolist()
    ((1000, 28, 28, 1), 'uint8', [1, 5, 7])
    """
    splits = SPLITS + ("real",) if task == "transcribe_speech" else SPLITS
    check_args(task, split, data_size, splits)
    if task == "classify_image":
        return _fashion_mnist(split, data_size)
    if task == "caption_image":
        data = _npz("emoji.npz")
        keep = data["split"] == SPLITS.index(split)
        return data["images"][keep], [str(c) for c in data["captions"][keep]]
    if task == "transcribe_speech":
        return _real_speech() if split == "real" else _speech(split, data_size)
    if task == "parse_en":
        rows = _parse_rows(split, data_size)
        return [r[0] for r in rows], [r[1] for r in rows]
    pairs = _bible_pairs(split, data_size)
    english, spanish = [p[0] for p in pairs], [p[1] for p in pairs]
    return (english, spanish) if task == "translate_en_es" else (spanish, english)


def training_texts(data_size="small"):
    """Every training-split text of the text tasks: the corpus of the shared vocabulary."""
    texts = list(load_examples("caption_image", "train", data_size)[1])
    texts += _speech_sentences("train", data_size)
    english, spanish = load_examples("translate_en_es", "train", data_size)
    sentences, parses = load_examples("parse_en", "train", data_size)
    return texts + english + spanish + sentences + parses


@functools.cache
def _npz(name):
    with np.load(FILES / name) as data:
        return {key: data[key] for key in data.files}


def _read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _fashion_mnist(split, data_size):
    if data_size == "full" and split != "validation":
        if not DEBIAN_FASHION_MNIST.is_dir():
            raise DataError(
                "data_size='full' reads all of Fashion-MNIST from the Debian package "
                "dataset-fashion-mnist: run `sudo apt-get install dataset-fashion-mnist`"
            )
        prefix = "train" if split == "train" else "t10k"
        images = _read_idx(DEBIAN_FASHION_MNIST / f"{prefix}-images-idx3-ubyte.gz")
        labels = _read_idx(DEBIAN_FASHION_MNIST / f"{prefix}-labels-idx1-ubyte.gz")
        if split == "train":  # the bundled validation images are held out of training
            held_out = {img.tobytes() for img in _npz("fashion_mnist.npz")["validation_images"]}
            keep = np.array([img.tobytes() not in held_out for img in images])
            images, labels = images[keep], labels[keep]
        return images[..., None], labels.astype("int32")
    data = _npz("fashion_mnist.npz")
    return data[f"{split}_images"][..., None], data[f"{split}_labels"].astype("int32")


def _read_tsv(name):
    with lzma.open(FILES / name, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f]


@functools.cache
def _bible_pairs(split, data_size):
    rows = _read_tsv("bible_en_es.tsv.xz")
    index = SPLITS.index(split)
    pairs = [(en, es) for _, en, es, s in rows if int(s) == index]
    # Some verses repeat word for word elsewhere: keep each text in one split only.
    later = {text for _, en, es, s in rows if int(s) > index for text in (en, es)}
    pairs = [(en, es) for en, es in pairs if en not in later and es not in later]
    most = (16, 20) if data_size == "small" else (60, 70)  # words: English, Spanish
    return [p for p in pairs if len(p[0].split()) <= most[0] and len(p[1].split()) <= most[1]]


@functools.cache
def _parse_rows(split, data_size):
    index = SPLITS.index(split)
    rows = [(text, parse) for text, parse, s in _read_tsv("parse_en.tsv.xz") if int(s) == index]
    if data_size == "small":
        rows = [(text, parse) for text, parse in rows if len(text.split()) <= 12]
    return rows


def transcript(sentence):
    """A sentence as speech-recognition text: lower-case words, apostrophes kept."""
    sentence = sentence.replace("’", "'").lower()
    return " ".join(PUNCTUATION.sub(" ", sentence).split())


def _speech_sentences(split, data_size):
    """The sentences to speak: parse-set sentences of 3 to 10 words, in a fixed order."""
    count = SPEECH_COUNTS[data_size][SPLITS.index(split)]
    texts = sorted(
        {transcript(text) for text, _ in _parse_rows(split, "full")},
        key=lambda t: hashlib.md5(t.encode()).hexdigest(),
    )
    texts = [t for t in texts if 3 <= len(t.split()) <= 10]
    if len(texts) < count:
        raise DataError(f"only {len(texts)} speech sentences for {split}; need {count}")
    return texts[:count]


@functools.cache
def _speech(split, data_size):
    sentences = _speech_sentences(split, data_size)
    seed = 1000 * SPLITS.index(split) + DATA_SIZES.index(data_size)
    settings = speech.voice_settings(len(sentences), seed)
    key = hashlib.md5(
        repr((sentences, settings, speech.espeak_version())).encode()
    ).hexdigest()[:12]
    path = cache_dir() / f"speech-{data_size}-{split}-{key}.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"Synthesising {len(sentences)} {split} utterances with espeak-ng into {path}")
        with futures.ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
            waves = list(
                pool.map(
                    lambda a: speech.synthesize(a[0], *a[1]),
                    zip(sentences, settings, strict=True),
                )
            )
        pcm = [np.round(np.clip(w, -1, 1) * 32767).astype("int16") for w in waves]
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, pcm=np.concatenate(pcm), lengths=np.array([len(p) for p in pcm]))
        tmp.rename(path)
    with np.load(path) as data:
        pcm, lengths = data["pcm"], data["lengths"]
    waves = [w.astype("float32") / 32767 for w in np.split(pcm, np.cumsum(lengths)[:-1])]
    limit = int(SPEECH_MAX_SECONDS * speech.SAMPLE_RATE)
    keep = [i for i, w in enumerate(waves) if len(w) <= limit]  # rule: at most 6 s of speech
    return [waves[i] for i in keep], [sentences[i] for i in keep]


POCKETSPHINX = pathlib.Path("/usr/share/pocketsphinx/test/data")


def _real_speech():
    """Real recordings from Debian's pocketsphinx-testdata, with their transcripts."""
    waves, texts = [], []
    for folder, listing in (("librivox", "transcription"), ("cards", "cards.transcription")):
        path = POCKETSPHINX / folder / listing
        if not path.exists():
            raise DataError(
                "the real-speech test set reads Debian's pocketsphinx-testdata: run "
                "`sudo apt-get install pocketsphinx-testdata`"
            )
        for line in path.read_text().splitlines():
            match = re.match(r"<s>(.*)</s>\s*\((\S+)\)", line.strip())
            if match:
                texts.append(transcript(match.group(1)))
                waves.append(speech.read_wav(POCKETSPHINX / folder / f"{match.group(2)}.wav"))
    return waves, texts


TEXT_MAX_LENGTH = {"small": 64, "full": 256}
AUDIO_MAX_SECONDS = 8.0  # the real recordings run to 7.1 s


def make_tasks(tokenizer, names=TASKS, data_size="small"):
    """The bundled tasks as `Task`s; every text side shares one `Text` net.

    >>> import keras_multimodel as kmm
    >>> tokenizer = kmm.data.train_tokenizer(["a cat sat on the mat", "the dog"] * 50, 16)
    >>> [t.name for t in make_tasks(tokenizer, ["classify_image", "parse_en"])]
    ['classify_image', 'parse_en']
    """
    from keras_multimodel.data.tokenizer import END_ID
    from keras_multimodel.modalities import Audio, ClassLabel, Image, Text
    from keras_multimodel.task import Task

    unknown = [name for name in names if name not in TASKS]
    if unknown or not names:
        raise DataError(
            f"unknown task(s) {', '.join(unknown) or '(none given)'}; the bundled tasks are "
            f"{', '.join(TASKS)}"
        )
    check_args(names[0], "train", data_size)
    text = Text(
        vocab_size=tokenizer.vocabulary_size(),
        max_length=TEXT_MAX_LENGTH[data_size],
        end_token_id=END_ID,
    )
    modalities = {
        "classify_image": (Image(channels=1), ClassLabel(10)),
        "caption_image": (Image(channels=3), text),
        "transcribe_speech": (
            Audio(sample_rate=speech.SAMPLE_RATE, max_length=int(AUDIO_MAX_SECONDS * 16000)),
            text,
        ),
        "translate_en_es": (text, text),
        "translate_es_en": (text, text),
        "parse_en": (text, text),
    }
    return [Task(name, *modalities[name]) for name in TASKS if name in names]


def load(task, split, tokenizer=None, data_size="small", max_length=None):
    """One split of a bundled task as a `tf.data.Dataset` of `(inputs, targets)`.

    Text is tokenized with `tokenizer` (ids ending with the end id); images stay
    uint8; speech is `{"waveform", "length"}`. Examples whose text is longer than
    `max_length` tokens (default: the task's `Text.max_length`) raise an error.

    Args:
        task: one of `TASKS`.
        split: "train", "validation" or "test" ("real" too for transcribe_speech).
        tokenizer: the shared tokenizer; required by tasks with text.
        data_size: "small" or "full".
        max_length: longest text accepted, in tokens.

    >>> import keras_multimodel as kmm
    >>> dataset = load("classify_image", "validation")
    >>> image, label = next(iter(dataset))
    >>> image.shape.as_list(), image.dtype.name
    ([28, 28, 1], 'uint8')
    """
    import tensorflow as tf

    from keras_multimodel.data.tokenizer import encode

    inputs, targets = load_examples(task, split, data_size)
    max_length = max_length or TEXT_MAX_LENGTH[data_size]

    def tokens(texts, role):
        if tokenizer is None:
            raise DataError(f"task {task} has text {role}: pass the shared `tokenizer`")
        rows = encode(tokenizer, texts, add_end=role == "targets")
        longest = max(len(r) for r in rows)
        if longest > max_length:
            raise DataError(
                f"{task} {split}: {role} of {longest} tokens exceed max_length={max_length}; "
                "raise max_length or use a larger vocabulary"
            )
        return tf.ragged.constant(rows, dtype="int32", ragged_rank=1)

    if task == "transcribe_speech":
        lengths = np.array([len(w) for w in inputs], "int32")
        inputs = {
            "waveform": tf.RaggedTensor.from_row_lengths(np.concatenate(inputs), lengths),
            "length": lengths,
        }
    elif task not in ("classify_image", "caption_image"):
        inputs = tokens(inputs, "inputs")
    if task != "classify_image":
        targets = tokens(targets, "targets")
    return tf.data.Dataset.from_tensor_slices((inputs, targets))
