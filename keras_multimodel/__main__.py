"""Command line: `python -m keras_multimodel <command> [--flags]`.

Commands:
  train     train one MultiModel on the bundled tasks (the paper's five kinds of task
            on real offline data); a killed run resumes when started again with the
            same --output_dir.
  evaluate  per-task test metrics of a trained run, beside trivial baselines.
  predict   decode one input: an image or WAV file, or text.
  demo      train ConvBlock, AttentionBlock and MoELayer on a digit-sorting task.

Examples:
  python -m keras_multimodel train --output_dir runs/main
  python -m keras_multimodel evaluate --model_dir runs/main
  python -m keras_multimodel predict --model_dir runs/main --task translate_en_es \\
      --input "In the beginning, God created the heavens and the earth."
"""

import sys

from absl import app, flags

# `python -m` has already imported the package (and Keras) before this module runs.
from keras_multimodel.data.paper import TASKS

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "train: the run's directory (resumes if it exists).")
flags.DEFINE_string("model_dir", None, "evaluate, predict: a finished train --output_dir.")
flags.DEFINE_string("preset", "tiny", "train: model preset (tiny, base, paper).")
flags.DEFINE_integer("train_steps", 1800, "train: optimizer steps in all.")
flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (train: 150; demo: 200).")
flags.DEFINE_integer("batch_size", None, "Examples per step (train: 48; demo: 64).")
flags.DEFINE_list("tasks", list(TASKS), "train: bundled tasks to train on.")
flags.DEFINE_enum("data_size", "small", ["small", "full"], "train: bundled data size.")
flags.DEFINE_enum(
    "mixing", "uniform", ["uniform", "proportional", "temperature"], "train: task mixing."
)
flags.DEFINE_float("learning_rate", 2e-3, "train: peak learning rate (Adam, cosine decay).")
flags.DEFINE_integer("seed", 0, "train: random seed.")
flags.DEFINE_integer("max_examples", None, "evaluate: at most this many test examples a task.")
flags.DEFINE_string("task", None, "predict: the task to run.")
flags.DEFINE_string("input", None, "predict: an image or WAV file path, or text.")
flags.DEFINE_integer("epochs", 3, "demo: training epochs.")

COMMANDS = ("train", "evaluate", "predict", "demo")


def _run(command):
    import keras

    print(f"keras {keras.__version__}, backend {keras.backend.backend()}")
    if command == "train":
        from keras_multimodel.cli.train import train

        if not FLAGS.output_dir:
            raise ValueError("train needs --output_dir, the run's directory")
        train(
            FLAGS.output_dir,
            tasks=FLAGS.tasks,
            preset=FLAGS.preset,
            train_steps=FLAGS.train_steps,
            steps_per_epoch=FLAGS.steps_per_epoch or 150,
            batch_size=FLAGS.batch_size or 48,
            data_size=FLAGS.data_size,
            mixing=FLAGS.mixing,
            learning_rate=FLAGS.learning_rate,
            seed=FLAGS.seed,
        )
    elif command == "evaluate":
        from keras_multimodel.cli.evaluate import evaluate

        if not FLAGS.model_dir:
            raise ValueError("evaluate needs --model_dir, the --output_dir of a train run")
        evaluate(FLAGS.model_dir, max_examples=FLAGS.max_examples)
    elif command == "predict":
        from keras_multimodel.cli.predict import predict

        if not FLAGS.model_dir or not FLAGS.task:
            raise ValueError("predict needs --model_dir, --task and --input")
        print(predict(FLAGS.model_dir, FLAGS.task, FLAGS.input))
    else:
        from keras_multimodel import demo

        result = demo.run(
            steps_per_epoch=FLAGS.steps_per_epoch or 200,
            epochs=FLAGS.epochs,
            batch_size=FLAGS.batch_size or 64,
            output_dir=FLAGS.output_dir,
        )
        print(
            f"digit sorting, per-digit test accuracy: {result['accuracy']:.3f} "
            f"(majority-per-position baseline {result['baseline_accuracy']:.3f}); "
            f"trained in {result['seconds']:.0f} s"
        )


def main(argv):
    if len(argv) != 2 or argv[1] not in COMMANDS:
        given = " ".join(argv[1:]) or "nothing"
        sys.exit(
            f"usage: python -m keras_multimodel {{{','.join(COMMANDS)}}} [--flags]; "
            f"received {given}. See --helpfull for the flags."
        )
    from keras_multimodel.data.speech import DataError

    try:
        _run(argv[1])
    except (DataError, ValueError) as error:  # bad input: one line, no traceback
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    app.run(main)
