"""What the MoE layers do inside a MultiModel: `expert_load` and the MoE logs."""

import warnings

import numpy as np
import pytest
import tensorflow as tf
from test_multimodel import make_batch, make_model

import keras_multimodel as kmm
from keras_multimodel.errors import InputError


@pytest.mark.backends(
    "tensorflow", reason="eager calls of many batch shapes: quick on TensorFlow, minutes on JAX; "
    "expert_load's doctest runs on every backend"
)
def test_expert_load_counts_top_k_choices_of_each_tasks_real_tokens(rng):
    model = make_model(top_k=2)
    batch = make_batch(rng)  # text rows: 4, 7 and 7 real tokens; row 0 is `copy`
    load = kmm.models.expert_load(model, [batch])
    copy, reverse, label = (model.plan.task_index[n] for n in ("copy", "reverse", "label"))
    assert load.tasks == ("label", "speech", "copy", "reverse")
    assert load.layers == ("encoder/moe", "decoder/moe")
    assert load.counts.shape == (4, 2, model.body_config.num_experts)
    # Encoder and decoder see the same text lengths here.
    np.testing.assert_array_equal(load.tokens[copy], [4, 4])
    np.testing.assert_array_equal(load.tokens[reverse], [14, 14])
    assert load.tokens[label, 1] == 2  # a label is one decoder position
    np.testing.assert_array_equal(load.counts.sum(axis=-1), 2 * load.tokens)  # top-2
    np.testing.assert_allclose(load.fractions().sum(axis=-1)[load.tokens > 0], 1.0)
    # Each token is counted for its own task: copy-only plus reverse-only batches
    # give the counts of the mixed batch (inference routing is per token).
    text = batch["text_to_text"]
    alone = [
        {"text_to_text": {key: value[rows] for key, value in text.items()}}
        for rows in ([0], [1, 2])
    ]
    separate = kmm.models.expert_load(model, alone).counts
    mixed = load.counts.copy()
    mixed[[model.plan.task_index[n] for n in ("label", "speech")]] = 0  # the other groups
    np.testing.assert_array_equal(separate, mixed)
    assert separate[copy].sum() > 0 and separate[reverse].sum() > 0
    assert separate[label].sum() == 0
    assert (load.counts[copy] > 0).sum() >= 2  # at least two experts (top-2)


@pytest.mark.backends(
    "tensorflow", reason="backend-independent checks, and the model's task-id check runs "
    "after an eager call (seconds on TensorFlow, most of a minute on JAX)"
)
def test_expert_load_refuses_what_it_cannot_read(rng):
    model = make_model()
    with pytest.raises(InputError, match="expected a MultiModel"):
        kmm.models.expert_load(object(), [])
    with pytest.raises(InputError, match="`steps` must be a positive int"):
        kmm.models.expert_load(model, [make_batch(rng)], steps=0)
    with pytest.raises(InputError, match="yielded no batch"):
        kmm.models.expert_load(model, [])
    with pytest.raises(InputError, match="Unknown group"):
        kmm.models.expert_load(model, [{"nope": {}}])
    batch = make_batch(rng)
    batch["text_to_text"]["task_id"] = np.array([2, 0, 3], "int32")  # 0 is an image task
    with pytest.raises(InputError, match="task_id must be a vector of those ids"):
        kmm.models.expert_load(model, [batch])


def test_expert_load_reads_no_more_batches_than_it_counts(rng):
    model = make_model()
    read = []

    def batches():
        for i in range(5):
            read.append(i)
            yield make_batch(rng)

    kmm.models.expert_load(model, batches(), steps=np.int64(2))
    assert read == [0, 1]


@pytest.mark.parametrize(
    "eval_capacity_factor",
    [
        pytest.param(
            0.25,
            marks=pytest.mark.backends(
                "tensorflow", reason="the over-capacity case; the logs' path runs on every "
                "backend in the case without drops"
            ),
        ),
        None,
    ],
)
def test_logs_show_the_moe_dropped_fraction_of_every_moe_call(rng, eval_capacity_factor):
    model = make_model(eval_capacity_factor=eval_capacity_factor)
    batch = make_batch(rng)
    # By hand: each group alone, then each MoE layer's fraction of that call.
    expected = []
    for group, sub_batch in batch.items():
        model({group: sub_batch}, training=False)
        expected += [float(moe.dropped_fraction.numpy()) for moe in model.moe_layers]
    model.compile(optimizer="adam")
    logs = model.evaluate(tf.data.Dataset.from_tensors(batch), verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["moe_dropped_fraction"], np.mean(expected), rtol=1e-5)
    if eval_capacity_factor is not None:
        assert logs["moe_dropped_fraction"] > 0.2  # a quarter of the balanced capacity
        return
    assert logs["moe_dropped_fraction"] == 0.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = tf.data.Dataset.from_tensors(batch).repeat(2)
        history = model.fit(x=dataset, epochs=1, verbose=0)
    # A dataset is taken as shuffled: no warning that `shuffle=True` is ignored.
    assert not [w for w in caught if "shuffle" in str(w.message)]
    assert 0.0 <= history.history["moe_dropped_fraction"][0] <= 1.0
    assert history.history["moe_loss"][0] > 0.0
