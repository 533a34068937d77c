"""Greedy decoding against beam search, per sequence task of a trained run.

    python benchmarks/greedy_vs_beam.py --model_dir runs/main                  # validation split
    python benchmarks/greedy_vs_beam.py --model_dir runs/main --split test

Decodes each sequence task of the run both ways (beam search: keras-hub's
`BeamSampler`, 4 beams, no length penalty) and prints the task's metrics for
each, with the decoding time. The bundled tasks' own decodings
(`BundledTask.sampler`, which `evaluate`, `predict` and `export` use) were chosen
with it on the validation split; `evaluate` reports the test split.
"""

import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished `train` run.", required=True)
flags.DEFINE_string("split", "validation", "The split to decode (validation, test, real).")
flags.DEFINE_list("tasks", [], "Tasks to decode (default: every sequence task of the run).")


def main(argv):
    del argv
    from keras_multimodel.cli.evaluate import predict_batched
    from keras_multimodel.cli.run_dir import load_run
    from keras_multimodel.data import bundled

    model, settings = load_run(FLAGS.model_dir)
    sequences = [t.name for t in model.tasks if model.nets_of(t.name)[1].is_sequence]
    names = FLAGS.tasks or sequences
    if set(names) - set(sequences):
        raise SystemExit(f"--tasks: choose among this run's sequence tasks {sequences}")
    print("| task | metric | greedy | beam (4) | greedy s | beam s |")
    print("|---|---|---|---|---|---|")
    for name in names:
        record = bundled.get(name)
        inputs, references = record.load_examples(FLAGS.split, settings.get("data_size", "small"))
        scores, seconds = {}, {}
        for sampler in ("greedy", "beam"):
            start = time.perf_counter()
            outputs = predict_batched(model, record, inputs, sampler=sampler)
            seconds[sampler] = time.perf_counter() - start  # first batch compiles
            scores[sampler] = [metric.fn(references, outputs) for metric in record.metrics]
        for i, metric in enumerate(record.metrics):
            print(
                f"| {name} | {metric.name} | {scores['greedy'][i]:.3f} | {scores['beam'][i]:.3f} "
                f"| {seconds['greedy']:.0f} | {seconds['beam']:.0f} |"
            )


if __name__ == "__main__":
    app.run(main)
