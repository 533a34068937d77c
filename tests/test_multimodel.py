import dataclasses
import os
import subprocess
import sys

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from conftest import to_numpy

import keras_multimodel as kmm
from keras_multimodel.modalities import Audio, ClassLabel, Image, Text

TEXT = Text(vocab_size=30, max_length=16)


# The smallest body that still has every kind of part (a ConvBlock with a dilated
# step, the MoE, attention): the tests are about the parts' wiring, not depth.
SMALL_BODY = {
    "hidden_size": 32,
    "encoder_blocks": 1,
    "decoder_layers": 1,
    "kernel_sizes": (3, 5),
    "dilation_rates": (1, 2),
}


def make_model(**overrides):
    tasks = [
        kmm.Task("label", Image(channels=1), ClassLabel(4)),
        kmm.Task("speech", Audio(num_mel_bins=16, max_length=8000), TEXT),
        kmm.Task("copy", TEXT, TEXT),
        kmm.Task("reverse", TEXT, TEXT, loss_weight=0.5),
    ]
    return kmm.MultiModel(tasks, **{**SMALL_BODY, **overrides})


@pytest.fixture(scope="module")
def shared_model():
    return make_model()


def make_batch(rng):
    text = rng.integers(2, 30, (3, 7)).astype("int32")
    text[0, 4:] = 0
    return {
        "image_to_class_label": {
            "inputs": rng.integers(0, 256, (2, 16, 16, 1)).astype("uint8"),
            "targets": np.array([1, 3], "int32"),
            "task_id": np.array([0, 0], "int32"),
        },
        "audio_to_text": {
            "inputs": {
                "waveform": rng.normal(size=(2, 4000)).astype("float32"),
                "length": np.array([4000, 2500], "int32"),
            },
            "targets": np.array([[5, 6, 1, 0], [7, 1, 0, 0]], "int32"),
            "task_id": np.array([1, 1], "int32"),
        },
        "text_to_text": {
            "inputs": text,
            "targets": text[:, ::-1].copy(),
            "task_id": np.array([2, 3, 3], "int32"),
        },
    }


def numpy_outputs(outputs):
    """`call`'s logits per group as numpy (without the MoE's terms)."""
    return {group: to_numpy(logits) for group, logits in outputs.items() if group != "moe"}


def test_forward_shapes_and_groups(rng):
    model = make_model()
    assert model.groups == {
        "image_to_class_label": ["label"],
        "audio_to_text": ["speech"],
        "text_to_text": ["copy", "reverse"],
    }
    outputs = model(make_batch(rng))
    assert tuple(outputs["image_to_class_label"].shape) == (2, 1, 4)
    assert tuple(outputs["audio_to_text"].shape) == (2, 4, 30)
    assert tuple(outputs["text_to_text"].shape) == (3, 7, 30)


def test_config_and_keras_file_round_trip_give_identical_outputs(rng, tmp_path):
    model = make_model(num_experts=2)
    batch = make_batch(rng)
    expected = numpy_outputs(model(batch))
    clone = kmm.MultiModel.from_config(model.get_config())
    assert clone.body_config == model.body_config
    assert [t.name for t in clone.tasks] == ["label", "speech", "copy", "reverse"]
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert restored.count_params() == model.count_params()
    for group, logits in numpy_outputs(restored(batch)).items():
        np.testing.assert_array_equal(logits, expected[group])
    np.testing.assert_array_equal(
        restored.generate("copy", batch["text_to_text"]["inputs"], max_length=6),
        model.generate("copy", batch["text_to_text"]["inputs"], max_length=6),
    )


def test_summary_lists_nets_and_body(capsys):
    make_model().summary()
    printed = capsys.readouterr().out
    for name in (
        "image",
        "audio",
        "text",
        "class_label",
        "command_embedding",
        "encoder",
        "io_mixer",
        "decoder",
    ):
        assert name in printed


def test_presets_decode_to_sizes():
    assert kmm.models.PRESETS["paper"].hidden_size == 512
    assert kmm.models.PRESETS["paper"].num_experts == 240
    model = kmm.MultiModel([kmm.Task("t", TEXT, TEXT)], preset="base")
    assert model.encoder.moe.num_experts == 16
    assert len(model.decoder.blocks) == 4
    with pytest.raises(ValueError, match="Unknown preset 'huge'"):
        kmm.MultiModel([kmm.Task("t", TEXT, TEXT)], preset="huge")
    with pytest.raises(ValueError, match="unknown setting.*hidden_sise"):
        kmm.MultiModel([kmm.Task("t", TEXT, TEXT)], hidden_sise=3)


def test_saved_model_rebuilds_the_same_after_a_preset_is_edited(rng, tmp_path, monkeypatch):
    model = make_model(num_experts=2)
    batch = make_batch(rng)
    expected = numpy_outputs(model(batch))
    config = model.get_config()
    assert "preset" not in config  # every resolved size instead of a name
    assert config["body_config"] == model.body_config.to_dict()
    assert config["body_config"]["hidden_size"] == 32
    model.save(tmp_path / "model.keras")
    edited = dataclasses.replace(kmm.models.PRESETS["tiny"], hidden_size=48, num_experts=8)
    monkeypatch.setitem(kmm.models.PRESETS, "tiny", edited)
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert restored.body_config == model.body_config
    for group, logits in numpy_outputs(restored(batch)).items():
        np.testing.assert_array_equal(logits, expected[group])


def test_a_config_in_the_old_preset_format_still_loads():
    """Files saved before `body_config` stored "preset" plus overrides."""
    config = make_model().get_config()
    old = {k: v for k, v in config.items() if k != "body_config"}
    old.update(preset="tiny", hidden_size=32)
    clone = kmm.MultiModel.from_config(old)
    assert clone.body_config == kmm.models.BodyConfig.from_preset("tiny", hidden_size=32)


def test_model_code_does_not_import_the_data_package():
    code = (
        "import sys, keras_multimodel.models\n"
        "loaded = [m for m in sys.modules if m.startswith('keras_multimodel.data')]\n"
        "assert not loaded, loaded\n"
    )
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend()}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_loss_is_weighted_task_losses_plus_each_moe_loss_once(rng):
    model = make_model(moe_loss_coef=1.0)
    batch = make_batch(rng)
    outputs = model(batch, training=False)
    assert not model.losses  # the MoE's terms come in the outputs, not through add_loss
    # Each MoE call counted once: the encoder's and the decoder's MoE, once per
    # group, each by the definition cv²(importance) + cv²(load) of its routing.
    aux = []

    def balancing_loss(routing, valid, shape):
        importance, load = to_numpy(routing.importance), to_numpy(routing.load)
        aux.append(importance.var() / importance.mean() ** 2 + load.var() / load.mean() ** 2)

    with (
        model.encoder.moe.observe_routing(balancing_loss),
        model.decoder.moe.observe_routing(balancing_loss),
    ):
        model(batch, training=False)
    assert len(aux) == 2 * len(batch) and min(aux) > 0.0
    moe_loss = float(to_numpy(outputs["moe"]["loss"]))
    np.testing.assert_allclose(moe_loss, sum(aux), rtol=1e-4)  # moe_loss_coef=1
    total = float(to_numpy(model.compute_loss(batch, None, outputs, training=False)))

    # The same from numpy: per task, the token-mean loss over its examples.
    expected = moe_loss
    for group, logits in numpy_outputs(outputs).items():
        net = model.nets_of(model.groups[group][0])[1]
        tokens = to_numpy(net.target_tokens(batch[group]["targets"]))
        mask = tokens != 0 if net.is_sequence else np.ones_like(tokens, bool)
        losses = to_numpy(net.loss(tokens, logits)) * mask
        for name in model.groups[group]:
            rows = batch[group]["task_id"] == model.plan.task_index[name]
            task_loss = losses[rows].sum() / max(mask[rows].sum(), 1)
            expected += model.plan.task(name).loss_weight * task_loss
    np.testing.assert_allclose(total, expected, rtol=1e-5)

    model.compile(optimizer="adam")
    logs = model.evaluate(tf.data.Dataset.from_tensors(batch), verbose=0, return_dict=True)
    assert {"copy_loss", "reverse_loss", "label_accuracy", "speech_token_accuracy"} <= set(logs)
    np.testing.assert_allclose(logs["loss"], total, rtol=1e-4)
    np.testing.assert_allclose(logs["moe_loss"], moe_loss, rtol=1e-4)  # the MoE part of it


def test_decoder_is_causal_in_the_targets(rng):
    model = make_model()
    batch = make_batch(rng)
    sub_batch = {"text_to_text": batch["text_to_text"]}
    before = to_numpy(model(sub_batch)["text_to_text"])
    changed = {**sub_batch["text_to_text"], "targets": sub_batch["text_to_text"]["targets"].copy()}
    changed["targets"][:, 4:] = rng.integers(2, 30, changed["targets"][:, 4:].shape)
    after = to_numpy(model({"text_to_text": changed})["text_to_text"])
    np.testing.assert_allclose(before[:, :5], after[:, :5], atol=1e-5)  # position 4 sees < 4
    assert np.abs(before[:, 5:] - after[:, 5:]).max() > 1e-3


def test_input_padding_does_not_change_outputs(rng):
    model = make_model(eval_capacity_factor=None)
    sub_batch = make_batch(rng)["text_to_text"]
    padded = {**sub_batch, "inputs": np.pad(sub_batch["inputs"], [[0, 0], [0, 5]])}
    before = to_numpy(model({"text_to_text": sub_batch})["text_to_text"])
    after = to_numpy(model({"text_to_text": padded})["text_to_text"])
    np.testing.assert_allclose(before, after, atol=1e-5)


@pytest.mark.parametrize("sampler", ["greedy", "beam"])
def test_cached_generation_equals_recomputation(rng, sampler):
    model = make_model(decoder_layers=2)  # each decoder layer keeps its own caches
    batch = make_batch(rng)
    for task, inputs in (
        ("reverse", batch["text_to_text"]["inputs"]),
        ("speech", batch["audio_to_text"]["inputs"]),
    ):
        cached = model.generate(task, inputs, max_length=12, sampler=sampler, stop_at_end=False)
        recomputed = model.generate(
            task, inputs, max_length=12, sampler=sampler, use_cache=False, stop_at_end=False
        )
        assert cached.shape == (len(keras.tree.flatten(inputs)[-1]), 12)
        np.testing.assert_array_equal(cached, recomputed)
        assert cached.max() > 0


def test_cached_step_logits_equal_full_decoder(rng):
    """Greedy tokens fed back through a full teacher-forced call give the same argmax."""
    model = make_model(eval_capacity_factor=None, decoder_layers=2)
    inputs = make_batch(rng)["text_to_text"]["inputs"]
    tokens = model.generate("copy", inputs, max_length=8, stop_at_end=False)
    outputs = model(
        {
            "text_to_text": {
                "inputs": inputs,
                "targets": tokens,
                "task_id": np.full((3,), 2, "int32"),
            }
        }
    )
    full = np.argmax(to_numpy(outputs["text_to_text"]), axis=-1)
    real = np.cumprod(tokens != 0, axis=1).astype(bool)  # up to the first padding
    np.testing.assert_array_equal(full[real], tokens[real])


def test_generate_stops_at_the_end_token_and_pads(rng):
    """A model trained to answer every input with [5, 6, end] produces the end token
    at position 2; generate returns the ids before it and padding after it."""
    text = Text(vocab_size=10, max_length=8, end_token_id=1)
    model = kmm.MultiModel([kmm.Task("answer", text, text)], hidden_size=16, num_experts=2)
    inputs = rng.integers(2, 10, (64, 4)).astype("int32")
    targets = np.tile(np.array([[5, 6, 1]], "int32"), (64, 1))
    sub_batch = {"inputs": inputs, "targets": targets, "task_id": np.zeros(64, "int32")}
    batch = {"text_to_text": sub_batch}
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=60, verbose=0)
    raw = model.generate("answer", inputs[:4], max_length=6, stop_at_end=False)
    assert (raw[:, :3] == [5, 6, 1]).all(), raw  # the end token is really produced
    stopped = model.generate("answer", inputs[:4], max_length=6)
    assert (stopped[:, :2] == [5, 6]).all() and (stopped[:, 2:] == 0).all(), stopped


@pytest.mark.parametrize(
    "sampler", [keras_hub.samplers.TopKSampler(k=5), keras_hub.samplers.TopPSampler(p=0.9)]
)
def test_random_samplers_draw_new_samples_on_every_call(shared_model, rng, sampler):
    inputs = rng.integers(2, 30, (4, 6)).astype("int32")
    draws = [
        shared_model.generate("copy", inputs, max_length=10, sampler=sampler, stop_at_end=False)
        for _ in range(3)
    ]
    assert not np.array_equal(draws[0], draws[1]) or not np.array_equal(draws[1], draws[2])


def test_generate_labels_returns_class_ids(rng):
    labels = make_model().generate("label", rng.integers(0, 256, (5, 16, 16, 1)).astype("uint8"))
    assert labels.shape == (5,) and labels.dtype == np.int32
    assert ((labels >= 0) & (labels < 4)).all()


@pytest.mark.parametrize(
    "task, inputs, kwargs, message",
    [
        ("nope", np.zeros((1, 4), "int32"), {}, r"Unknown task 'nope'.*'label', 'speech'"),
        ("label", np.ones((2, 5), "int32"), {}, "takes images.*look like text"),
        ("label", np.zeros((2, 16, 16, 3), "uint8"), {}, r"\(batch, height, width, 1\)"),
        ("copy", np.zeros((2, 16, 16, 1), "uint8"), {}, "integer token ids.*looks like images"),
        ("copy", np.ones((2, 4), "float32"), {}, "integer token ids"),
        ("copy", np.ones((2, 40), "int32"), {}, "exceeds the configured maximum max_length=16"),
        ("copy", np.full((1, 4), 99, "int32"), {}, r"token ids in \[0, 30\)"),
        ("copy", np.ones((1, 4), "int32"), {"max_length": 17}, r"max_length.*\[1, 16\]"),
        ("copy", np.ones((1, 4), "int32"), {"sampler": "top_p"}, "unknown sampler"),
        ("speech", np.ones((1, 9000), "float32"), {}, "max_length=8000"),
        (
            "speech",
            {"waveform": np.ones((1, 90), "float32"), "length": np.array([91])},
            {},
            r"length.*\[1, 90\]",
        ),
    ],
)
def test_bad_generate_inputs_get_clear_errors(shared_model, task, inputs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        shared_model.generate(task, inputs, **kwargs)


def test_bad_batches_get_clear_errors(rng):
    model = make_model()
    with pytest.raises(ValueError, match="Unknown group 'image_to_text'"):
        model({"image_to_text": make_batch(rng)["image_to_class_label"]})
    with pytest.raises(ValueError, match="keys"):
        model({"text_to_text": {"inputs": np.ones((1, 3), "int32")}})
    with pytest.raises(ValueError, match="data.mixture"):
        model(np.ones((1, 3)))


def test_mixed_precision_forward_loss_and_generate(rng):
    model = make_model(dtype="mixed_bfloat16")
    batch = make_batch(rng)
    outputs = model(batch)
    assert keras.backend.standardize_dtype(outputs["text_to_text"].dtype) == "bfloat16"
    assert model.encoder.moe.gate_kernel.dtype == "float32"  # the router stays float32
    loss = float(to_numpy(model.compute_loss(batch, None, outputs)))
    assert np.isfinite(loss) and loss > 0
    tokens = model.generate("copy", batch["text_to_text"]["inputs"], max_length=5)
    assert tokens.shape == (3, 5)


def test_score_gives_teacher_forced_token_counts_accuracy_and_log_likelihood(rng):
    model = make_model()
    batch = make_batch(rng)
    sub_batch = batch["text_to_text"]
    rows = sub_batch["task_id"] == model.plan.task_index["reverse"]
    inputs, targets = sub_batch["inputs"][rows], sub_batch["targets"][rows]
    sums = model.score("reverse", inputs, targets)
    # The same from the model's teacher-forced logits, in numpy, without label smoothing.
    task_ids = np.full(len(targets), model.plan.task_index["reverse"], "int32")
    logits = to_numpy(
        model({"text_to_text": {"inputs": inputs, "targets": targets, "task_id": task_ids}})[
            "text_to_text"
        ]
    )
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    real = targets != 0
    picked = np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    assert int(sums["tokens"]) == real.sum()
    np.testing.assert_allclose(sums["log_likelihood"], picked[real].sum(), rtol=1e-4)
    assert int(sums["correct"]) == (logits.argmax(-1) == targets)[real].sum()
    # `examples`: only the first rows count; the others pad the batch.
    first = model.score("reverse", inputs, targets, examples=1)
    assert int(first["tokens"]) == real[0].sum()
    np.testing.assert_allclose(first["log_likelihood"], picked[0][real[0]].sum(), rtol=1e-4)
    with pytest.raises(ValueError, match=r"`examples` must be an int in \[1, "):
        model.score("reverse", inputs, targets, examples=0)
    images = batch["image_to_class_label"]["inputs"]
    labels = model.score("label", images, np.array([1, 3]))
    assert int(labels["tokens"]) == 2 and labels["log_likelihood"] < 0
    # A label batch padded with a second row: only the first row counts.
    first = model.score("label", images, np.array([1, 3]), examples=np.int64(1))
    task_ids = np.full(2, model.plan.task_index["label"], "int32")
    label_logits = to_numpy(
        model({"image_to_class_label": {"inputs": images, "targets": np.array([1, 3]),
                                        "task_id": task_ids}})["image_to_class_label"]
    )[:, 0]  # fmt: skip
    label_log_probs = label_logits - np.log(np.exp(label_logits).sum(-1, keepdims=True))
    assert int(first["tokens"]) == 1
    np.testing.assert_allclose(first["log_likelihood"], label_log_probs[0, 1], rtol=1e-4)
    with pytest.raises(ValueError, match="integer class or token ids"):
        model.score("label", batch["image_to_class_label"]["inputs"], np.array([1.0, 3.0]))
    for class_ids, message in (
        (np.array([1, 4]), r"class ids of shape \(batch,\) in \[0, 4\); .*ids in \[1, 4\]"),
        (np.array([[1], [3]]), r"class ids of shape \(batch,\) .*received shape \(2, 1\)"),
        (np.array([1, 2, 3]), "2 inputs but 3 targets; give one target per input"),
    ):
        with pytest.raises(ValueError, match=message):
            model.score("label", images, class_ids)
    with pytest.raises(ValueError, match=r"targets must be token ids in \[0, 30\)"):
        model.score("reverse", inputs, np.full_like(targets, 30))


def test_token_hits_is_argmax_accuracy_and_never_hits_an_out_of_range_id():
    from keras_multimodel.models.scoring import token_hits

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 16, 50)).astype("float32")  # no ties
    tokens = rng.integers(0, 50, (4, 16)).astype("int32")
    tokens[:, :4] = logits[:, :4].argmax(-1)  # some hits for certain
    expected = (logits.argmax(-1) == tokens).astype("float32")
    np.testing.assert_array_equal(to_numpy(token_hits(logits, tokens)), expected)
    assert expected.sum() >= 16
    # Out of range (even where the wrapped or clamped id would be the argmax): no hit, no error.
    logits[0, 0, 49] = logits[0, 0, 0] = 100.0
    bad = np.array([[-1, 50, 7]], "int32")
    np.testing.assert_array_equal(to_numpy(token_hits(logits[:1, :3], bad)), [[0.0, 0.0, 0.0]])


@pytest.mark.backends("torch", reason="the torch backend's error")
def test_export_on_torch_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="written from the TensorFlow or JAX backend"):
        make_model().export(tmp_path / "served")


@pytest.mark.parametrize(
    "ablation", [{"use_moe": False}, {"use_attention": False}], ids=["no_moe", "no_attention"]
)
def test_ablated_bodies_keep_masking_caching_and_their_losses(rng, ablation):
    """The paper's ablations: without the MoE there is no balancing loss; without
    attention the decoder still sees the (masked) inputs; cached decoding equals
    recomputation and input padding changes nothing in both."""
    model = make_model(eval_capacity_factor=None, decoder_layers=2, **ablation)
    batch = make_batch(rng)
    outputs = model(batch, training=False)
    assert ("moe" in outputs) == ("use_moe" not in ablation)  # no MoE, no balancing loss
    sub_batch = batch["text_to_text"]
    padded = {**sub_batch, "inputs": np.pad(sub_batch["inputs"], [[0, 0], [0, 5]])}
    before = to_numpy(model({"text_to_text": sub_batch})["text_to_text"])
    np.testing.assert_allclose(before, to_numpy(outputs["text_to_text"]), atol=1e-5)
    after = to_numpy(model({"text_to_text": padded})["text_to_text"])
    np.testing.assert_allclose(before, after, atol=1e-5)
    other = {**sub_batch, "inputs": sub_batch["inputs"][::-1].copy()}
    changed = to_numpy(model({"text_to_text": other})["text_to_text"])
    assert np.abs(changed - before).max() > 1e-4  # the outputs depend on the inputs
    inputs = sub_batch["inputs"]
    cached = model.generate("copy", inputs, max_length=10, stop_at_end=False)
    recomputed = model.generate("copy", inputs, max_length=10, use_cache=False, stop_at_end=False)
    np.testing.assert_array_equal(cached, recomputed)
    config = model.get_config()
    assert (
        keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(model)
        ).body_config
        == model.body_config
    ), config
