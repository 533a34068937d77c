"""Shared test helpers. Run the suite once per backend: KERAS_BACKEND=tensorflow|jax."""

import keras
import numpy as np
import pytest


def compile_fn(fn):
    """`fn` compiled the way each backend's `jit_compile=True` does (XLA)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    return fn


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def assert_causal(call, x, t, rng):
    """Perturbing `x` after position t leaves `call`'s outputs up to t unchanged."""
    changed = x.copy()
    changed[:, t + 1 :] = rng.normal(size=changed[:, t + 1 :].shape)
    before, after = to_numpy(call(x)), to_numpy(call(changed))
    np.testing.assert_allclose(before[:, : t + 1], after[:, : t + 1], atol=1e-5)
    assert np.abs(before[:, t + 1 :] - after[:, t + 1 :]).max() > 1e-3, "the future must matter"


@pytest.fixture(autouse=True)
def _fixed_seed():
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def gradients(fn, *args):
    """Gradients of the scalar `fn(*args)` with respect to every argument (numpy)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [np.asarray(g) for g in jax.grad(fn, argnums=tuple(range(len(args))))(*args)]
    import tensorflow as tf

    tensors = [tf.convert_to_tensor(a) for a in args]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        value = fn(*tensors)
    return [g.numpy() for g in tape.gradient(value, tensors)]
