"""Text <-> token ids with a keras-hub tokenizer, below the models and the data.

`MultiModel.generate` uses these to take and return strings; the input pipelines
use them to tokenize the bundled tasks. Ids follow the `Text` modality: 0 is
padding and `END_ID` ends a target sequence (the ids that
`keras_hub.tokenizers.compute_sentence_piece_proto` reserves).
"""

import numpy as np

# Ids fixed by `keras_hub.tokenizers.compute_sentence_piece_proto`.
PAD_ID, UNK_ID, BOS_ID, END_ID = 0, 1, 2, 3


def texts_to_ids(tokenizer, texts, add_end=True):
    """Strings -> a list of int32 id arrays, each ending with `END_ID` when `add_end`."""
    import tensorflow as tf

    ids = tokenizer(tf.constant([str(text) for text in texts]))
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
