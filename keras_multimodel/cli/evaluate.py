"""`python -m keras_multimodel evaluate`: per-task test metrics beside trivial baselines."""

import json
import pathlib
import time

import keras
import numpy as np

from keras_multimodel import evaluation
from keras_multimodel.cli.train import MODEL_FILE, SETTINGS_FILE
from keras_multimodel.data import DataError, paper
from keras_multimodel.data.tokenizer import encode, pad_rows


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
    settings_path = model_dir / SETTINGS_FILE
    settings = json.loads(settings_path.read_text()) if settings_path.exists() else {}
    return keras.saving.load_model(path), settings


def model_inputs(model, task, examples):
    """Raw examples -> fixed-shape model inputs (one compiled program per task)."""
    input_net, _ = model.nets_of(task)
    if task == "transcribe_speech":
        longest = max(len(w) for w in examples)
        if longest > input_net.max_length:
            raise DataError(
                f"audio of {longest / input_net.sample_rate:.1f} s is longer than the "
                f"model's {input_net.max_length / input_net.sample_rate:.1f} s"
            )
        waveform = pad_rows(examples, input_net.max_length, "float32")
        return {"waveform": waveform, "length": np.array([len(w) for w in examples], "int32")}
    if isinstance(examples, list) and examples and isinstance(examples[0], str):
        rows = encode(model.tokenizer, examples, add_end=False)
        longest = max(len(row) for row in rows)
        if longest > input_net.max_length:
            raise DataError(
                f"the text is {longest} tokens long; the model takes at most "
                f"{input_net.max_length}"
            )
        return pad_rows(rows, input_net.max_length)
    return np.asarray(examples)


def predict_batched(model, task, examples, batch_size=64, progress=None):
    """Greedy outputs for a list of raw examples, in fixed-size batches."""
    outputs = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        count = len(chunk)
        if count < batch_size:  # pad the last batch: same shape, no new compile
            chunk = list(chunk) + [chunk[-1]] * (batch_size - count)
            if isinstance(examples, np.ndarray):
                chunk = np.stack(chunk)
        result = model.generate(task, model_inputs(model, task, chunk))
        outputs.extend(list(result)[:count])
        if progress is not None:
            progress.add(count)
    return outputs


def _score(task, references, outputs, inputs, data_size):
    """(metric, model score, baseline name, baseline score, extra) for one task."""
    if task == "classify_image":
        labels = paper.load_examples(task, "train", data_size)[1]
        majority = np.bincount(labels).argmax()
        return ("accuracy", evaluation.accuracy(references, outputs), "majority class",
                evaluation.accuracy(references, [majority] * len(references)), {})  # fmt: skip
    if task == "transcribe_speech":
        return ("WER (lower is better)", evaluation.word_error_rate(references, outputs),
                "empty output", evaluation.word_error_rate(references, [""] * len(outputs)),
                {})  # fmt: skip
    if task == "parse_en":
        parser = evaluation.majority_parser(paper.load_examples(task, "train", data_size)[1])
        baseline = [parser(sentence) for sentence in inputs]
        uas, las = evaluation.attachment_scores(references, outputs)
        base_uas, base_las = evaluation.attachment_scores(references, baseline)
        extra = {
            "exact match": (evaluation.exact_match(references, outputs),
                            evaluation.exact_match(references, baseline)),
            "UAS": (uas, base_uas),
        }  # fmt: skip
        return "LAS", las, "majority label+head", base_las, extra
    if task == "caption_image":  # names of 1-5 words: 4-gram matches are rare, so smooth
        return ("BLEU (smoothed)", evaluation.bleu(references, outputs, smooth=True),
                "empty output", evaluation.bleu(references, [""] * len(outputs), smooth=True),
                {})  # fmt: skip
    return ("BLEU", evaluation.bleu(references, outputs), "copy the input",
            evaluation.bleu(references, inputs), {})  # fmt: skip


def evaluate(model_dir, batch_size=64, max_examples=None, real_speech=True):
    """Scores a trained run on every task's test split; returns and prints the table rows."""
    model, settings = load_run(model_dir)
    data_size = settings.get("data_size", "small")
    jobs = [(task.name, "test") for task in model.tasks]
    if real_speech and "transcribe_speech" in dict(jobs):
        jobs.append(("transcribe_speech", "real"))
    rows = []
    start = time.time()
    for task, split in jobs:
        if task not in paper.TASKS:
            raise DataError(f"task {task!r} of this model is not a bundled task")
        try:
            inputs, references = paper.load_examples(task, split, data_size)
        except DataError as error:  # e.g. pocketsphinx-testdata not installed
            print(f"Skipping {task} ({split}): {error}")
            continue
        if max_examples:
            inputs, references = inputs[:max_examples], references[:max_examples]
        print(f"{task} ({split}): decoding {len(references)} examples")
        progress = keras.utils.Progbar(len(references))
        outputs = predict_batched(model, task, inputs, batch_size, progress)
        metric, score, baseline_name, baseline, extra = _score(
            task, references, outputs, inputs, data_size
        )
        name = task if split == "test" else f"{task} ({split} recordings)"
        rows.append([name, metric, score, baseline_name, baseline, len(references)])
        for extra_metric, (value, base) in extra.items():
            rows.append([name, extra_metric, value, baseline_name, base, len(references)])
        if task == "classify_image":
            reference, example = (paper.FASHION_MNIST_CLASSES[int(references[0])],
                                  paper.FASHION_MNIST_CLASSES[int(outputs[0])])  # fmt: skip
        else:
            reference, example = references[0], outputs[0]
        print(f"  e.g. {reference!r} -> {example!r}")
    print_table(rows)
    result = {"rows": rows, "seconds": time.time() - start, "settings": settings}
    (pathlib.Path(model_dir) / "evaluation.json").write_text(
        json.dumps(result, indent=2, default=float) + "\n"
    )
    return rows


def print_table(rows):
    """The rows as a Markdown table (model beside baseline)."""
    print("\n| task | metric | model | baseline | baseline score | examples |")
    print("|---|---|---|---|---|---|")
    for name, metric, score, baseline_name, baseline, count in rows:
        print(f"| {name} | {metric} | {score:.3f} | {baseline_name} | {baseline:.3f} | {count} |")
