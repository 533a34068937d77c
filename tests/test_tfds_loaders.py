"""TFDS loaders against the real TFDS builders' feature specs (`tfds.testing.mock_data`:
random examples generated from each builder's own features, nothing downloaded)."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import keras_multimodel as kmm
from keras_multimodel.data import tfds_loaders
from keras_multimodel.modalities import Audio, ClassLabel, Image, Text
from keras_multimodel.tokenization import END_ID


@pytest.fixture
def tokenizer():
    # Per test: `keras.utils.set_random_seed` (an autouse fixture) clears TF's kernel
    # cache, which frees a SentencePiece op's resource that tf.data graphs then miss.
    texts = ["a man riding a horse", "two dogs play in the snow", "ein Hund", "the cat",
             "nsubj +1 root 0 punct -1", "det +1 amod +1 dobj -3"] * 30  # fmt: skip
    return kmm.data.train_tokenizer(texts, 40)


@pytest.fixture
def mocked_tfds():
    with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
        yield


def test_imagenet(mocked_tfds):
    examples = list(tfds_loaders.imagenet(image_size=32))
    assert len(examples) == 3
    for image, label in examples:
        assert image.shape == (32, 32, 3) and image.dtype == tf.uint8
        assert label.dtype == tf.int32 and 0 <= int(label) < 1000


def test_coco_captions_gives_one_example_per_caption(mocked_tfds, tokenizer):
    examples = list(tfds_loaders.coco_captions(tokenizer, image_size=16))
    assert len(examples) >= 3  # every image has at least one caption
    for image, caption in examples:
        assert image.shape == (16, 16, 3) and image.dtype == tf.uint8
        assert caption.dtype == tf.int32 and int(caption[-1]) == END_ID


def test_librispeech(mocked_tfds, tokenizer):
    for inputs, targets in tfds_loaders.librispeech(tokenizer):
        waveform = inputs["waveform"].numpy()
        assert waveform.dtype == np.float32 and int(inputs["length"]) == len(waveform)
        assert np.abs(waveform).max() <= 1.0  # int16 PCM scaled to [-1, 1]
        assert int(targets[-1]) == END_ID


def test_wmt(mocked_tfds, tokenizer):
    for source, target in tfds_loaders.wmt(tokenizer, "de", "en"):
        assert source.dtype == tf.int32 and END_ID not in source.numpy()
        assert int(target[-1]) == END_ID


def _universal_dependencies_sentence(builder, split, decoders=None, read_config=None, **kwargs):
    """One real CoNLL-U sentence, encoded and decoded by the builder's own features
    (the random mock data would give heads that are not numbers)."""
    features = builder.info.features
    example = {
        "idx": "s1", "text": "The cat sat.", "tokens": ["The", "cat", "sat", "."],
        "lemmas": ["the", "cat", "sit", "."], "upos": ["DET", "NOUN", "VERB", "PUNCT"],
        "xpos": ["DT", "NN", "VBD", "."], "feats": ["_"] * 4, "head": ["2", "3", "0", "3"],
        "deprel": ["det", "nsubj", "root", "punct"], "deps": ["_"] * 4, "misc": ["_"] * 4,
    }  # fmt: skip
    encoded = features.encode_example(example)
    return tf.data.Dataset.from_tensors(encoded).map(features.decode_example)


def test_dependency_parses_on_universal_dependencies(tokenizer):
    with tfds.testing.mock_data(as_dataset_fn=_universal_dependencies_sentence):
        dataset = tfds_loaders.dependency_parses(tokenizer, "universal_dependencies/en_ewt")
        [(sentence, parse)] = list(dataset)
    assert kmm.data.ids_to_texts(tokenizer, [parse.numpy()]) == ["det +1 nsubj +1 root 0 punct -1"]
    assert int(parse[-1]) == END_ID and END_ID not in sentence.numpy()


def test_linearise_parse_matches_the_bundled_format():
    assert tfds_loaders.linearise_parse([2, 0, 2], ["nsubj", "root", "punct"]) == (
        "nsubj +1 root 0 punct -1"
    )


def test_loaders_feed_a_mixture(mocked_tfds, tokenizer):
    text = Text(vocab_size=40, max_length=256, end_token_id=END_ID)
    tasks = [
        kmm.Task("imagenet", Image(channels=3), ClassLabel(1000)),
        kmm.Task("librispeech", Audio(max_length=16000), text),
        kmm.Task("wmt", text, text),
    ]
    data = kmm.data.mixture(
        {"imagenet": tfds_loaders.imagenet(image_size=16),
         "librispeech": tfds_loaders.librispeech(tokenizer),
         "wmt": tfds_loaders.wmt(tokenizer, "de", "en")},
        6, tasks, num_buckets=1,
    )  # fmt: skip
    batch = next(iter(data))
    assert batch["image_to_class_label"]["inputs"].shape.as_list() == [2, 16, 16, 3]
    assert batch["audio_to_text"]["inputs"]["waveform"].shape.as_list() == [2, 16000]
    assert batch["text_to_text"]["targets"].shape.as_list() == [2, 256]


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
