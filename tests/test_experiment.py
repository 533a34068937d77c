"""`experiment`: the grid's runs, the report's verdicts and figures, and one real grid."""

import json
import os
import subprocess
import sys

import pytest

from keras_multimodel.cli.experiment import EXPERIMENTS, ExperimentConfig, run_dir
from keras_multimodel.cli.experiment_report import validation_curve, write_report
from keras_multimodel.errors import InputError

TASKS = ("classify_image", "transcribe_speech", "parse_en")
# The grid, its report and its figures are files and subprocesses: once is enough.
pytestmark = pytest.mark.backends("tensorflow", reason="no backend computation in this process")


def test_each_experiment_compares_its_runs_with_the_joint_reference():
    config = ExperimentConfig(tasks=TASKS)
    names = {e: [run.name for run in config.runs_of(e)] for e in EXPERIMENTS}
    assert names == {
        "joint_vs_single": ["joint", "single-classify_image", "single-transcribe_speech",
                            "single-parse_en"],
        "capacity": ["joint", "experts-16", "experts-64", "wide"],
        "blocks": ["joint", "no-moe", "no-attention"],
        "mixing": ["joint", "mixing-proportional", "mixing-temperature", "mixing-adaptive"],
        "scarce": ["scarce-alone", "scarce-with-image", "scarce-joint"],
    }  # fmt: skip
    runs = {run.name: run for run in config.runs()}
    assert len(runs) == sum(map(len, names.values())) - 3  # the joint run is shared
    wide = config.train_config(runs["wide"], seed=3)
    assert wide.body == {"hidden_size": 128, "expert_hidden_size": 256} and wide.seed == 3
    assert config.train_config(runs["no-moe"], 0).body == {"use_moe": False}
    scarce = config.train_config(runs["scarce-with-image"], 0)
    assert scarce.tasks == ("classify_image", "parse_en")
    assert scarce.train_fractions == {"parse_en": 0.1}
    assert list(config.seeds_of(runs["joint"])) == [0, 1]
    assert list(config.seeds_of(runs["wide"])) == [0]


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"name": "joint"}, "experiment must be one of joint_vs_single, capacity"),
        ({"reference_seeds": 1}, "--reference_seeds must be at least 2"),
        ({"tasks": ("classify_image", "nope")}, "--tasks must name distinct bundled tasks"),
        ({"scarce_task": "caption_image"}, "--scarce_task 'caption_image' is not among"),
        ({"scarce_fraction": 1.0}, r"--scarce_fraction must be in \(0, 1\)"),
        ({"steps": 0}, "--steps must be a positive integer"),
        ({"max_examples": -2}, "--max_examples must be a positive integer"),
    ],
)
def test_bad_settings_are_refused_before_anything_runs(settings, message, tmp_path):
    config = ExperimentConfig(**{"tasks": TASKS, **settings})
    with pytest.raises(InputError, match=message):
        config.validate()
    from keras_multimodel.cli.experiment import run_experiment

    with pytest.raises(InputError, match=message):
        run_experiment(tmp_path / "out", config)
    assert not (tmp_path / "out").exists()


def _fake_run(directory, tasks, paper, metric, steps=100, spe=50, seconds=0.2, sizes=None):
    """A finished run directory as `train` + `evaluate` leave it, with the given
    test log-perplexities (`paper`) and decoded metrics per task."""
    directory.mkdir(parents=True)
    rows = []
    for task in tasks:
        rows.append({"task": task, "metric": "score", "model": metric[task], "higher_is_better":
                     True, "baselines": {"retrieval": 0.5, "empty": 0.0},
                     "learned": ["retrieval"], "examples": 10})  # fmt: skip
        paper_metric = "log-loss" if task == "classify_image" else "log-perplexity (teacher forced)"
        rows.append({"task": task, "metric": paper_metric, "model": paper[task],
                     "higher_is_better": False, "baselines": {}, "learned": [],
                     "examples": 10})  # fmt: skip
    (directory / "evaluation.json").write_text(json.dumps({"rows": rows, "seconds": 3.0}))
    header = ["epoch"] + [f"val_{task}_loss" for task in tasks]
    epochs = steps // spe
    lines = [",".join(header)] + [
        ",".join([str(e)] + [str(paper[t] + (epochs - 1 - e) * 0.5) for t in tasks])
        for e in range(epochs)
    ]
    (directory / "history.csv").write_text("\n".join(lines) + "\n")
    share = 48 / len(tasks)
    sizes = sizes or {task: 1000 for task in tasks}
    (directory / "mixing.json").write_text(json.dumps(
        {"examples_per_step": {t: share for t in tasks}, "training_examples": sizes}
    ))  # fmt: skip
    (directory / "train_settings.json").write_text(
        json.dumps({"steps_per_epoch": spe, "data_size": "small", "train_fractions": {}})
    )
    (directory / "train_time.json").write_text(json.dumps({"seconds": 30.0, "steps": steps}))
    times = "\n".join(f"{e},{seconds * spe}" for e in range(epochs))
    (directory / "epoch_seconds.csv").write_text(f"epoch,seconds\n{times}\n")


def test_the_report_states_each_claim_from_the_runs_numbers(tmp_path):
    """Numbers chosen so that each verdict is known: joint training helps the two
    smaller tasks and costs the largest 2%; the MoE helps, attention does not."""
    config = ExperimentConfig(tasks=TASKS, name="all")
    sizes = {"classify_image": 500, "transcribe_speech": 800, "parse_en": 9000}
    joint = {"classify_image": 1.0, "transcribe_speech": 3.0, "parse_en": 2.04}
    single = {"classify_image": 1.5, "transcribe_speech": 3.5, "parse_en": 2.0}
    metric = {task: 0.7 for task in TASKS}
    settings = {
        "joint": [joint, {**joint, "parse_en": 2.05}],
        "single-classify_image": [single], "single-transcribe_speech": [single],
        "single-parse_en": [single],
        "experts-16": [{k: v - 0.1 for k, v in joint.items()}],
        "experts-64": [{k: v - 0.2 for k, v in joint.items()}],
        "wide": [joint],
        "no-moe": [{k: v + 0.3 for k, v in joint.items()}],
        "no-attention": [{**joint, "parse_en": 1.5}],
        "mixing-proportional": [joint],
        "mixing-adaptive": [joint], "mixing-temperature": [{k: v - 0.05 for k, v in
                                                                joint.items()}],
        "scarce-alone": [{"parse_en": 3.0}], "scarce-with-image": [{**joint, "parse_en": 2.99}],
        "scarce-joint": [{**joint, "parse_en": 2.5}],
    }  # fmt: skip
    runs = {run.name: run for run in config.runs()}
    for name, seeds in settings.items():
        for seed, paper in enumerate(seeds):
            tasks = runs[name].tasks
            seconds = 0.4 if name == "experts-64" else 0.2
            directory = run_dir(tmp_path, runs[name], seed)
            papers = {t: paper[t] for t in tasks}
            scores = {t: 0.9 for t in tasks} if name.startswith("single") else metric
            _fake_run(directory, tasks, papers, scores, seconds=seconds, sizes=sizes)
    report = write_report(tmp_path, config).read_text()

    assert (
        '"Tasks with less data benefit largely from joint training" (the 1 smallest: '
        "classify_image): **held** at equal steps (1 of 1 better than alone; on the decoded task "
        "metric 0 of 1)" in report
    )
    assert (
        '"Performance on large tasks degrades only slightly if at all" (transcribe_speech, '
        "parse_en; slightly: at most 5% higher log-perplexity, or within the noise; on the "
        "decoded metric, not worse beyond the noise): **held** (2 of 2)"
    ) in report
    assert "parse_en (9,000 training examples): joint 2.045 is worse than single 2.000" in report
    assert "score: joint 0.7, single 0.9 (single better)." in report
    assert (
        "At equal examples of each task, the joint run's validation loss is the lower on 0 of "
        "3 tasks (none); there the single-task run has taken 0.33 of the joint run's steps"
    ) in report  # 1,600 examples: before the single runs' first validation (2,400)
    assert '"The MoE block never hurts and in most cases improves": **held**' in report
    assert '"The attention block never hurts and in most cases improves": **not held** ' \
           "(removing it helps 1 tasks, hurts 0 of 3)" in report  # fmt: skip
    assert "experts-64 against joint: better on classify_image, transcribe_speech, parse_en" \
           in report and "A step costs 2.00x the reference's" in report  # fmt: skip
    assert "lowest: mixing-temperature" in report
    assert "(the paper's ImageNet-to-parsing result), with parse_en cut to 0.1 of its data: " \
           "**not held** (log-perplexity 2.990 against 3.000 alone" in report  # fmt: skip
    assert "benefit largely from joint training\", with parse_en cut to 0.1 of its data: " \
           "**held** (log-perplexity 2.500 against 3.000 alone" in report  # fmt: skip
    assert "| *learned baseline* | score: retrieval 0.5 |" in report
    assert (
        f"Regenerate (finished runs are reused): `python -m keras_multimodel experiment all "
        f"--output_dir={tmp_path} --tasks=classify_image,transcribe_speech,parse_en`"
    ) in report
    # 16 runs, the joint reference with 2 seeds: 17 x (30 s train + 3 s evaluate)
    assert "Wall time of all runs (train and evaluate): 9 min." in report
    for experiment in EXPERIMENTS:
        for kind in ("scores", "curves"):
            figure = tmp_path / "figures" / f"{experiment}_{kind}.png"
            assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"(figures/{figure.name})" in report


def test_a_report_of_one_experiment_needs_only_its_runs(tmp_path):
    """`scarce` alone has no joint reference: its noise is the floor."""
    config = ExperimentConfig(tasks=("classify_image", "parse_en"), name="scarce")
    papers = {"scarce-alone": 3.0, "scarce-joint": 2.9}
    for run in config.runs():
        paper = {"classify_image": 1.0, "parse_en": papers[run.name]}
        directory = run_dir(tmp_path, run, 0)
        _fake_run(directory, run.tasks, {t: paper[t] for t in run.tasks}, {"classify_image": 0.5,
                  "parse_en": 0.4})  # fmt: skip
    report = write_report(tmp_path, config).read_text()
    assert "**held** (log-perplexity 2.900 against 3.000 alone; noise 0.020)" in report


def test_text_tasks_of_runs_with_other_vocabularies_compare_on_their_decoded_metric(tmp_path):
    """Per-token losses of two vocabularies do not compare: parse_en is judged on its
    decoded metric; classify_image (labels) still on its log-loss."""
    config = ExperimentConfig(tasks=("classify_image", "parse_en"), name="joint_vs_single")
    papers = {"joint": {"classify_image": 1.0, "parse_en": 0.5}}
    for run in config.runs():
        paper = papers.get(run.name, {"classify_image": 1.5, "parse_en": 2.0})
        scores = {"classify_image": 0.5, "parse_en": 0.4 if run.name == "joint" else 0.6}
        for seed in config.seeds_of(run):
            directory = run_dir(tmp_path, run, seed)
            _fake_run(directory, run.tasks, {t: paper[t] for t in run.tasks}, scores)
            (directory / "tokenizer.model").write_bytes(run.name.encode())  # its own
    report = write_report(tmp_path, config).read_text()
    assert "classify_image (1,000 training examples): joint 1.000 is better than single" in report
    assert (
        "parse_en (1,000 training examples): score: joint 0.4, single 0.6 (single better), at "
        "equal steps; log-perplexities not compared (the runs' vocabularies differ)."
    ) in report
    assert "judged on the decoded metric where the runs' vocabularies differ: parse_en)" in report


def test_validation_curves_count_the_examples_of_each_task():
    result = {
        "examples_per_step": {"a": 8.0},
        "settings": {"steps_per_epoch": 50},
        "steps": 120,  # the last epoch stopped early
        "history": [{"epoch": 0.0, "val_a_loss": 3.0}, {"epoch": 1.0, "val_a_loss": 2.0},
                    {"epoch": 2.0, "val_a_loss": 1.5}],
    }  # fmt: skip
    assert validation_curve(result, "a") == [(400.0, 3.0), (800.0, 2.0), (960.0, 1.5)]


@pytest.mark.large
def test_a_tiny_grid_trains_evaluates_reports_and_resumes(tmp_path):
    args = [sys.executable, "-m", "keras_multimodel", "experiment", "blocks",
            f"--output_dir={tmp_path}", "--tasks=classify_image", "--steps=3",
            "--steps_per_epoch=2", "--max_examples=8", "--batch_size=8"]  # fmt: skip
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "[4/4] no-attention, seed 0: finished" in done.stdout
    report = (tmp_path / "report.md").read_text()
    assert "## blocks" in report and "no-attention against joint" in report
    for name in ("joint-seed0", "joint-seed1", "no-moe-seed0", "no-attention-seed0"):
        run = tmp_path / "runs" / name
        settings = json.loads((run / "train_settings.json").read_text())
        assert settings["train_steps"] == 3 and (run / "evaluation.json").exists()
    no_moe = json.loads((tmp_path / "runs" / "no-moe-seed0" / "train_settings.json").read_text())
    assert no_moe["body"] == {"use_moe": False}
    # Started again: nothing is redone, the report is written again.
    (tmp_path / "report.md").unlink()
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done before") == 4 and (tmp_path / "report.md").exists()
