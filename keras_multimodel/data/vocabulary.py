"""One shared subword vocabulary for every text task, trained with keras-hub's tools."""

import re

import keras_hub

from keras_multimodel.errors import InputError

MODEL_TYPES = ("bpe", "unigram")


def train_tokenizer(
    texts, vocabulary_size=4000, lowercase=False, fit_to_texts=False, model_type="bpe"
):
    """Trains a SentencePiece tokenizer (byte-pair encoding by default) on `texts`.

    Id 0 is padding and 3 (`END_ID`) ends a sequence, as the `Text` modality expects
    (`Text(vocab_size, end_token_id=END_ID)`). Training is deterministic for the
    same texts.

    Byte-pair encoding is the default: on the bundled tasks' texts the unigram
    model split some of the most frequent words into pieces (the parse labels
    "punct", 15k times in the texts, and "pobj" became "▁pu nct" and "▁p obj":
    2.6 pieces per (label, head) pair), where byte-pair encoding keeps them whole
    (2.0 pieces per pair) and gives every task's texts fewer pieces.

    Args:
        texts: iterable of strings, e.g. the training side of every text task.
        vocabulary_size: number of pieces, the special ones included.
        lowercase: case-fold the text before training and tokenizing.
        fit_to_texts: when the texts support fewer pieces than `vocabulary_size`,
            train as many as they support (and say so) instead of failing.
        model_type: "bpe" (byte-pair encoding) or "unigram" (a unigram language
            model), SentencePiece's two subword models.

    Returns:
        A `keras_hub.tokenizers.SentencePieceTokenizer`.

    Example:
    >>> from keras_multimodel.tokenization import ids_to_texts, texts_to_ids
    >>> tokenizer = train_tokenizer(["a cat sat on the mat", "the dog sat"] * 50, 16)
    >>> ids_to_texts(tokenizer, texts_to_ids(tokenizer, ["the cat sat"]))
    ['the cat sat']
    """
    import tensorflow as tf

    texts = [str(text) for text in texts]
    if not texts:
        raise InputError("train_tokenizer: `texts` is empty; give it the training text.")
    if isinstance(vocabulary_size, bool) or not isinstance(vocabulary_size, int):
        raise InputError(
            f"train_tokenizer: `vocabulary_size` must be an int; got {vocabulary_size!r}."
        )
    if model_type not in MODEL_TYPES:
        raise InputError(
            f"train_tokenizer: `model_type` must be one of {', '.join(MODEL_TYPES)}; got "
            f"{model_type!r}."
        )
    import sentencepiece

    if hasattr(sentencepiece, "set_min_log_level"):
        sentencepiece.set_min_log_level(2)  # the trainer's hundreds of info lines
    try:
        proto = keras_hub.tokenizers.compute_sentence_piece_proto(
            tf.data.Dataset.from_tensor_slices(texts),
            vocabulary_size=vocabulary_size,
            model_type=model_type,
            lowercase=lowercase,
        )
    except RuntimeError as error:
        most = re.search(r"Vocabulary size too high.*<= (\d+)", str(error))
        if most is None:
            raise
        most = int(most.group(1))
        if not fit_to_texts:
            raise InputError(
                f"train_tokenizer: these texts support at most {most} pieces; received "
                f"vocabulary_size={vocabulary_size}. Ask for at most {most}, or give more text."
            ) from None
        print(f"The training texts support at most {most} pieces: training {most}.")
        return train_tokenizer(texts, most, lowercase, model_type=model_type)
    return keras_hub.tokenizers.SentencePieceTokenizer(proto=proto)
