"""Scale-out on the engines Keras drives: `keras.distribution` (JAX, 8 virtual CPU
devices) and `tf.distribute.MirroredStrategy` (TensorFlow, 2 logical CPU devices).

Each backend's checks run in a process of their own (a backend fixes its devices
when it starts), in the suite of that backend; see `tests/distribution/`.
"""

import os
import pathlib
import subprocess
import sys

import keras
import pytest

HELPERS = pathlib.Path(__file__).parent / "distribution"


def run_checks(script, env, *checks):
    result = subprocess.run(
        [sys.executable, str(HELPERS / script), *checks],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return result.stdout


@pytest.mark.large
@pytest.mark.backends("jax", reason="keras.distribution runs on JAX")
def test_data_model_and_expert_parallelism_on_eight_virtual_devices():
    """DataParallel, ModelParallel (experts and heads over "model") and expert
    parallelism (experts over the data axis) each take the same step as one device;
    weights are really sharded; no device gathers the batch's tokens; `fit`,
    `generate` and `train --distribution` run."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"
    printed = run_checks("jax_checks.py", {"XLA_FLAGS": flags.strip(), "KERAS_BACKEND": "jax"})
    for check in ("data_parallel", "model_parallel", "expert_parallel", "fit_and_generate",
                  "train_command"):  # fmt: skip
        assert f"PASS {check}" in printed, printed


@pytest.mark.large
@pytest.mark.backends("tensorflow", reason="tf.distribute runs on TensorFlow")
def test_mirrored_strategy_on_two_logical_devices():
    """The mirrored step equals one device's (loss, per-task metrics, updates); a
    model saved from it loads in the scope, trains and decodes; `train` runs mirrored."""
    env = {"KERAS_BACKEND": "tensorflow"}
    checks = ("mirrored_step_equals_one_device", "mirrored_save_and_load_in_scope", "train_command")
    printed = run_checks("tf_checks.py", env, *checks)
    for check in checks:
        assert f"PASS {check}" in printed, printed


@pytest.mark.backends("jax", reason="keras.distribution's layout maps run on JAX")
def test_layout_map_names_the_axis_it_cannot_find():
    from keras_multimodel import MultiModel

    devices = keras.distribution.list_devices()[:1]
    mesh = keras.distribution.DeviceMesh((1,), ["batch"], devices)
    with pytest.raises(ValueError, match="expert_parallel_dim_name='batch'"):
        MultiModel.get_layout_map(mesh)  # no "model" axis for the experts
    layout_map = MultiModel.get_layout_map(mesh, expert_parallel_dim_name="batch")
    assert layout_map["encoder/moe/expert_kernel_in"].axes == ("batch", None, None)
    assert layout_map["decoder/attention_0/query/kernel"] is None  # no model axis: replicated


def test_train_refuses_a_distribution_of_another_backend():
    from keras_multimodel.cli.config import TrainConfig

    other = "mirrored" if keras.backend.backend() != "tensorflow" else "data_parallel"
    with pytest.raises(ValueError, match=f"--distribution {other} runs on the"):
        TrainConfig(tasks=("classify_image",), distribution=other).validate()
    with pytest.raises(ValueError, match="--distribution must be one of"):
        TrainConfig(tasks=("classify_image",), distribution="ring").validate()
