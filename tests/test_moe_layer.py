import keras
import numpy as np
import pytest
from conftest import compile_fn, to_numpy
from keras import ops
from keras.src import testing

from keras_multimodel.layers import ConvBlock, MoELayer, moe_routing


class MoELayerTest(testing.TestCase):
    def test_layer_basics(self):
        self.run_layer_test(
            MoELayer,
            init_kwargs={"num_experts": 4, "hidden_dim": 16, "top_k": 2, "dropout": 0.1},
            input_shape=(2, 6, 8),
            expected_output_shape=(2, 6, 8),
            # gate, noise, 2 expert kernels, 2 expert biases, LayerNorm gamma + beta
            expected_num_trainable_weights=8,
            expected_num_non_trainable_weights=1,  # dropped_fraction
            expected_num_seed_generators=2,  # gating noise, dropout
            expected_num_losses=1,
            supports_masking=True,
        )


def build_moe(channels=8, **kwargs):
    moe = MoELayer(**{"num_experts": 4, "hidden_dim": 16, **kwargs})
    moe.build((None, None, channels))
    return moe


def reference_mixture(moe, x, routing):
    """Every expert on every token, combined with the routing's gates (numpy)."""
    w1, b1 = to_numpy(moe.expert_kernel_in), to_numpy(moe.expert_bias_in)
    w2, b2 = to_numpy(moe.expert_kernel_out), to_numpy(moe.expert_bias_out)
    tokens = x.reshape(-1, x.shape[-1])
    outputs = np.einsum(
        "enh,ehd->end", np.maximum(np.einsum("nd,edh->enh", tokens, w1) + b1[:, None], 0), w2
    )
    outputs = outputs + b2[:, None]  # (E, N, d)
    gates, experts = to_numpy(routing.gates), to_numpy(routing.experts)
    mixture = np.zeros_like(tokens)
    for n in range(tokens.shape[0]):
        for j in range(experts.shape[1]):
            mixture[n] += gates[n, j] * outputs[experts[n, j], n]
    return mixture.reshape(x.shape)


def mixture_of(moe, x, mask=None, training=False):
    """The MoE branch alone (no residual + LayerNorm), with its routing and dispatch."""
    tokens = ops.reshape(x, (-1, x.shape[-1]))
    mixture, routing, plan = moe.mixture(tokens, moe._valid(tokens, mask), training)
    return to_numpy(mixture).reshape(x.shape), routing, plan, plan.capacity


def randomize_gates(moe, rng, scale=1.0):
    moe.gate_kernel.assign(scale * rng.normal(size=moe.gate_kernel.shape).astype("float32"))


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_sparse_dispatch_equals_dense_reference_without_drops(rng, top_k):
    moe = build_moe(num_experts=5, top_k=top_k, eval_capacity_factor=None)
    randomize_gates(moe, rng)
    x = rng.normal(size=(3, 7, 8)).astype("float32")
    mixture, routing, plan, _ = mixture_of(moe, x)
    np.testing.assert_allclose(mixture, reference_mixture(moe, x, routing), atol=1e-4)
    assert float(to_numpy(plan.dropped_fraction)) == 0.0
    # And the full layer is LayerNorm(x + mixture).
    expected = to_numpy(moe.norm(x + mixture))
    np.testing.assert_allclose(to_numpy(moe(x)), expected, atol=1e-4)


def test_each_real_token_gets_k_distinct_experts_or_is_counted_dropped(rng):
    moe = build_moe(num_experts=4, top_k=2, capacity_factor=0.5)
    randomize_gates(moe, rng, scale=3.0)
    x = rng.normal(size=(4, 16, 8)).astype("float32")
    mask = np.ones((4, 16), bool)
    mask[1, 10:] = False
    mask[3, 3:] = False
    _, routing, plan, capacity = mixture_of(moe, x, mask, training=True)
    experts = to_numpy(routing.experts)  # (N, k)
    valid = mask.reshape(-1)
    assert all(len(set(row)) == 2 for row in experts[valid])
    kept = to_numpy(plan.kept).reshape(2, -1).T  # (N, k)
    slots = to_numpy(plan.slots).reshape(2, -1).T
    assert not kept[~valid].any(), "padding must not be routed"
    # Kept assignments own distinct slots inside their expert's capacity.
    kept_slots = slots[kept]
    assert len(set(kept_slots.tolist())) == kept.sum()
    np.testing.assert_array_equal(kept_slots // capacity, experts[kept])
    per_expert = np.bincount(experts[kept], minlength=4)
    assert per_expert.max() <= capacity
    dropped = valid.sum() * 2 - kept.sum()
    assert dropped > 0, "this setting is chosen to overflow"
    np.testing.assert_allclose(float(to_numpy(plan.dropped_fraction)), dropped / (valid.sum() * 2))
    # First choices are served before second choices.
    first_kept, second_kept = kept[valid, 0].mean(), kept[valid, 1].mean()
    assert first_kept >= second_kept


def test_dropped_tokens_pass_through_the_residual(rng):
    moe = build_moe(num_experts=2, top_k=1, capacity_factor=0.01)  # one slot per expert
    randomize_gates(moe, rng)
    x = rng.normal(size=(1, 12, 8)).astype("float32")
    mixture, _, plan, capacity = mixture_of(moe, x, training=True)
    assert capacity == 1
    kept = to_numpy(plan.kept)[0]  # (k * N,) of the one routing group
    assert kept.sum() <= 2
    np.testing.assert_allclose(mixture[0][~kept], 0.0)
    # The layer reports what it dropped.
    moe(x, training=True)
    assert float(to_numpy(moe.dropped_fraction)) >= 10 / 12 - 1e-6


def test_zero_drops_when_capacity_covers_all_tokens(rng):
    x = rng.normal(size=(4, 8, 8)).astype("float32")
    for kwargs in ({"capacity_factor": None}, {"capacity_factor": 4 / 2}):  # cf = E / k
        moe = build_moe(num_experts=4, top_k=2, **kwargs)
        moe.gate_kernel.assign(np.tile([[5.0, 4.0, 0.0, 0.0]], (8, 1)).astype("float32"))
        moe(x, training=True)  # every token picks experts 0 and 1: fully collapsed
        assert float(to_numpy(moe.dropped_fraction)) == 0.0
    moe = build_moe(num_experts=4, top_k=2, eval_capacity_factor=None)
    moe.gate_kernel.assign(np.tile([[5.0, 4.0, 0.0, 0.0]], (8, 1)).astype("float32"))
    moe(x)
    assert float(to_numpy(moe.dropped_fraction)) == 0.0


def test_padding_is_neither_routed_nor_counted(rng):
    # Training capacity; no gating noise, so both calls route identically.
    moe = build_moe(num_experts=4, top_k=2, capacity_factor=1.0, noisy_gating=False)
    randomize_gates(moe, rng)
    x = rng.normal(size=(2, 10, 8)).astype("float32")
    mask = np.ones((2, 10), bool)
    mask[0, 6:] = False
    garbage = np.where(mask[..., None], x, 30 * rng.normal(size=x.shape)).astype("float32")
    call = compile_fn(lambda v: moe(v, mask=mask, training=True))
    clean, dirty = to_numpy(call(x)), to_numpy(call(garbage))
    np.testing.assert_allclose(clean[mask], dirty[mask], atol=1e-5)
    routing = moe.route(x, mask=mask)
    gates = to_numpy(routing.gates).reshape(2, 10, 2)
    np.testing.assert_allclose(gates[~mask], 0.0)
    np.testing.assert_allclose(to_numpy(routing.load).sum(), mask.sum() * 2)
    np.testing.assert_allclose(to_numpy(routing.importance).sum(), mask.sum(), rtol=1e-5)


def test_aux_loss_is_small_when_balanced_and_large_when_collapsed():
    num_tokens, num_experts = 64, 8
    valid = ops.ones((num_tokens,))
    balanced = np.full((num_tokens, num_experts), -5.0, "float32")
    balanced[np.arange(num_tokens), np.arange(num_tokens) % num_experts] = 5.0
    balanced[np.arange(num_tokens), (np.arange(num_tokens) + 1) % num_experts] = 4.0
    collapsed = np.tile(np.array([[5.0, 4.0] + [-5.0] * 6], "float32"), (num_tokens, 1))
    zeros = np.zeros_like(balanced)
    noise = np.random.default_rng(0).normal(size=balanced.shape).astype("float32")
    balanced, collapsed, zeros, noise = (
        ops.convert_to_tensor(a) for a in (balanced, collapsed, zeros, noise)
    )
    for with_noise in (None, noise):
        low = moe_routing.noisy_top_k_routing(balanced, zeros, valid, 2, noise=with_noise)
        high = moe_routing.noisy_top_k_routing(collapsed, zeros, valid, 2, noise=with_noise)
        assert float(to_numpy(low.aux_loss)) < 0.05
        assert float(to_numpy(high.aux_loss)) > 3.0


def test_aux_loss_matches_its_definition(rng):
    moe = build_moe(num_experts=4, top_k=2, loss_coef=0.5)
    randomize_gates(moe, rng)
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    moe(x)
    routing = moe.route(x)
    importance, load = to_numpy(routing.importance), to_numpy(routing.load)
    cv2 = lambda v: v.var() / v.mean() ** 2  # noqa: E731
    expected = 0.5 * (cv2(importance) + cv2(load))
    np.testing.assert_allclose(float(to_numpy(moe.losses[0])), expected, rtol=1e-4)
    # Returned instead of added: the same loss and outputs, nothing in `losses`.
    outputs, terms = moe(x, return_terms=True)
    assert not moe.losses
    np.testing.assert_allclose(float(to_numpy(terms["loss"])), expected, rtol=1e-4)
    np.testing.assert_allclose(to_numpy(outputs), to_numpy(moe(x)), atol=1e-6)
    assert float(to_numpy(terms["dropped_fraction"])) == float(to_numpy(moe.dropped_fraction))


def aux_model(**moe_kwargs):
    """A model that calls one MoE twice and another once: three aux losses a step."""
    shared = MoELayer(4, 16, noisy_gating=False, loss_coef=1.0, name="shared", **moe_kwargs)
    other = MoELayer(4, 16, noisy_gating=False, loss_coef=1.0, name="other", **moe_kwargs)
    inputs = keras.Input((6, 8))
    x = shared(inputs)
    x = ConvBlock(8, kernel_sizes=(3,), dilation_rates=(1,))(x)
    x = shared(x)
    outputs = keras.layers.Dense(1)(other(x))
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(
    "jit_compile",
    [
        False,
        pytest.param(
            True,
            marks=pytest.mark.backends(
                "tensorflow", "jax", reason="compiled steps; torch's is the large case below"
            ),
        ),
        pytest.param(
            True,
            id="torch_compile",
            marks=[
                pytest.mark.large,
                pytest.mark.backends("torch", reason="torch.compile of the model takes minutes"),
            ],
        ),
    ],
)
@pytest.mark.xfail(
    keras.backend.backend() == "jax",
    strict=True,  # passes, and so fails, once Keras counts every call: update MoELayer's docs
    reason="Keras's JAX `fit` keeps only the last `add_loss` of a layer called twice in "
    "one forward pass (under `stateless_call` each call is the outermost and clears the "
    "layer's earlier losses; keras-team/keras#21605 and #22395 fixed the error this "
    "raised, not the drop). MultiModel collects the MoE's terms with return_terms=True.",
)
def test_aux_loss_counted_exactly_once_per_call_in_fit(rng, jit_compile):
    model = aux_model()
    for layer in (model.get_layer("shared"), model.get_layer("other")):
        randomize_gates(layer, rng, scale=2.0)
    x = rng.normal(size=(16, 6, 8)).astype("float32")
    y = rng.normal(size=(16, 6, 1)).astype("float32")
    predictions = model(x, training=True)
    assert len(model.losses) == 3
    aux = sum(float(to_numpy(loss)) for loss in model.losses)
    assert aux > 0.01
    mse = float(np.mean((to_numpy(predictions) - y) ** 2))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", jit_compile=jit_compile)
    history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"], [mse + aux] * 2, rtol=1e-4)
    evaluated = model.evaluate(x, y, batch_size=16, verbose=0)
    model(x)  # inference capacity; no noise anyway
    eval_aux = sum(float(to_numpy(loss)) for loss in model.losses)
    np.testing.assert_allclose(
        evaluated, np.mean((to_numpy(model(x)) - y) ** 2) + eval_aux, rtol=1e-4
    )


class SharedMoE(keras.Model):
    """One MoE called twice, its terms collected explicitly (`return_terms=True`)."""

    def __init__(self):
        super().__init__()
        self.moe = MoELayer(4, 16, noisy_gating=False, loss_coef=1.0, name="shared")
        self.dense = keras.layers.Dense(1)

    def call(self, x, training=None):
        x, first = self.moe(x, training=training, return_terms=True)
        x, second = self.moe(x, training=training, return_terms=True)
        return {"y": self.dense(x), "aux": first["loss"] + second["loss"]}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return ops.mean(ops.square(y_pred["y"] - y)) + y_pred["aux"]


def test_returned_terms_count_every_call_of_a_shared_moe_in_fit(rng):
    """The path `add_loss` miscounts on JAX (above) counts both calls on every backend."""
    model = SharedMoE()
    x = rng.normal(size=(16, 6, 8)).astype("float32")
    y = rng.normal(size=(16, 6, 1)).astype("float32")
    model(x)
    randomize_gates(model.moe, rng, scale=2.0)
    outputs = model(x, training=True)
    expected = float(np.mean((to_numpy(outputs["y"]) - y) ** 2) + to_numpy(outputs["aux"]))
    assert float(to_numpy(outputs["aux"])) > 0.01
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    history = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"], [expected], rtol=1e-4)
    # Symbolic calls (functional models) return the pair too.
    symbolic, terms = model.moe(keras.Input((6, 8)), return_terms=True)
    assert tuple(symbolic.shape) == (None, 6, 8) and sorted(terms) == ["dropped_fraction", "loss"]


def test_gradients_reach_the_gate_and_noise_weights(rng):
    moe = MoELayer(4, 16, top_k=2, name="moe")
    inputs = keras.Input((6, 8))
    model = keras.Model(inputs, keras.layers.Dense(1)(moe(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")  # compiled where Keras does
    x = rng.normal(size=(32, 6, 8)).astype("float32")
    y = rng.normal(size=(32, 6, 1)).astype("float32")
    assert np.all(to_numpy(moe.gate_kernel) == 0) and np.all(to_numpy(moe.noise_kernel) == 0)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert np.abs(to_numpy(moe.gate_kernel)).max() > 0
    assert np.abs(to_numpy(moe.noise_kernel)).max() > 0


def test_functional_model_with_unknown_batch_and_length_saves_and_loads(rng, tmp_path):
    inputs = keras.Input((None, 8))
    x = ConvBlock(8, name="conv")(inputs)
    outputs = MoELayer(4, 16, name="moe")(x)
    model = keras.Model(inputs, outputs)
    assert model.output_shape == (None, None, 8)
    randomize_gates(model.get_layer("moe"), rng)
    data = rng.normal(size=(3, 9, 8)).astype("float32")
    path = tmp_path / "moe.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(model(data)), to_numpy(loaded(data)), atol=1e-6)
    config = model.get_layer("moe").get_config()
    assert MoELayer.from_config(config).get_config() == config


def test_mixed_bfloat16_policy(rng):
    keras.config.set_dtype_policy("mixed_bfloat16")
    moe = MoELayer(4, 16)
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    y = moe(x, training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    assert moe.gate_kernel.dtype == "float32"
    assert keras.backend.standardize_dtype(moe.losses[0].dtype) == "float32"
    assert np.isfinite(to_numpy(ops.cast(y, "float32"))).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_experts": 4, "hidden_dim": 8, "top_k": 5}, "top_k"),
        ({"num_experts": 0, "hidden_dim": 8}, "num_experts"),
        ({"num_experts": 4, "hidden_dim": -1}, "hidden_dim"),
        ({"num_experts": 4, "hidden_dim": 8, "capacity_factor": 0}, "capacity_factor"),
        ({"num_experts": 4, "hidden_dim": 8, "eval_capacity_factor": "x"}, "eval_capacity_factor"),
        ({"num_experts": 4, "hidden_dim": 8, "loss_coef": -1}, "loss_coef"),
        ({"num_experts": 4, "hidden_dim": 8, "num_groups": 0}, "num_groups"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MoELayer(**kwargs)


def test_wrong_rank_is_a_clear_error():
    with pytest.raises(ValueError, match="rank 2 or 3"):
        MoELayer(4, 8)(np.zeros((2, 3, 4, 8), "float32"))


def test_tokens_as_rank_two_input(rng):
    moe = MoELayer(4, 16, eval_capacity_factor=None)
    x = rng.normal(size=(10, 8)).astype("float32")
    assert tuple(moe(x).shape) == (10, 8)
    np.testing.assert_allclose(to_numpy(moe(x)), to_numpy(moe(x[None]))[0], atol=1e-5)


def test_expert_initializers_apply_per_expert():
    moe = build_moe(num_experts=3, kernel_initializer=keras.initializers.Constant(0.5))
    np.testing.assert_allclose(to_numpy(moe.expert_kernel_in), 0.5)
    # Default: Glorot uniform over one expert's fans, not the stacked tensor's.
    moe = build_moe(channels=64, num_experts=16, hidden_dim=64)
    limit = np.sqrt(6.0 / (64 + 64))
    kernel = to_numpy(moe.expert_kernel_in)
    assert np.abs(kernel).max() <= limit + 1e-6
    assert np.abs(kernel).max() > 0.9 * limit


@pytest.mark.parametrize("tokens", [1, 3, 40])
def test_step_equals_the_no_drop_mixture_for_few_and_many_tokens(rng, tokens):
    # 1 and 3 tokens x k=2 < 8 experts take the gathered-weights path; 40 dispatch.
    moe = build_moe(num_experts=8)
    moe.gate_kernel.assign(rng.normal(size=(8, 8)).astype("float32"))  # distinct choices
    x = rng.normal(size=(tokens, 8)).astype("float32")
    mask = np.ones(tokens, bool)
    mask[-1] = tokens == 1
    expected, _, _ = moe.mixture(x, mask.astype("float32"), no_drops=True)
    expected = moe.norm(x + to_numpy(expected))
    np.testing.assert_allclose(to_numpy(moe.step(x, mask)), to_numpy(expected), atol=1e-5)
    compiled = compile_fn(lambda x: moe.step(x))
    np.testing.assert_allclose(to_numpy(compiled(x)), to_numpy(moe.step(x)), atol=1e-5)


def test_each_routing_group_is_routed_on_its_own(rng):
    """Two groups compute what two calls on the halves compute: each its own
    capacity, drops and balancing loss (the layer's loss is their mean)."""
    settings = {"num_experts": 4, "top_k": 2, "eval_capacity_factor": 0.5}
    grouped = build_moe(num_groups=2, **settings)
    randomize_gates(grouped, rng)
    x = rng.normal(size=(4, 6, 8)).astype("float32")
    together = to_numpy(grouped(x))
    loss, dropped = float(to_numpy(grouped.losses[0])), float(to_numpy(grouped.dropped_fraction))
    halves, losses, drops = [], [], []
    grouped.num_groups = 1
    for half in (x[:2], x[2:]):
        halves.append(to_numpy(grouped(half)))
        losses.append(float(to_numpy(grouped.losses[0])))
        drops.append(float(to_numpy(grouped.dropped_fraction)))
    np.testing.assert_allclose(together, np.concatenate(halves), atol=1e-5)
    np.testing.assert_allclose(loss, np.mean(losses), rtol=1e-5)
    np.testing.assert_allclose(dropped, np.mean(drops), rtol=1e-5)
    assert dropped > 0.1  # capacity bites, so the grouping matters:
    assert np.abs(to_numpy(grouped(x)) - together).max() > 1e-3  # one group of 24 tokens


def test_a_training_batch_that_does_not_split_into_the_groups_is_a_clear_error(rng):
    moe = build_moe(num_groups=4, eval_capacity_factor=None)
    x = rng.normal(size=(3, 4, 8)).astype("float32")  # 12 tokens, but 3 sequences
    with pytest.raises(ValueError, match="a batch of 3 does not split into 4 routing groups"):
        moe(x, training=True)
    # Outside training (evaluation, generate, serving) such a batch is one group.
    moe.num_groups = 1
    one_group = to_numpy(moe(x))
    moe.num_groups = 4
    np.testing.assert_allclose(to_numpy(moe(x)), one_group, atol=1e-6)
    assert build_moe(num_groups=4).get_config()["num_groups"] == 4
