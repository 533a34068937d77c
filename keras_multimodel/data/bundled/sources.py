"""Readers of the bundled files and caches that several task records share.

Prepared copies live in `keras_multimodel/data/files/` (see its README for licenses
and `scripts/data/` for the scripts that rebuilt them). Every split is fixed.
"""

import functools
import lzma
import os
import pathlib
import re

import numpy as np

FILES = pathlib.Path(__file__).resolve().parents[1] / "files"
SPLITS = ("train", "validation", "test")
DATA_SIZES = ("small", "full")
PUNCTUATION = re.compile(r"[^\w\s']")


def cache_dir():
    """Where synthesised data is cached: $KERAS_MULTIMODEL_CACHE or ~/.cache/keras_multimodel."""
    default = pathlib.Path.home() / ".cache" / "keras_multimodel"
    return pathlib.Path(os.environ.get("KERAS_MULTIMODEL_CACHE", default))


@functools.cache
def npz(name):
    """The arrays of a bundled `.npz` file, read once."""
    with np.load(FILES / name) as data:
        return {key: data[key] for key in data.files}


def read_tsv(name):
    """The rows of a bundled `.tsv.xz` file, as lists of strings."""
    with lzma.open(FILES / name, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f]


@functools.cache
def bible_pairs(split, data_size):
    """(English, Spanish) verse pairs of one split.

    "small": at most 16 English and 20 Spanish words; "full": 60 and 70. A text
    that also stands in a later split (some verses repeat word for word) is kept
    out of the earlier one, so no test text is trained on.
    """
    rows = read_tsv("bible_en_es.tsv.xz")
    index = SPLITS.index(split)
    pairs = [(en, es) for _, en, es, s in rows if int(s) == index]
    later = {text for _, en, es, s in rows if int(s) > index for text in (en, es)}
    pairs = [(en, es) for en, es in pairs if en not in later and es not in later]
    most = (16, 20) if data_size == "small" else (60, 70)  # words: English, Spanish
    return [p for p in pairs if len(p[0].split()) <= most[0] and len(p[1].split()) <= most[1]]


@functools.cache
def parse_rows(split, data_size):
    """(sentence, linearised parse) rows of one split; "small": at most 12 tokens."""
    index = SPLITS.index(split)
    rows = [(text, parse) for text, parse, s in read_tsv("parse_en.tsv.xz") if int(s) == index]
    if data_size == "small":
        rows = [(text, parse) for text, parse in rows if len(text.split()) <= 12]
    return rows


def transcript(sentence):
    """A sentence as speech-recognition text: lower-case words, apostrophes kept.

    >>> transcript("And God said, “Let there be light.”")
    'and god said let there be light'
    """
    sentence = sentence.replace("’", "'").lower()
    return " ".join(PUNCTUATION.sub(" ", sentence).split())
