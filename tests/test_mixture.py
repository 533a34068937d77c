import numpy as np
import pytest
import tensorflow as tf

import keras_multimodel as kmm
from keras_multimodel.data.mixture import sub_batch_size
from keras_multimodel.modalities import Audio, ClassLabel, Image, Text


def make_tasks():
    text = Text(vocab_size=40, max_length=32)
    return [
        kmm.Task("label", Image(channels=1), ClassLabel(3)),
        kmm.Task("copy", text, text),
        kmm.Task("swap", text, text),
        kmm.Task("listen", Audio(max_length=4000), text),
    ]


def text_pairs(n, rng, max_len):
    lengths = rng.integers(1, max_len + 1, n)
    ragged = [rng.integers(2, 40, length).astype("int32") for length in lengths]
    return tf.data.Dataset.from_generator(
        lambda: ((x, x) for x in ragged),
        output_signature=(tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32)),
    )


def make_datasets(rng, max_len=32):
    images = rng.integers(0, 255, (20, 8, 8, 1)).astype("uint8")
    waves = [rng.normal(size=rng.integers(100, 4000)).astype("float32") for _ in range(10)]
    return {
        "label": tf.data.Dataset.from_tensor_slices((images, np.arange(20) % 3)),
        "copy": text_pairs(30, rng, max_len),
        "swap": text_pairs(30, rng, max_len),
        "listen": tf.data.Dataset.from_generator(
            lambda: ((w, np.array([2, 3, 1], "int32")) for w in waves),
            output_signature=(tf.TensorSpec([None], tf.float32), tf.TensorSpec([3], tf.int32)),
        ),
    }


def test_bucket_boundaries():
    assert kmm.data.bucket_boundaries(256, 4) == [32, 64, 128, 256]
    assert kmm.data.bucket_boundaries(20, 2) == [16, 20]
    assert kmm.data.bucket_boundaries(5, 1) == [5]


def test_batches_have_one_sub_batch_per_group_sized_by_rates(rng):
    tasks = make_tasks()
    rates = {"label": 2.0, "copy": 1.0, "swap": 1.0, "listen": 4.0}
    dataset = kmm.data.mixture(make_datasets(rng), 16, tasks=tasks, rates=rates, seed=1)
    seen = set()
    task_counts = {1: 0, 2: 0}
    for batch in dataset.take(40):
        assert set(batch) == {"image_to_class_label", "text_to_text", "audio_to_text"}
        assert batch["image_to_class_label"]["inputs"].shape.as_list() == [4, 8, 8, 1]
        assert batch["text_to_text"]["targets"].shape[0] == 4
        audio = batch["audio_to_text"]["inputs"]
        assert audio["waveform"].shape[0] == 8
        assert (audio["length"].numpy() <= audio["waveform"].shape[1]).all()
        ids = batch["text_to_text"]["task_id"].numpy()
        for task_id in ids:
            task_counts[int(task_id)] += 1
        shapes = (
            batch["text_to_text"]["inputs"].shape[1],
            batch["audio_to_text"]["inputs"]["waveform"].shape[1],
        )
        seen.add(shapes)
    # One shared bucket index per batch: at most num_buckets distinct shapes.
    assert len(seen) <= 4
    text_buckets = kmm.data.bucket_boundaries(32, 4)
    audio_buckets = kmm.data.bucket_boundaries(4000, 4)
    for text_length, audio_length in seen:
        assert text_buckets.index(text_length) == audio_buckets.index(audio_length)
    # copy and swap share the text group at equal rates.
    assert 0.3 < task_counts[1] / (task_counts[1] + task_counts[2]) < 0.7


def test_fitted_boundaries_hold_the_share_of_batches_asked_for():
    fitted = kmm.data.fitted_boundaries
    lengths = [np.array([5] * 99 + [30])]  # one long example in 100
    # One example per batch: 99% of batches are <= 5 (-> 8); 30 is the longest.
    assert fitted(lengths, [1.0], 1, 64, 2, [0.95]) == [8, 32, 64]
    assert fitted(lengths, [1.0], 1, 64, 2, [0.995]) == [32, 32, 64]
    # Batches of 8 hold the long one 7.7% of the time: the 95% bucket is 32.
    assert fitted(lengths, [1.0], 8, 64, 2, [0.95]) == [32, 32, 64]
    # Two tasks, 5 and 20 tokens long. Mixed 3:1, 3/4 of the examples are <= 8,
    # so one-example batches at level 0.7 fit 8; mixed 1:3, only 1/4: 24.
    two = [np.array([5] * 100), np.array([20] * 100)]
    assert fitted(two, [0.75, 0.25], 1, 64, 2, [0.7]) == [8, 24, 64]
    assert fitted(two, [0.25, 0.75], 1, 64, 2, [0.7]) == [24, 24, 64]
    assert fitted(two, [0.25, 0.75], 1, 64, 3, [0.2, 0.7]) == [8, 24, 24, 64]


def test_fitted_buckets_pad_to_the_data_and_keep_max_length_for_longer_examples(rng, monkeypatch):
    tasks = make_tasks()[1:2]  # text, max_length 32
    # 79 short examples (2-6 tokens), then one of 13. Batches of 2 hold the long
    # one 2.5% of the time, so the 90% bucket (inputs and targets: 94.9% each) is
    # 8; the longest, 13, gives 16; max_length (32) is left for longer examples.
    lengths = [int(n) for n in rng.integers(2, 7, 79)] + [13]
    source = [np.arange(2, 2 + n, dtype="int32") for n in lengths]
    dataset = tf.data.Dataset.from_generator(
        lambda: ((x, x) for x in source),
        output_signature=(tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32)),
    )
    batches = kmm.data.mixture(
        {"copy": dataset}, 2, tasks, num_buckets=2, repeat=False, shuffle_buffer=0,
        bucketing="fitted",
    )  # fmt: skip
    seen = []
    for batch in batches:
        inputs = batch["text_to_text"]["inputs"].numpy()
        seen += (inputs > 0).sum(axis=1).tolist()
        assert inputs.shape[1] == (16 if (inputs > 0).sum(axis=1).max() > 8 else 8)
    assert sorted(seen) == sorted(lengths)  # nothing dropped or cut
    # ("doubling" with 2 buckets would pad every batch to 16 or 32.)
    # Fitted on the first 20 examples only (all short), the long one pads to 32.
    mixture_module = __import__("sys").modules["keras_multimodel.data.mixture"]
    monkeypatch.setattr(mixture_module, "FIT_EXAMPLES", 20)
    batches = kmm.data.mixture(
        {"copy": dataset}, 2, tasks, num_buckets=2, repeat=False, shuffle_buffer=0,
        bucketing="fitted",
    )  # fmt: skip
    widths = [batch["text_to_text"]["inputs"].shape[1] for batch in batches]
    assert widths == [8] * 39 + [32]


def test_fitted_buckets_share_one_index_across_groups(rng):
    tasks = make_tasks()
    datasets = make_datasets(rng)
    batches = kmm.data.mixture(datasets, 16, tasks, num_buckets=2, seed=0, bucketing="fitted")
    shapes = set()
    for batch in batches.take(60):
        text = batch["text_to_text"]
        audio = batch["audio_to_text"]["inputs"]
        assert text["inputs"].shape[1] == text["targets"].shape[1]  # copy/swap: equal lengths
        assert (audio["length"].numpy() <= audio["waveform"].shape[1]).all()
        shapes.add((text["inputs"].shape[1], audio["waveform"].shape[1]))
    # Fitted on all the examples: 2 programs at most, the 32-token / 4000-sample
    # max_length bucket never used, and each text length with one audio length.
    assert len(shapes) <= 2, shapes
    assert all(text < 32 or audio < 4000 for text, audio in shapes), shapes
    assert len({text for text, _ in shapes}) == len(shapes) == len({a for _, a in shapes})
    with pytest.raises(ValueError, match="2 buckets need 1 levels"):
        kmm.data.fitted_boundaries([np.array([3])], [1.0], 1, 8, 2, [])


def test_padding_keeps_every_token(rng):
    tasks = make_tasks()[1:2]
    source = [np.arange(2, 2 + n, dtype="int32") for n in (3, 9, 17)]
    dataset = tf.data.Dataset.from_generator(
        lambda: ((x, x) for x in source),
        output_signature=(tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32)),
    )
    batch = next(
        iter(kmm.data.mixture({"copy": dataset}, 3, tasks, repeat=False, shuffle_buffer=0))
    )
    inputs = batch["text_to_text"]["inputs"].numpy()
    assert inputs.shape == (3, 32)  # 17 tokens -> the 32 bucket
    assert sorted((inputs > 0).sum(axis=1).tolist()) == [3, 9, 17]


def test_too_long_examples_raise_instead_of_truncating(rng):
    tasks = make_tasks()[1:2]
    fixed = tf.data.Dataset.from_tensor_slices((np.ones((2, 40), "int32"),) * 2)
    with pytest.raises(ValueError, match="max_length=32"):
        kmm.data.mixture({"copy": fixed}, 2, tasks)
    ragged = tf.data.Dataset.from_generator(
        lambda: ((np.ones(n, "int32"),) * 2 for n in (5, 40)),
        output_signature=(tf.TensorSpec([None], tf.int32),) * 2,
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_length=32"):
        for _ in kmm.data.mixture({"copy": ragged}, 1, tasks, shuffle_buffer=0):
            pass


def test_out_of_range_labels_raise():
    tasks = make_tasks()[:1]
    images = np.zeros((2, 8, 8, 1), "uint8")
    dataset = kmm.data.mixture(
        {"label": tf.data.Dataset.from_tensor_slices((images, np.array([1, 3])))}, 2, tasks
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_classes=3"):
        next(iter(dataset))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"datasets": {"nope": None}}, "Unknown task 'nope'"),
        ({"rates": {"label": 1.0}}, "no rate for tasks"),
        ({"rates": {"label": -1.0, "copy": 1.0}}, ">= 0"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_multiple": 0}, "data-parallel degree"),
        ({"bucketing": "quantile"}, "bucketing"),
        ({"autotune": "off"}, "autotune"),
    ],
)
def test_bad_arguments_get_clear_errors(rng, kwargs, message):
    tasks = make_tasks()
    datasets = make_datasets(rng)
    arguments = {
        "datasets": {"label": datasets["label"], "copy": datasets["copy"]},
        "batch_size": 4,
        "tasks": tasks,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        kmm.data.mixture(**arguments)


def test_an_empty_dataset_is_an_error_naming_its_task(rng):
    """Not an empty stream: `fit` would get nothing, `next` a bare StopIteration."""
    tasks = make_tasks()
    datasets = make_datasets(rng)
    empty = {  # of known size 0, and of unknown size (probed)
        "known": datasets["label"].take(0),
        "unknown": datasets["label"].filter(lambda image, label: label > 5),
    }
    for dataset in empty.values():
        with pytest.raises(ValueError, match="the dataset of task 'label' is empty"):
            kmm.data.mixture({"label": dataset, "copy": datasets["copy"]}, 4, tasks)
    # Without repeating, a group with fewer examples than its sub-batch has no batch.
    with pytest.raises(ValueError, match="has 3 examples, fewer than its sub-batch of 4"):
        kmm.data.mixture({"label": datasets["label"].take(3)}, 4, tasks, repeat=False)


def test_a_mixture_without_autotuning_gives_the_same_batches(rng):
    datasets = make_datasets(rng)

    def first_batches(autotune):
        data = kmm.data.mixture(datasets, 6, make_tasks(), seed=3, autotune=autotune)
        return data, [tf.nest.map_structure(np.asarray, batch) for batch in data.take(4)]

    tuned, expected = first_batches(True)
    untuned, batches = first_batches(False)
    assert tuned.options().autotune.enabled is not False  # None: tf.data's default, on
    assert untuned.options().autotune.enabled is False
    tf.nest.map_structure(np.testing.assert_array_equal, batches, expected)


def test_sub_batches_are_multiples_of_the_data_parallel_degree(rng):
    # 16 examples at rates 2:1:1:4 give 4, 4 and 8; 30 give 7.5, 7.5 and 15, which
    # 8 devices cannot split: each is rounded to a multiple of 8 (at least 8).
    rates = {"label": 2.0, "copy": 1.0, "swap": 1.0, "listen": 4.0}
    dataset = kmm.data.mixture(
        make_datasets(rng), 30, tasks=make_tasks(), rates=rates, seed=1, batch_multiple=8
    )
    batch = next(iter(dataset))
    sizes = {group: int(sub["task_id"].shape[0]) for group, sub in batch.items()}
    assert sizes == {"image_to_class_label": 8, "text_to_text": 8, "audio_to_text": 16}
    assert sub_batch_size(30, 1 / 60, 8) == 8  # never 0


def test_mixing_rate_strategies():
    sizes = {"big": 10000, "mid": 1000, "small": 100}
    uniform = kmm.data.mixing_rates(sizes, "uniform")
    assert all(abs(rate - 1 / 3) < 1e-9 for rate in uniform.values())
    proportional = kmm.data.mixing_rates(sizes, "proportional")
    np.testing.assert_allclose(
        [proportional[k] for k in sizes], np.array([10000, 1000, 100]) / 11100
    )
    capped = kmm.data.mixing_rates(sizes, "proportional", cap=1000)
    np.testing.assert_allclose([capped[k] for k in sizes], np.array([1000, 1000, 100]) / 2100)
    warm = kmm.data.mixing_rates(sizes, "temperature", temperature=2.0)
    np.testing.assert_allclose([warm[k] for k in sizes], np.array([100, 31.6228, 10]) / 141.6228,
                               rtol=1e-4)  # fmt: skip
    hot = kmm.data.mixing_rates(sizes, "temperature", temperature=1e6)
    assert max(hot.values()) - min(hot.values()) < 1e-4  # -> uniform
    with pytest.raises(ValueError, match="unknown strategy 'mixed'"):
        kmm.data.mixing_rates(sizes, "mixed")
    with pytest.raises(ValueError, match="size of task 'big' must be an int"):
        kmm.data.mixing_rates({"big": -1}, "proportional")


def test_mixture_samples_tasks_at_the_strategy_rates(rng):
    """Within one group, tasks are drawn in proportion to their (capped) sizes."""
    text = Text(vocab_size=40, max_length=8)
    tasks = [kmm.Task(name, text, text) for name in ("a", "b", "c")]
    sizes = {"a": 900, "b": 300, "c": 100}
    datasets = {
        name: tf.data.Dataset.from_tensor_slices(
            (np.full((size, 4), 5, "int32"), np.full((size, 4), 6, "int32"))
        )
        for name, size in sizes.items()
    }
    for strategy, kwargs in (("proportional", {}), ("proportional", {"cap": 300}),
                             ("temperature", {"temperature": 2.0})):  # fmt: skip
        expected = kmm.data.mixing_rates(sizes, strategy, **kwargs)
        dataset = kmm.data.mixture(datasets, 64, tasks, rates=strategy, seed=3, **kwargs)
        ids = np.concatenate(
            [batch["text_to_text"]["task_id"].numpy() for batch in dataset.take(60)]
        )
        observed = np.bincount(ids, minlength=3) / len(ids)
        np.testing.assert_allclose(observed, [expected[k] for k in "abc"], atol=0.03)
    unknown_size = datasets["a"].filter(lambda x, y: True)
    with pytest.raises(ValueError, match="size of task 'a'.*unknown"):
        kmm.data.mixture({**datasets, "a": unknown_size}, 8, tasks, rates="proportional")


def _dataset(inputs, targets):
    return tf.data.Dataset.from_tensor_slices((inputs, targets))


@pytest.mark.parametrize(
    "modalities, inputs, targets, message",
    [
        ((Image(channels=3), ClassLabel(3)), np.zeros((4, 8, 8, 1), "uint8"), np.zeros(4, "int32"),
         r"'t'.*inputs must be an image of shape \(height, width, 3\).*gives shape=\(8, 8, 1\)"
         r".*Image\(channels=1\)"),
        ((Image(channels=1), ClassLabel(3)), np.zeros((4, 2, 8, 8, 1), "uint8"),
         np.zeros(4, "int32"), "looks batched"),
        ((Image(channels=1), ClassLabel(3)), np.zeros((4, 8, 8), "uint8"), np.zeros(4, "int32"),
         r"channel axis.*Image\(channels=1\)"),
        ((Image(channels=1), ClassLabel(3)), np.zeros((4, 8, 8, 1), "int32"),
         np.zeros(4, "int32"), "uint8 pixels"),
        ((Image(channels=1, image_size=(6, 6)), ClassLabel(3)), np.zeros((4, 8, 8, 1), "uint8"),
         np.zeros(4, "int32"), r"shape \(6, 6, 1\).*gives shape=\(8, 8, 1\).*Resize the images"),
        ((Image(channels=1), ClassLabel(3)), np.zeros((4, 8, 8, 1), "uint8"),
         np.zeros(4, "float32"), "targets must be one integer class id.*dtype=float32"),
        ((Image(channels=1), ClassLabel(3)), np.zeros((4, 8, 8, 1), "uint8"),
         np.zeros((4, 3), "int32"), "one id per example"),
        ((Text(40), Text(40)), np.array(["a b", "c d"]), np.array(["a", "b"]),
         "inputs must be a 1-D sequence of integer token ids.*dtype=string.*Tokenize"),
        ((Text(40), Text(40)), np.ones((2, 3), "int32"), np.ones((2, 3), "float32"),
         "targets must be a 1-D sequence of integer token ids.*float32.*must be integers"),
        ((Text(40), Text(40)), np.ones((2, 3, 4), "int32"), np.ones((2, 3), "int32"),
         "looks batched"),
        ((Audio(), Text(40)), np.zeros((2, 100), "int32"), np.ones((2, 3), "int32"),
         r"float \(or int16 PCM\) waveform.*dtype=int32.*2\*\*31"),
        ((Audio(), Text(40)), {"wave": np.zeros((2, 100), "float32")}, np.ones((2, 3), "int32"),
         "exactly the keys"),
    ],
)  # fmt: skip
def test_a_dataset_that_does_not_fit_its_task_fails_in_mixture(
    modalities, inputs, targets, message
):
    task = kmm.Task("t", *modalities)
    with pytest.raises(ValueError, match=message):
        kmm.data.mixture({"t": _dataset(inputs, targets)}, 2, tasks=[task])


def test_examples_that_are_not_pairs_fail_in_mixture():
    task = kmm.Task("t", Image(channels=1), ClassLabel(3))
    dataset = tf.data.Dataset.from_tensor_slices(
        {"image": np.zeros((4, 8, 8, 1), "uint8"), "label": np.zeros(4, "int32")}
    )
    with pytest.raises(ValueError, match=r"'t' examples must be \(inputs, targets\) pairs"):
        kmm.data.mixture({"t": dataset}, 2, tasks=[task])


def test_a_task_stored_in_order_is_shuffled_across_the_whole_split():
    """Examples stored in a meaningful order (like Bible books) must not be walked in
    that order: the first 8 batches of 8 draw from the whole 1,000-example split, and
    the next epoch draws a new order."""
    text = Text(vocab_size=1100, max_length=4, end_token_id=None)
    task = kmm.Task("ordered", text, text)
    ids = np.arange(2, 1002, dtype="int32")[:, None]  # example i holds the id i + 2
    dataset = tf.data.Dataset.from_tensor_slices((ids, ids))
    batches = kmm.data.mixture({"ordered": dataset}, 8, tasks=[task], seed=0, num_buckets=1)
    seen = [
        int(x) - 2
        for batch in batches.take(125 * 2)  # two epochs of 1,000 examples
        for x in batch["text_to_text"]["inputs"].numpy()[:, 0]
    ]
    first_window = np.array(seen[:64])
    assert first_window.max() - first_window.min() > 800  # not the first ~100 examples
    assert len(set(first_window // 100)) >= 8  # from at least 8 of the 10 tenths
    first_epoch, second_epoch = seen[:1000], seen[1000:]
    assert sorted(first_epoch) == list(range(1000))  # every example once per epoch
    assert first_epoch != second_epoch  # reshuffled every epoch


def test_adaptive_rates_move_a_group_s_tasks_without_a_new_pipeline(rng):
    """The sub-batch sizes stay those of the initial (uniform) rates; after an
    update that gives "copy" 93% of the text group, the same iterator draws it
    about that often."""
    rates = kmm.data.AdaptiveRates(["label", "copy", "swap", "listen"], decay=0.0, floor=0.2)
    data = kmm.data.mixture(make_datasets(rng), 16, tasks=make_tasks(), rates=rates, seed=3)
    assert kmm.data.examples_per_step(make_datasets(rng), 16, make_tasks(), rates) == {
        "label": 4.0, "copy": 4.0, "swap": 4.0, "listen": 4.0
    }  # fmt: skip
    iterator = iter(data)

    def copy_share(batches):
        ids = np.concatenate([next(iterator)["text_to_text"]["task_id"].numpy()
                              for _ in range(batches)])  # fmt: skip
        assert next(iterator)["text_to_text"]["targets"].shape[0] == 8  # the size stays
        return np.mean(ids == 1)

    assert 0.35 < copy_share(40) < 0.65
    rates.update({"label": 0.5, "copy": 8.0, "swap": 0.0, "listen": 1.5})
    np.testing.assert_allclose(rates.weights(["copy", "swap"]), [0.932, 0.068], atol=1e-3)
    copy_share(10)  # batches prefetched before the update
    assert 0.85 < copy_share(40) < 0.99


def test_adaptive_rates_refuse_bad_settings():
    with pytest.raises(kmm.errors.InputError, match="`decay` must be in"):
        kmm.data.AdaptiveRates(["a"], decay=1.0)
    with pytest.raises(kmm.errors.InputError, match="`initial` must give each task"):
        kmm.data.AdaptiveRates(["a", "b"], initial={"a": 1.0})
    with pytest.raises(kmm.errors.InputError, match="unknown task 'c'"):
        kmm.data.AdaptiveRates(["a", "b"]).update({"c": 1.0})
    rates = kmm.data.AdaptiveRates(["a", "b"])
    rates.update({"a": float("nan")})
    assert rates.rates == {"a": 0.5, "b": 0.5}  # no finite loss of every task yet
