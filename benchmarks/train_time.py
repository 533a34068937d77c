"""The default `train`'s wall time at two commits, side by side on one machine.

    python benchmarks/train_time.py --baseline=ee00188               # against HEAD
    KERAS_BACKEND=jax python benchmarks/train_time.py --baseline=ee00188 --repeats=2

A wall time alone says little about a target such as "the default `train` takes at
most 8 minutes on 2 CPU cores" when the machine runs slower than on the day the
target was met. Timed beside a commit whose wall time on that day is known, the
ratio gives an estimate: that day's time x ratio is about what the candidate would
have taken then, if the slowdown hits both commits alike.

Each commit (committed code only: uncommitted changes are not timed) is cloned from
this repository into `--work_dir` and its bundled speech synthesised first, untimed
(the default "small" speech; a `--data_size` in `--extra` is timed with its
synthesis on first use). Then `python -m keras_multimodel train` runs in each clone
(so each imports its own package, with this interpreter's dependencies), baseline
then candidate, `--repeats` rounds, each in a new process and run directory. Prints
each wall time, the medians and their ratio. Naming the same commit twice times
the run-to-run spread.
"""

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
ROLES = ("baseline", "candidate")
WARM_SPEECH = (
    "from keras_multimodel.data.bundled import transcribe_speech as t\n"
    "for split in ('train', 'validation', 'test'):\n"
    "    t.synthetic(split, 'small')\n"
)
IMPORTED = (
    "import keras, keras_multimodel\n"
    "print(keras.backend.backend())\n"
    "print(keras_multimodel.__file__)\n"
)


def _run(command, cwd, what):
    """Runs `command`, or exits naming `what` failed and what it printed."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise SystemExit(f"{what} failed (exit {done.returncode}) in {cwd}:\n{tail}")
    return done.stdout.strip().splitlines()


def _sha(commit):
    done = subprocess.run(["git", "rev-parse", "--verify", f"{commit}^{{commit}}"],
                          cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{commit!r} is not a commit of {REPO}; give a hash, tag or branch")
    return done.stdout.strip()


def _clone(sha, tree):
    """A clone of this repository at `sha`, checked to import its own package.

    Returns the backend the clone's Keras runs on.
    """
    if not tree.exists():
        _run(["git", "clone", "-q", "--no-checkout", str(REPO), str(tree)], REPO, "git clone")
    _run(["git", "checkout", "-q", "--force", sha], tree, f"git checkout {sha[:7]}")
    backend, imported = _run([sys.executable, "-c", IMPORTED], tree, "importing the package")[-2:]
    if not pathlib.Path(imported).resolve().is_relative_to(tree):
        raise SystemExit(f"{tree} imports keras_multimodel from {imported}, not its own")
    warmed = subprocess.run([sys.executable, "-c", WARM_SPEECH], cwd=tree)
    if warmed.returncode:
        print(f"warning: could not synthesise {sha[:7]}'s speech first; its first run "
              "includes the synthesis", file=sys.stderr)
    return backend


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
    shas = {"baseline": _sha(FLAGS.baseline), "candidate": _sha(FLAGS.candidate)}
    work_dir = pathlib.Path(FLAGS.work_dir).resolve()
    trees = {role: work_dir / f"{role}-{shas[role][:7]}" for role in ROLES}
    run_dirs = {
        (role, round_): work_dir / f"run-{role}-{shas[role][:7]}-{round_}"
        for round_ in range(FLAGS.repeats)
        for role in ROLES
    }
    taken = [str(path) for path in run_dirs.values() if path.exists()]
    if taken:
        raise SystemExit(f"run directories exist: {', '.join(taken)}; remove them or "
                         "give a new --work_dir")
    work_dir.mkdir(parents=True, exist_ok=True)
    backends = {role: _clone(shas[role], trees[role]) for role in ROLES}
    times = {role: [] for role in ROLES}
    for (role, round_), run_dir in run_dirs.items():
        seconds = _time_train(trees[role], run_dir)
        times[role].append(seconds)
        print(f"{backends[role]} {role} {shas[role][:7]} round {round_}: train "
              f"{seconds:.1f} s", flush=True)
    base, cand = (statistics.median(times[role]) for role in ROLES)
    names = [f"{role} {shas[role][:7]}" for role in ROLES]
    print(f"| backend | {names[0]} | {names[1]} | ratio |")
    print("|---|---|---|---|")
    print(f"| {backends['candidate']} | {base:.1f} s | {cand:.1f} s | {cand / base:.2f}x |")


if __name__ == "__main__":
    app.run(main)
