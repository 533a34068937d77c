"""Loaders for the paper's full-size data through TensorFlow Datasets (TFDS).

The paper trained on ImageNet, COCO captions, WSJ speech, WMT and WSJ parses. For
users who have the TFDS versions prepared (`tfds build ...` or a shared
`data_dir`), each loader returns a `tf.data.Dataset` of `(inputs, targets)` ready
for `keras_multimodel.data.mixture`. Nothing is downloaded: `download=False`.

Every loader takes `dataset=` to convert an already-loaded TFDS-style dataset
instead; the tests use it with small stand-in data of the same features.

| loader | TFDS name | features used |
|---|---|---|
| `imagenet` | imagenet2012 | image, label |
| `coco_captions` | coco_captions | image, captions/text |
| `librispeech` | librispeech | speech, text |
| `wmt` | wmt14_translate/de-en (any wmt*) | the two language keys |
| `dependency_parses` | a CoNLL-U style set | tokens, head, deprel |
"""

import tensorflow as tf

from keras_multimodel.tokenization import END_ID


def _tfds_load(name, split, data_dir):
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ImportError(
            "keras_multimodel.data.tfds_loaders needs TensorFlow Datasets: "
            "`pip install tensorflow-datasets`, then prepare the data set with `tfds build`."
        ) from None
    return tfds.load(name, split=split, data_dir=data_dir, download=False)


def _source(name, split, data_dir, dataset):
    return dataset if dataset is not None else _tfds_load(name, split, data_dir)


def _tokens(tokenizer, text):
    ids = tf.cast(tokenizer(text), "int32")
    return tf.concat([ids, tf.constant([END_ID], "int32")], axis=0)


def _resize(image, image_size):
    image = tf.image.resize_with_pad(image, image_size, image_size, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), "uint8")


def imagenet(split="train", image_size=64, data_dir=None, dataset=None):
    """ImageNet 2012: `(uint8 image (S, S, 3), label)`; images padded and resized to S."""
    source = _source("imagenet2012", split, data_dir, dataset)
    return source.map(
        lambda ex: (_resize(ex["image"], image_size), tf.cast(ex["label"], "int32")),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def coco_captions(tokenizer, split="train", image_size=64, data_dir=None, dataset=None):
    """COCO captions: one `(image, caption ids)` example per caption of every image."""
    source = _source("coco_captions", split, data_dir, dataset)

    def per_caption(ex):
        texts = ex["captions"]["text"]
        images = tf.data.Dataset.from_tensors(_resize(ex["image"], image_size)).repeat()
        return tf.data.Dataset.zip((images, tf.data.Dataset.from_tensor_slices(texts)))

    return source.flat_map(per_caption).map(
        lambda image, text: (image, _tokens(tokenizer, text)), num_parallel_calls=tf.data.AUTOTUNE
    )


def librispeech(tokenizer, split="train_clean100", data_dir=None, dataset=None):
    """LibriSpeech: `({"waveform": float32 16 kHz, "length"}, transcript ids)`, lower-cased."""
    source = _source("librispeech", split, data_dir, dataset)

    def convert(ex):
        waveform = tf.cast(ex["speech"], "float32") / 32768.0
        text = tf.strings.lower(ex["text"])
        return {"waveform": waveform, "length": tf.shape(waveform)[0]}, _tokens(tokenizer, text)

    return source.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


def wmt(tokenizer, source_language, target_language, name="wmt14_translate/de-en",
        split="train", data_dir=None, dataset=None):  # fmt: skip
    """WMT: `(source ids, target ids)` for one direction of a language pair.

    Source ids have no end token; target ids end with `END_ID`.
    """
    source = _source(name, split, data_dir, dataset)

    def convert(ex):
        inputs = tf.cast(tokenizer(ex[source_language]), "int32")
        return inputs, _tokens(tokenizer, ex[target_language])

    return source.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


def linearise_parse(heads, labels):
    """Dependency heads (1-based, 0 = root, CoNLL-U) and labels -> "label offset" pairs.

    The same linearisation as the bundled `parse_en` task.

    >>> linearise_parse([2, 0, 2], ["nsubj", "root", "punct"])
    'nsubj +1 root 0 punct -1'
    """
    pairs = []
    for position, (head, label) in enumerate(zip(heads, labels, strict=True), start=1):
        offset = 0 if int(head) == 0 else int(head) - position
        pairs.append("root 0" if offset == 0 else f"{str(label).lower()} {offset:+d}")
    return " ".join(pairs)


def dependency_parses(tokenizer, name, split="train", data_dir=None, dataset=None):
    """A CoNLL-U style parsing set: `(sentence ids, linearised parse ids)`.

    Needs features `tokens` (strings), `head` (1-based heads, 0 for the root; ints or
    strings) and `deprel` (labels) per sentence.
    """
    source = _source(name, split, data_dir, dataset)

    def linearise(heads, labels):
        labels = [label.decode() if isinstance(label, bytes) else label for label in labels]
        return linearise_parse(heads.tolist() if hasattr(heads, "tolist") else heads, labels)

    def convert(ex):
        heads = ex["head"]
        if heads.dtype == tf.string:
            heads = tf.strings.to_number(heads, tf.int32)
        heads = tf.cast(heads, "int32")
        target = tf.numpy_function(
            lambda h, d: linearise(h, d.tolist()).encode(), [heads, ex["deprel"]], tf.string
        )
        target.set_shape([])
        sentence = tf.strings.reduce_join(ex["tokens"], separator=" ")
        return tf.cast(tokenizer(sentence), "int32"), _tokens(tokenizer, target)

    return source.map(convert)
