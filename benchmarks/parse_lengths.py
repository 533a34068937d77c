"""Why parse_en's LAS is low: free-running parses with the wrong number of pairs.

    python benchmarks/parse_lengths.py --model_dir runs/main [--sampler greedy]

Decodes parse_en's test split as `evaluate` does (beam search by default, the
task's own decoding), and counts the parses
whose number of (label, head) pairs differs from the sentence's (each pair after
the slip is scored against the wrong word), then gives LAS over all parses and
over the right-length ones only.
"""

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished `train` run.", required=True)
flags.DEFINE_enum("sampler", None, ["greedy", "beam"], "Decoding (default: the task's own).")


def main(argv):
    del argv
    from keras_multimodel import metrics
    from keras_multimodel.cli.evaluate import predict_batched
    from keras_multimodel.cli.run_dir import load_run
    from keras_multimodel.data import bundled

    model, settings = load_run(FLAGS.model_dir)
    record = bundled.get("parse_en")
    inputs, references = record.load_examples("test", settings.get("data_size", "small"))
    outputs = predict_batched(model, record, inputs, sampler=FLAGS.sampler)  # text
    pairs = metrics.parse_pairs
    examples = zip(references, outputs, strict=True)
    right = [(r, o) for r, o in examples if len(pairs(r)) == len(pairs(o))]
    las_all = metrics.attachment_scores(references, outputs)[1]
    las_right = metrics.attachment_scores([r for r, _ in right], [o for _, o in right])[1]
    print(
        f"{len(references) - len(right)} of {len(references)} parses have the wrong number of "
        f"pairs; LAS {las_all:.3f} over all, {las_right:.3f} over the {len(right)} of the "
        "right length"
    )


if __name__ == "__main__":
    app.run(main)
