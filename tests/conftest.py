"""Shared test helpers, and the suite's two markers.

Run the suite once per backend (`KERAS_BACKEND` is fixed when Keras is imported):
`KERAS_BACKEND=jax pytest`. Each test says on itself where it runs:

- `@pytest.mark.large`: end to end (subprocess training, kill/resume, notebooks,
  example scripts, distribution engines, cross-backend files, full exports). The
  default run skips them; `pytest --run_large` adds them (CI does).
- `@pytest.mark.extra_large`: minutes of training each (the six-task notebooks);
  `pytest --run_extra_large` adds them; CI does not run them.
- `@pytest.mark.backends("jax", reason="...")`: runs on the named backends only,
  and says why. Every large test names exactly one backend, so the large tier runs
  each of them once over the three backend runs.
"""

import os

# The tests' shapes are tiny, so XLA's compile time dominates their run time: LLVM's
# optimisation level 0 compiles about a third faster (TensorFlow and JAX read
# XLA_FLAGS when they start, as do the tests' subprocesses). Set before Keras loads.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


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
    if backend == "torch":
        import torch

        tensors = [torch.tensor(np.asarray(a), requires_grad=True) for a in args]
        fn(*tensors).backward()
        return [t.grad.numpy() for t in tensors]
    import tensorflow as tf

    tensors = [tf.convert_to_tensor(a) for a in args]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        value = fn(*tensors)
    return [g.numpy() for g in tape.gradient(value, tensors)]



BACKENDS = ("tensorflow", "jax", "torch")


def pytest_addoption(parser):
    parser.addoption(
        "--run_large",
        action="store_true",
        default=False,
        help="also run the tests marked large (end to end; CI runs them)",
    )
    parser.addoption(
        "--run_extra_large",
        action="store_true",
        default=False,
        help="also run the tests marked extra_large (minutes each; CI does not run them)",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "large: end-to-end test, skipped unless --run_large is given"
    )
    config.addinivalue_line(
        "markers", "extra_large: minutes each, skipped unless --run_extra_large is given"
    )
    config.addinivalue_line(
        "markers",
        "backends(*names, reason): runs on these Keras backends only, for the reason given",
    )


def _backends(item):
    """The backends `item` runs on, and why (None: every backend)."""
    marker = item.get_closest_marker("backends")
    if marker is None:
        return None, None
    names, reason = marker.args, marker.kwargs.get("reason", "")
    unknown = [name for name in names if name not in BACKENDS]
    if not names or unknown or not reason:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.backends takes backend names from {BACKENDS} and a "
            f"reason=...; received {names} with reason {reason!r}."
        )
    return names, reason


def pytest_collection_modifyitems(config, items):
    backend = keras.backend.backend()
    for item in items:
        names, reason = _backends(item)
        tier = next((t for t in ("extra_large", "large") if item.get_closest_marker(t)), None)
        if tier and (names is None or len(names) != 1):
            raise pytest.UsageError(
                f"{item.nodeid}: a {tier} test runs once, on one backend; add "
                '@pytest.mark.backends("<backend>", reason="...") naming where it adds most.'
            )
        if names is not None and backend not in names:
            item.add_marker(pytest.mark.skip(reason=f"runs on {', '.join(names)}: {reason}"))
        elif tier and not config.getoption(f"--run_{tier}"):
            item.add_marker(pytest.mark.skip(reason=f"{tier}: run with --run_{tier}"))
