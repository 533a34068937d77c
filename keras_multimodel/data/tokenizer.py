"""One shared subword vocabulary for every text task, trained with keras-hub's tools."""

import keras_hub
import numpy as np
import tensorflow as tf

# Ids fixed by `keras_hub.tokenizers.compute_sentence_piece_proto`.
PAD_ID, UNK_ID, BOS_ID, END_ID = 0, 1, 2, 3


def train_tokenizer(texts, vocabulary_size=4000, lowercase=False):
    """Trains a SentencePiece (unigram) tokenizer on `texts`.

    Id 0 is padding and 3 (`END_ID`) ends a sequence, as the `Text` modality expects
    (`Text(vocab_size, end_token_id=END_ID)`). Training is deterministic for the
    same texts.

    Args:
        texts: iterable of strings, e.g. the training side of every text task.
        vocabulary_size: number of pieces, the special ones included.
        lowercase: case-fold the text before training and tokenizing.

    Returns:
        A `keras_hub.tokenizers.SentencePieceTokenizer`.

    Example:
    >>> tokenizer = train_tokenizer(["a cat sat on the mat", "the dog sat"] * 50, 16)
    >>> decode(tokenizer, encode(tokenizer, ["the cat sat"]))
    ['the cat sat']
    """
    texts = [str(text) for text in texts]
    if not texts:
        raise ValueError("train_tokenizer: `texts` is empty; give it the training text.")
    if isinstance(vocabulary_size, bool) or not isinstance(vocabulary_size, int):
        raise ValueError(f"train_tokenizer: `vocabulary_size` must be an int; got "
                         f"{vocabulary_size!r}.")
    import sentencepiece

    if hasattr(sentencepiece, "set_min_log_level"):
        sentencepiece.set_min_log_level(2)  # the trainer's hundreds of info lines
    proto = keras_hub.tokenizers.compute_sentence_piece_proto(
        tf.data.Dataset.from_tensor_slices(texts),
        vocabulary_size=vocabulary_size,
        lowercase=lowercase,
    )
    return keras_hub.tokenizers.SentencePieceTokenizer(proto=proto)


def encode(tokenizer, texts, add_end=True):
    """Strings -> list of int32 id arrays, each ending with `END_ID` when `add_end`."""
    ids = tokenizer(tf.constant([str(text) for text in texts]))
    ids = ids.to_list() if hasattr(ids, "to_list") else ids  # ragged, or lists off TF
    rows = [np.asarray(row, "int32") for row in ids]
    if add_end:
        rows = [np.append(row, np.int32(END_ID)) for row in rows]
    return rows


def pad_rows(rows, length=None, dtype="int32"):
    """1-D rows (token ids, waveform samples) -> a `(len(rows), length)` array, 0-padded.

    `length` defaults to the longest row; callers check that no row is longer.

    >>> pad_rows([[5, 6, 3], [7]]).tolist()
    [[5, 6, 3], [7, 0, 0]]
    """
    length = max(1, max(len(row) for row in rows)) if length is None else length
    out = np.zeros((len(rows), length), dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def decode(tokenizer, ids):
    """Id rows (padding 0, maybe an end id) -> strings; stops at the first end id."""
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
