"""Compiled programs kept across processes: JAX's persistent compilation cache.

The command line turns it on (`--compilation_cache`, the default), so a second
`train`, `evaluate`, `predict` or `export` of the same model reads its XLA
programs from disk instead of compiling them again. TensorFlow and torch keep
no such cache; there the setting does nothing.
"""

import os

from keras_multimodel.data.bundled.sources import cache_dir

MIN_COMPILE_SECONDS = 0.0  # keep every program: entries are kilobytes, and the many
# small programs of decoding add up
# (benchmarks/README.md#compile_cachepy-jaxs-persistent-compilation-cache-cold-warm-and-off)


def use_compilation_cache(enabled=True, directory=None):
    """Turns JAX's persistent compilation cache on (or off); returns its directory,
    or None when it is off or the backend is not JAX.

    Args:
        enabled: False turns the cache off, even where `JAX_COMPILATION_CACHE_DIR`
            is set. JAX's own settings win where they are set in the environment
            (`JAX_ENABLE_COMPILATION_CACHE=false`,
            `JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`).
        directory: where compiled programs are kept. Default: the directory set by
            `JAX_COMPILATION_CACHE_DIR` when there is one, else
            `<cache_dir>/jax_compilation` (`$KERAS_MULTIMODEL_CACHE`, by default
            `~/.cache/keras_multimodel`).

    Call it before anything compiles. The cache is trusted code: keep it in a
    directory only you can write to.
    """
    import keras

    if keras.backend.backend() != "jax":
        return None
    import jax

    if not enabled:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    if not jax.config.jax_enable_compilation_cache:  # JAX_ENABLE_COMPILATION_CACHE=false
        return None
    directory = directory or os.environ.get("JAX_COMPILATION_CACHE_DIR")
    directory = str(directory or cache_dir() / "jax_compilation")
    jax.config.update("jax_compilation_cache_dir", directory)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return directory
