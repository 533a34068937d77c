"""Runs the example notebooks with papermill, stores their outputs, and checks them.

    python scripts/notebooks.py --run --backend jax          # every notebook, small budgets
    python scripts/notebooks.py --run --budget own           # ... with their own settings
    python scripts/notebooks.py --store examples/quickstart.ipynb   # refresh stored outputs
    python scripts/notebooks.py --check                      # stored outputs match the code

A notebook's first code cell tagged `parameters` holds its settings (`BACKEND`, the
training budget); `--run` replaces them with the small budget in the notebook's
metadata (`keras_multimodel.test_parameters`), which the test suite uses too.
`--store` runs a notebook with its own settings on TensorFlow and writes the outputs
back with a hash of its code cells, so `--check` (and a test) fails when code changed
but the outputs were not refreshed.
"""

import hashlib
import json
import pathlib
import sys
import tempfile
import time

from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = tuple(sorted((ROOT / "examples").glob("*.ipynb")))
STORE_BACKEND = "tensorflow"

FLAGS = flags.FLAGS


def code_hash(notebook):
    """sha256 of the notebook's code cells (without papermill's injected cell)."""
    sources = [
        "".join(cell["source"])
        for cell in notebook["cells"]
        if cell["cell_type"] == "code"
        and "injected-parameters" not in cell.get("metadata", {}).get("tags", [])
    ]
    return hashlib.sha256(json.dumps(sources).encode()).hexdigest()


def problems(path):
    """Why the stored outputs of the notebook at `path` are stale or broken ([] if fine)."""
    notebook = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    stored = notebook["metadata"].get("keras_multimodel", {})
    found = []
    if stored.get("code_sha256") != code_hash(notebook):
        found.append("its code changed since its outputs were stored")
    if stored.get("backend") != STORE_BACKEND:
        found.append(f"its outputs are not from a {STORE_BACKEND} run")
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code" or not "".join(cell["source"]).strip():
            continue
        if cell.get("execution_count") is None:
            found.append(f"code cell {index} has not been run")
        if any(output.get("output_type") == "error" for output in cell.get("outputs", [])):
            found.append(f"code cell {index} stored an error")
    if found:
        found.append(f"refresh it: python scripts/notebooks.py --store {path}")
    return found


def execute(path, backend=None, parameters=None):
    """Runs a notebook top to bottom in a fresh kernel; returns (notebook, seconds).

    `parameters` replace the notebook's own settings (papermill injects them after
    the `parameters` cell) and `backend` sets `BACKEND`; with neither, the notebook
    runs exactly as committed. A cell that raises fails the run with papermill's
    `PapermillExecutionError`, naming the cell.
    """
    import papermill

    path = pathlib.Path(path)
    parameters = dict(parameters or {})
    if backend is not None:
        parameters["BACKEND"] = backend
    with tempfile.TemporaryDirectory() as work_dir:
        start = time.time()
        notebook = papermill.execute_notebook(
            str(path),
            str(pathlib.Path(work_dir) / path.name),
            parameters=parameters or None,
            kernel_name="python3",
            cwd=work_dir,
            progress_bar=False,
        )
        return notebook, time.time() - start


def test_parameters(path):
    notebook = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    return notebook["metadata"].get("keras_multimodel", {}).get("test_parameters", {})


def store(path):
    """Runs the notebook with its own settings on TensorFlow and stores the outputs."""
    import nbformat

    path = pathlib.Path(path)
    if _settings(path).get("BACKEND") != STORE_BACKEND:
        raise SystemExit(f"{path}: its parameters cell must say BACKEND = {STORE_BACKEND!r}")
    notebook, seconds = execute(path)  # as committed: nothing injected
    notebook = nbformat.from_dict(notebook)
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    printed = "".join("".join(output.get("text", "")) for output in outputs)
    if f"on {STORE_BACKEND}" not in printed:  # each notebook prints "Keras X on BACKEND"
        raise SystemExit(f"{path}: the run did not report running on {STORE_BACKEND}")
    notebook.metadata.pop("papermill", None)
    for cell in notebook.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    notebook.metadata["keras_multimodel"] = {
        **notebook.metadata.get("keras_multimodel", {}),
        "code_sha256": code_hash(notebook),
        "backend": STORE_BACKEND,
        "seconds": round(seconds),
    }
    nbformat.write(notebook, path)
    return seconds


def _settings(path):
    """The simple assignments of the notebook's `parameters` cell."""
    import ast

    notebook = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            settings = {}
            for node in ast.parse("".join(cell["source"])).body:
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                    try:
                        settings[node.targets[0].id] = ast.literal_eval(node.value)
                    except ValueError:  # not a literal: not a setting we read
                        continue
            return settings
    return {}


def main(argv):
    paths = [pathlib.Path(p) for p in argv[1:]] or list(NOTEBOOKS)
    status = 0
    for path in paths:
        if FLAGS.store:
            print(f"{path.name}: stored outputs of a {store(path):.0f} s run", flush=True)
        if FLAGS.run:
            parameters = test_parameters(path) if FLAGS.budget == "test" else {}
            _, seconds = execute(path, FLAGS.backend, parameters)
            print(f"{path.name}: ran on {FLAGS.backend} in {seconds:.0f} s", flush=True)
        if FLAGS.check or not (FLAGS.store or FLAGS.run):
            found = problems(path)
            print(f"{path.name}: " + ("; ".join(found) if found else "outputs up to date"))
            status = status or bool(found)
    sys.exit(status)


if __name__ == "__main__":
    # Flags are defined only when run as a script: the tests import this file.
    flags.DEFINE_bool("run", False, "Execute the notebooks (see --budget).")
    flags.DEFINE_enum(
        "budget", "test", ["test", "own"], "--run with the small test budget or the notebook's own."
    )
    flags.DEFINE_bool("store", False, "Execute with their own settings; store outputs.")
    flags.DEFINE_bool("check", False, "Check that stored outputs match the code.")
    flags.DEFINE_enum("backend", "tensorflow", ["tensorflow", "jax"], "Keras backend.")
    app.run(main)
