"""`MultiModel.fit` safeguards: a NaN loss is an error, and a step that raises does
not break the model for later calls."""

import sys

import keras

from keras_multimodel.callbacks import StopOnNonFiniteLoss
from keras_multimodel.errors import InputError
from keras_multimodel.layers.layer_utils import data_parallel_degree


class TrainingMixin:
    """What `MultiModel` adds to `keras.Model`'s training loop."""

    def fit(self, *args, callbacks=None, **kwargs):
        """`keras.Model.fit`, stopping with an error at a NaN or infinite loss.

        A `tf.data.Dataset` is taken as shuffled (`shuffle` defaults to False).

        Unless `callbacks` already hold one, a `StopOnNonFiniteLoss` is added: a
        run whose loss goes bad (divergence, out-of-range target ids) raises
        `TrainingDiverged` naming the step and the tasks, instead of training on.
        """
        tf = sys.modules.get("tensorflow")  # a tf.data.Dataset implies TensorFlow is loaded
        x = args[0] if args else kwargs.get("x")
        if tf is not None and isinstance(x, tf.data.Dataset):
            # A dataset comes shuffled (`mixture` shuffles); Keras would warn that
            # its default `shuffle=True` does nothing.
            kwargs.setdefault("shuffle", False)
            _check_batches_split_evenly(x)
        _build_optimizer_before_tracing(self)
        callbacks = list(callbacks or [])
        watching = (StopOnNonFiniteLoss, keras.callbacks.TerminateOnNaN)
        if not any(isinstance(callback, watching) for callback in callbacks):
            callbacks.append(StopOnNonFiniteLoss())
        return super().fit(*args, callbacks=callbacks, **kwargs)

    # A step that raises (e.g. our clear error for a batch of the wrong structure,
    # raised while tracing) must not break later `fit`/`evaluate` calls:
    # - Keras's JAX trainer hands the model's variables to each step as a state and
    #   empties ("purges") them meanwhile; after a step, or when `fit` ends, it puts
    #   the new values back. If the very first step raises, nothing is put back and
    #   every later `fit` fails with "'NoneType' object is not callable". Keras PR
    #   keras-team/keras#21019 restores the state when `fit` is interrupted, but only
    #   once a step has finished.
    # - On TensorFlow, the half-traced `tf.function` is kept, and a later trace that
    #   builds variables fails with "Creating variables on a non-first call".
    # So when a step raises, its state goes back into the variables (JAX), and the
    # step function is dropped, to be built afresh by the next call.
    def make_train_function(self, force=False):
        super().make_train_function(force)
        self.train_function = _guarded(self, "train_function", self._train_state_variables)

    def make_test_function(self, force=False):
        super().make_test_function(force)
        self.test_function = _guarded(self, "test_function", self._test_state_variables)

    def _train_state_variables(self):
        return (
            self.trainable_variables,
            self.non_trainable_variables,
            self.optimizer.variables,
            self.metrics_variables,
        )

    def _test_state_variables(self):
        return self.trainable_variables, self.non_trainable_variables, self.metrics_variables


def _guarded(model, attribute, state_variables):
    """`model.<attribute>` wrapped so that, when a step raises, the JAX state it took
    goes back to `state_variables()` and the function is dropped for a rebuild."""
    step_function = getattr(model, attribute)
    if step_function is None or getattr(step_function, "guarded", False):
        return step_function
    on_jax = keras.backend.backend() == "jax"

    def step(*args):
        try:
            return step_function(*args)
        except BaseException:
            if on_jax:  # args: (state, data)
                for variables, values in zip(state_variables(), args[0], strict=True):
                    for variable, value in zip(variables, values, strict=True):
                        if not getattr(value, "is_deleted", lambda: False)():  # donated
                            variable.assign(value)
            setattr(model, attribute, None)
            raise

    step.guarded = True
    return step


def _build_optimizer_before_tracing(model):
    """Creates the optimizer's variables before the first step is traced (TensorFlow).

    Without a `tf.distribute` strategy, Keras builds the optimizer inside the first
    traced train step; a `tf.function` that creates variables is traced a second
    time, so the step would be traced twice (the larger part of its compile time
    on CPU). The model's own variables all exist once it is built.
    """
    optimizer = getattr(model, "optimizer", None)
    if keras.backend.backend() != "tensorflow" or optimizer is None or optimizer.built:
        return
    if model.built:
        with model.distribute_strategy.scope():
            optimizer.build(model.trainable_variables)


def _check_batches_split_evenly(dataset):
    """Under a JAX `keras.distribution`, every sub-batch must split over the data shards."""
    shards = data_parallel_degree()
    if shards == 1:
        return
    distribution = keras.distribution.distribution()
    for path, spec in _leaves(dataset.element_spec):
        size = spec.shape[0] if spec.shape.rank else None
        if size is not None and size % shards:
            raise InputError(
                f"MultiModel.fit: the batch of {'/'.join(path)} has {size} examples, which do "
                f"not split evenly over the {shards} data-parallel devices of the active "
                f"{type(distribution).__name__}. Make every sub-batch a multiple of {shards}: "
                f"keras_multimodel.data.mixture(..., batch_multiple={shards})."
            )


def _leaves(spec, path=()):
    if isinstance(spec, dict):
        for key, value in spec.items():
            yield from _leaves(value, (*path, str(key)))
    elif isinstance(spec, (tuple, list)):
        for index, value in enumerate(spec):
            yield from _leaves(value, (*path, str(index)))
    else:
        yield path, spec
