"""The settings of each command, with their defaults: the one source the flags,
the Python functions and the README read.
"""

import dataclasses
import math

from keras_multimodel.data import bundled
from keras_multimodel.data.mixture import BUCKETINGS, MIXINGS
from keras_multimodel.data.vocabulary import MODEL_TYPES
from keras_multimodel.errors import InputError

# Peak learning rate x sqrt(hidden size), the Transformer's width rule (5e-3 for
# tiny): on the main job 2e-3 learned less and 1e-2 diverged on some tasks
# (benchmarks/README.md#recipepy-the-main-jobs-settings-measured-on-its-table).
LEARNING_RATE_SCALE = 0.04

# --distribution: how `train` spreads over the visible devices (keras_multimodel.cli.scale).
DISTRIBUTIONS = {
    "none": None,  # one device
    "data_parallel": "jax",  # keras.distribution.DataParallel
    "expert_parallel": "jax",  # keras.distribution.ModelParallel, experts split
    "mirrored": "tensorflow",  # tf.distribute.MirroredStrategy
}

FLOAT32_MAX = 3.4028234663852886e38  # weights and the learning rate are float32


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One `train` run. Each field is also a command-line flag of the same name.

    Attributes:
        tasks: bundled tasks to train on.
        preset: model preset (`keras_multimodel.models.PRESETS`).
        train_steps: optimizer steps in all; the learning-rate schedule ends there.
            The default fits the main job's 8-minute budget for `tiny` on 2 CPU
            cores (benchmarks/README.md#train_timepy-the-default-train-at-two-commits-side-by-side).
        steps_per_epoch: steps between backups, validation and log lines.
        batch_size: examples per step, over all tasks.
        data_size: bundled data size, "small" or "full".
        mixing: how tasks share a batch: "uniform", "proportional", "temperature"
            (`keras_multimodel.data.mixing_rates`), or "adaptive": uniform group
            sizes, and within a group the tasks sampled by their moving-average
            training loss (`keras_multimodel.data.AdaptiveRates`; a resumed run
            starts again from uniform).
        vocabulary_size: pieces of the shared SentencePiece vocabulary (at most: fewer
            when the tasks' texts support fewer).
        tokenizer: the vocabulary's SentencePiece model, "bpe" (byte-pair encoding)
            or "unigram" (see `keras_multimodel.data.train_tokenizer`).
        num_buckets: padded lengths per variable-length input (compiled programs;
            "fitted" adds `max_length` for examples longer than the training data's).
        bucketing: how the shorter padded lengths are chosen: "fitted" to the
            training data (most batches hold text a few tokens over half the
            longest) or "doubling" (see `keras_multimodel.data.mixture`).
        validation_steps: validation batches after every epoch.
        learning_rate: peak learning rate (Adam, warm-up then cosine decay); None
            (the default) scales it with the preset's width,
            `LEARNING_RATE_SCALE / sqrt(hidden_size)` (the Transformer's rule): 5e-3
            for `tiny` (64 wide), 2.5e-3 for `base`, 1.8e-3 for `paper`.
        seed: random seed of initialisation and data order.
        body: `{setting: value}` overrides of the preset's `BodyConfig` (e.g.
            `{"num_experts": 16}`, `{"use_moe": False}`); `experiment` sets them.
        train_fractions: `{task: fraction}`: train on this share (0 < f <= 1) of a
            task's training split, a fixed random subset (the `scarce` experiment).
        vocabulary_tasks: the bundled tasks whose training texts the shared
            vocabulary learns from; empty (the default) for `tasks`. `experiment`
            gives every run of a grid the same, so that per-token log-perplexities
            compare across runs of different tasks.
        distribution: "none" (one device), "data_parallel" or "expert_parallel"
            (JAX, `keras.distribution` over every visible device) or "mirrored"
            (TensorFlow, `tf.distribute.MirroredStrategy`); see docs/scaling.md.
    """

    tasks: tuple = bundled.PAPER_TASKS
    preset: str = "tiny"
    train_steps: int = 2100
    steps_per_epoch: int = 150
    batch_size: int = 48
    data_size: str = "small"
    mixing: str = "uniform"
    vocabulary_size: int = 4000
    tokenizer: str = "bpe"
    num_buckets: int = 2
    bucketing: str = "fitted"
    validation_steps: int = 4
    learning_rate: float | None = None
    seed: int = 0
    distribution: str = "none"
    body: dict = dataclasses.field(default_factory=dict)
    train_fractions: dict = dataclasses.field(default_factory=dict)
    vocabulary_tasks: tuple = ()

    @property
    def epochs(self):
        return math.ceil(self.train_steps / self.steps_per_epoch)

    def validate(self):
        """Checks every setting before anything is written; returns the task list."""
        for name in ("train_steps", "steps_per_epoch", "batch_size", "vocabulary_size",
                     "num_buckets", "validation_steps"):  # fmt: skip
            check_positive(name, getattr(self, name))
        if self.learning_rate is not None and (
            not isinstance(self.learning_rate, (int, float))
            or not math.isfinite(self.learning_rate)
            or not 0 < self.learning_rate <= FLOAT32_MAX
        ):
            raise InputError(
                f"--learning_rate must be a finite number > 0 (and at most {FLOAT32_MAX:.3g}, "
                f"float32's largest); received {self.learning_rate!r}"
            )
        if self.seed < 0:
            raise InputError(f"--seed must be >= 0; received {self.seed}")
        if self.distribution not in DISTRIBUTIONS:
            raise InputError(
                f"--distribution must be one of {', '.join(DISTRIBUTIONS)}; received "
                f"{self.distribution!r}"
            )
        backend = DISTRIBUTIONS[self.distribution]
        import keras

        if backend is not None and keras.backend.backend() != backend:
            here = keras.backend.backend()
            native = {"jax": "data_parallel or expert_parallel", "tensorflow": "mirrored"}
            raise InputError(
                f"--distribution {self.distribution} runs on the {backend} backend; this is "
                f"{here} (set KERAS_BACKEND={backend}, or pick "
                f"{native.get(here, 'none: ' + here + ' trains on one device here')})"
            )
        if self.mixing not in MIXINGS:
            raise InputError(
                f"--mixing must be one of {', '.join(MIXINGS)}; received {self.mixing!r}"
            )
        if self.tokenizer not in MODEL_TYPES:
            raise InputError(
                f"--tokenizer must be one of {', '.join(MODEL_TYPES)}; received {self.tokenizer!r}"
            )
        if self.bucketing not in BUCKETINGS:
            raise InputError(
                f"bucketing must be one of {', '.join(BUCKETINGS)}; received {self.bucketing!r}"
            )
        if not self.tasks:
            known = ", ".join(bundled.names())
            raise InputError(f"--tasks is empty; the bundled tasks are {known}")
        bundled.check_data_size(self.data_size)
        from keras_multimodel.modalities import Text
        from keras_multimodel.models import BodyConfig

        if not isinstance(self.body, dict):
            raise InputError(f"body must be a dict of BodyConfig settings; received {self.body!r}")
        BodyConfig.from_preset(self.preset, **self.body)
        if not isinstance(self.train_fractions, dict):
            raise InputError(
                f"train_fractions must be a {{task: fraction}} dict; received "
                f"{self.train_fractions!r}"
            )
        unknown = sorted(set(self.vocabulary_tasks) - set(bundled.names()))
        if unknown:
            raise InputError(
                f"vocabulary_tasks names unknown tasks {unknown}; the bundled tasks are "
                f"{', '.join(bundled.names())}"
            )
        for name, fraction in self.train_fractions.items():
            if name not in self.tasks:
                raise InputError(
                    f"train_fractions names {name!r}, which is not among the tasks "
                    f"({', '.join(self.tasks)})"
                )
            if (
                isinstance(fraction, bool)
                or not isinstance(fraction, (int, float))
                or not 0 < fraction <= 1
            ):
                raise InputError(
                    f"train_fractions[{name!r}] must be a number in (0, 1]; received {fraction!r}"
                )
        from keras_multimodel.task import TaskPlan
        from keras_multimodel.tokenization import END_ID

        text = Text(self.vocabulary_size, bundled.TEXT_MAX_LENGTH[self.data_size], END_ID)
        records = [bundled.get(name) for name in self.tasks]
        groups = TaskPlan([record.make_task(text) for record in records]).groups
        if self.batch_size < len(groups):
            raise InputError(
                f"--batch_size {self.batch_size} is smaller than the number of task groups "
                f"({len(groups)}: {', '.join(groups)}); each step needs one example per "
                f"group, so use at least --batch_size {len(groups)}"
            )
        return records

    @property
    def peak_learning_rate(self):
        """`learning_rate`, or the preset's default when it is None."""
        if self.learning_rate is not None:
            return float(self.learning_rate)
        from keras_multimodel.models import BodyConfig

        hidden_size = BodyConfig.from_preset(self.preset, **self.body).hidden_size
        return round(LEARNING_RATE_SCALE / math.sqrt(hidden_size), 6)

    def to_dict(self):
        """The settings as recorded in a run (the learning rate resolved)."""
        return {
            **dataclasses.asdict(self),
            "tasks": list(self.tasks),
            "vocabulary_tasks": list(self.vocabulary_tasks),
            "learning_rate": self.peak_learning_rate,
        }


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """The `demo` command: the three layers learn to sort digits."""

    steps_per_epoch: int = 200
    epochs: int = 3
    batch_size: int = 64

    def validate(self):
        for field in dataclasses.fields(self):
            check_positive(field.name, getattr(self, field.name))


def check_positive(flag, value):
    """A one-line error naming the flag unless `value` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"--{flag} must be a positive integer; received {value!r}")
