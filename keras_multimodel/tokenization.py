"""Text <-> token ids with a keras-hub tokenizer, below the models and the data.

`MultiModel.generate` uses these to take and return strings; the input pipelines
use them to tokenize the bundled tasks. Ids follow the `Text` modality: 0 is
padding and `END_ID` ends a target sequence (the ids that
`keras_hub.tokenizers.compute_sentence_piece_proto` reserves).
"""

import collections.abc

import numpy as np

from keras_multimodel.errors import InputError

# Ids fixed by `keras_hub.tokenizers.compute_sentence_piece_proto`.
PAD_ID, UNK_ID, BOS_ID, END_ID = 0, 1, 2, 3


def normalize_texts(texts, where="text"):
    r"""A batch of texts -> a list of `str`, the one rule for text everywhere.

    Takes a str or bytes (one text), or a list, tuple, other ordered iterable, 1-D
    array (numpy, pandas) or 1-D eager `tf.Tensor` of them.
    Bytes must be UTF-8; a str must encode as UTF-8 (no lone surrogates, which is
    how Python keeps undecodable bytes of a file name or command line). Anything
    else is an `InputError` naming `where`, what was expected and what came.

    >>> normalize_texts([b"caf\xc3\xa9", "tea"])
    ['café', 'tea']
    >>> normalize_texts(text.lower() for text in ["Tea"])
    ['tea']
    >>> normalize_texts([b"caf\xe9"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    keras_multimodel.errors.InputError: text 0 is not valid UTF-8 (byte 0xe9 at position 3); ...
    """
    if isinstance(texts, (str, bytes)):
        texts = [texts]
    if isinstance(texts, (collections.abc.Set, collections.abc.Mapping)):
        raise InputError(
            f"{where} must be a string or a list of strings; received a "
            f"{type(texts).__name__}, which has no order. Give a list."
        )
    if hasattr(texts, "numpy") and callable(texts.numpy):  # an eager tf.Tensor
        try:
            texts = texts.numpy()
        except (AttributeError, NotImplementedError, TypeError, ValueError):
            raise InputError(
                f"{where}: received a symbolic tensor; give strings, a numpy array or an "
                "eager tensor."
            ) from None
    if not isinstance(texts, (list, tuple, np.ndarray)) and hasattr(texts, "__array__"):
        texts = np.asarray(texts)  # a pandas Series (1-D) or DataFrame (refused: 2-D)
    if isinstance(texts, np.ndarray):
        if texts.ndim != 1:
            raise InputError(
                f"{where} must be a 1-D batch of strings; received an array of shape "
                f"{texts.shape}. Flatten it, or give a list of strings."
            )
        texts = texts.tolist()
    if not isinstance(texts, (list, tuple)) and hasattr(texts, "__iter__"):
        texts = list(texts)  # a generator, ...
    if not isinstance(texts, (list, tuple)):
        raise InputError(
            f"{where} must be a string or a list of strings; received {type(texts).__name__}."
        )
    result = []
    for index, text in enumerate(texts):
        if isinstance(text, (bytes, np.bytes_)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as error:
                raise InputError(_not_utf8(where, index, error, bytes(text))) from None
        elif isinstance(text, str):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as error:
                try:  # undecodable bytes kept as surrogates (command line, file names)
                    raw = text.encode("utf-8", "surrogateescape")
                except UnicodeEncodeError:
                    raw = None
                raise InputError(_not_utf8(where, index, error, raw)) from None
        else:
            raise InputError(
                f"{where} must be strings (str or UTF-8 bytes); entry {index} is "
                f"{type(text).__name__} {text!r}. Give every entry as a string."
            )
        result.append(str(text))
    return result


def _not_utf8(where, index, error, raw):
    """The message for text `index` that is not UTF-8: the first bad byte of `raw`
    (its bytes, when known) or the lone surrogate of `error`."""
    detail = f"a lone surrogate at position {error.start}"
    if raw is not None:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as decode_error:
            detail = f"byte 0x{raw[decode_error.start]:02x} at position {decode_error.start}"
    return (
        f"{where} {index} is not valid UTF-8 ({detail}); give UTF-8 text, e.g. decode it "
        "with the right encoding first."
    )


def texts_to_ids(tokenizer, texts, add_end=True, where="text"):
    """Strings -> a list of int32 id arrays, each ending with `END_ID` when `add_end`.

    `texts` as `normalize_texts` takes them (str, UTF-8 bytes, or a list or 1-D array
    of them); text that is not UTF-8 is an `InputError` naming `where`.
    """
    import tensorflow as tf

    ids = tokenizer(tf.constant(normalize_texts(texts, where), tf.string))
    ids = ids.to_list() if hasattr(ids, "to_list") else ids  # ragged, or lists off TF
    rows = [np.asarray(row, "int32") for row in ids]
    if add_end:
        rows = [np.append(row, np.int32(END_ID)) for row in rows]
    return rows


def ids_to_texts(tokenizer, ids):
    """Id rows (padding 0, maybe an end id) -> strings; each stops at its first end id."""
    import tensorflow as tf

    texts = []
    for row in ids:
        row = [int(i) for i in np.asarray(row).reshape(-1)]
        if END_ID in row:
            row = row[: row.index(END_ID)]
        row = [i for i in row if i not in (PAD_ID, BOS_ID)]
        if not row:
            texts.append("")
            continue
        text = tokenizer.detokenize(tf.constant([row], "int32"))
        text = np.asarray(text).reshape(-1)[0]
        texts.append(text.decode("utf-8") if isinstance(text, bytes) else str(text))
    return texts


def pad_rows(rows, length=None, dtype="int32"):
    """1-D rows (token ids, waveform samples) -> a `(len(rows), length)` array, 0-padded.

    `length` defaults to the longest row (at least 1); callers check that no row is
    longer.

    >>> pad_rows([[5, 6, 3], [7]]).tolist()
    [[5, 6, 3], [7, 0, 0]]
    """
    length = max(1, max(len(row) for row in rows)) if length is None else length
    out = np.zeros((len(rows), length), dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out
