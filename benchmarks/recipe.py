"""The main job's recipe: each setting's effect on the `evaluate` table, one run each.

    python benchmarks/recipe.py --runs="--learning_rate=0.002" --runs="--learning_rate=0.005"
    KERAS_BACKEND=jax python benchmarks/recipe.py --runs="" --runs="--vocabulary_size=2000"

Every `--runs` value is one `train` run's extra flags (an empty value: the defaults),
trained and evaluated one after the other with the command line, each in its own
process and run directory under `--output_dir`. Prints one Markdown row per run: its
wall time to train and each task's headline test metric (the first of its record),
the learned baselines beside them. One run per setting is one seed: repeat a
setting with `--runs="--seed=1"` etc. to see how far runs spread before trusting a
small difference.
"""

import json
import pathlib
import shlex
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("runs", [""], "Extra `train` flags of one run (repeatable).")
flags.DEFINE_string("output_dir", "/tmp/kmm-recipe", "Where the run directories go.")


def _command(*args):
    return subprocess.run([sys.executable, "-m", "keras_multimodel", *args], check=True)


def _headlines(evaluation):
    """{task: (metric, model score, {learned baseline: score})}, the first metric per task."""
    rows = {}
    for row in evaluation["rows"]:
        if row["task"] not in rows:
            learned = {name: row["baselines"][name] for name in row["learned"]}
            rows[row["task"]] = (row["metric"], row["model"], learned)
    return rows


def main(argv):
    del argv
    results = []
    for index, extra in enumerate(FLAGS.runs):
        run_dir = pathlib.Path(FLAGS.output_dir) / f"run-{index}"
        if run_dir.exists():
            raise SystemExit(f"{run_dir} exists; give a new --output_dir")
        start = time.perf_counter()
        _command("train", f"--output_dir={run_dir}", *shlex.split(extra))
        seconds = time.perf_counter() - start
        _command("evaluate", f"--model_dir={run_dir}")
        evaluation = json.loads((run_dir / "evaluation.json").read_text())
        results.append((extra or "(defaults)", seconds, _headlines(evaluation)))
    tasks = list(results[0][2])
    print("| train flags | train s | " + " | ".join(tasks) + " |")
    print("|---|---|" + "---|" * len(tasks))
    for extra, seconds, rows in results:
        cells = [f"{rows[task][1]:.3f}" if task in rows else "-" for task in tasks]
        print(f"| `{extra}` | {seconds:.0f} | " + " | ".join(cells) + " |")
    learned = [
        "; ".join(f"{name} {score:.3f}" for name, score in results[0][2][task][2].items()) or "-"
        for task in tasks
    ]
    print("| learned baseline(s) | | " + " | ".join(learned) + " |")
    print("metrics: " + ", ".join(f"{task} {results[0][2][task][0]}" for task in tasks))


if __name__ == "__main__":
    app.run(main)
