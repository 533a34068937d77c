"""The bundled tasks: records, loaders, splits, speech synthesis, WAV reading, the tokenizer."""

import dataclasses
import io
import wave

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_multimodel as kmm
from keras_multimodel.data import DataError, bundled, speech
from keras_multimodel.data.bundled import classify_image, sources
from keras_multimodel.tokenization import END_ID

# The bundled data (numpy, tf.data, SentencePiece) is the same on every backend; the
# tests that run a model on it say where they run.
pytestmark = pytest.mark.backends(
    "tensorflow", reason="backend-independent: data loading and the tokenizer"
)
EVERY_BACKEND = pytest.mark.backends(
    "tensorflow", "jax", "torch", reason="a model saves, loads and decodes on every backend"
)


@pytest.fixture(scope="module")
def tokenizer():
    return kmm.data.train_tokenizer(bundled.training_texts(), 4000)


@pytest.mark.parametrize("task", [t for t in bundled.PAPER_TASKS if t != "transcribe_speech"])
def test_splits_are_fixed_and_disjoint(task):
    splits = {split: bundled.load_examples(task, split) for split in bundled.SPLITS}
    for split, (inputs, targets) in splits.items():
        assert len(inputs) == len(targets) > 50, split
    again = bundled.load_examples(task, "test")
    np.testing.assert_array_equal(np.asarray(again[1]), np.asarray(splits["test"][1]))
    if task in ("translate_en_es", "translate_es_en", "parse_en"):
        train = set(splits["train"][0])
        assert not train & set(splits["test"][0]), "test sentences leak into training"


def test_raw_formats():
    images, labels = bundled.load_examples("classify_image", "train")
    assert images.shape == (5000, 28, 28, 1) and images.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(10))
    glyphs, captions = bundled.load_examples("caption_image", "train")
    assert glyphs.shape[1:] == (32, 32, 3) and glyphs.std() > 20  # real pictures
    assert "grinning face" in captions
    english, spanish = bundled.load_examples("translate_en_es", "train")
    assert english[0].startswith("In the beginning") and "Dios" in spanish[0]
    assert bundled.load_examples("translate_es_en", "train")[0][0] == spanish[0]
    sentences, parses = bundled.load_examples("parse_en", "train")
    for sentence, parse in zip(sentences[:200], parses[:200], strict=True):
        assert len(parse.split()) == 2 * len(sentence.split())  # a pair per token
        assert parse.split()[1::2].count("0") == 1  # one root


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(DataError, match="unknown task 'mnist'.*classify_image"):
        bundled.load_examples("mnist", "train")
    with pytest.raises(DataError, match="unknown split 'dev'"):
        bundled.load_examples("parse_en", "dev")
    with pytest.raises(DataError, match="unknown data_size"):
        bundled.load_examples("parse_en", "train", "huge")
    with pytest.raises(DataError, match="pass the shared `tokenizer`"):
        bundled.load("parse_en", "test")


def test_speech_is_synthesised_and_cached():
    waves, texts = bundled.load_examples("transcribe_speech", "validation")
    assert len(waves) == len(texts) >= 95  # utterances over 6 s are left out, by rule
    lengths = [len(w) / speech.SAMPLE_RATE for w in waves]
    assert 0.5 < np.median(lengths) < 6.0 and max(lengths) <= 6.0
    assert all(t == sources.transcript(t) for t in texts)  # lower-case words
    assert all(np.abs(w).max() > 0.05 for w in waves)  # not silence
    stored, _ = bundled.get("transcribe_speech").load_examples("validation")
    assert all(w.dtype == np.int16 for w in stored)  # half float32's memory
    np.testing.assert_array_equal(speech.to_float(stored[3]), waves[3])
    again, _ = bundled.load_examples("transcribe_speech", "validation")
    np.testing.assert_array_equal(again[3], waves[3])


def test_speech_training_split_holds_6000_unseen_sentences():
    """The main job's speech trains on 6,000 utterances (it memorised 1,200); checked
    on the sentences, without synthesising them."""
    from keras_multimodel.data.bundled import transcribe_speech

    train = transcribe_speech.sentences("train", "small")
    assert len(train) == len(set(train)) == 6000
    held_out = {
        t for split in ("validation", "test") for t in transcribe_speech.sentences(split, "small")
    }
    assert len(held_out) == 200 and not held_out & set(train)
    assert all(3 <= len(t.split()) <= 10 for t in train)


def test_voices_vary():
    settings = speech.voice_settings(50, seed=1)
    assert len({voice for voice, _, _ in settings}) > 10
    assert len({speed for _, speed, _ in settings}) > 10


def test_real_recordings():
    waves, texts = bundled.load_examples("transcribe_speech", "real")
    assert len(waves) == 10 and "he was not an ill disposed young man" in texts


def _wav_bytes(samples, rate, channels=1):
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((samples * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def test_read_wav_resamples_and_mixes_down():
    t = np.arange(8000) / 8000.0
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    out = speech.read_wav(_wav_bytes(tone, 8000))
    assert out.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 s at 16 kHz: bin = Hz
    stereo = np.stack([tone, tone], axis=1).reshape(-1)
    np.testing.assert_allclose(speech.read_wav(_wav_bytes(stereo, 8000, 2)), out, atol=1e-3)


def test_read_wav_errors(tmp_path):
    with pytest.raises(DataError, match="cannot read WAV file .*missing.wav"):
        speech.read_wav(str(tmp_path / "missing.wav"))
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF0000WAVEfmt garbage")
    with pytest.raises(DataError, match="corrupt.wav is not a readable PCM WAV"):
        speech.read_wav(str(corrupt))
    with pytest.raises(DataError, match="holds no audio"):
        speech.read_wav(_wav_bytes(np.zeros(0), 16000))


def test_tokenizer_round_trip(tokenizer):
    texts = ["Y dijo Dios: Sea la luz: y fué la luz.", "det +1 nsubj +1 root 0 punct -2"]
    rows = kmm.data.texts_to_ids(tokenizer, texts)
    assert all(row[-1] == END_ID and END_ID not in row[:-1] for row in rows)
    assert kmm.data.ids_to_texts(tokenizer, rows) == texts  # SentencePiece is lossless
    padded = np.zeros((2, 40), "int32")
    for i, row in enumerate(rows):
        padded[i, : len(row)] = row
    assert kmm.data.ids_to_texts(tokenizer, padded) == texts


def test_tokenizer_is_shared_and_deterministic(tokenizer):
    again = kmm.data.train_tokenizer(bundled.training_texts(), 4000)
    assert again.proto == tokenizer.proto
    assert tokenizer.vocabulary_size() == 4000
    with pytest.raises(ValueError, match="`texts` is empty"):
        kmm.data.train_tokenizer([], 100)
    with pytest.raises(ValueError, match="`model_type` must be one of bpe, unigram"):
        kmm.data.train_tokenizer(["a b"], 100, model_type="word")


def test_the_shared_vocabulary_keeps_parse_labels_and_offsets_whole(tokenizer):
    # Byte-pair encoding (the default): one piece per label and per offset, so a parse
    # of n words is 2n pieces. The unigram model split "punct" and "pobj" in two.
    parse = "prep +5 det +1 pobj -2 punct +2 nsubj +1 root 0"
    assert len(tokenizer.tokenize(parse)) == 12
    _, targets = bundled.load_examples("parse_en", "train")
    pieces = sum(len(tokenizer.tokenize(t)) for t in targets[:500])
    pairs = sum(len(t.split()) // 2 for t in targets[:500])
    assert pieces / pairs < 2.05
    unigram = kmm.data.train_tokenizer(bundled.training_texts(), 4000, model_type="unigram")
    assert len(unigram.tokenize(parse)) > 12


@pytest.mark.parametrize("task", bundled.PAPER_TASKS)
def test_load_gives_model_ready_examples(task, tokenizer):
    dataset = bundled.load(task, "validation", tokenizer)
    inputs, targets = next(iter(dataset))
    if task == "classify_image":
        assert inputs.dtype == tf.uint8 and targets.shape == ()
    else:
        assert targets.dtype == tf.int32 and int(targets[-1]) == END_ID
    if task == "transcribe_speech":  # int16 PCM up to the Audio net
        assert int(inputs["length"]) == inputs["waveform"].shape[0]
        assert inputs["waveform"].dtype == tf.int16
        stored = bundled.get(task).load_examples("validation")[0][0]
        np.testing.assert_array_equal(inputs["waveform"].numpy(), stored)
    count = int(dataset.cardinality())
    assert count == len(bundled.load_examples(task, "validation")[0])


@pytest.mark.large
@pytest.mark.backends("torch", reason="six tasks' train step and decoding, once")
def test_paper_tasks_train_together(tokenizer):
    """One mixture batch of all six tasks goes through a train step on every backend."""
    tasks = kmm.data.make_tasks(tokenizer)
    model = kmm.MultiModel(tasks, "tiny", tokenizer=tokenizer)
    assert len(model.groups) == 4 and len(model.groups["text_to_text"]) == 3
    sets = {task: bundled.load(task, "validation", tokenizer) for task in bundled.PAPER_TASKS}
    data = kmm.data.mixture(sets, 12, model, num_buckets=1, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    logs = model.fit(data, steps_per_epoch=2, epochs=1, verbose=0).history
    assert all(np.isfinite(logs[f"{task}_loss"][0]) for task in bundled.PAPER_TASKS)
    text = model.generate("translate_es_en", ["En el principio"], max_length=4)
    assert isinstance(text, list) and isinstance(text[0], str)
    ids = model.generate("translate_es_en", ["En el principio"], max_length=4, detokenize=False)
    assert kmm.data.ids_to_texts(tokenizer, ids) == text
    with pytest.raises(ValueError, match="row 1 has no tokens.*whitespace-only"):
        model.generate("translate_es_en", ["En el principio", "   "])


@EVERY_BACKEND
def test_tokenizer_is_saved_with_the_model(tokenizer, tmp_path):
    tasks = kmm.data.make_tasks(tokenizer, ["parse_en"])
    model = kmm.MultiModel(tasks, "tiny", tokenizer=tokenizer)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.tokenizer.proto == tokenizer.proto  # the vocabulary travels inside
    sentence = ["The earth was formless ."]
    expected = model.generate("parse_en", sentence, max_length=6)
    assert loaded.generate("parse_en", sentence, max_length=6) == expected
    with pytest.raises(ValueError, match="`tokenizer` must be a keras_hub tokenizer"):
        kmm.MultiModel(tasks, "tiny", tokenizer="vocab.model")


def test_each_record_says_how_it_is_decoded():
    decodings = {name: bundled.get(name).sampler for name in bundled.PAPER_TASKS}
    assert decodings == {
        "classify_image": "greedy",  # a label: argmax, whatever the sampler
        "caption_image": "greedy",
        "transcribe_speech": "greedy",
        "translate_en_es": "beam",
        "translate_es_en": "beam",
        "parse_en": "beam",
    }
    with pytest.raises(DataError, match="`sampler` must be one of .*received 'top_k'"):
        dataclasses.replace(bundled.get("parse_en"), sampler="top_k")


def test_make_tasks_errors(tokenizer):
    with pytest.raises(DataError, match="unknown task.*speech.*the bundled tasks are"):
        kmm.data.make_tasks(tokenizer, ["speech"])


def test_full_size_data():
    english, _ = bundled.load_examples("translate_en_es", "train", "full")
    assert len(english) > 3 * len(bundled.load_examples("translate_en_es", "train")[0])
    if classify_image.DEBIAN_FASHION_MNIST.is_dir():
        images, labels = bundled.load_examples("classify_image", "train", "full")
        assert len(images) == 60000 - 500  # the bundled validation images are held out
        assert images.shape[1:] == (28, 28, 1) and len(labels) == len(images)
    else:
        with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
            bundled.load_examples("classify_image", "train", "full")


def test_the_nearest_log_mel_baseline_finds_the_utterance_that_sounds_alike():
    from keras_multimodel.data.bundled import baselines

    t = np.arange(16000) / 16000
    low, high = np.sin(2 * np.pi * 200 * t), np.sin(2 * np.pi * 3000 * t)
    transcribe = baselines.nearest_neighbour_transcript(
        [low, high, 0.1 * low + high], ["low hum", "high whistle", "mostly whistle"]
    )
    queries = [0.5 * low[:12000], 0.8 * high[:8000]]  # quieter, shorter
    assert transcribe(queries) == ["low hum", "high whistle"]


def test_texts_come_in_the_containers_users_have_and_nothing_else():
    from keras_multimodel.errors import InputError
    from keras_multimodel.tokenization import normalize_texts

    expected = ["God is love.", "café"]
    for given in (expected, tuple(expected), np.array(expected), np.array(expected, object),
                  [t.encode() for t in expected], (t for t in expected),
                  tf.constant(expected)):  # fmt: skip
        assert normalize_texts(given) == expected
    refused = [
        ({"a", "b"}, "received a set, which has no order"),
        ({"a": 1}, "received a dict, which has no order"),
        (np.array([["a", "b"]]), r"1-D batch of strings; received an array of shape \(1, 2\)"),
        (3, "must be a string or a list of strings; received int"),
        (["a", None], "entry 1 is NoneType None"),
        ([b"caf\xe9"], r"text 0 is not valid UTF-8 \(byte 0xe9 at position 3\)"),
    ]
    for given, message in refused:
        with pytest.raises(InputError, match=message):
            normalize_texts(given)
