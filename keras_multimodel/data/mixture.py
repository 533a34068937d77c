"""`mixture`: per-task `tf.data` examples -> the multi-task batches `MultiModel.fit` takes."""

import math

import numpy as np
import tensorflow as tf

from keras_multimodel.data.adaptive_mixing import AdaptiveRates
from keras_multimodel.errors import InputError
from keras_multimodel.task import TaskPlan


def bucket_boundaries(max_length, num_buckets):
    """`num_buckets` padded lengths up to `max_length`, each about twice the previous.

    Lengths are rounded up to a multiple of 8 (at most `max_length`).

    >>> bucket_boundaries(256, 4)
    [32, 64, 128, 256]
    """
    boundaries = []
    for j in range(num_buckets):
        length = math.ceil(max_length / 2 ** (num_buckets - 1 - j))
        boundaries.append(min(max_length, 8 * math.ceil(length / 8)))
    return boundaries


def _plan(tasks):
    if hasattr(tasks, "plan"):  # a MultiModel
        return tasks.plan
    if isinstance(tasks, TaskPlan):
        return tasks
    return TaskPlan(tasks)


STRATEGIES = ("uniform", "proportional", "temperature")
"""The rate strategies of `mixing_rates` (and `mixture(rates=...)`)."""
MIXINGS = (*STRATEGIES, "adaptive")
"""What `train --mixing` takes: a strategy, or "adaptive" (`AdaptiveRates`)."""
BUCKETINGS = ("doubling", "fitted")
"""How `mixture` chooses the shorter padded lengths (`bucketing=...`)."""
# "fitted" bucketing: the share of batches the fitted buckets below the longest
# example's hold together, and the examples per task it reads to learn the lengths
# (a seeded random sample of a larger task of known size).
FITTED_SHARE = 0.9
FIT_EXAMPLES = 20_000


def fitted_boundaries(lengths, weights, batch_size, max_length, num_buckets, levels):
    """`num_buckets + 1` padded lengths fitted to the data, the last `max_length`.

    `lengths` is one array of example lengths per task of a group, `weights` each
    task's share of the group's examples, and `batch_size` the group's examples per
    batch, so a batch's longest example is at most `L` with probability
    `F(L) ** batch_size`, `F` the mixed share of examples no longer than `L`. Bucket
    j < `num_buckets - 1` is the shortest multiple of 8 where that probability
    reaches `levels[j]`; bucket `num_buckets - 1` is the longest example (rounded up
    to 8), so the fitted examples never need the last, `max_length`, which is there
    for longer ones.

    >>> import numpy as np
    >>> lengths = [np.array([5] * 99 + [30])]  # 1% of the examples are long
    >>> fitted_boundaries(lengths, [1.0], 1, 64, 2, [0.95])
    [8, 32, 64]
    >>> fitted_boundaries(lengths, [1.0], 8, 64, 2, [0.95])  # batches of 8: 8% hold one
    [32, 32, 64]
    """
    if len(levels) != num_buckets - 1:
        raise InputError(
            f"fitted_boundaries: {num_buckets} buckets need {num_buckets - 1} levels; "
            f"got {len(levels)}."
        )
    candidates = np.unique(
        [min(max_length, 8 * math.ceil(max(1, int(n)) / 8)) for a in lengths for n in a]
    )
    # Share of the group's examples no longer than each candidate, then of batches.
    share = sum(
        w * np.searchsorted(np.sort(a), candidates, side="right") / len(a)
        for a, w in zip(lengths, weights, strict=True)
    )
    batches = share**batch_size
    boundaries = [int(candidates[np.argmax(batches >= min(level, batches[-1]))])
                  for level in levels]  # fmt: skip
    return boundaries + [int(candidates[-1]), max_length]


def mixing_rates(sizes, strategy="uniform", cap=None, temperature=2.0):
    """Task rates from dataset sizes, normalised to sum to 1.

    - "uniform": every task alike;
    - "proportional": examples-proportional, each size capped at `cap` (Raffel et
      al., 2020) so a huge task cannot crowd out the rest;
    - "temperature": proportional to `min(size, cap) ** (1 / temperature)`;
      temperature 1 is "proportional", larger values move towards "uniform".

    >>> rates = mixing_rates({"a": 100, "b": 400}, "proportional")
    >>> {k: round(v, 2) for k, v in rates.items()}
    {'a': 0.2, 'b': 0.8}
    >>> {k: round(v, 2) for k, v in mixing_rates({"a": 100, "b": 400}, "temperature").items()}
    {'a': 0.33, 'b': 0.67}
    """
    if strategy not in STRATEGIES:
        raise InputError(f"mixing_rates: unknown strategy {strategy!r}; use one of {STRATEGIES}.")
    if not sizes:
        raise InputError("mixing_rates: `sizes` is empty.")
    for name, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InputError(
                f"mixing_rates: the size of task {name!r} must be an int >= 0 (examples); "
                f"got {size!r}."
            )
    if cap is not None and (not isinstance(cap, int) or cap < 1):
        raise InputError(f"mixing_rates: `cap` must be a positive int or None; got {cap!r}.")
    if not isinstance(temperature, (int, float)) or temperature <= 0:
        raise InputError(f"mixing_rates: `temperature` must be > 0; got {temperature!r}.")
    capped = {name: min(size, cap) if cap else size for name, size in sizes.items()}
    if strategy == "uniform":
        raw = {name: 1.0 for name in sizes}
    elif strategy == "proportional":
        raw = {name: float(size) for name, size in capped.items()}
    else:
        raw = {name: float(size) ** (1.0 / temperature) for name, size in capped.items()}
    total = sum(raw.values())
    if total <= 0:
        raise InputError("mixing_rates: every task is empty.")
    return {name: value / total for name, value in raw.items()}


def _dataset_sizes(datasets):
    sizes = {}
    for name, dataset in datasets.items():
        size = int(dataset.cardinality())
        if size < 0:
            raise InputError(
                f"mixture: the size of task {name!r}'s dataset is unknown or infinite, so a "
                "rate strategy cannot use it; pass explicit `rates={task: rate}` instead."
            )
        sizes[name] = size
    return sizes


def _rates(plan, datasets, rates, cap=None, temperature=2.0):
    if rates is None:
        rates = "uniform"
    if isinstance(rates, AdaptiveRates):
        unknown = sorted(set(datasets) - set(rates.tasks))
        if unknown:
            raise InputError(f"mixture: the AdaptiveRates have no rate for tasks {unknown}.")
        rates = {name: rates.initial[name] for name in datasets}
    if isinstance(rates, str):
        if rates not in STRATEGIES:
            raise InputError(
                f"mixture: unknown rate strategy {rates!r}; use one of {STRATEGIES} or a "
                "{task: rate} dict."
            )
        sizes = {name: 1 for name in datasets} if rates == "uniform" else _dataset_sizes(datasets)
        rates = mixing_rates(sizes, rates, cap=cap, temperature=temperature)
    if not isinstance(rates, dict):
        raise InputError(f"mixture: `rates` must be a strategy name or a dict; got {rates!r}.")
    unknown = sorted(set(rates) - set(datasets))
    if unknown:
        raise InputError(f"mixture: `rates` name tasks without datasets: {unknown}.")
    missing = sorted(set(datasets) - set(rates))
    if missing:
        raise InputError(f"mixture: `rates` has no rate for tasks {missing}; give every task one.")
    for name, rate in rates.items():
        if not isinstance(rate, (int, float)) or rate < 0 or math.isnan(rate):
            raise InputError(f"mixture: rate of task {name!r} must be a number >= 0; got {rate!r}.")
    total = sum(rates.values())
    if total <= 0:
        raise InputError("mixture: at least one task needs a positive rate.")
    return {name: rate / total for name, rate in rates.items()}


def mixture(
    datasets,
    batch_size,
    tasks,
    rates=None,
    num_buckets=4,
    repeat=True,
    shuffle_buffer="full",
    seed=None,
    cap=None,
    temperature=2.0,
    batch_multiple=1,
    bucketing="doubling",
    autotune=True,
):
    """Mixes per-task datasets into the batches `MultiModel.fit` consumes.

    An empty dataset is an error naming its task. A dataset of unknown size (after
    `filter`, or `from_generator`) is probed for its first example, so it is read
    once more from the start: one built on a single-use Python iterator loses that
    example; give such data a known size (`dataset.apply(
    tf.data.experimental.assert_cardinality(n))`) or build it from a generator
    function that starts afresh.

    Each element is `{group: {"inputs", "targets", "task_id"}}` with one sub-batch per
    group of tasks present in `datasets` (tasks sharing input and target nets; see
    `MultiModel.groups`). Group g gets `round(batch_size * rate_g)` examples (at
    least 1; rounded to a multiple of `batch_multiple`), where `rate_g` sums its
    tasks' normalised `rates`; inside a group, tasks are sampled in proportion to
    their rates.

    Variable-length tensors (text, waveforms) are padded with 0 to one of
    `num_buckets` lengths per tensor; one bucket index is chosen per batch (the
    smallest that fits every group), so a `fit` compiles at most `num_buckets`
    train programs ("fitted": one more if an example is longer than all those it
    was fitted on). The last length is the modality's `max_length`; examples longer
    than it raise an error while iterating (or, "fitted", when the mixture is
    built); nothing is truncated. The shorter ones (`bucketing`) either halve it
    again and again ("doubling", `bucket_boundaries`: no data is read in advance),
    or are "fitted" to the data (`fitted_boundaries`): the first `num_buckets - 1`
    are each the shortest multiple of 8 that holds a set share of the batches
    (together they hold about `FITTED_SHARE` of them), the next is the longest
    example, and `max_length` stays last for anything longer. The lengths are
    learned when the mixture is built, from up to `FIT_EXAMPLES` examples per task
    (a seeded random sample of a larger task of known size; the first ones of a
    task of unknown size), read in an extra pass: a dataset that can be read only
    once (a generator over an iterator) would lose them. Text a few tokens over
    half its `max_length` makes "doubling" pad most batches to twice their length.

    Args:
        datasets: `{task name: tf.data.Dataset}` of `(inputs, targets)` examples
            (unbatched).
        batch_size: examples per step, over all groups.
        tasks: the `MultiModel` (or its list of `Task`s) the batches are for.
        rates: `{task name: rate}`, or a strategy of `mixing_rates` computed from
            the datasets' sizes: "uniform" (the default), "proportional" (with
            `cap`) or "temperature" (with `temperature` and `cap`), or an
            `AdaptiveRates`, whose rates move during training (within each group;
            the sub-batch sizes come from its initial rates).
        num_buckets: padded lengths per variable-length tensor.
        repeat: repeat every task forever (train with `steps_per_epoch`); with
            False the mixture ends when its first group runs out.
        shuffle_buffer: examples shuffled per task: "full" (the default) shuffles
            a task of known size completely, a new permutation every epoch (a
            buffer as large as the task; stored data sets are often in a meaningful
            order, e.g. Bible books), and a task of unknown size with a buffer of
            `FALLBACK_SHUFFLE_BUFFER`; an int sets the buffer; 0 keeps the order.
        seed: seed of shuffling and task sampling.
        cap: largest size counted per task by "proportional" and "temperature".
        temperature: the "temperature" strategy's temperature.
        batch_multiple: every sub-batch size is a multiple of this, at least one
            multiple: the data-parallel degree (devices or replicas), since every
            sub-batch is split evenly between them. `train --distribution` fills
            it in.
        bucketing: "doubling" (the default) or "fitted": how the shorter padded
            lengths are chosen (above).
        autotune: False turns tf.data's autotuning (of parallelism and buffers)
            off for the whole pipeline, the given datasets included; True (the
            default) leaves their options as they are. Pass False for
            `validation_data`: `fit` makes a new iterator over it every epoch and
            drops the old one, and dropping one that autotunes can wait up to a
            minute for its tuning thread (benchmarks/README.md#validation-stalls-
            fit-waiting-for-tfdatas-autotuning-thread). A few validation batches
            an epoch need no tuning.

    Returns:
        A `tf.data.Dataset` of batches, prefetched.

    Example:
    >>> import numpy as np, tensorflow as tf
    >>> import keras_multimodel as kmm
    >>> from keras_multimodel.modalities import ClassLabel, Image
    >>> task = kmm.Task("digits", Image(channels=1), ClassLabel(10))
    >>> examples = tf.data.Dataset.from_tensor_slices(
    ...     (np.zeros((8, 28, 28, 1), "uint8"), np.arange(8) % 10))
    >>> batch = next(iter(kmm.data.mixture({"digits": examples}, 4, tasks=[task])))
    >>> batch["image_to_class_label"]["inputs"].shape.as_list()
    [4, 28, 28, 1]
    """
    plan = _plan(tasks)
    _check_arguments(plan, datasets, batch_size, batch_multiple, num_buckets, bucketing,
                     shuffle_buffer, autotune)  # fmt: skip
    adaptive = rates
    rates = _rates(plan, datasets, rates, cap, temperature)

    groups, limits = {}, {}
    members = _group_members(plan, datasets, rates, batch_size, batch_multiple)
    for group, (names, weights, size) in members.items():
        task = plan.task(names[0])
        max_lengths = {
            "inputs": task.inputs.max_lengths("inputs"),
            "targets": task.targets.max_lengths("targets"),
            "task_id": None,
        }
        streams = [
            _task_stream(plan, name, datasets[name], repeat, shuffle_buffer, seed) for name in names
        ]
        if len(streams) == 1:
            stream = streams[0]
        else:
            if isinstance(adaptive, AdaptiveRates):
                weights = _moving_weights(adaptive, names)
            stream = tf.data.Dataset.sample_from_datasets(
                streams, weights=weights, seed=seed, stop_on_empty_dataset=True
            )
        if not repeat:
            _check_one_batch(group, {name: datasets[name] for name in names}, size)
        groups[group] = stream.padded_batch(size, drop_remainder=True)
        limits[group] = _flat_limits(stream.element_spec, max_lengths)
    if bucketing == "fitted":
        bounds = _fitted_bounds(plan, datasets, limits, members, num_buckets)
    else:
        bounds = {
            group: [None if limit is None else bucket_boundaries(limit, num_buckets)
                    for limit in group_limits]
            for group, group_limits in limits.items()
        }  # fmt: skip
    batches = tf.data.Dataset.zip(groups)
    batches = batches.map(
        lambda batch: _pad_to_bucket(batch, bounds), num_parallel_calls=tf.data.AUTOTUNE
    ).prefetch(tf.data.AUTOTUNE)
    if autotune:
        return batches
    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.with_options(options)


def _moving_weights(rates, names):
    """A dataset of the group's current sampling weights, read from `rates` for
    every example drawn (so they follow `AdaptiveRates.update` without a retrace)."""

    def current(_):
        weights = tf.numpy_function(lambda: rates.weights(names), [], tf.float32, stateful=True)
        return tf.ensure_shape(weights, [len(names)])

    return tf.data.Dataset.from_tensors(0).repeat().map(current)


def _check_arguments(plan, datasets, batch_size, batch_multiple, num_buckets, bucketing,
                     shuffle_buffer, autotune):  # fmt: skip
    """`mixture`'s one-line errors for bad arguments, before any pipeline is built."""
    if not isinstance(datasets, dict) or not datasets:
        raise InputError("mixture: `datasets` must be a non-empty {task name: tf.data.Dataset}.")
    for name, dataset in datasets.items():
        plan.task(name)  # unknown names list the known tasks
        if not isinstance(dataset, tf.data.Dataset):
            raise InputError(
                f"mixture: the dataset of task {name!r} must be a tf.data.Dataset of "
                f"(inputs, targets) examples; received {type(dataset).__name__}."
            )
        _check_not_empty(name, dataset)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"mixture: `batch_size` must be a positive int; got {batch_size!r}.")
    multiple = batch_multiple
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise InputError(
            f"mixture: `batch_multiple` must be a positive int (the data-parallel degree); "
            f"got {batch_multiple!r}."
        )
    if isinstance(num_buckets, bool) or not isinstance(num_buckets, int) or num_buckets < 1:
        raise InputError(f"mixture: `num_buckets` must be a positive int; got {num_buckets!r}.")
    if bucketing not in BUCKETINGS:
        raise InputError(f"mixture: `bucketing` must be one of {BUCKETINGS}; got {bucketing!r}.")
    is_count = isinstance(shuffle_buffer, int) and not isinstance(shuffle_buffer, bool)
    if shuffle_buffer != "full" and not (is_count and shuffle_buffer >= 0):
        raise InputError(
            f'mixture: `shuffle_buffer` must be "full" or an int >= 0; got {shuffle_buffer!r}.'
        )
    if not isinstance(autotune, bool):
        raise InputError(f"mixture: `autotune` must be True or False; got {autotune!r}.")


def _group_members(plan, datasets, rates, batch_size, batch_multiple):
    """`{group: (task names, their shares of the group, examples per batch)}` for
    the groups with a task of positive rate in `datasets` (`rates` normalised)."""
    members = {}
    for group, names in plan.groups.items():
        names = [name for name in names if name in datasets and rates[name] > 0]
        if names:
            group_rate = sum(rates[name] for name in names)
            size = sub_batch_size(batch_size, group_rate, batch_multiple)
            members[group] = (names, [rates[name] / group_rate for name in names], size)
    return members


def examples_per_step(datasets, batch_size, tasks, rates=None, cap=None, temperature=2.0,
                      batch_multiple=1):  # fmt: skip
    """`{task: examples of it in a batch, on average}` of the `mixture` with the same
    arguments: its group's sub-batch size times its share of the group.

    >>> import numpy as np, tensorflow as tf
    >>> import keras_multimodel as kmm
    >>> from keras_multimodel.modalities import ClassLabel, Image
    >>> tasks = [kmm.Task(name, Image(channels=1), ClassLabel(10)) for name in "ab"]
    >>> data = tf.data.Dataset.from_tensor_slices(
    ...     (np.zeros((8, 28, 28, 1), "uint8"), np.arange(8) % 10))
    >>> examples_per_step({"a": data, "b": data}, 48, tasks, rates={"a": 3, "b": 1})
    {'a': 36.0, 'b': 12.0}
    """
    plan = _plan(tasks)
    members = _group_members(
        plan, datasets, _rates(plan, datasets, rates, cap, temperature), batch_size, batch_multiple
    )
    shares = {name: 0.0 for name in datasets}
    for names, weights, size in members.values():
        for name, weight in zip(names, weights, strict=True):
            shares[name] = size * weight
    return shares


def _fitted_bounds(plan, datasets, limits, members, num_buckets):
    """`{group: [boundaries or None per flat tensor]}` fitted to the tasks' lengths."""
    tensors = sum(limit is not None for group_limits in limits.values() for limit in group_limits)
    # Bucket j of every tensor holds `levels[j]` of the batches, so all of them
    # together hold about `FITTED_SHARE * (j + 1) / (num_buckets - 1)`.
    levels = [
        (FITTED_SHARE * (j + 1) / max(1, num_buckets - 1)) ** (1 / max(1, tensors))
        for j in range(num_buckets - 1)
    ]
    bounds = {}
    for group, group_limits in limits.items():
        if all(limit is None for limit in group_limits):  # nothing to pad: read nothing
            bounds[group] = list(group_limits)
            continue
        names, weights, size = members[group]
        lengths = [_example_lengths(plan, name, datasets[name], group_limits) for name in names]
        bounds[group] = [
            None
            if limit is None
            else fitted_boundaries(
                [a[:, i] for a in lengths], weights, size, limit, num_buckets, levels
            )
            for i, limit in enumerate(group_limits)
        ]
    return bounds


def _example_lengths(plan, name, dataset, limits):
    """`(examples, tensors)` lengths of up to `FIT_EXAMPLES` of a task's examples (a
    seeded sample of a larger task of known size; 0 for fixed-size tensors)."""
    size = int(dataset.cardinality())
    if size > FIT_EXAMPLES:  # stored data are often in order (e.g. Bible books)
        dataset = dataset.shuffle(size, seed=0)
    stream = _task_stream(plan, name, dataset, repeat=False, shuffle_buffer=0, seed=None)

    def lengths(example):
        flat = tf.nest.flatten(example)
        return tf.stack([tf.shape(t)[0] if limit is not None else 0
                         for t, limit in zip(flat, limits, strict=True)])  # fmt: skip

    rows = [batch.numpy() for batch in stream.take(FIT_EXAMPLES).map(lengths).batch(4096)]
    if not rows:
        raise InputError(f"mixture: task {name!r} has no examples to fit bucket lengths to.")
    return np.concatenate(rows)


def sub_batch_size(batch_size, rate, batch_multiple=1):
    """A group's examples per batch: `batch_size * rate` rounded to a multiple of
    `batch_multiple` (at least one multiple).

    >>> sub_batch_size(48, 1 / 3, batch_multiple=8), sub_batch_size(48, 0.05, 8)
    (16, 8)
    """
    return batch_multiple * max(1, round(batch_size * rate / batch_multiple))


def _check_not_empty(name, dataset):
    """An InputError naming the task unless its dataset has an example (a dataset
    of unknown size is probed for its first one)."""
    size = int(dataset.cardinality())
    if size == tf.data.UNKNOWN_CARDINALITY:
        size = sum(1 for _ in dataset.take(1))
    if size == 0:
        raise InputError(
            f"mixture: the dataset of task {name!r} is empty; give it examples, or leave "
            "the task out of `datasets`."
        )


def _check_one_batch(group, datasets, size):
    """With `repeat=False`, an InputError unless a group's tasks of known size hold
    at least one sub-batch (the mixture would end before its first batch)."""
    sizes = {name: int(dataset.cardinality()) for name, dataset in datasets.items()}
    if all(n >= 0 for n in sizes.values()) and sum(sizes.values()) < size:
        raise InputError(
            f"mixture: with repeat=False, group {group!r} ({', '.join(sizes)}) has "
            f"{sum(sizes.values())} examples, fewer than its sub-batch of {size}, so there "
            "would be no batch at all; lower `batch_size`, or give it more examples."
        )


def check_dataset(task, dataset):
    """Checks a task's dataset against its modalities before any data flows."""
    spec = dataset.element_spec
    if not isinstance(spec, (tuple, list)) or len(spec) != 2:
        raise InputError(
            f"mixture: task {task.name!r} examples must be (inputs, targets) pairs; the dataset "
            f"gives {spec}. Map it to pairs, e.g. `dataset.map(lambda ex: (ex['x'], ex['y']))`."
        )
    task.inputs.check_spec(spec[0], "inputs", task.name)
    task.targets.check_spec(spec[1], "targets", task.name)


def _limited_tensors(task, example):
    """`(role, tensor, max_length)` for every variable-length tensor of an example."""
    for role, modality in (("inputs", task.inputs), ("targets", task.targets)):
        value = example[role]
        limits = _flat_limits(value, modality.max_lengths(role))
        for tensor, limit in zip(tf.nest.flatten(value), limits, strict=True):
            if limit is not None:
                yield role, tensor, limit


FALLBACK_SHUFFLE_BUFFER = 10_000


def shuffle_buffer_size(dataset, shuffle_buffer):
    """The buffer `mixture` shuffles `dataset` with ("full": its size, when known).

    >>> import tensorflow as tf
    >>> shuffle_buffer_size(tf.data.Dataset.range(300), "full")
    300
    """
    if shuffle_buffer != "full":
        return shuffle_buffer
    size = int(dataset.cardinality())
    return size if size > 0 else FALLBACK_SHUFFLE_BUFFER


def _task_stream(plan, name, dataset, repeat, shuffle_buffer, seed):
    task = plan.task(name)
    task_id = plan.task_index[name]
    check_dataset(task, dataset)

    def prepare(raw_inputs, raw_targets):
        example = {
            "inputs": task.inputs.prepare(raw_inputs, "inputs"),
            "targets": task.targets.prepare(raw_targets, "targets"),
            "task_id": tf.constant(task_id, "int32"),
        }
        for role, tensor, limit in _limited_tensors(task, example):
            tf.debugging.assert_less_equal(
                tf.shape(tensor)[0],
                limit,
                message=f"task {name!r}: {role} longer than the modality's "
                f"max_length={limit}; shorten them or raise max_length",
            )
        return example

    stream = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    # Lengths known from the spec are checked now, before any data flows.
    for role, spec, limit in _limited_tensors(task, stream.element_spec):
        if spec.shape[0] is not None and spec.shape[0] > limit:
            raise InputError(
                f"mixture: task {name!r} {role} have length {spec.shape[0]}, over the "
                f"modality's max_length={limit}; shorten them or raise max_length."
            )
    buffer = shuffle_buffer_size(dataset, shuffle_buffer)
    if buffer:
        stream = stream.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    return stream.repeat() if repeat else stream


def _flat_limits(value, limits):
    """`limits` (None, an int, or a dict of them) aligned with `tf.nest.flatten(value)`."""
    if limits is None or isinstance(limits, int):
        return [limits] * len(tf.nest.flatten(value))
    flat = []
    for key in sorted(limits):
        flat.extend(_flat_limits(value[key], limits[key]))
    return flat


def _pad_to_bucket(batch, boundaries):
    """Pads every variable-length tensor to its boundary for one shared bucket index."""
    flat = {group: tf.nest.flatten(sub_batch) for group, sub_batch in batch.items()}
    bounds = {
        group: [None if b is None else tf.constant(b, "int32") for b in boundaries[group]]
        for group in batch
    }
    index = tf.constant(0, "int64")  # the smallest bucket that fits every tensor
    for group in batch:
        for tensor, boundary in zip(flat[group], bounds[group], strict=True):
            if boundary is not None:
                index = tf.maximum(index, tf.argmax(boundary >= tf.shape(tensor)[1]))
    padded = {}
    for group in batch:
        out = []
        for tensor, boundary in zip(flat[group], bounds[group], strict=True):
            if boundary is not None:
                extra = tf.gather(boundary, index) - tf.shape(tensor)[1]
                paddings = [[0, 0], [0, extra]] + [[0, 0]] * (tensor.shape.rank - 2)
                tensor = tf.pad(tensor, paddings)
            out.append(tensor)
        padded[group] = tf.nest.pack_sequence_as(batch[group], out)
    return padded
