"""A command's wall time with JAX's persistent compilation cache cold, warm and off.

    KERAS_BACKEND=jax python benchmarks/compile_cache.py --model_dir=runs/main
    KERAS_BACKEND=jax python benchmarks/compile_cache.py   # trains a small run first

Runs `python -m keras_multimodel <command>` (default `evaluate`) in new processes,
side by side: with `--nocompilation_cache`, then with an empty cache directory
(cold: every program compiled and written), then again with that directory (warm:
programs read back), `--repeats` rounds. `--command=train` trains a new run with
`--train_flags` each time. Prints each wall time, the medians and
the warm/cold and warm/off ratios. Without `--model_dir`, a small run
(`--train_flags`) is trained into `--work_dir` first, untimed.
"""

import os
import pathlib
import shlex
import shutil
import statistics
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished train run; default: train a small one.")
flags.DEFINE_string("command", "evaluate", "The command to time: evaluate, predict, export, or "
                    "train (a new run with --train_flags each time).")
flags.DEFINE_string("flags", "--max_examples=128", "Extra flags of the timed command.")
flags.DEFINE_string(
    "train_flags",
    "--tasks=classify_image,translate_en_es,parse_en --train_steps=20 --steps_per_epoch=10",
    "Flags of the small run trained when --model_dir is not given.",
)
flags.DEFINE_integer("repeats", 1, "Rounds of (off, cold, warm).", lower_bound=1)
flags.DEFINE_string("work_dir", "/tmp/kmm-compile-cache", "Runs and cache directories.")


def run(args, cache_dir=None):
    """Wall seconds of `python -m keras_multimodel *args` in a new process."""
    env = dict(os.environ)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    if cache_dir is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "keras_multimodel", *args], env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{shlex.join(args)} failed:\n{done.stderr[-3000:]}")
    return seconds


def main(argv):
    del argv
    if os.environ.get("KERAS_BACKEND") != "jax":
        sys.exit("the persistent compilation cache is JAX's: run with KERAS_BACKEND=jax")
    work_dir = pathlib.Path(FLAGS.work_dir)
    model_dir = FLAGS.model_dir
    if model_dir is None:
        model_dir = work_dir / "run"
        if not (model_dir / "model.keras").exists():
            print(f"training a small run into {model_dir} (untimed)", flush=True)
            run(["train", f"--output_dir={model_dir}", *shlex.split(FLAGS.train_flags)])
    if FLAGS.command == "train":  # a new run each time, with the small run's settings
        args = ["train", f"--output_dir={work_dir / 'timed'}", *shlex.split(FLAGS.train_flags)]
    else:
        args = [FLAGS.command, f"--model_dir={model_dir}", *shlex.split(FLAGS.flags)]
    times = {"off": [], "cold": [], "warm": []}
    for round_ in range(FLAGS.repeats):
        cache = work_dir / f"cache-{round_}"
        shutil.rmtree(cache, ignore_errors=True)
        export_args = [f"--export_dir={work_dir / 'export'}"] if FLAGS.command == "export" else []
        for name, extra, cache_dir in (
            ("off", ["--nocompilation_cache"], None),
            ("cold", [], cache),
            ("warm", [], cache),
        ):
            shutil.rmtree(work_dir / "export", ignore_errors=True)
            shutil.rmtree(work_dir / "timed", ignore_errors=True)
            seconds = run([*args, *export_args, *extra], cache_dir)
            times[name].append(seconds)
            print(f"round {round_ + 1} {name:>4}: {seconds:7.1f} s", flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{FLAGS.command} {' '.join(shlex.quote(a) for a in args[1:])}")
    for name, value in medians.items():
        print(f"  {name:>4}: {value:7.1f} s (median of {len(times[name])})")
    print(f"  warm/cold {medians['warm'] / medians['cold']:.2f}, "
          f"warm/off {medians['warm'] / medians['off']:.2f}")  # fmt: skip


if __name__ == "__main__":
    app.run(main)
