"""`python -m keras_multimodel evaluate`: each task's test metrics beside its baselines."""

import json
import pathlib
import time

import keras

from keras_multimodel import samplers
from keras_multimodel.cli.run_dir import EVALUATION_FILE, load_run
from keras_multimodel.data import bundled
from keras_multimodel.errors import DataError


def _batches(examples, batch_size):
    """`(chunk, count)`: fixed-size chunks, the last one padded by repeating its last
    example (the same shape, so no new compile); `count` examples are real."""
    for start in range(0, len(examples), batch_size):
        chunk = list(examples[start : start + batch_size])
        count = len(chunk)
        yield chunk + [chunk[-1]] * (batch_size - count), count


def predict_batched(model, record, examples, batch_size=64, progress=None, sampler=None):
    """Outputs of `model` for a list of `record`'s raw inputs, decoded with `sampler`
    (default: the record's), in batches of one fixed shape (one compiled program
    per task)."""
    input_net = model.nets_of(record.name)[0]
    sampler = samplers.choose(sampler, record.sampler)
    outputs = []
    for chunk, count in _batches(examples, batch_size):
        inputs = record.inputs.model_inputs(chunk, input_net, model.tokenizer)
        outputs.extend(list(model.generate(record.name, inputs, sampler=sampler))[:count])
        if progress is not None:
            progress.add(count)
    return outputs


def teacher_forced(model, record, inputs, targets, batch_size=64):
    """The paper's per-token metrics under teacher forcing (`MultiModel.score`):
    `{metric: value}`, accuracy and log-perplexity (log-loss for labels)."""
    input_net, target_net = model.nets_of(record.name)
    totals = {"tokens": 0.0, "correct": 0.0, "log_likelihood": 0.0}
    pairs = list(zip(inputs, targets, strict=True))
    for chunk, count in _batches(pairs, batch_size):  # one shape: one compiled program
        batch_inputs = record.inputs.model_inputs([x for x, _ in chunk], input_net, model.tokenizer)
        batch_targets = record.targets.model_targets(
            [y for _, y in chunk], target_net, model.tokenizer
        )
        sums = model.score(record.name, batch_inputs, batch_targets, examples=count)
        for name, value in sums.items():
            totals[name] += float(value)
    accuracy = totals["correct"] / totals["tokens"]
    nll = -totals["log_likelihood"] / totals["tokens"]
    if target_net.is_sequence:
        return {"token accuracy (teacher forced)": (accuracy, True),
                "log-perplexity (teacher forced)": (nll, False)}  # fmt: skip
    return {"log-loss": (nll, False)}


def score(record, references, outputs, inputs, predictors):
    """Table rows: each metric of `record` for the model and every fitted baseline."""
    predicted = {name: predict(inputs) for name, _, predict in predictors}
    learned = [name for name, is_learned, _ in predictors if is_learned]
    return [
        {
            "metric": metric.name,
            "model": metric.fn(references, outputs),
            "higher_is_better": metric.higher_is_better,
            "baselines": {name: metric.fn(references, out) for name, out in predicted.items()},
            "learned": learned,
        }
        for metric in record.metrics
    ]


def evaluate(model_dir, batch_size=64, max_examples=None, skip_unavailable=False, sampler=None):
    """Scores a trained run on every task's test splits; prints and returns the rows.

    Each task metric stands beside the task's baselines (fitted on its training
    split), and the paper's teacher-forced per-token metrics follow. A task whose
    test data cannot be read is an error, unless `skip_unavailable`: then it is left
    out and the table says why. Outputs are decoded with `sampler` ("greedy" or
    "beam"), by default each task's own (`BundledTask.sampler`: beam search for
    translation and parsing); each task metric's row records it as "decoding".
    """
    samplers.choose(sampler, samplers.DEFAULT)  # checked before loading
    model, settings = load_run(model_dir)
    data_size = settings.get("data_size", "small")
    rows, skipped = [], []
    start = time.time()
    for task in model.tasks:
        record = bundled.get(task.name)
        is_sequence = model.nets_of(task.name)[1].is_sequence
        # Labels are the argmax: no decoding.
        decoding = samplers.choose(sampler, record.sampler) if is_sequence else None
        predictors = None
        for split in ("test",) + tuple(record.extra_splits):
            name = task.name if split == "test" else f"{task.name} ({split})"
            try:
                inputs, references = record.load_examples(split, data_size)
            except DataError as error:
                if not skip_unavailable:
                    raise DataError(
                        f"cannot score {name}: {error} (or pass --skip_unavailable to leave it out)"
                    ) from None
                skipped.append({"task": name, "reason": str(error)})
                continue
            if max_examples:
                inputs, references = inputs[:max_examples], references[:max_examples]
            if predictors is None:  # fitted once per task, on its training split
                train = record.load_examples("train", data_size)
                predictors = [(b.name, b.learned, b.fit(*train)) for b in record.baselines]
            how = f" ({samplers.describe(decoding)})" if decoding else ""
            print(f"{name}: decoding {len(references)} examples{how}")
            progress = keras.utils.Progbar(len(references))
            outputs = predict_batched(model, record, inputs, batch_size, progress, decoding)
            task_rows = [
                {**row, "decoding": decoding}
                for row in score(record, references, outputs, inputs, predictors)
            ]
            forced = teacher_forced(model, record, inputs, references, batch_size)
            for metric, (value, higher_is_better) in forced.items():
                task_rows.append({"metric": metric, "model": value, "baselines": {},
                                  "learned": [], "higher_is_better": higher_is_better})  # fmt: skip
            rows.extend({"task": name, **row, "examples": len(references)} for row in task_rows)
            shown = record.targets.show(references[0]), record.targets.show(outputs[0])
            print(f"  e.g. {shown[0]!r} -> {shown[1]!r}")
    print_table(rows, skipped)
    result = {"rows": rows, "skipped": skipped, "seconds": time.time() - start,
              "settings": settings}  # fmt: skip
    (pathlib.Path(model_dir) / EVALUATION_FILE).write_text(
        json.dumps(result, indent=2, default=float) + "\n"
    )
    return rows


def beats_baselines(row):
    """Whether the model's score is better than every baseline's on this row."""
    better = (lambda a, b: a > b) if row["higher_is_better"] else (lambda a, b: a < b)
    return all(better(row["model"], score) for score in row["baselines"].values())


def print_table(rows, skipped=()):
    """The rows as a Markdown table (model beside its baselines), then what was skipped.

    The model's score is in bold where it beats every baseline of its row.
    """
    print("\n| task | metric | model | trivial baseline | learned baseline(s) | examples |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        model = f"{row['model']:.3f}"
        if row["baselines"] and beats_baselines(row):
            model = f"**{model}**"
        cells = {True: [], False: []}
        for name, value in row["baselines"].items():
            cells[name in row["learned"]].append(f"{name} {value:.3f}")
        trivial, learned = ("; ".join(cells[kind]) or "-" for kind in (False, True))
        print(f"| {row['task']} | {row['metric']} | {model} | {trivial} | {learned} | "
              f"{row['examples']} |")  # fmt: skip
    for item in skipped:
        print(f"\nSkipped {item['task']}: {item['reason']}")
