"""`python -m keras_multimodel experiment NAME`: the paper's claims tested on a grid
of `train` + `evaluate` runs, written up in `report.md` with figures.

Each run lives in `OUTPUT_DIR/runs/<run>-seed<k>/` (a complete `train` run
directory) and trains and evaluates in a subprocess of its own, so a long grid
holds no memory from earlier runs. The grid resumes where it stopped: a run with
its evaluation is never redone, a killed one resumes from its last backup. Runs
shared by several experiments (the joint reference) are trained once.
"""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time

from keras_multimodel.cli.config import TrainConfig, check_positive
from keras_multimodel.cli.run_dir import EVALUATION_FILE, MODEL_FILE
from keras_multimodel.data import bundled
from keras_multimodel.data.mixture import MIXINGS
from keras_multimodel.errors import DataError, InputError

RUN_FILE = "experiment_run.json"  # a run's settings, written before it starts
LOG_FILE = "log.txt"
REFERENCE = "joint"  # every task at once with the preset as it is

EXPERIMENTS = {
    "joint_vs_single": "every task alone and all jointly, at equal steps and at equal "
    "examples of each task",
    "capacity": "the joint model with 16 and 64 experts (the preset has 4 in tiny) and "
    "with a body twice as wide",
    "blocks": "the joint model without its MoE layers and without attention (the paper's ablation)",
    "mixing": "uniform task sampling against examples-proportional, temperature (T=2) "
    "and adaptive (by moving-average training loss, within each group)",
    "scarce": "one task cut to a tenth of its data: alone, with image classification "
    "only, and with all the other tasks",
}
EXPERIMENT_NAMES = (*EXPERIMENTS, "all")


@dataclasses.dataclass(frozen=True)
class Run:
    """One configuration of the grid; each seed of it is one `train` run."""

    name: str
    tasks: tuple
    body: dict = dataclasses.field(default_factory=dict)
    mixing: str = "uniform"
    train_fractions: dict = dataclasses.field(default_factory=dict)
    reference: bool = False  # trained with `reference_seeds` seeds


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One `experiment` command. Each field is a flag of the same name.

    Attributes:
        name: an experiment of `EXPERIMENTS`, or "all".
        tasks: the bundled tasks of the joint runs.
        steps: optimizer steps of every run (the main job's by default).
        seeds: seeds of every run but the joint reference.
        reference_seeds: seeds of the joint reference run, whose spread is the
            noise every difference in the report is judged against (at least 2).
        steps_per_epoch: steps between validations (the curves' points).
        preset: the model preset of every run.
        batch_size: examples per step, over all tasks.
        data_size: bundled data size, "small" or "full".
        max_examples: test examples scored per task (None: all).
        scarce_task: the task `scarce` cuts.
        scarce_fraction: the share of its training split it keeps.
    """

    name: str = "all"
    tasks: tuple = bundled.PAPER_TASKS
    steps: int = TrainConfig.train_steps
    seeds: int = 1
    reference_seeds: int = 2
    steps_per_epoch: int = 100
    preset: str = TrainConfig.preset
    batch_size: int = TrainConfig.batch_size
    data_size: str = TrainConfig.data_size
    max_examples: int | None = 250
    scarce_task: str = bundled.SCARCE_TASK
    scarce_fraction: float = 0.1

    def validate(self):
        if self.name not in EXPERIMENT_NAMES:
            raise InputError(
                f"experiment must be one of {', '.join(EXPERIMENT_NAMES)}; received {self.name!r}"
            )
        for flag in ("steps", "seeds", "reference_seeds", "steps_per_epoch", "batch_size"):
            check_positive(flag, getattr(self, flag))
        if self.max_examples is not None:
            check_positive("max_examples", self.max_examples)
        if self.reference_seeds < 2:
            raise InputError(
                "--reference_seeds must be at least 2: their spread is the noise every "
                f"comparison is judged against; received {self.reference_seeds}"
            )
        unknown = sorted(set(self.tasks) - set(bundled.names()))
        if unknown or len(set(self.tasks)) != len(self.tasks) or not self.tasks:
            raise InputError(
                f"--tasks must name distinct bundled tasks ({', '.join(bundled.names())}); "
                f"received {', '.join(self.tasks) or 'none'}"
            )
        if self.name in ("scarce", "all") and self.scarce_task not in self.tasks:
            raise InputError(
                f"--scarce_task {self.scarce_task!r} is not among --tasks ({', '.join(self.tasks)})"
            )
        if not 0 < self.scarce_fraction < 1:
            raise InputError(
                f"--scarce_fraction must be in (0, 1); received {self.scarce_fraction!r}"
            )
        for run in self.runs():  # every run's settings, checked before anything runs
            self.train_config(run, seed=0).validate()

    def experiments(self):
        return tuple(EXPERIMENTS) if self.name == "all" else (self.name,)

    def runs_of(self, experiment):
        """The runs `experiment` compares, the joint reference first."""
        tasks = tuple(self.tasks)
        joint = Run(REFERENCE, tasks, reference=True)
        if experiment == "joint_vs_single":
            return [joint] + [Run(f"single-{name}", (name,)) for name in tasks]
        if experiment == "capacity":
            from keras_multimodel.models import BodyConfig

            preset = BodyConfig.from_preset(self.preset)
            wide = {"hidden_size": 2 * preset.hidden_size,
                    "expert_hidden_size": 2 * preset.expert_hidden_size}  # fmt: skip
            return [joint] + [
                Run(f"experts-{n}", tasks, body={"num_experts": n})
                for n in (16, 64)
                if n != preset.num_experts
            ] + [Run("wide", tasks, body=wide)]  # fmt: skip
        if experiment == "blocks":
            return [joint, Run("no-moe", tasks, body={"use_moe": False}),
                    Run("no-attention", tasks, body={"use_attention": False})]  # fmt: skip
        if experiment == "mixing":
            return [joint] + [Run(f"mixing-{s}", tasks, mixing=s) for s in MIXINGS
                              if s != "uniform"]  # fmt: skip
        scarce = {self.scarce_task: self.scarce_fraction}
        source = bundled.TRANSFER_SOURCE
        with_image = tuple(dict.fromkeys((source, self.scarce_task)))
        runs = [
            Run("scarce-alone", (self.scarce_task,), train_fractions=scarce),
            Run("scarce-joint", tasks, train_fractions=scarce),
        ]
        if source in tasks and set(with_image) not in ({self.scarce_task}, set(tasks)):
            runs.insert(1, Run("scarce-with-image", with_image, train_fractions=scarce))
        return runs

    def runs(self):
        """Every run of the chosen experiments, each once."""
        unique = {}
        for experiment in self.experiments():
            for run in self.runs_of(experiment):
                unique.setdefault(run.name, run)
        return list(unique.values())

    def train_config(self, run, seed):
        return TrainConfig(
            tasks=run.tasks,
            preset=self.preset,
            train_steps=self.steps,
            steps_per_epoch=min(self.steps_per_epoch, self.steps),
            batch_size=self.batch_size,
            data_size=self.data_size,
            mixing=run.mixing,
            seed=seed,
            body=dict(run.body),
            train_fractions=dict(run.train_fractions),
            vocabulary_tasks=tuple(self.tasks),  # one vocabulary: comparable log-perplexities
        )

    def seeds_of(self, run):
        return range(self.reference_seeds if run.reference else self.seeds)


def run_dir(output_dir, run, seed):
    return pathlib.Path(output_dir) / "runs" / f"{run.name}-seed{seed}"


def run_experiment(output_dir, config):
    """Trains and evaluates every run of `config`'s experiments that is not done yet,
    then writes `output_dir/report.md` and its figures; returns the report's path."""
    config.validate()
    from keras_multimodel.cli.experiment_report import check_plotting, write_report

    check_plotting()  # before hours of training, not after
    output_dir = pathlib.Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"--output_dir {output_dir} is a file; give a directory")
    jobs = [(run, seed) for run in config.runs() for seed in config.seeds_of(run)]
    print(
        f"Experiment {config.name}: {len(jobs)} runs of {config.steps} steps "
        f"({config.preset}, batch {config.batch_size}) in {output_dir / 'runs'}"
    )
    start = time.time()
    for i, (run, seed) in enumerate(jobs, 1):
        directory = run_dir(output_dir, run, seed)
        label = f"[{i}/{len(jobs)}] {run.name}, seed {seed}"
        if (directory / EVALUATION_FILE).exists():
            print(f"{label}: done before")
            continue
        print(f"{label}: training and evaluating (log: {directory / LOG_FILE})", flush=True)
        seconds = _run_in_subprocess(directory, config, run, seed)
        print(f"{label}: finished in {seconds:.0f} s ({(time.time() - start) / 60:.1f} min so far)")
    report = write_report(output_dir, config)
    print(f"Wrote {report}")
    return report


def _run_in_subprocess(directory, config, run, seed):
    directory.mkdir(parents=True, exist_ok=True)
    spec = {
        "run": dataclasses.asdict(run),
        "train": config.train_config(run, seed).to_dict(),
        "max_examples": config.max_examples,
    }
    path = directory / RUN_FILE
    if path.exists() and json.loads(path.read_text()) != spec:
        raise DataError(
            f"{directory} holds a run with other settings than this experiment's; use the "
            "flags it was started with, or a new --output_dir"
        )
    path.write_text(json.dumps(spec, indent=2) + "\n")
    import keras

    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend()}
    start = time.time()
    with (directory / LOG_FILE).open("a") as log:
        code = subprocess.call(
            [sys.executable, "-m", "keras_multimodel.cli.experiment", str(directory)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    if code != 0:
        tail = (directory / LOG_FILE).read_text().splitlines()[-15:]
        raise DataError(
            f"run {directory.name} failed (exit code {code}); the end of its log:\n"
            + "\n".join(tail)
            + "\nrun the experiment again to resume it"
        )
    return time.time() - start


def _work(directory):
    """One run, in its own process: train (or resume), then evaluate."""
    from keras_multimodel.cli.compilation_cache import use_compilation_cache
    from keras_multimodel.cli.evaluate import evaluate
    from keras_multimodel.cli.train import train

    directory = pathlib.Path(directory)
    spec = json.loads((directory / RUN_FILE).read_text())
    settings = {**spec["train"], "tasks": tuple(spec["train"]["tasks"])}
    settings["vocabulary_tasks"] = tuple(settings.get("vocabulary_tasks", ()))
    config = TrainConfig(**settings)
    use_compilation_cache(enabled=True)
    if not (directory / MODEL_FILE).exists():
        train(directory, config, verbose=2)
    evaluate(directory, max_examples=spec["max_examples"])


if __name__ == "__main__":
    _work(sys.argv[1])
