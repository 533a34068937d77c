"""Simple methods the bundled tasks' models are scored beside.

Each is a `Baseline.fit`: `fit(train_inputs, train_targets)` returns a function from
a list of raw inputs to a list of outputs, like the model's. The trivial ones
(majority, empty output, copying the input) show the floor; the learned ones
(nearest centroid or neighbour, retrieval, a lexicalised majority) need the model
to learn more than a lookup to beat them.
"""

import collections
import re

import numpy as np

from keras_multimodel import metrics
from keras_multimodel.data import speech

WORD = re.compile(r"\w+")


# ----- trivial ---------------------------------------------------------------------


def empty_output(train_inputs, train_targets):
    """No words: BLEU 0, word error rate 1.

    >>> empty_output([], [])(["a", "b"])
    ['', '']
    """
    return lambda inputs: [""] * len(inputs)


def copy_the_input(train_inputs, train_targets):
    """The input itself, as the output.

    >>> copy_the_input([], [])(["hola"])
    ['hola']
    """
    return lambda inputs: list(inputs)


def majority_class(train_inputs, train_labels):
    """The most frequent training class for every input.

    >>> majority_class(None, [2, 1, 2])([None, None])
    [2, 2]
    """
    majority = int(np.bincount(train_labels).argmax())
    return lambda inputs: [majority] * len(inputs)


def majority_parser(train_sentences, train_parses):
    """Every token gets the most common training (label, offset).

    >>> majority_parser(None, ["det +1 root 0", "det +1 nsubj +1 root 0"])(["a b c"])
    ['det +1 det +1 det +1']
    """
    counts = collections.Counter(pair for p in train_parses for pair in metrics.parse_pairs(p))
    label, offset = counts.most_common(1)[0][0]
    return lambda sentences: [" ".join(f"{label} {offset}" for _ in s.split()) for s in sentences]


def most_frequent_output(train_inputs, train_targets):
    """The most frequent training target for every input (the first, among ties).

    >>> most_frequent_output(None, ["b a", "c", "c"])([0, 1])
    ['c', 'c']
    """
    counts = collections.Counter(train_targets)
    best = max(counts.values())
    output = next(t for t in train_targets if counts[t] == best)
    return lambda inputs: [output] * len(inputs)


# ----- learned ---------------------------------------------------------------------


def _nearest(train_vectors, query_vectors, chunk=256):
    """Index of each query's nearest training vector (squared Euclidean distance)."""
    train = np.asarray(train_vectors, "float32")
    norms = (train**2).sum(axis=1)
    nearest = []
    for start in range(0, len(query_vectors), chunk):
        query = np.asarray(query_vectors[start : start + chunk], "float32")
        distances = norms[None, :] - 2.0 * query @ train.T  # + |query|^2, the same per row
        nearest.extend(np.argmin(distances, axis=1).tolist())
    return nearest


def _pixels(images):
    return np.asarray(images, "float32").reshape(len(images), -1) / 255.0


def nearest_centroid(train_images, train_labels):
    """The class whose mean training image is nearest in pixel space.

    >>> classify = nearest_centroid(np.array([[0], [10], [250]], "uint8"), [0, 0, 1])
    >>> classify(np.array([[30], [200]], "uint8"))
    [0, 1]
    """
    pixels, labels = _pixels(train_images), np.asarray(train_labels)
    classes = np.unique(labels)
    centroids = np.stack([pixels[labels == c].mean(axis=0) for c in classes])
    return lambda images: [int(classes[i]) for i in _nearest(centroids, _pixels(images))]


def nearest_neighbour_caption(train_images, train_captions):
    """The caption of the nearest training image in pixel space.

    >>> caption = nearest_neighbour_caption(np.array([[0], [255]], "uint8"), ["dark", "light"])
    >>> caption(np.array([[240]], "uint8"))
    ['light']
    """
    pixels = _pixels(train_images)
    return lambda images: [train_captions[i] for i in _nearest(pixels, _pixels(images))]


def log_mel_means(waveforms, sample_rate=16000):
    """Each waveform's log-mel spectrum averaged over time: `(N, 80)` float32.

    25 ms windows every 10 ms and 80 mel bins, like the `Audio` modality's features.
    """
    import tensorflow as tf

    matrix = tf.signal.linear_to_mel_weight_matrix(80, 257, sample_rate, 20.0, 7600.0)
    means = []
    for waveform in waveforms:
        waveform = np.pad(speech.to_float(waveform), (0, max(0, 400 - len(waveform))))
        power = tf.abs(tf.signal.stft(waveform, 400, 160, fft_length=512)) ** 2  # (T, 257)
        means.append(tf.reduce_mean(tf.math.log(power @ matrix + 1e-6), axis=0).numpy())
    return np.stack(means)


def nearest_neighbour_transcript(train_waveforms, train_transcripts):
    """The transcript of the nearest training utterance by mean log-mel spectrum
    (features standardised with the training set's mean and deviation)."""
    features = log_mel_means(train_waveforms)
    mean, deviation = features.mean(axis=0), features.std(axis=0) + 1e-6
    train = (features - mean) / deviation

    def transcribe(waveforms):
        queries = (log_mel_means(waveforms) - mean) / deviation
        return [train_transcripts[i] for i in _nearest(train, queries)]

    return transcribe


def _words(text):
    return set(WORD.findall(text.lower()))


def retrieval_translation(train_sources, train_targets):
    """The target of the training pair whose source shares the most words with the
    input (ties: the most similar length of word set, then the first).

    >>> translate = retrieval_translation(["the cat", "a big dog", "the dog"],
    ...                                   ["el gato", "un perro grande", "el perro"])
    >>> translate(["the dog ran", "nothing alike"])
    ['el perro', 'el gato']
    """
    word_sets = [_words(source) for source in train_sources]
    index = collections.defaultdict(list)
    for i, words in enumerate(word_sets):
        for word in words:
            index[word].append(i)

    def translate(sources):
        outputs = []
        for source in sources:
            words = _words(source)
            shared = collections.Counter(i for word in words for i in index.get(word, ()))
            if not shared:
                outputs.append(train_targets[0])
                continue
            best = max(shared, key=lambda i: (shared[i], -len(word_sets[i] ^ words), -i))
            outputs.append(train_targets[best])
        return outputs

    return translate


def lexicalised_parser(train_sentences, train_parses):
    """Each word gets its most frequent training (label, head offset); an unseen
    word (by its lower-case form, too) the most frequent pair overall.

    >>> parse = lexicalised_parser(["The cat sat", "The dog"],
    ...                            ["det +1 nsubj +1 root 0", "det +1 root 0"])
    >>> parse(["the dog sat ."])
    ['det +1 root 0 root 0 det +1']
    """
    by_word, overall = collections.defaultdict(collections.Counter), collections.Counter()
    for sentence, parse in zip(train_sentences, train_parses, strict=True):
        for word, pair in zip(sentence.split(), metrics.parse_pairs(parse), strict=True):
            by_word[word][pair] += 1
            by_word[word.lower()][pair] += 1
            overall[pair] += 1
    fallback = overall.most_common(1)[0][0]

    def pair_of(word):
        counts = by_word.get(word) or by_word.get(word.lower())
        return counts.most_common(1)[0][0] if counts else fallback

    return lambda sentences: [
        " ".join(" ".join(pair_of(word)) for word in sentence.split()) for sentence in sentences
    ]
