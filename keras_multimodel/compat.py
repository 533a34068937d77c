"""The package's only reliance on Keras and JAX internals, each where no public API
does the job, with the upstream behaviour that needs it.

`tests/test_compat.py` checks each against the installed versions: it fails when a
workaround is no longer needed (the upstream behaviour changed) or no longer works
(the internal it uses moved), so a new release cannot silently break or outlive it.
"""

import contextlib

import keras

KERAS_BACKEND_MODULES = "keras.src.backend."


def set_initial_epoch(model, epoch):
    """Makes the `fit` that is starting continue from `epoch` (a callback resuming a run).

    `fit(initial_epoch=...)` is the public way, but a callback that restores a
    backup in `on_train_begin` has no other: Keras's own
    `keras.callbacks.BackupAndRestore` sets the same attribute, which `fit` reads
    after the callbacks' `on_train_begin`.
    """
    model._initial_epoch = int(epoch)


def portable_compile_config(config):
    """`Model.get_compile_config()` with an optimizer any backend can load.

    On torch, Keras saves its torch-only optimizer class (module
    `keras.src.backend.torch.optimizers...`); another backend would load it and run
    torch code. The public optimizer of the same name (`keras.optimizers`, which
    resolves to each backend's own) keeps a `.keras` file portable.
    """
    optimizer = (config or {}).get("optimizer")
    if (
        isinstance(optimizer, dict)
        and str(optimizer.get("module", "")).startswith(KERAS_BACKEND_MODULES)
        and hasattr(keras.optimizers, optimizer.get("class_name", ""))
    ):
        optimizer["module"] = "keras.optimizers"
    return config


@contextlib.contextmanager
def top_k_lowered_by_sorting():
    """Within the context, JAX lowers `lax.top_k` (beam search) with a stable sort.

    JAX lowers `top_k` to a StableHLO composite op that TensorFlow runtimes a little
    older than the exporting JAX cannot read ("failed to deserialize portable
    artifact": TensorFlow 2.21 with jaxlib 0.10.2), so a SavedModel converted with
    `jax2tf` would not load. A stable sort and a slice give the same values and
    indices (ties to the lower index) with plain ops. `jax.interpreters.mlir` can
    register a lowering but not read one, so the rule JAX had is read from its
    registry to be put back afterwards.
    """
    from jax import lax
    from jax._src.interpreters import mlir as mlir_registry
    from jax.interpreters import mlir

    def top_k(operand, k, axis=-1):
        axis = axis % operand.ndim
        moved = lax.broadcasted_iota("int32", operand.shape, axis)
        keys, indices = lax.sort((-operand, moved), dimension=axis, num_keys=1, is_stable=True)
        top = [lax.slice_in_dim(x, 0, k, axis=axis) for x in (keys, indices)]
        return [-top[0], top[1]]

    previous = mlir_registry._lowerings[lax.top_k_p]
    mlir.register_lowering(lax.top_k_p, mlir.lower_fun(top_k, multiple_results=True))
    try:
        yield
    finally:
        mlir_registry._lowerings[lax.top_k_p] = previous
