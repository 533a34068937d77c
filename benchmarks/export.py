"""The exported SavedModel against `generate`: latency, export time and size.

    KERAS_BACKEND=tensorflow python benchmarks/export.py
    KERAS_BACKEND=jax python benchmarks/export.py

A MultiModel (`--preset`, default `tiny`) with the six bundled tasks and the shared 4,000-piece
vocabulary (untrained: latency does not depend on the weights, and both sides
decode the same tokens) is saved as `model.keras` and exported with
`MultiModel.export` (greedy). Then, in the same process, each task answers one
batch of `--batch_size` real test examples through `generate` (the Python API:
strings in, strings out) and through the loaded SavedModel's signature (what a
TensorFlow runtime serves), each called once untimed and then `--repeats` times;
the table gives medians and their ratio. Targets: export / generate <= 1.1, and
SavedModel size <= 1.2x `model.keras`.
"""

import pathlib
import statistics
import tempfile
import time

import keras
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 8, "Examples per request.")
flags.DEFINE_integer("repeats", 20, "Timed calls per side and task; median.")
flags.DEFINE_string("preset", "tiny", "MultiModel preset.")


def _size(path):
    path = pathlib.Path(path)
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files)


def _median_ms(call):
    call()  # compile / warm up
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv):
    import tensorflow as tf

    import keras_multimodel as kmm
    from keras_multimodel.data import bundled

    keras.utils.set_random_seed(0)
    tokenizer = kmm.data.train_tokenizer(bundled.training_texts(), 4000)
    model = kmm.MultiModel(bundled.make_tasks(tokenizer), FLAGS.preset, tokenizer=tokenizer)
    root = pathlib.Path(tempfile.mkdtemp())
    model.save(root / "model.keras")
    names = bundled.label_names(bundled.PAPER_TASKS)
    start = time.perf_counter()
    model.export(root / "saved_model", label_names=names,
                 verbose=False)  # fmt: skip
    export_s = time.perf_counter() - start
    served = tf.saved_model.load(str(root / "saved_model"))
    keras_mb, saved_mb = _size(root / "model.keras") / 1e6, _size(root / "saved_model") / 1e6
    print(
        f"backend={keras.backend.backend()} preset={FLAGS.preset} batch={FLAGS.batch_size} "
        f"repeats={FLAGS.repeats} (median ms per request)"
    )
    print(f"export: {export_s:.1f} s; model.keras {keras_mb:.2f} MB, SavedModel {saved_mb:.2f} MB "
          f"({saved_mb / keras_mb:.2f}x)")  # fmt: skip
    print("| task | generate ms | SavedModel ms | SavedModel / generate |")
    print("|---|---|---|---|")
    ratios = []
    for task in bundled.PAPER_TASKS:
        record = bundled.get(task)
        split = "real" if task == "transcribe_speech" else "test"
        raw = list(record.load_examples(split)[0][: FLAGS.batch_size])
        net = model.nets_of(task)[0]
        if isinstance(record.inputs, bundled.TextFormat):
            python_inputs, request = raw, {"text": tf.constant(raw)}
        else:
            python_inputs = record.inputs.model_inputs(raw, net, tokenizer)
            request = python_inputs if isinstance(python_inputs, dict) else {
                "image": python_inputs}  # fmt: skip
            request = {key: tf.constant(value) for key, value in request.items()}
        signature = served.signatures[task]
        generate_ms = _median_ms(lambda: model.generate(task, python_inputs))  # noqa: B023
        served_ms = _median_ms(lambda: signature(**request))  # noqa: B023
        ratios.append(served_ms / generate_ms)
        print(f"| {task} | {generate_ms:.1f} | {served_ms:.1f} | {ratios[-1]:.2f} |")
    print(f"median SavedModel / generate: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    app.run(main)
