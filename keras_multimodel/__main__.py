"""Command line: `python -m keras_multimodel <command> [--flags]`.

Commands:
  demo    train ConvBlock, AttentionBlock and MoELayer on a digit-sorting task.
"""

import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps_per_epoch", 200, "Training steps per epoch.")
flags.DEFINE_integer("epochs", 3, "Training epochs.")
flags.DEFINE_integer("batch_size", 64, "Examples per batch.")
flags.DEFINE_string("output_dir", None, "Where to save the trained model (optional).")

COMMANDS = ("demo",)


def main(argv):
    if len(argv) != 2 or argv[1] not in COMMANDS:
        given = " ".join(argv[1:]) or "nothing"
        sys.exit(
            f"usage: python -m keras_multimodel {{{','.join(COMMANDS)}}} [--flags]; "
            f"received {given}. See --helpfull for the flags."
        )
    import keras

    from keras_multimodel import demo

    print(f"keras {keras.__version__}, backend {keras.backend.backend()}")
    result = demo.run(
        steps_per_epoch=FLAGS.steps_per_epoch,
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        output_dir=FLAGS.output_dir,
    )
    print(
        f"digit sorting, per-digit test accuracy: {result['accuracy']:.3f} "
        f"(majority-per-position baseline {result['baseline_accuracy']:.3f}); "
        f"trained in {result['seconds']:.0f} s"
    )


if __name__ == "__main__":
    app.run(main)
