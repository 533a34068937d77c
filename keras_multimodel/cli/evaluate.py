"""`python -m keras_multimodel evaluate`: each task's test metrics beside its baselines."""

import json
import pathlib
import time
import zipfile

import keras

from keras_multimodel.cli.train import MODEL_FILE, SETTINGS_FILE
from keras_multimodel.data import bundled
from keras_multimodel.errors import DataError


def load_run(model_dir):
    """The trained model of a `train` run and its settings; one-line errors otherwise."""
    model_dir = pathlib.Path(model_dir)
    path = model_dir / MODEL_FILE
    if not path.exists():
        hint = (
            " (training has not finished: run train again with this --output_dir to resume)"
            if (model_dir / SETTINGS_FILE).exists()
            else ""
        )
        raise DataError(f"no trained model at {path}{hint}")
    try:  # a .keras file is a zip archive: check every member's CRC before loading
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, EOFError) as error:
        damaged = f"not a complete archive: {error}"
    if damaged is not None:
        raise DataError(
            f"{path} is damaged ({damaged}); train again into a new --output_dir, or restore "
            "the file from a copy"
        )
    settings_path = model_dir / SETTINGS_FILE
    settings = json.loads(settings_path.read_text()) if settings_path.exists() else {}
    return keras.saving.load_model(path), settings


def predict_batched(model, record, examples, batch_size=64, progress=None):
    """Greedy outputs of `model` for a list of `record`'s raw inputs, in batches of
    one fixed shape (one compiled program per task)."""
    input_net = model.nets_of(record.name)[0]
    outputs = []
    for start in range(0, len(examples), batch_size):
        chunk = list(examples[start : start + batch_size])
        count = len(chunk)
        chunk += [chunk[-1]] * (batch_size - count)  # pad the last batch: no new compile
        inputs = record.inputs.model_inputs(chunk, input_net, model.tokenizer)
        outputs.extend(list(model.generate(record.name, inputs))[:count])
        if progress is not None:
            progress.add(count)
    return outputs


def score(record, references, outputs, inputs, predictors):
    """Table rows: each metric of `record` for the model and each fitted baseline."""
    baselines = [(name, predict(inputs)) for name, predict in predictors] or [(None, None)]
    rows = []
    for metric in record.metrics:
        model_score = metric.fn(references, outputs)
        for name, predicted in baselines:
            rows.append(
                {
                    "metric": metric.name,
                    "model": model_score,
                    "baseline": name,
                    "baseline_score": None if name is None else metric.fn(references, predicted),
                    "higher_is_better": metric.higher_is_better,
                }
            )
    return rows


def evaluate(model_dir, batch_size=64, max_examples=None, skip_unavailable=False):
    """Scores a trained run on every task's test splits; prints and returns the rows.

    A task whose test data cannot be read is an error, unless `skip_unavailable`:
    then it is left out and the table says why.
    """
    model, settings = load_run(model_dir)
    data_size = settings.get("data_size", "small")
    rows, skipped = [], []
    start = time.time()
    for task in model.tasks:
        record = bundled.get(task.name)
        predictors = None
        for split in ("test",) + tuple(record.extra_splits):
            name = task.name if split == "test" else f"{task.name} ({split})"
            try:
                inputs, references = record.load_examples(split, data_size)
            except DataError as error:
                if not skip_unavailable:
                    raise DataError(
                        f"cannot score {name}: {error} (or pass --skip_unavailable to leave "
                        "it out)"
                    ) from None
                skipped.append({"task": name, "reason": str(error)})
                continue
            if max_examples:
                inputs, references = inputs[:max_examples], references[:max_examples]
            if predictors is None:  # fitted once per task, on its training split
                train = record.load_examples("train", data_size)
                predictors = [(b.name, b.fit(*train)) for b in record.baselines]
            print(f"{name}: decoding {len(references)} examples")
            progress = keras.utils.Progbar(len(references))
            outputs = predict_batched(model, record, inputs, batch_size, progress)
            for row in score(record, references, outputs, inputs, predictors):
                rows.append({"task": name, **row, "examples": len(references)})
            shown = record.targets.show(references[0]), record.targets.show(outputs[0])
            print(f"  e.g. {shown[0]!r} -> {shown[1]!r}")
    print_table(rows, skipped)
    result = {"rows": rows, "skipped": skipped, "seconds": time.time() - start,
              "settings": settings}  # fmt: skip
    (pathlib.Path(model_dir) / "evaluation.json").write_text(
        json.dumps(result, indent=2, default=float) + "\n"
    )
    return rows


def print_table(rows, skipped=()):
    """The rows as a Markdown table (model beside baseline), then what was skipped."""
    print("\n| task | metric | model | baseline | baseline score | examples |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        baseline = "-" if row["baseline"] is None else f"{row['baseline_score']:.3f}"
        print(
            f"| {row['task']} | {row['metric']} | {row['model']:.3f} | "
            f"{row['baseline'] or '-'} | {baseline} | {row['examples']} |"
        )
    for item in skipped:
        print(f"\nSkipped {item['task']}: {item['reason']}")
