"""Input pipelines: bundled paper tasks, the shared tokenizer, multi-task mixtures."""

from keras_multimodel.data import paper, speech, tfds_loaders
from keras_multimodel.data.mixture import STRATEGIES, bucket_boundaries, mixing_rates, mixture
from keras_multimodel.data.paper import TASKS, load, load_examples, make_tasks
from keras_multimodel.data.speech import DataError, read_wav
from keras_multimodel.data.tokenizer import decode, encode, train_tokenizer

__all__ = [
    "STRATEGIES",
    "TASKS",
    "DataError",
    "bucket_boundaries",
    "decode",
    "encode",
    "load",
    "load_examples",
    "make_tasks",
    "mixing_rates",
    "mixture",
    "paper",
    "read_wav",
    "speech",
    "tfds_loaders",
    "train_tokenizer",
]
