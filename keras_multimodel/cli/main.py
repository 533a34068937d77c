"""The command line's flags and dispatch: `python -m keras_multimodel <command>`.

Flag defaults come from the commands' config dataclasses (`cli/config.py`). Errors
the package raises for bad input (`keras_multimodel.errors.InputError`) print as
one `error: ...` line; anything else is a bug and keeps its traceback.
"""

import dataclasses
import sys

from absl import app, flags

from keras_multimodel import samplers
from keras_multimodel.cli.compilation_cache import use_compilation_cache
from keras_multimodel.cli.config import DISTRIBUTIONS, DemoConfig, TrainConfig
from keras_multimodel.cli.experiment import EXPERIMENT_NAMES, ExperimentConfig
from keras_multimodel.data.bundled import DATA_SIZES
from keras_multimodel.data.mixture import MIXINGS
from keras_multimodel.data.vocabulary import MODEL_TYPES
from keras_multimodel.errors import InputError

COMMANDS = {
    "train": "train one MultiModel on bundled tasks; a killed run resumes when started "
    "again with the same --output_dir.",
    "evaluate": "per-task test metrics of a trained run, beside simple baselines.",
    "predict": "decode one input: an image or WAV file, or text.",
    "export": "write a trained run as a SavedModel, one serving signature per task.",
    "demo": "train ConvBlock, AttentionBlock and MoELayer on a digit-sorting task.",
    "experiment": "NAME (" + ", ".join(EXPERIMENT_NAMES) + "): the paper's claims tested on "
    "a grid of train + evaluate runs, written up in OUTPUT_DIR/report.md with figures; "
    "resumes where it stopped.",
}
COMMAND_FLAGS = {  # what `<command> --help` lists
    "train": ("output_dir", "tasks", "preset", "train_steps", "steps_per_epoch", "batch_size",
              "data_size", "mixing", "vocabulary_size", "tokenizer", "learning_rate", "seed",
              "distribution", "compilation_cache"),
    "evaluate": ("model_dir", "max_examples", "skip_unavailable", "sampler",
                 "compilation_cache"),
    "predict": ("model_dir", "task", "input", "sampler", "compilation_cache"),
    "export": ("model_dir", "export_dir", "tasks", "sampler", "compilation_cache"),
    "demo": ("output_dir", "steps_per_epoch", "batch_size", "epochs", "compilation_cache"),
    "experiment": ("output_dir", "tasks", "preset", "steps", "seeds", "reference_seeds",
                   "steps_per_epoch", "batch_size", "data_size", "max_examples", "scarce_task",
                   "scarce_fraction", "compilation_cache"),
}  # fmt: skip
HELP_ARGS = ("--help", "-h", "-?", "--helpshort")
FLAGS = flags.FLAGS
_TRAIN, _DEMO, _EXPERIMENT = TrainConfig(), DemoConfig(), ExperimentConfig()


def _define_flags():
    flags.DEFINE_string(
        "output_dir", None, "train, experiment: the run's directory (resumes if it exists)."
    )
    flags.DEFINE_string(
        "model_dir", None, "evaluate, predict, export: a finished train --output_dir."
    )
    flags.DEFINE_list(
        "tasks",
        list(_TRAIN.tasks),
        "train: bundled tasks to train on; experiment: those of the joint runs; export: tasks "
        "to export (default: all of the model's).",
    )
    flags.DEFINE_string(
        "preset", _TRAIN.preset, "train, experiment: model preset (tiny, base, paper)."
    )
    flags.DEFINE_integer("train_steps", _TRAIN.train_steps, "train: optimizer steps in all.")
    flags.DEFINE_integer(
        "steps_per_epoch",
        None,
        f"Steps per epoch: between backups and log lines (train: {_TRAIN.steps_per_epoch}; "
        f"demo: {_DEMO.steps_per_epoch}; experiment: {_EXPERIMENT.steps_per_epoch}).",
    )
    flags.DEFINE_integer(
        "batch_size",
        None,
        f"Examples per step (train, experiment: {_TRAIN.batch_size}; demo: {_DEMO.batch_size}).",
    )
    flags.DEFINE_enum(
        "data_size", _TRAIN.data_size, list(DATA_SIZES), "train, experiment: bundled data size."
    )
    flags.DEFINE_enum("mixing", _TRAIN.mixing, list(MIXINGS), "train: how tasks share a batch.")
    flags.DEFINE_integer(
        "vocabulary_size", _TRAIN.vocabulary_size, "train: pieces of the shared vocabulary."
    )
    flags.DEFINE_enum(
        "tokenizer",
        _TRAIN.tokenizer,
        list(MODEL_TYPES),
        "train: the shared vocabulary's SentencePiece model (byte-pair encoding or unigram).",
    )
    flags.DEFINE_float(
        "learning_rate",
        _TRAIN.learning_rate,
        "train: peak learning rate (Adam, cosine decay); default: 0.04 / sqrt(the preset's "
        "hidden size), 5e-3 for tiny.",
    )
    flags.DEFINE_integer("seed", _TRAIN.seed, "train: random seed.")
    flags.DEFINE_enum(
        "distribution",
        _TRAIN.distribution,
        list(DISTRIBUTIONS),
        "train: none (one device); data_parallel or expert_parallel (JAX); mirrored (TF).",
    )
    flags.DEFINE_integer(
        "max_examples",
        None,
        "evaluate, experiment: at most this many test examples a task (evaluate: all; "
        f"experiment: {_EXPERIMENT.max_examples}).",
    )
    flags.DEFINE_integer("steps", _EXPERIMENT.steps, "experiment: optimizer steps of every run.")
    flags.DEFINE_integer(
        "seeds", _EXPERIMENT.seeds, "experiment: seeds of every run but the joint reference."
    )
    flags.DEFINE_integer(
        "reference_seeds",
        _EXPERIMENT.reference_seeds,
        "experiment: seeds of the joint reference; their spread is the noise each "
        "difference is judged against.",
    )
    flags.DEFINE_string(
        "scarce_task", _EXPERIMENT.scarce_task, "experiment scarce: the task cut to a share."
    )
    flags.DEFINE_float(
        "scarce_fraction",
        _EXPERIMENT.scarce_fraction,
        "experiment scarce: the share of the task's training split kept.",
    )
    flags.DEFINE_bool(
        "skip_unavailable",
        False,
        "evaluate: leave out test sets that cannot be read (the table says which and why) "
        "instead of failing.",
    )
    flags.DEFINE_string("task", None, "predict: the task to run.")
    flags.DEFINE_string("export_dir", None, "export: the SavedModel directory to write.")
    flags.DEFINE_enum(
        "sampler",
        None,
        list(samplers.NAMES),
        f"evaluate, predict, export: how sequence outputs are decoded (beam: "
        f"{samplers.BEAM_WIDTH} beams). By "
        "default each task's own: beam search for translation and parsing, greedy otherwise.",
    )
    flags.DEFINE_string("input", None, "predict: an image or WAV file path, or text.")
    flags.DEFINE_integer("epochs", _DEMO.epochs, "demo: training epochs.")
    flags.DEFINE_bool(
        "compilation_cache",
        True,
        "JAX: keep compiled programs on disk (JAX_COMPILATION_CACHE_DIR, else "
        "$KERAS_MULTIMODEL_CACHE/jax_compilation), so the next train, evaluate, predict or "
        "export of the same model compiles nothing it compiled before; "
        "--nocompilation_cache turns it off.",
    )


_define_flags()


def _pick(value, default):
    return default if value is None else value


def train_config():
    """The TrainConfig the flags describe."""
    return TrainConfig(
        tasks=tuple(FLAGS.tasks),
        preset=FLAGS.preset,
        train_steps=FLAGS.train_steps,
        steps_per_epoch=_pick(FLAGS.steps_per_epoch, _TRAIN.steps_per_epoch),
        batch_size=_pick(FLAGS.batch_size, _TRAIN.batch_size),
        data_size=FLAGS.data_size,
        mixing=FLAGS.mixing,
        vocabulary_size=FLAGS.vocabulary_size,
        tokenizer=FLAGS.tokenizer,
        learning_rate=FLAGS.learning_rate,
        seed=FLAGS.seed,
        distribution=FLAGS.distribution,
    )


def experiment_config(name):
    """The ExperimentConfig the flags describe."""
    return ExperimentConfig(
        name=name,
        tasks=tuple(FLAGS.tasks),
        steps=FLAGS.steps,
        seeds=FLAGS.seeds,
        reference_seeds=FLAGS.reference_seeds,
        steps_per_epoch=_pick(FLAGS.steps_per_epoch, _EXPERIMENT.steps_per_epoch),
        preset=FLAGS.preset,
        batch_size=_pick(FLAGS.batch_size, _EXPERIMENT.batch_size),
        data_size=FLAGS.data_size,
        max_examples=_pick(FLAGS.max_examples, _EXPERIMENT.max_examples),
        scarce_task=FLAGS.scarce_task,
        scarce_fraction=FLAGS.scarce_fraction,
    )


def _run(command, name=None):
    import keras
    from absl import logging

    if not FLAGS["verbosity"].present:  # TensorFlow's INFO lines, unless asked for
        logging.set_verbosity(logging.WARNING)

    stray = sorted(
        name
        for name in set().union(*COMMAND_FLAGS.values()) - set(COMMAND_FLAGS[command])
        if FLAGS[name].present
    )
    if stray:
        raise InputError(
            f"{command} does not take --{', --'.join(stray)}; see `python -m "
            f"keras_multimodel {command} --help` for its flags"
        )
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}")
    use_compilation_cache(enabled=FLAGS.compilation_cache)
    if command == "train":
        from keras_multimodel.cli.train import train

        if not FLAGS.output_dir:
            raise InputError("train needs --output_dir, the run's directory")
        train(FLAGS.output_dir, train_config())
    elif command == "evaluate":
        from keras_multimodel.cli.evaluate import evaluate

        if not FLAGS.model_dir:
            raise InputError("evaluate needs --model_dir, the --output_dir of a train run")
        if FLAGS.max_examples is not None and FLAGS.max_examples < 1:
            raise InputError(
                f"--max_examples must be a positive integer; received {FLAGS.max_examples}"
            )
        evaluate(
            FLAGS.model_dir,
            max_examples=FLAGS.max_examples,
            skip_unavailable=FLAGS.skip_unavailable,
            sampler=FLAGS.sampler,
        )
    elif command == "predict":
        from keras_multimodel.cli.predict import predict

        if not FLAGS.model_dir or not FLAGS.task:
            raise InputError("predict needs --model_dir, --task and --input")
        print(predict(FLAGS.model_dir, FLAGS.task, FLAGS.input, FLAGS.sampler))
    elif command == "export":
        from keras_multimodel.cli.export import export

        if not FLAGS.model_dir or not FLAGS.export_dir:
            raise InputError("export needs --model_dir (a train run) and --export_dir")
        tasks = FLAGS.tasks if FLAGS["tasks"].present else None
        export(FLAGS.model_dir, FLAGS.export_dir, tasks, FLAGS.sampler)
    elif command == "experiment":
        from keras_multimodel.cli.experiment import run_experiment

        if not FLAGS.output_dir:
            raise InputError("experiment needs --output_dir, where its runs and report go")
        run_experiment(FLAGS.output_dir, experiment_config(name))
    else:
        from keras_multimodel import demo

        config = DemoConfig(
            steps_per_epoch=_pick(FLAGS.steps_per_epoch, _DEMO.steps_per_epoch),
            epochs=FLAGS.epochs,
            batch_size=_pick(FLAGS.batch_size, _DEMO.batch_size),
        )
        config.validate()
        result = demo.run(**dataclasses.asdict(config), output_dir=FLAGS.output_dir)
        print(
            f"digit sorting, per-digit test accuracy: {result['accuracy']:.3f} "
            f"(majority-per-position baseline {result['baseline_accuracy']:.3f}); "
            f"trained in {result['seconds']:.0f} s"
        )


def command_help(command):
    """The help of one command: what it does and its flags with their defaults."""
    usage = f"{command} NAME" if command == "experiment" else command
    lines = [f"usage: python -m keras_multimodel {usage} [--flags]", "", COMMANDS[command], ""]
    for name in COMMAND_FLAGS[command]:
        flag = FLAGS[name]
        default = ",".join(flag.default) if isinstance(flag.default, list) else flag.default
        lines.append(f"  --{name}: {flag.help} (default: {default})")
    lines += ["", "`python -m keras_multimodel --helpfull` lists every flag."]
    return "\n".join(lines)


def main(argv):
    if len(argv) == 3 and argv[1] == "experiment":
        command, name = argv[1], argv[2]
    elif len(argv) == 2 and argv[1] == "experiment":
        sys.exit(
            "usage: python -m keras_multimodel experiment NAME --output_dir DIR; NAME is one "
            f"of {', '.join(EXPERIMENT_NAMES)}"
        )
    elif len(argv) != 2 or argv[1] not in COMMANDS:
        given = " ".join(argv[1:]) or "nothing"
        sys.exit(
            f"usage: python -m keras_multimodel {{{','.join(COMMANDS)}}} [--flags]; "
            f"received {given}. See --helpfull for the flags."
        )
    else:
        command, name = argv[1], None
    try:
        _run(command, name)
    except InputError as error:  # bad input: one line; anything else keeps its traceback
        sys.exit(f"error: {error}")


def run(argv=None):
    """The command line's entry point: `<command> --help` prints that command's
    help; anything else goes to absl (`--helpfull` lists every flag)."""
    argv = sys.argv if argv is None else argv
    if len(argv) > 1 and argv[1] in COMMANDS and _asks_for_help(argv[2:]):
        print(command_help(argv[1]))
        sys.exit(0)
    app.run(main, argv=argv)


def _asks_for_help(args):
    """Whether `args` hold a help flag that is not the value of the flag before it
    (`predict --input -h` predicts the text "-h")."""
    return any(
        arg in HELP_ARGS and not (i and _takes_a_value(args[i - 1])) for i, arg in enumerate(args)
    )


def _takes_a_value(arg):
    """Whether `arg` is a non-boolean flag written without `=` (its value comes next)."""
    if not arg or not arg.startswith("-") or "=" in arg or arg in HELP_ARGS:
        return False
    name = arg.lstrip("-")
    return name in flags.FLAGS and not flags.FLAGS[name].boolean
