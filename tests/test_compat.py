"""`keras_multimodel.compat`: each workaround is still needed and still works at the
installed Keras and JAX. A failure here means a release changed what it works
around: follow the message, then update or delete the workaround."""

import keras
import numpy as np
import pytest

from keras_multimodel import compat


def test_set_initial_epoch_makes_fit_continue_from_that_epoch():
    class Resume(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            compat.set_initial_epoch(self.model, 2)

        def on_epoch_begin(self, epoch, logs=None):
            epochs.append(epoch)

    epochs = []
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.zeros((4, 2), "float32")
    history = model.fit(x, x[:, :1], epochs=4, callbacks=[Resume()], verbose=0)
    assert epochs == [2, 3], (
        f"fit ran epochs {epochs}: Keras no longer reads Model._initial_epoch after "
        "on_train_begin; see how keras.callbacks.BackupAndRestore resumes now."
    )
    assert len(history.history["loss"]) == 2


def test_portable_compile_config_names_the_public_optimizer():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    config = model.get_compile_config()
    module = config["optimizer"]["module"]
    if keras.backend.backend() == "torch":
        assert module.startswith(compat.KERAS_BACKEND_MODULES), (
            f"Keras now saves the torch optimizer as {module!r}: "
            "compat.portable_compile_config may no longer be needed."
        )
    portable = compat.portable_compile_config(config)
    assert portable["optimizer"]["module"] == "keras.optimizers"
    optimizer = keras.saving.deserialize_keras_object(portable["optimizer"])
    assert isinstance(optimizer, keras.optimizers.Adam)
    assert float(optimizer.learning_rate) == pytest.approx(1e-3)
    # A torch file's optimizer, read on any backend.
    torch_config = {
        "optimizer": {
            "module": "keras.src.backend.torch.optimizers.torch_adam",
            "class_name": "Adam",
            "config": {"learning_rate": 0.5},
            "registered_name": None,
        }
    }
    optimizer = keras.saving.deserialize_keras_object(
        compat.portable_compile_config(torch_config)["optimizer"]
    )
    assert isinstance(optimizer, keras.optimizers.Adam)


def _served_top_k(k):
    """A fresh (JAX caches lowerings per function) `lax.top_k` converted by jax2tf."""
    import tensorflow as tf
    from jax import lax
    from jax.experimental import jax2tf

    def top_k(x):
        return lax.top_k(x, k)

    converted = jax2tf.convert(top_k, with_gradient=False, native_serialization_platforms=["cpu"])
    function = tf.function(
        converted, autograph=False, input_signature=[tf.TensorSpec([2, 5], tf.float32)]
    )
    function.get_concrete_function()  # lowered now
    return function


@pytest.mark.backends("jax", reason="jax2tf converts JAX functions for the SavedModel export")
def test_top_k_lowered_by_sorting_is_needed_and_equals_top_k():
    import tensorflow as tf

    x = np.array([[3, 1, 3, 2, 0], [0, 5, 4, 5, 5]], "float32")
    with compat.top_k_lowered_by_sorting():
        served = _served_top_k(3)
    values, indices = (np.asarray(t) for t in served(x))
    np.testing.assert_array_equal(values, [[3, 3, 2], [5, 5, 5]])
    np.testing.assert_array_equal(indices, [[0, 2, 3], [1, 3, 4]])  # ties: lower index
    import jax
    from jax import lax

    exported = jax.export.export(jax.jit(lambda v: lax.top_k(v, 2)), platforms=["cpu"])(x)
    if "composite" not in exported.mlir_module():  # older JAX: plain ops, read anywhere
        np.testing.assert_array_equal(np.asarray(_served_top_k(2)(x)[0]), values[:, :2])
        pytest.skip(f"JAX {jax.__version__} lowers top_k without a composite op")
    try:
        _served_top_k(2)(x)
    except tf.errors.InvalidArgumentError as error:
        assert "deserialize" in str(error)
    else:
        pytest.fail(
            "TensorFlow now runs JAX's own top_k lowering: compat.top_k_lowered_by_sorting "
            "is no longer needed; remove it from the export."
        )
