"""Input pipelines: the bundled tasks, the shared tokenizer, multi-task mixtures."""

from keras_multimodel.data import bundled, speech, tfds_loaders
from keras_multimodel.data.adaptive_mixing import AdaptiveRates
from keras_multimodel.data.bundled import (
    PAPER_TASKS,
    load,
    load_examples,
    make_tasks,
    training_texts,
)
from keras_multimodel.data.mixture import (
    BUCKETINGS,
    MIXINGS,
    STRATEGIES,
    bucket_boundaries,
    examples_per_step,
    fitted_boundaries,
    mixing_rates,
    mixture,
)
from keras_multimodel.data.speech import read_wav
from keras_multimodel.data.vocabulary import train_tokenizer
from keras_multimodel.errors import DataError
from keras_multimodel.tokenization import ids_to_texts, texts_to_ids

__all__ = [
    "PAPER_TASKS",
    "AdaptiveRates",
    "BUCKETINGS",
    "MIXINGS",
    "STRATEGIES",
    "DataError",
    "bucket_boundaries",
    "examples_per_step",
    "fitted_boundaries",
    "bundled",
    "ids_to_texts",
    "load",
    "load_examples",
    "make_tasks",
    "mixing_rates",
    "mixture",
    "read_wav",
    "speech",
    "texts_to_ids",
    "tfds_loaders",
    "train_tokenizer",
    "training_texts",
]
