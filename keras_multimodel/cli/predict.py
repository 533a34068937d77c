"""`python -m keras_multimodel predict`: one input (a file or text) to its output."""

from keras_multimodel import samplers
from keras_multimodel.cli.run_dir import load_run
from keras_multimodel.data import bundled
from keras_multimodel.errors import DataError


def predict(model_dir, task, value, sampler=None):
    """Decodes one input of `task`: a file path for image and speech tasks, text
    otherwise; returns the output as text (a class name, a sentence, a parse).
    `sampler`: "greedy" or "beam"; by default the task's own (as `evaluate`)."""
    samplers.choose(sampler, samplers.DEFAULT)  # checked before loading
    model, _ = load_run(model_dir)
    known = [t.name for t in model.tasks]
    if task not in known:
        raise DataError(f"unknown task {task!r}; this model has {', '.join(known)}")
    if value is None or value == "":
        raise DataError("give the input with --input (a file path, or text)")
    record = bundled.get(task)
    sampler = samplers.choose(sampler, record.sampler)
    example = record.inputs.read(value)
    inputs = record.inputs.model_inputs([example], model.nets_of(task)[0], model.tokenizer)
    return record.targets.show(model.generate(task, inputs, sampler=sampler)[0])
