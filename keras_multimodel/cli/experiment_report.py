"""`report.md` of an `experiment`: each comparison's table, figures and verdicts.

Every verdict uses the paper's own metric, teacher-forced log-perplexity on the
test split (log-loss for image classification; lower is better), because it moves
smoothly with training where decoded BLEU or WER at a small budget barely moves;
the decoded task metric stands beside it with the best learned baseline. A
difference counts only where it is larger than the noise: the spread of the joint
reference over its seeds on that task (at least `MIN_NOISE`).
"""

import csv
import datetime
import hashlib
import json
import platform

from keras_multimodel.cli.experiment import EXPERIMENTS, REFERENCE, run_dir
from keras_multimodel.cli.run_dir import (
    EPOCH_TIMES_FILE,
    EVALUATION_FILE,
    HISTORY_FILE,
    MIXING_FILE,
    SETTINGS_FILE,
    TOKENIZER_FILE,
    TRAIN_TIME_FILE,
)
from keras_multimodel.errors import InputError

MIN_NOISE = 0.02  # nats: the smallest difference counted, whatever the seeds' spread
SLIGHT = 0.05  # "degrades only slightly": at most 5% higher log-perplexity
PAPER_METRICS = ("log-perplexity (teacher forced)", "log-loss")


def check_plotting():
    """An error now, not after the grid, when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError(
            "experiment draws its figures with matplotlib: pip install matplotlib "
            "(or keras-multimodel[notebooks])"
        ) from None


# ----- reading the runs ------------------------------------------------------------


def load_run_results(directory):
    """What the report needs from one finished run directory."""
    evaluation = json.loads((directory / EVALUATION_FILE).read_text())
    with (directory / HISTORY_FILE).open() as file:
        history = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(file)]
    times = directory / EPOCH_TIMES_FILE
    epoch_seconds = []
    if times.exists():
        with times.open() as file:
            epoch_seconds = [float(row["seconds"]) for row in csv.DictReader(file)]
    train_time = json.loads((directory / TRAIN_TIME_FILE).read_text())
    vocabulary = directory / TOKENIZER_FILE
    return {
        "rows": evaluation["rows"],
        "evaluate_seconds": evaluation["seconds"],
        "history": history,
        **json.loads((directory / MIXING_FILE).read_text()),  # examples_per_step, sizes
        "settings": json.loads((directory / SETTINGS_FILE).read_text()),
        "epoch_seconds": epoch_seconds,
        "train_seconds": train_time["seconds"],
        "vocabulary": (
            hashlib.sha256(vocabulary.read_bytes()).hexdigest() if vocabulary.exists() else None
        ),
        "steps": train_time["steps"],
    }


def task_scores(rows, task):
    """`{"metric", "value", "higher", "baseline", "baseline_name", "paper"}` of `task`'s
    test split: its first (decoded) metric, the best learned baseline of that metric,
    and the paper's metric."""
    task_rows = [row for row in rows if row["task"] == task]
    main = task_rows[0]
    learned = {name: v for name, v in main["baselines"].items() if name in main["learned"]}
    best = (max if main["higher_is_better"] else min)(learned.items(), key=lambda kv: kv[1],
                                                      default=(None, None))  # fmt: skip
    paper_row = next(row for row in task_rows if row["metric"] in PAPER_METRICS)
    paper, paper_metric = paper_row["model"], paper_row["metric"]
    return {"metric": main["metric"], "value": main["model"], "higher": main["higher_is_better"],
            "baseline_name": best[0], "baseline": best[1], "paper": paper,
            "paper_metric": paper_metric}  # fmt: skip


def steady_seconds_per_step(result):
    """Seconds per step after the first epoch (which compiles), validation included."""
    later = result["epoch_seconds"][1:]
    spe = result["settings"]["steps_per_epoch"]
    if not later:
        return result["train_seconds"] / max(1, result["steps"])
    return sum(later) / len(later) / spe


def validation_curve(result, task):
    """`(examples of task seen, validation loss)` after each epoch."""
    share = result["examples_per_step"][task]
    spe, steps = result["settings"]["steps_per_epoch"], result["steps"]
    points = []
    for row in result["history"]:
        key = f"val_{task}_loss"
        if key in row:
            seen = min((int(row["epoch"]) + 1) * spe, steps) * share
            points.append((seen, row[key]))
    return points


def _interpolate(points, x):
    """The curve's value at `x` (linear between points), or None outside it."""
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x0 <= x <= x1:
            return y0 + (y1 - y0) * (x - x0) / max(x1 - x0, 1e-9)
    if points and abs(points[-1][0] - x) < 1e-6:
        return points[-1][1]
    return None


# ----- the report ------------------------------------------------------------------


class _Results:
    """Every finished run's results by run name (a list over seeds)."""

    def __init__(self, output_dir, config):
        self.config = config
        self.by_run = {}
        self.runs = {}
        for run in config.runs():
            self.runs[run.name] = run
            self.by_run[run.name] = [
                load_run_results(run_dir(output_dir, run, seed)) for seed in config.seeds_of(run)
            ]

    def paper(self, name, task):
        return [task_scores(r["rows"], task)["paper"] for r in self.by_run[name]]

    def mean_paper(self, name, task):
        values = self.paper(name, task)
        return sum(values) / len(values)

    def noise(self, task):
        values = self.paper(REFERENCE, task)
        return max(MIN_NOISE, max(values) - min(values))

    def compare(self, name, task, against=REFERENCE):
        """-1 where `name` is better than `against` beyond the noise, 1 where worse, 0."""
        difference = self.mean_paper(name, task) - self.mean_paper(against, task)
        if abs(difference) <= self.noise(task):
            return 0
        return 1 if difference > 0 else -1

    def comparable(self, name, other, task):
        """Whether the two runs' log-perplexities on `task` compare: a label task's
        always do; a text task's only with the same vocabulary (per-token losses of
        different tokenizations differ in scale)."""
        rows = self.by_run[name][0]["rows"]
        if task_scores(rows, task)["paper_metric"] == "log-loss":
            return True
        return self.by_run[name][0]["vocabulary"] == self.by_run[other][0]["vocabulary"]

    def mean_metric(self, name, task):
        """The decoded task metric, averaged over seeds."""
        values = [task_scores(r["rows"], task)["value"] for r in self.by_run[name]]
        return sum(values) / len(values)

    def compare_metric(self, name, task, against=REFERENCE):
        """`compare` on the decoded task metric; its noise is the reference seeds'
        spread of that metric (where the reference has the task)."""
        scores = task_scores(self.by_run[name][0]["rows"], task)
        difference = self.mean_metric(name, task) - self.mean_metric(against, task)
        if not scores["higher"]:
            difference = -difference  # > 0: better
        noise = 0.0
        if REFERENCE in self.runs and task in self.runs[REFERENCE].tasks:
            values = [task_scores(r["rows"], task)["value"] for r in self.by_run[REFERENCE]]
            noise = max(values) - min(values)
        if abs(difference) <= noise:
            return 0
        return -1 if difference > 0 else 1


def write_report(output_dir, config):
    """Writes `report.md` and `figures/*.png` from the finished runs; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    results = _Results(output_dir, config)
    figures = output_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    import keras

    lines = [
        f"# Experiment report: {config.name}",
        "",
        f"Written {datetime.date.today().isoformat()}; {platform.processor() or platform.machine()}"
        f", {_cpus()} CPUs; keras {keras.__version__}, backend {keras.backend.backend()}.",
        f"Every run: preset `{config.preset}`, {config.steps} steps of {config.batch_size} "
        f"examples, {config.data_size} data; the joint reference with "
        f"{config.reference_seeds} seeds, the others with {config.seeds}; test metrics on at "
        f"most {config.max_examples or 'all'} examples a task.",
        "",
        "Verdicts compare the paper's metric, teacher-forced log-perplexity on the test "
        "split (log-loss for image classification; lower is better). A difference counts "
        f"only beyond the noise: the spread of the joint reference's seeds on that task "
        f"(at least {MIN_NOISE} nats). Each table cell: the task metric (decoded), then "
        "the log-perplexity; the last row is the best learned baseline of the metric.",
        "",
        f"Regenerate (finished runs are reused): `{command_line(output_dir, config)}`",
        "",
        f"Wall time of all runs (train and evaluate): {_minutes(results, config.runs())}.",
        "",
    ]
    for experiment in config.experiments():
        lines += _section(experiment, results, figures)
    lines += ["## Cost of each run", "", "| run | seeds | seconds per step (after the first "
              "epoch) | train s (mean) | evaluate s (mean) |", "|---|---|---|---|---|"]  # fmt: skip
    for name, seeds in results.by_run.items():
        per_step = sum(map(steady_seconds_per_step, seeds)) / len(seeds)
        train_s = sum(r["train_seconds"] for r in seeds) / len(seeds)
        eval_s = sum(r["evaluate_seconds"] for r in seeds) / len(seeds)
        lines.append(f"| {name} | {len(seeds)} | {per_step:.3f} | {train_s:.0f} | {eval_s:.0f} |")
    path = output_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _cpus():
    import os

    return os.cpu_count()


def _section(experiment, results, figures):
    config = results.config
    runs = config.runs_of(experiment)
    names = [run.name for run in runs]
    lines = [f"## {experiment}", "", EXPERIMENTS[experiment][0].upper()
             + EXPERIMENTS[experiment][1:] + ".", ""]  # fmt: skip
    tasks = _tasks_of(runs)
    lines += _table(results, names, tasks)
    scores_png = _plot_scores(results, names, tasks, figures / f"{experiment}_scores.png")
    curves_png = _plot_curves(results, names, tasks, figures / f"{experiment}_curves.png")
    lines += ["", f"![{experiment}: scores](figures/{scores_png.name})", "",
              f"![{experiment}: validation loss against examples seen](figures/"
              f"{curves_png.name})", "", "### Verdicts", ""]  # fmt: skip
    lines += [f"- {verdict}" for verdict in VERDICTS[experiment](results, runs)]
    lines += ["", f"Wall time of its runs (train and evaluate; the joint reference counted in "
              f"every experiment): {_minutes(results, runs)}."]  # fmt: skip
    if any(run.mixing == "adaptive" for run in runs):
        lines += ["", "The adaptive run's curves count examples at its starting (uniform) rates."]
    return lines + [""]


def _minutes(results, runs):
    seconds = sum(r["train_seconds"] + r["evaluate_seconds"]
                  for run in runs for r in results.by_run[run.name])  # fmt: skip
    return f"{seconds / 60:.0f} min"


def command_line(output_dir, config):
    """The `experiment` command that gives `config` (flags left at their defaults
    are left out)."""
    import dataclasses

    from keras_multimodel.cli.experiment import ExperimentConfig

    defaults = ExperimentConfig()
    flags = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name == "name" or value == getattr(defaults, field.name):
            continue
        value = ",".join(value) if isinstance(value, tuple) else value
        flags.append(f"--{field.name}={value}")
    return " ".join(["python -m keras_multimodel experiment", config.name,
                     f"--output_dir={output_dir}", *flags])  # fmt: skip


def _tasks_of(runs):
    return list(dict.fromkeys(task for run in runs for task in run.tasks))


def _table(results, names, tasks):
    lines = ["| run | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for name in names:
        cells = []
        for task in tasks:
            if task not in results.runs[name].tasks:
                cells.append("-")
                continue
            scores = [task_scores(r["rows"], task) for r in results.by_run[name]]
            metric = "/".join(f"{s['value']:.3g}" for s in scores)
            paper = "/".join(f"{s['paper']:.3f}" for s in scores)
            cells.append(f"{metric}; {paper}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    baseline_cells = []
    for task in tasks:
        name = next(n for n in names if task in results.runs[n].tasks)
        scores = task_scores(results.by_run[name][0]["rows"], task)
        baseline_cells.append(
            f"{scores['metric']}: {scores['baseline_name']} {scores['baseline']:.3g}"
            if scores["baseline"] is not None else scores["metric"]
        )  # fmt: skip
    lines.append("| *learned baseline* | " + " | ".join(baseline_cells) + " |")
    return lines


def _plot_scores(results, names, tasks, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(tasks), figsize=(3.2 * len(tasks), 6.4), squeeze=False)
    for column, task in enumerate(tasks):
        present = [n for n in names if task in results.runs[n].tasks]
        for row, key in enumerate(("value", "paper")):
            ax = axes[row][column]
            for x, name in enumerate(present):
                values = [task_scores(r["rows"], task)[key] for r in results.by_run[name]]
                ax.bar(x, sum(values) / len(values), color=f"C{x}", alpha=0.6)
                ax.scatter([x] * len(values), values, color="black", s=12, zorder=3)
            scores = task_scores(results.by_run[present[0]][0]["rows"], task)
            if key == "value" and scores["baseline"] is not None:
                ax.axhline(scores["baseline"], color="gray", linestyle="--",
                           label=scores["baseline_name"])  # fmt: skip
                ax.legend(fontsize=7)
            ax.set_xticks(range(len(present)), present, rotation=45, ha="right", fontsize=7)
            ax.set_title(task if row == 0 else "", fontsize=9)
            ax.set_ylabel(scores["metric"] if key == "value" else "log-perplexity", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _plot_curves(results, names, tasks, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.2), squeeze=False)
    for column, task in enumerate(tasks):
        ax = axes[0][column]
        for i, name in enumerate(names):
            if task in results.runs[name].tasks:
                points = validation_curve(results.by_run[name][0], task)
                ax.plot(*zip(*points, strict=True), marker=".", color=f"C{i}", label=name)
        ax.set_xscale("log")
        ax.set_title(task, fontsize=9)
        ax.set_xlabel(f"examples of {task} seen", fontsize=8)
        ax.set_ylabel("validation loss", fontsize=8)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# ----- verdicts --------------------------------------------------------------------


def _held(condition):
    return "**held**" if condition else "**not held**"


def _joint_vs_single(results, runs):
    joint = results.by_run[REFERENCE][0]
    tasks = list(runs[0].tasks)
    sizes = {task: joint["training_examples"][task] for task in tasks}
    order = sorted(tasks, key=sizes.get)
    small, large = order[: len(order) // 2], order[len(order) // 2 :]
    verdicts, gains, slight, metric_gains, equal_wins, step_shares = [], [], [], [], [], []
    compared, apart = [], []
    for task in tasks:
        single = f"single-{task}"
        j, s = results.mean_paper(REFERENCE, task), results.mean_paper(single, task)
        on_metric = results.compare_metric(REFERENCE, task, against=single)
        metric = task_scores(joint["rows"], task)["metric"]
        decoded = (
            f"{metric}: joint {results.mean_metric(REFERENCE, task):.3g}, single "
            f"{results.mean_metric(single, task):.3g} "
            f"({ {-1: 'joint better', 0: 'level', 1: 'single better'}[on_metric] })"
        )
        if not results.comparable(REFERENCE, single, task):
            # Per-token losses of two vocabularies: only the decoded metric compares.
            apart.append(task)
            better = on_metric
            verdicts.append(
                f"{task} ({sizes[task]:,} training examples): {decoded}, at equal steps; "
                "log-perplexities not compared (the runs' vocabularies differ)."
            )
        else:
            compared.append(task)
            better = results.compare(REFERENCE, task, against=single)
            # Equal examples: the single run's validation loss when it had seen as
            # many examples of the task as the joint run saw in all its steps.
            seen = joint["examples_per_step"][task] * joint["steps"]
            joint_curve = validation_curve(joint, task)
            at_equal = _interpolate(validation_curve(results.by_run[single][0], task), seen)
            if at_equal is not None and joint_curve[-1][1] < at_equal:
                equal_wins.append(task)
            single_share = results.by_run[single][0]["examples_per_step"][task]
            step_shares.append(joint["examples_per_step"][task] / single_share)
            equal = (
                f"at equal examples ({seen:,.0f}) validation loss joint "
                f"{joint_curve[-1][1]:.3f}, single {at_equal:.3f}"
                if at_equal is not None
                else f"at equal examples ({seen:,.0f}): before the single run's first validation"
            )
            word = {-1: "better than", 0: "level with", 1: "worse than"}[better]
            verdicts.append(
                f"{task} ({sizes[task]:,} training examples): joint {j:.3f} is {word} single "
                f"{s:.3f} at equal steps (noise {results.noise(task):.3f}); {equal}; {decoded}."
            )
        if task in small:
            gains.append(better == -1)
            metric_gains.append(on_metric == -1)
        else:
            slightly = j <= s * (1 + SLIGHT) or better == 0
            slight.append(slightly if task in compared else better != 1)
    basis = (
        f"; judged on the decoded metric where the runs' vocabularies differ: {', '.join(apart)}"
        if apart
        else ""
    )
    verdicts.append(
        f'"Tasks with less data benefit largely from joint training" (the {len(small)} '
        f"smallest: {', '.join(small)}): {_held(gains and all(gains))} at equal steps "
        f"({sum(gains)} of {len(gains)} better than alone{basis}; on the decoded task metric "
        f"{sum(metric_gains)} of {len(metric_gains)})."
    )
    if compared:
        verdicts.append(
            f"At equal examples of each task, the joint run's validation loss is the lower "
            f"on {len(equal_wins)} of {len(compared)} tasks ({', '.join(equal_wins) or 'none'}"
            f"); there the single-task run has taken {_span(step_shares)} of the joint run's "
            "steps, earlier in its learning-rate schedule, so this compares learning per "
            "example of a task, not per step."
        )
    verdicts.append(
        f'"Performance on large tasks degrades only slightly if at all" ({", ".join(large)}; '
        f"slightly: at most {SLIGHT:.0%} higher log-perplexity, or within the noise; on the "
        f"decoded metric, not worse beyond the noise): "
        f"{_held(slight and all(slight))} ({sum(slight)} of {len(slight)}{basis})."
    )
    return verdicts


def _span(values):
    low, high = f"{min(values):.2g}", f"{max(values):.2g}"
    return low if low == high else f"{low} to {high}"


def _versus_reference(results, runs, claim):
    verdicts = []
    tasks = list(runs[0].tasks)
    for run in runs[1:]:
        outcome = [results.compare(run.name, task) for task in tasks]
        better = [t for t, o in zip(tasks, outcome, strict=True) if o == -1]
        worse = [t for t, o in zip(tasks, outcome, strict=True) if o == 1]
        on_metric = [results.compare_metric(run.name, task) for task in tasks]
        metric_better = [t for t, o in zip(tasks, on_metric, strict=True) if o == -1]
        metric_worse = [t for t, o in zip(tasks, on_metric, strict=True) if o == 1]
        verdicts.append(
            f"{run.name} against {REFERENCE}: better on {', '.join(better) or 'no task'}; "
            f"worse on {', '.join(worse) or 'no task'}; level on "
            f"{len(tasks) - len(better) - len(worse)} of {len(tasks)} (on the decoded task "
            f"metric: better on {', '.join(metric_better) or 'no task'}; worse on "
            f"{', '.join(metric_worse) or 'no task'})." + claim(run, better, worse, tasks)
        )
    return verdicts


def _capacity(results, runs):
    def claim(run, better, worse, tasks):
        cost = _step_cost(results, run.name)
        return f" A step costs {cost:.2f}x the reference's (after the first epoch)."

    verdicts = _versus_reference(results, runs, claim)
    singles = [f"single-{task}" for task in runs[0].tasks]
    if all(name in results.by_run for name in singles):
        for run in runs:
            penalties = [results.mean_paper(run.name, t) - results.mean_paper(f"single-{t}", t)
                         for t in run.tasks]  # fmt: skip
            verdicts.append(
                f"{run.name}: mean joint penalty against the single-task runs "
                f"{sum(penalties) / len(penalties):+.3f} nats."
            )
    return verdicts


def _step_cost(results, name):
    def per_step(n):
        seeds = results.by_run[n]
        return sum(map(steady_seconds_per_step, seeds)) / len(seeds)

    return per_step(name) / per_step(REFERENCE)


def _blocks(results, runs):
    def claim(run, better, worse, tasks):
        block = "MoE" if run.name == "no-moe" else "attention"
        held = not better and len(worse) >= len(tasks) / 2
        return (
            f' "The {block} block never hurts and in most cases improves": {_held(held)} '
            f"(removing it helps {len(better)} tasks, hurts {len(worse)} of {len(tasks)})."
        )

    return _versus_reference(results, runs, claim)


def _mixing(results, runs):
    def claim(run, better, worse, tasks):
        return ""

    verdicts = _versus_reference(results, runs, claim)
    means = {run.name: sum(results.mean_paper(run.name, t) for t in run.tasks) / len(run.tasks)
             for run in runs}  # fmt: skip
    best = min(means, key=means.get)
    verdicts.append(
        "Mean log-perplexity over tasks: "
        + ", ".join(f"{name} {value:.3f}" for name, value in means.items())
        + f"; lowest: {best}."
    )
    return verdicts


def _scarce(results, runs):
    config = results.config
    task = config.scarce_task
    alone = "scarce-alone"
    verdicts = [
        f"{name}: {task} log-perplexity {results.mean_paper(name, task):.3f}"
        for name in (run.name for run in runs)
    ]
    reference = results.runs.get(REFERENCE)
    noise = results.noise(task) if reference and task in reference.tasks else MIN_NOISE
    for name, claim in (
        ("scarce-joint", '"Tasks with less data benefit largely from joint training"'),
        ("scarce-with-image", "Transfer from image classification alone to "
                              f"{task} (the paper's ImageNet-to-parsing result)"),
    ):  # fmt: skip
        if name not in results.by_run:
            continue
        cut = f"{claim}, with {task} cut to {config.scarce_fraction:g} of its data"
        if not results.comparable(name, alone, task):
            metric = task_scores(results.by_run[name][0]["rows"], task)["metric"]
            verdicts.append(
                f"{cut}: {_held(results.compare_metric(name, task, against=alone) == -1)} on "
                f"the decoded metric, the runs' vocabularies differing ({metric} "
                f"{results.mean_metric(name, task):.3g} against "
                f"{results.mean_metric(alone, task):.3g} alone)."
            )
            continue
        gain = results.mean_paper(alone, task) - results.mean_paper(name, task)
        verdicts.append(
            f"{cut}: {_held(gain > noise)} (log-perplexity {results.mean_paper(name, task):.3f} "
            f"against {results.mean_paper(alone, task):.3f} alone; noise {noise:.3f})."
        )
    return verdicts


VERDICTS = {
    "joint_vs_single": _joint_vs_single,
    "capacity": _capacity,
    "blocks": _blocks,
    "mixing": _mixing,
    "scarce": _scarce,
}
