"""Simple methods the bundled tasks' models are scored beside.

Each is a `Baseline.fit`: `fit(train_inputs, train_targets)` returns a function from
a list of raw inputs to a list of outputs, like the model's.
"""

import numpy as np

from keras_multimodel import evaluation


def empty_output(train_inputs, train_targets):
    """No words: BLEU 0, word error rate 1."""
    return lambda inputs: [""] * len(inputs)


def copy_the_input(train_inputs, train_targets):
    """The input itself, as the output."""
    return lambda inputs: list(inputs)


def majority_class(train_inputs, train_labels):
    """The most frequent training class for every input."""
    majority = int(np.bincount(train_labels).argmax())
    return lambda inputs: [majority] * len(inputs)


def majority_parser(train_sentences, train_parses):
    """Every token gets the most common training (label, offset)."""
    parser = evaluation.majority_parser(train_parses)
    return lambda sentences: [parser(sentence) for sentence in sentences]
