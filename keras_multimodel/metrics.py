"""Task metrics for decoded outputs, from maintained implementations where they exist.

The baselines these are compared with live with the bundled tasks
(`keras_multimodel.data.bundled.baselines`).

BLEU is keras-hub's corpus BLEU (`keras_hub.metrics.Bleu`, 4-gram, no smoothing),
reported on a 0-100 scale; word error rate is keras-hub's `EditDistance` over
words, normalised by the reference length and summed over the corpus.
"""

import warnings

import keras_hub
import numpy as np
import tensorflow as tf


def accuracy(references, predictions):
    """Fraction of equal labels.

    >>> accuracy([1, 2, 3], [1, 2, 0])
    0.6666666666666666
    """
    references, predictions = np.asarray(references), np.asarray(predictions)
    return float(np.mean(references == predictions)) if references.size else 0.0


def bleu(references, hypotheses, smooth=False):
    """Corpus BLEU (0-100) of hypothesis strings against one reference each.

    `smooth=True` adds one to the matched and total counts of every n-gram order
    (keras-hub's smoothing, after Lin and Och, 2004), for corpora of short texts
    such as captions, where 4-gram matches are rare.

    Precisions (5/6, 3/5, 2/4, 1/3), no brevity penalty: 100 * (1/12) ** (1/4).

    >>> round(bleu(["the cat sat on the mat"], ["the cat sat on a mat"]), 1)
    53.7

    Corpus-level: precisions (6/7, 1, 1, 1), brevity penalty exp(1 - 10/7).

    >>> round(bleu(["the cat sat on the mat", "a b c d"], ["the cat sat on the mat", "x"]), 1)
    62.7

    Smoothed precisions (3/4, 2/3, 1/2, 1/1): 100 * (1/4) ** (1/4).

    >>> bleu(["a red apple"], ["a red pear"]), round(bleu(["a red apple"], ["a red pear"], True), 1)
    (0.0, 70.7)
    >>> bleu(["the cat sat on the mat"], [""])
    0.0
    """
    if not any(h.strip() for h in hypotheses):
        return 0.0  # no hypothesis words: BLEU is 0 (keras-hub would divide by zero)
    metric = keras_hub.metrics.Bleu(smooth=smooth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # brevity penalty of empty lines
        # One reference per hypothesis: keras-hub reads a flat list differently.
        metric.update_state([[reference] for reference in references], list(hypotheses))
        return 100.0 * float(metric.result())


def word_error_rate(references, hypotheses):
    """Word edit distance over reference words, over the corpus (0 is perfect).

    >>> word_error_rate(["a b c d", "e f"], ["a x c", ""])
    0.6666666865348816
    """
    metric = keras_hub.metrics.EditDistance(normalize=True)
    metric.update_state(
        tf.strings.split(tf.constant(list(references))),
        tf.strings.split(tf.constant(list(hypotheses))),
    )
    return float(metric.result())


def loops(text, n=3, repeats=3):
    """Whether `text` repeats itself: some run of `n` words occurs `repeats` times
    or more (decoding caught in a loop: "the land of the land of the land of").

    >>> loops("Y la tierra de la tierra de Dios, y la tierra de la tierra de la tierra.")
    True
    >>> loops("a man rides a horse on the beach"), loops("no no no"), loops("no no no no no")
    (False, False, True)
    """
    words = text.split()
    counts = {}
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        counts[gram] = counts.get(gram, 0) + 1
        if counts[gram] >= repeats:
            return True
    return False


def looping_share(references, hypotheses):
    """The share of hypotheses that `loops` (the references are not used: a
    `Metric` takes both; score them as hypotheses to see natural text's share).

    >>> looping_share(None, ["a b c", "a b a b a b a b", "x"])
    0.3333333333333333
    """
    hypotheses = list(hypotheses)
    return sum(map(loops, hypotheses)) / len(hypotheses) if hypotheses else 0.0


def exact_match(references, hypotheses):
    """Fraction of hypotheses equal to their reference, ignoring spacing."""
    pairs = zip(references, hypotheses, strict=True)
    same = [" ".join(r.split()) == " ".join(h.split()) for r, h in pairs]
    return float(np.mean(same)) if same else 0.0


def parse_pairs(parse):
    """A linearised parse as (label, head offset) pairs.

    >>> parse_pairs("det +1 root 0")
    [('det', '+1'), ('root', '0')]
    """
    words = parse.split()
    return [(words[i], words[i + 1]) for i in range(0, len(words) - 1, 2)]


def attachment_scores(references, hypotheses):
    """Unlabelled and labelled attachment scores of linearised parses.

    A parse is "label offset" per token (see `keras_multimodel.data.bundled.parse_en`); token i
    of the hypothesis is scored against token i of the reference, and missing
    tokens count as wrong.

    >>> attachment_scores(["det +1 root 0"], ["nsubj +1 root 0"])
    (1.0, 0.5)
    """
    total = unlabelled = labelled = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        gold, guess = parse_pairs(reference), parse_pairs(hypothesis)
        total += len(gold)
        for (label, head), predicted in zip(gold, guess):  # noqa: B905 (shorter = wrong)
            unlabelled += head == predicted[1]
            labelled += head == predicted[1] and label == predicted[0]
    return (unlabelled / total, labelled / total) if total else (0.0, 0.0)
