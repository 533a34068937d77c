"""`BundledTask`: everything the package knows about one bundled task, and the registry.

A record holds a task's raw formats (which decide its modalities, how `predict`
reads a file or text, how evaluation batches examples, and what serving takes),
its splits and loader, its test metrics and its baselines. `train`, `evaluate`
and `predict` look records up by name; adding a task is one `register` call.
"""

import dataclasses
from collections.abc import Callable

from keras_multimodel import samplers
from keras_multimodel.data.bundled.formats import Format
from keras_multimodel.data.bundled.sources import DATA_SIZES, SPLITS
from keras_multimodel.errors import DataError


@dataclasses.dataclass(frozen=True)
class Metric:
    """A test metric over decoded outputs: `fn(references, outputs) -> float`."""

    name: str
    fn: Callable
    higher_is_better: bool = True


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A simple method to compare with: `fit(train_inputs, train_targets)` returns a
    function from a list of raw inputs to a list of outputs, like the model's.
    `learned`: it learns from the training split (nearest neighbour, retrieval...),
    rather than giving a floor (majority, empty output)."""

    name: str
    fit: Callable
    learned: bool = False


@dataclasses.dataclass(frozen=True)
class BundledTask:
    """One bundled task: data, formats, metrics and baselines.

    Attributes:
        name: the task's name (also its `Task` name and serving signature).
        description: "input -> target", one line.
        inputs: the `Format` of raw inputs.
        targets: the `Format` of raw targets.
        examples: `examples(split, data_size) -> (inputs, targets)`, raw.
        metrics: test metrics, the task's main metric first.
        baselines: simple methods scored beside the model.
        extra_splits: further test splits that `evaluate` scores (e.g. "real").
        sampler: how `evaluate`, `predict` and `export` decode the task's outputs
            unless told otherwise: "greedy" or "beam" (beam search, 4 beams; see
            `MultiModel.generate`). Label tasks ignore it. The bundled translation
            and parsing tasks use "beam", chosen on their validation splits
            (benchmarks/README.md#decodingpy-greedy-decoding-against-beam-search-per-task).
        vocabulary_texts: `vocabulary_texts(data_size) -> [str]`, the training texts
            for the shared vocabulary when reading `examples` would be costly; by
            default the text sides of the train split.

    Example:
    >>> from keras_multimodel.data import bundled
    >>> record = bundled.get("classify_image")
    >>> record.description, record.metrics[0].name
    ('28x28 grey image -> 10 clothing classes', 'accuracy')
    """

    name: str
    description: str
    inputs: Format
    targets: Format
    examples: Callable
    metrics: tuple
    baselines: tuple = ()
    extra_splits: tuple = ()
    vocabulary_texts: Callable | None = None
    sampler: str = samplers.DEFAULT

    def __post_init__(self):
        if self.sampler not in samplers.NAMES:
            raise DataError(
                f"BundledTask {self.name!r}: `sampler` must be one of {samplers.NAMES}; "
                f"received {self.sampler!r}."
            )

    @property
    def splits(self):
        return SPLITS + tuple(self.extra_splits)

    @property
    def needs_text(self):
        return self.inputs.is_text or self.targets.is_text

    def load_examples(self, split, data_size="small"):
        """One split as raw `(inputs, targets)`; one-line errors for unknown names."""
        if split not in self.splits:
            raise DataError(
                f"unknown split {split!r} of {self.name}; choose one of {', '.join(self.splits)}"
            )
        check_data_size(data_size)
        return self.examples(split, data_size)

    def training_texts(self, data_size="small"):
        """The texts of the train split (both sides), for the shared vocabulary."""
        check_data_size(data_size)
        if not self.needs_text:
            return []
        if self.vocabulary_texts is not None:
            return list(self.vocabulary_texts(data_size))
        inputs, targets = self.examples("train", data_size)
        return self.inputs.texts(inputs) + self.targets.texts(targets)

    def make_task(self, text=None):
        """The `Task` of this record; `text` is the shared `Text` modality."""
        from keras_multimodel.task import Task

        return Task(self.name, self.inputs.modality(text), self.targets.modality(text))


def check_data_size(data_size):
    if data_size not in DATA_SIZES:
        raise DataError(f"unknown data_size {data_size!r}; choose one of {', '.join(DATA_SIZES)}")


_REGISTRY = {}


def register(record, replace=False):
    """Adds a `BundledTask` to the registry, so the command line can run it."""
    if not isinstance(record, BundledTask):
        raise DataError(f"register: expected a BundledTask; received {type(record).__name__}")
    if record.name in _REGISTRY and not replace:
        raise DataError(f"a bundled task named {record.name!r} exists; pass replace=True")
    _REGISTRY[record.name] = record
    return record


def unregister(name):
    """Removes a bundled task (e.g. one a test registered)."""
    _REGISTRY.pop(name, None)


def get(name):
    """The record of bundled task `name`; a one-line error lists the known ones."""
    if name not in _REGISTRY:
        raise DataError(f"unknown task {name!r}; the bundled tasks are {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def names():
    """Names of every registered bundled task, in registration order."""
    return tuple(_REGISTRY)
