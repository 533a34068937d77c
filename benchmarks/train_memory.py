"""Peak resident memory of the default `train` (a short run), per backend.

Each backend trains in a process of its own for `--train_steps` steps (one
validation pass an epoch); the peak is that process's maximum resident set size.
Data loading, both epochs' programs and the shuffle buffers all peak within the
first steps, so a short run shows what the full one does.

    python benchmarks/train_memory.py --backends=tensorflow,jax
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app, flags

FLAGS = flags.DEFINE_list("backends", ["tensorflow", "jax"], "Keras backends to measure.")
STEPS = flags.DEFINE_integer("train_steps", 20, "Steps of the short run.")


def peak_of_train(backend, steps):
    """`(peak GiB, seconds)` of one `train` run in a fresh process."""
    output_dir = tempfile.mkdtemp(prefix=f"train-memory-{backend}-")
    command = [
        sys.executable, "-m", "keras_multimodel", "train", f"--output_dir={output_dir}",
        f"--train_steps={steps}", f"--steps_per_epoch={max(1, steps // 2)}",
        "--nocompilation_cache",
    ]  # fmt: skip
    start = time.time()
    child = subprocess.Popen(
        command,
        env={**os.environ, "KERAS_BACKEND": backend},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)  # this child's own peak, in KiB
    seconds = time.time() - start
    shutil.rmtree(output_dir, ignore_errors=True)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"train failed on {backend}:\n{stderr[-3000:]}")
    return usage.ru_maxrss / 2**20, seconds


def main(argv):
    del argv
    print("| backend | peak resident memory | wall time |\n|---|---|---|")
    for backend in FLAGS.value:
        peak, seconds = peak_of_train(backend, STEPS.value)
        print(f"| {backend} | {peak:.2f} GiB | {seconds:.0f} s |", flush=True)


if __name__ == "__main__":
    app.run(main)
