import keras
import numpy as np
import pytest
from conftest import assert_causal, compile_fn, gradients, to_numpy
from keras import ops
from keras.src import testing

from keras_multimodel.layers import ConvBlock
from keras_multimodel.layers.separable_conv import depthwise_conv1d, depthwise_conv2d

SMALL = {"filters": 8, "kernel_sizes": (3, 3, 5), "dilation_rates": (1, 2, 2)}


class ConvBlockLayerTest(testing.TestCase):
    def test_layer_basics(self):
        # Per step: depthwise + pointwise kernels, LayerNorm gamma + beta.
        self.run_layer_test(
            ConvBlock,
            init_kwargs={**SMALL, "causal": True, "dropout": 0.1},
            input_shape=(2, 7, 8),
            expected_output_shape=(2, 7, 8),
            expected_num_trainable_weights=3 * 4,
            expected_num_non_trainable_weights=0,
            supports_masking=True,
        )

    def test_projection_when_channels_change(self):
        self.run_layer_test(
            ConvBlock,
            init_kwargs=SMALL,
            input_shape=(2, 7, 5),
            expected_output_shape=(2, 7, 8),
            expected_num_trainable_weights=3 * 4 + 1,
            supports_masking=True,
        )


def test_defaults_are_the_papers_block():
    block = ConvBlock(16)
    assert block.kernel_sizes == (3, 3, 15, 15)
    assert block.dilation_rates == (1, 1, 1, 8)
    assert block.receptive_fields == (2, 2, 14, 112)


@pytest.mark.parametrize("t", [0, 5, 12])
def test_causal_outputs_ignore_the_future(rng, t):
    block = ConvBlock(8, causal=True)  # the paper's kernels: receptive field 130
    x = rng.normal(size=(2, 20, 8)).astype("float32")
    assert_causal(compile_fn(lambda v: block(v)), x, t, rng)


def test_same_padding_sees_the_future(rng):
    block = ConvBlock(8, kernel_sizes=(3, 3), dilation_rates=(1, 1))
    x = rng.normal(size=(1, 10, 8)).astype("float32")
    changed = x.copy()
    changed[:, 6] += 1.0
    diff = np.abs(to_numpy(block(x)) - to_numpy(block(changed)))[0].max(axis=-1)
    assert diff[5] > 1e-3  # position 5 sees position 6 through "same" padding
    assert diff[:2].max() < 1e-6  # two kernel-3 steps reach 2 positions back only


@pytest.mark.parametrize("causal", [False, True])
def test_padding_never_leaks_into_real_positions(rng, causal):
    block = ConvBlock(8, causal=causal)
    x = rng.normal(size=(2, 12, 8)).astype("float32")
    mask = np.ones((2, 12), bool)
    mask[0, 9:] = False
    mask[1, 4:] = False
    garbage = np.where(mask[..., None], x, 100.0 * rng.normal(size=x.shape)).astype("float32")
    call = compile_fn(lambda v, m: block(v, mask=m))
    clean, dirty = to_numpy(call(x, mask)), to_numpy(call(garbage, mask))
    np.testing.assert_allclose(clean[mask], dirty[mask], atol=1e-5)


def test_mask_passes_through_in_a_functional_model():
    inputs = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(10, 8, mask_zero=True)(inputs)
    outputs = ConvBlock(8)(embedded)
    model = keras.Model(inputs, outputs)
    assert model.output_shape == (None, None, 8)
    assert outputs._keras_mask is not None


def test_cached_steps_equal_full_recomputation(rng):
    block = ConvBlock(8, causal=True, kernel_sizes=(3, 3, 15, 15), dilation_rates=(1, 1, 1, 8))
    x = rng.normal(size=(3, 24, 8)).astype("float32")
    full = to_numpy(block(x))
    step = compile_fn(block.step)
    cache = block.init_cache(3)
    outputs = []
    for t in range(x.shape[1]):
        y, cache = step(x[:, t : t + 1], cache)
        outputs.append(to_numpy(y))
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), full, atol=1e-4)
    assert [tuple(c.shape) for c in cache] == [(3, 2, 8), (3, 2, 8), (3, 14, 8), (3, 112, 8)]


def test_step_needs_a_causal_built_block():
    with pytest.raises(ValueError, match="causal=True"):
        ConvBlock(8).init_cache(2)
    with pytest.raises(ValueError, match="built"):
        ConvBlock(8, causal=True).init_cache(2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"filters": 0}, "filters"),
        ({"filters": 8, "kernel_sizes": (3, 3), "dilation_rates": (1,)}, "one entry per conv"),
        ({"filters": 8, "dropout": 1.5}, "dropout"),
        ({"filters": 8, "kernel_sizes": ()}, "kernel_sizes"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConvBlock(**kwargs)


def test_wrong_rank_is_a_clear_error():
    with pytest.raises(ValueError, match=r"rank 3.*\(batch, length, channels\)"):
        ConvBlock(8)(np.zeros((2, 4, 4, 8), "float32"))


@pytest.mark.parametrize("kernel_size, dilation", [(1, 1), (3, 1), (15, 8), (4, 2)])
def test_depthwise_conv_and_its_gradient_match_the_backend_convolution(rng, kernel_size, dilation):
    x = rng.normal(size=(2, 7 + (kernel_size - 1) * dilation, 5)).astype("float32")
    kernel = rng.normal(size=(kernel_size, 5)).astype("float32")
    weights = ops.convert_to_tensor(rng.normal(size=(2, 7, 5)).astype("float32"))

    def ours(x, kernel):
        return ops.sum(depthwise_conv1d(x, kernel, dilation) * weights)

    def reference(x, kernel):
        y = ops.depthwise_conv(x, kernel[:, :, None], padding="valid", dilation_rate=dilation)
        return ops.sum(y * weights)

    np.testing.assert_allclose(to_numpy(ours(x, kernel)), to_numpy(reference(x, kernel)), rtol=1e-5)
    for got, expected in zip(
        gradients(ours, x, kernel), gradients(reference, x, kernel), strict=True
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel_size", [3, 4])
def test_depthwise_conv2d_and_its_gradient_match_the_backend_convolution(rng, kernel_size):
    x = rng.normal(size=(2, 6, 5, 3)).astype("float32")
    kernel = rng.normal(size=(kernel_size, kernel_size, 3)).astype("float32")
    weights = ops.convert_to_tensor(rng.normal(size=(2, 6, 5, 3)).astype("float32"))

    def ours(x, kernel):
        return ops.sum(depthwise_conv2d(x, kernel) * weights)

    def reference(x, kernel):
        return ops.sum(ops.depthwise_conv(x, kernel[..., None], padding="same") * weights)

    np.testing.assert_allclose(to_numpy(ours(x, kernel)), to_numpy(reference(x, kernel)), rtol=1e-5)
    for got, expected in zip(
        gradients(ours, x, kernel), gradients(reference, x, kernel), strict=True
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
