"""TFDS loaders for the paper's full-size data, on small stand-in data of the same features."""

import numpy as np
import pytest
import tensorflow as tf

import keras_multimodel as kmm
from keras_multimodel.data import tfds_loaders
from keras_multimodel.data.tokenizer import END_ID
from keras_multimodel.modalities import Audio, ClassLabel, Image, Text


@pytest.fixture
def tokenizer():
    # Per test: `keras.utils.set_random_seed` (an autouse fixture) clears TF's kernel
    # cache, which frees a SentencePiece op's resource that tf.data graphs then miss.
    texts = ["a man riding a horse", "two dogs play in the snow", "ein Hund", "the cat",
             "nsubj +1 root 0 punct -1", "det +1 amod +1 dobj -3"] * 30  # fmt: skip
    return kmm.data.train_tokenizer(texts, 40)


def test_imagenet(rng):
    stand_in = tf.data.Dataset.from_tensor_slices(
        {"image": rng.integers(0, 255, (3, 50, 70, 3)).astype("uint8"), "label": [1, 7, 999]}
    )
    examples = list(tfds_loaders.imagenet(image_size=32, dataset=stand_in))
    image, label = examples[2]
    assert image.shape == (32, 32, 3) and image.dtype == tf.uint8 and int(label) == 999


def test_coco_captions_gives_one_example_per_caption(rng, tokenizer):
    stand_in = tf.data.Dataset.from_tensors(
        {
            "image": rng.integers(0, 255, (40, 40, 3)).astype("uint8"),
            "captions": {"text": tf.constant(["a man riding a horse", "the cat"])},
        }
    )
    examples = list(tfds_loaders.coco_captions(tokenizer, image_size=16, dataset=stand_in))
    assert len(examples) == 2
    assert kmm.data.decode(tokenizer, [examples[1][1].numpy()]) == ["the cat"]
    assert int(examples[0][1][-1]) == END_ID


def test_librispeech(rng, tokenizer):
    stand_in = tf.data.Dataset.from_tensor_slices(
        {"speech": rng.integers(-3000, 3000, (2, 1600)).astype("int16"),
         "text": ["THE CAT", "TWO DOGS"]}  # fmt: skip
    )
    inputs, targets = next(iter(tfds_loaders.librispeech(tokenizer, dataset=stand_in)))
    assert inputs["waveform"].dtype == tf.float32 and int(inputs["length"]) == 1600
    assert np.abs(inputs["waveform"].numpy()).max() < 0.1
    assert kmm.data.decode(tokenizer, [targets.numpy()]) == ["the cat"]


def test_wmt(tokenizer):
    stand_in = tf.data.Dataset.from_tensor_slices({"de": ["ein Hund"], "en": ["the cat"]})
    source, target = next(iter(tfds_loaders.wmt(tokenizer, "de", "en", dataset=stand_in)))
    assert kmm.data.decode(tokenizer, [source.numpy()]) == ["ein Hund"]
    assert int(target[-1]) == END_ID and END_ID not in source.numpy()


def test_dependency_parses(tokenizer):
    stand_in = tf.data.Dataset.from_tensor_slices(
        {"tokens": [["the", "cat", "sat"]], "head": [["2", "3", "0"]],
         "deprel": [["det", "nsubj", "root"]]}  # fmt: skip
    )
    sentence, parse = next(iter(tfds_loaders.dependency_parses(tokenizer, "ud", dataset=stand_in)))
    assert kmm.data.decode(tokenizer, [sentence.numpy()]) == ["the cat sat"]
    assert kmm.data.decode(tokenizer, [parse.numpy()]) == ["det +1 nsubj +1 root 0"]


def test_loaders_feed_a_mixture(rng, tokenizer):
    text = Text(vocab_size=40, max_length=16, end_token_id=END_ID)
    tasks = [
        kmm.Task("imagenet", Image(channels=3), ClassLabel(1000)),
        kmm.Task("librispeech", Audio(max_length=2000), text),
    ]
    images = tf.data.Dataset.from_tensor_slices(
        {"image": rng.integers(0, 255, (4, 20, 20, 3)).astype("uint8"), "label": [0, 1, 2, 3]}
    )
    speech = tf.data.Dataset.from_tensor_slices(
        {"speech": np.zeros((4, 1600), "int16"), "text": ["the cat"] * 4}
    )
    data = kmm.data.mixture(
        {"imagenet": tfds_loaders.imagenet(image_size=16, dataset=images),
         "librispeech": tfds_loaders.librispeech(tokenizer, dataset=speech)},
        4, tasks, num_buckets=1,
    )  # fmt: skip
    batch = next(iter(data))
    assert batch["image_to_class_label"]["inputs"].shape.as_list() == [2, 16, 16, 3]
    assert batch["audio_to_text"]["inputs"]["waveform"].shape.as_list() == [2, 2000]


def test_missing_tfds_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tfds(name, *args, **kwargs):
        if name == "tensorflow_datasets":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tfds)
    with pytest.raises(ImportError, match="pip install tensorflow-datasets"):
        tfds_loaders.imagenet()
