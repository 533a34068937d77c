"""`python -m keras_multimodel export`: a trained run as a SavedModel to serve."""

import os
import pathlib
import shutil
import tempfile

from keras_multimodel import samplers
from keras_multimodel.cli.run_dir import load_run
from keras_multimodel.data import bundled
from keras_multimodel.errors import DataError


def export(model_dir, export_dir, tasks=None, sampler=None):
    """Writes the model of a `train` run as a SavedModel, one signature per task.

    Each bundled task's record gives its raw serving inputs (e.g. the image size
    it was trained on), its class names and, unless `sampler` ("greedy" or "beam")
    is given, its decoding (as `evaluate`'s). The SavedModel is written aside and
    renamed into place, so `export_dir` is complete or absent.
    """
    samplers.choose(sampler, samplers.DEFAULT)  # checked before loading
    export_dir = pathlib.Path(export_dir)
    _check_writable(export_dir)
    model, _ = load_run(model_dir)
    known = [task.name for task in model.tasks]
    tasks = list(tasks or known)
    unknown = [name for name in tasks if name not in known]
    if unknown:
        raise DataError(f"unknown task(s) {', '.join(unknown)}; this model has {', '.join(known)}")
    names = bundled.label_names(tasks)
    chosen = {name: samplers.choose(sampler, bundled.get(name).sampler) for name in tasks}
    export_dir.absolute().parent.mkdir(parents=True, exist_ok=True)
    staging = export_dir.with_name(f".{export_dir.name}.tmp-{os.getpid()}")
    try:
        described = model.export(
            staging,
            tasks=tasks,
            sampler=chosen,
            label_names=names,
            verbose=False,
        )
        os.rename(staging, export_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for name, inputs in described.items():
        print(f"signature {name!r}: inputs {', '.join(inputs)}")
    decodings = ", ".join(
        f"{name} ({chosen[name]})" if model.nets_of(name)[1].is_sequence else name
        for name in tasks
    )
    print(f"Exported {decodings} to {export_dir}.")


def _check_writable(export_dir):
    """A one-line error unless `export_dir` is new and can be created (checked before
    any work, and without creating anything: the SavedModel is written beside it,
    then renamed)."""
    if os.path.lexists(export_dir):
        raise DataError(f"--export_dir {export_dir} exists; give a new directory")
    existing = export_dir.absolute().parent
    while not os.path.lexists(existing):
        existing = existing.parent
    problem = None
    if not existing.is_dir():
        problem = "a file or a broken link, not a directory"
    else:
        try:
            tempfile.TemporaryDirectory(dir=existing, prefix=".kmm-export-check-").cleanup()
        except OSError as error:
            problem = error.strerror or str(error)
    if problem:
        raise DataError(
            f"--export_dir {export_dir}: cannot write in {existing} ({problem}); "
            "give a directory you can write to"
        )
