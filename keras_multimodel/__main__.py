"""Command line: `python -m keras_multimodel <command> [--flags]`.

Commands:
  train     train one MultiModel on bundled tasks (the paper's five kinds of task on
            real offline data); a killed run resumes when started again with the
            same --output_dir.
  evaluate  per-task test metrics of a trained run, beside simple baselines.
  predict   decode one input: an image or WAV file, or text.
  export    write a trained run as a SavedModel, one serving signature per task.
  demo      train ConvBlock, AttentionBlock and MoELayer on a digit-sorting task.

Examples:
  python -m keras_multimodel train --output_dir runs/main
  python -m keras_multimodel evaluate --model_dir runs/main
  python -m keras_multimodel predict --model_dir runs/main --task translate_en_es \\
      --input "In the beginning, God created the heavens and the earth."
  python -m keras_multimodel export --model_dir runs/main --export_dir runs/main/saved_model

`--helpfull` lists every flag with its default.
"""

from keras_multimodel.cli.main import run

if __name__ == "__main__":
    run()
