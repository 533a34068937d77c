import keras
import numpy as np
import pytest
from conftest import gradients, to_numpy
from keras import ops

from keras_multimodel.layers.layer_norm import LayerNorm, layer_norm


@pytest.mark.parametrize("shape", [(2, 5, 8), (2, 3, 4, 8)])
def test_layer_norm_and_its_gradient_equal_keras(rng, shape):
    x = (rng.normal(size=shape) * 3 + 1).astype("float32")
    gamma, beta = (rng.normal(size=shape[-1:]).astype("float32") for _ in range(2))
    weights = ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))

    def ours(x, gamma, beta):
        return ops.sum(layer_norm(x, gamma, beta, 1e-3) * weights)

    def reference(x, gamma, beta):
        return ops.sum(ops.layer_normalization(x, gamma, beta, epsilon=1e-3) * weights)

    np.testing.assert_allclose(
        to_numpy(ours(x, gamma, beta)), to_numpy(reference(x, gamma, beta)), rtol=1e-5
    )
    for got, expected in zip(
        gradients(ours, x, gamma, beta), gradients(reference, x, gamma, beta), strict=True
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_layer_is_keras_layer_normalization_with_the_same_weights(rng):
    x = rng.normal(size=(2, 3, 6)).astype("float32")
    ours, keras_own = LayerNorm(epsilon=1e-6), keras.layers.LayerNormalization(epsilon=1e-6)
    ours.build(x.shape)
    keras_own.build(x.shape)
    weights = [rng.normal(size=(6,)).astype("float32") for _ in range(2)]
    ours.set_weights(weights)
    keras_own.set_weights(weights)
    assert [w.path.split("/")[-1] for w in ours.weights] == ["gamma", "beta"]
    np.testing.assert_allclose(to_numpy(ours(x)), to_numpy(keras_own(x)), rtol=1e-5, atol=1e-6)
    restored = LayerNorm.from_config(ours.get_config())
    assert restored.epsilon == 1e-6
