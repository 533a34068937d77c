import keras
import numpy as np
import pytest
from conftest import assert_causal, compile_fn, to_numpy
from keras import ops
from keras.src import testing

from keras_multimodel.layers import AttentionBlock, timing_signal


class AttentionBlockLayerTest(testing.TestCase):
    def test_layer_basics(self):
        # query/key/value/output kernels (bias-free, as in tensor2tensor), LayerNorm.
        self.run_layer_test(
            AttentionBlock,
            init_kwargs={"num_heads": 2, "causal": True, "dropout": 0.1},
            input_shape=(2, 5, 8),
            expected_output_shape=(2, 5, 8),
            expected_num_trainable_weights=6,
            supports_masking=True,
        )


def test_timing_signal_matches_the_sinusoid_formula():
    signal = to_numpy(timing_signal(ops.arange(6), 8))
    inv = np.exp(np.arange(4) * -np.log(1e4) / 3)
    expected = np.concatenate(
        [np.sin(np.arange(6)[:, None] * inv), np.cos(np.arange(6)[:, None] * inv)], 1
    )
    np.testing.assert_allclose(signal, expected, atol=1e-5)
    assert to_numpy(timing_signal(ops.arange(3), 7)).shape == (3, 7)


@pytest.mark.parametrize("t", [0, 3, 8])
def test_causal_self_attention_ignores_the_future(rng, t):
    block = AttentionBlock(num_heads=2, causal=True)
    x = rng.normal(size=(2, 10, 8)).astype("float32")
    assert_causal(compile_fn(lambda v: block(v)), x, t, rng)


def test_padded_keys_get_no_weight(rng):
    block = AttentionBlock(num_heads=2)
    x = rng.normal(size=(2, 6, 8)).astype("float32")
    context = rng.normal(size=(2, 9, 4)).astype("float32")
    context_mask = np.ones((2, 9), bool)
    context_mask[0, 5:] = False
    garbage = np.where(context_mask[..., None], context, 50.0).astype("float32")
    call = compile_fn(lambda c: block(x, context=c, context_mask=context_mask))
    np.testing.assert_allclose(to_numpy(call(context)), to_numpy(call(garbage)), atol=1e-5)
    # Self-attention: the mask hides padded keys from real queries.
    self_block = AttentionBlock(num_heads=2)
    mask = context_mask[:, :6]
    mask[1, 2:] = False
    dirty = np.where(mask[..., None], x, -7.0).astype("float32")
    clean_out = to_numpy(self_block(x, mask=mask))
    dirty_out = to_numpy(self_block(dirty, mask=mask))
    np.testing.assert_allclose(clean_out[mask], dirty_out[mask], atol=1e-5)


def test_self_attention_cache_equals_full_recomputation(rng):
    block = AttentionBlock(num_heads=2, causal=True)
    x = rng.normal(size=(2, 12, 8)).astype("float32")
    full = to_numpy(block(x))
    traces = []

    def step(x_t, cache, index):
        traces.append(1)
        return block.step(x_t, cache, index)

    step = compile_fn(step)
    cache = block.init_cache(2, max_length=16)
    outputs = []
    for t in range(12):
        y, cache = step(x[:, t : t + 1], cache, ops.convert_to_tensor(t, "int32"))
        outputs.append(to_numpy(y))
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), full, atol=1e-5)
    if keras.backend.backend() != "torch":  # torch runs eagerly: nothing is compiled
        assert len(traces) == 1, "one compiled step must serve every position"
    assert tuple(cache["key"].shape) == (2, 16, 2, 4)


def test_cross_attention_cache_equals_full_recomputation(rng):
    block = AttentionBlock(num_heads=2)
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    context = rng.normal(size=(2, 7, 6)).astype("float32")
    context_mask = np.array([[1] * 7, [1] * 4 + [0] * 3], bool)
    full = to_numpy(block(x, context=context, context_mask=context_mask))
    cache = block.init_cache(2, max_length=5, context=context)
    for t in range(5):
        y, cache = block.step(x[:, t : t + 1], cache, t, context_mask=context_mask)
        np.testing.assert_allclose(to_numpy(y)[:, 0], full[:, t], atol=1e-5)


def test_cross_attention_survives_keras_save_and_load(rng, tmp_path):
    x_in, c_in = keras.Input((None, 8)), keras.Input((None, 6))
    out = AttentionBlock(num_heads=2, name="cross")(x_in, context=c_in)
    out = AttentionBlock(num_heads=2, causal=True)(out)
    model = keras.Model([x_in, c_in], out)
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    c = rng.normal(size=(2, 3, 6)).astype("float32")
    path = tmp_path / "attention.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(model([x, c])), to_numpy(loaded([x, c])), atol=1e-6)
    assert loaded.get_layer("cross").get_config() == model.get_layer("cross").get_config()


def test_misuse_is_a_clear_error(rng):
    x = rng.normal(size=(2, 4, 8)).astype("float32")
    with pytest.raises(ValueError, match="causal=True` applies to self-attention"):
        AttentionBlock(2, causal=True)(x, context=x)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        AttentionBlock(3)(x)
    with pytest.raises(ValueError, match="num_heads"):
        AttentionBlock(0)
    with pytest.raises(ValueError, match="needs a causal"):
        block = AttentionBlock(2)
        block(x)
        block.init_cache(2, 4)
    with pytest.raises(ValueError, match="rank 3"):
        AttentionBlock(2)(x[0])
    cross = AttentionBlock(2)
    cross(x, context=x)
    with pytest.raises(ValueError, match="pass `context`"):
        cross(x)
