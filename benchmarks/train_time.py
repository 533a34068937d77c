"""The default `train`'s wall time at two commits, side by side on one machine.

    python benchmarks/train_time.py --baseline=ee00188               # against HEAD
    KERAS_BACKEND=jax python benchmarks/train_time.py --baseline=ee00188 --repeats=2

A wall time alone says little about a target such as "the default `train` takes at
most 8 minutes on 2 CPU cores" when the machine runs slower than the day the target
was met. Timed beside a commit whose wall time on a quiet day is known, the ratio
carries over: that day's time x ratio is what the candidate would take then.

Each commit is cloned from this repository into `--work_dir` and its bundled speech
synthesised first (not timed). Then `python -m keras_multimodel train` runs in each
clone (so each imports its own package, with this interpreter's dependencies),
baseline then candidate, `--repeats` rounds, each in a new process and run
directory. Prints each wall time, the medians and their ratio.
"""

import os
import pathlib
import shlex
import statistics
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("baseline", None, "The commit to time against.", required=True)
flags.DEFINE_string("candidate", "HEAD", "The commit to time.")
flags.DEFINE_integer("repeats", 1, "Rounds of (baseline, candidate).", lower_bound=1)
flags.DEFINE_string("work_dir", "/tmp/kmm-train-time", "Where the clones and runs go.")
flags.DEFINE_string("extra", "", "Extra `train` flags for both, e.g. '--train_steps=20'.")

REPO = pathlib.Path(__file__).resolve().parent.parent
WARM_SPEECH = (
    "from keras_multimodel.data.bundled import transcribe_speech as t\n"
    "for split in ('train', 'validation', 'test'):\n"
    "    t.synthetic(split, 'small')\n"
)


def _git(*args, cwd=REPO):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)


def _clone(commit, name):
    """A clone of this repository at `commit`, checked to import its own package."""
    try:
        sha = _git("rev-parse", "--verify", f"{commit}^{{commit}}").stdout.strip()
    except subprocess.CalledProcessError:
        message = f"{commit!r} is not a commit of {REPO}; give a hash, tag or branch"
        raise SystemExit(message) from None
    tree = pathlib.Path(FLAGS.work_dir) / f"{name}-{sha[:7]}"
    if not tree.exists():
        _git("clone", "-q", "--no-checkout", str(REPO), str(tree))
        _git("checkout", "-q", sha, cwd=tree)
    imported = subprocess.run(
        [sys.executable, "-c", "import keras_multimodel; print(keras_multimodel.__file__)"],
        cwd=tree, check=True, capture_output=True, text=True,
    ).stdout.strip().splitlines()[-1]
    if not pathlib.Path(imported).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"{tree} imports keras_multimodel from {imported}, not its own")
    warmed = subprocess.run([sys.executable, "-c", WARM_SPEECH], cwd=tree)
    if warmed.returncode:
        print(f"warning: could not synthesise {sha[:7]}'s speech first; its first run "
              "includes the synthesis", file=sys.stderr)
    return sha[:7], tree


def _time_train(tree, run_dir):
    command = [sys.executable, "-m", "keras_multimodel", "train", f"--output_dir={run_dir}"]
    log = run_dir.with_suffix(".log")
    start = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run(command + shlex.split(FLAGS.extra), cwd=tree, stdout=out,
                              stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"train failed in {tree} (exit {done.returncode}); see {log}")
    return seconds


def main(argv):
    del argv
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    pathlib.Path(FLAGS.work_dir).mkdir(parents=True, exist_ok=True)
    commits = [_clone(FLAGS.baseline, "baseline"), _clone(FLAGS.candidate, "candidate")]
    times = {sha: [] for sha, _ in commits}
    for round_ in range(FLAGS.repeats):
        for sha, tree in commits:
            run_dir = pathlib.Path(FLAGS.work_dir) / f"run-{backend}-{sha}-{round_}"
            if run_dir.exists():
                raise SystemExit(f"{run_dir} exists; remove it or give a new --work_dir")
            seconds = _time_train(tree, run_dir)
            times[sha].append(seconds)
            print(f"{backend} {sha} round {round_}: train {seconds:.1f} s", flush=True)
    (base, _), (cand, _) = commits
    medians = {sha: statistics.median(values) for sha, values in times.items()}
    print(f"| backend | {base} | {cand} | {cand} / {base} |")
    print("|---|---|---|---|")
    print(f"| {backend} | {medians[base]:.0f} s | {medians[cand]:.0f} s | "
          f"{medians[cand] / medians[base]:.2f}x |")


if __name__ == "__main__":
    app.run(main)
