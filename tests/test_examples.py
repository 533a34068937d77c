"""The example scripts and notebooks run, and the notebooks' stored outputs are current.

The notebooks run top to bottom on the current backend with the small budgets in
their metadata (papermill, a fresh kernel each); `scripts/notebooks.py` does the same
from the command line and refreshes the stored outputs.
"""

import importlib.util
import os
import pathlib
import subprocess
import sys

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("notebooks_tool", ROOT / "scripts" / "notebooks.py")
notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(notebooks)

NOTEBOOKS = [pytest.param(path, id=path.stem) for path in notebooks.NOTEBOOKS]
# Where each notebook runs top to bottom (large tier): the backend its story is told
# on, spread so the three backend runs take similar time. The six-task notebooks
# train every bundled task (minutes) and run with --run_extra_large only; what they
# call runs in test_cli.py and test_export.py, and their stored outputs are checked
# against their code on every run.
NOTEBOOK_BACKENDS = {
    "inside_the_moe": "tensorflow",
    "quickstart": "jax",
    "custom_modality": "tensorflow",
    "paper_tasks": "tensorflow",
    "export_and_serve": "jax",
}
SIX_TASK_NOTEBOOKS = ("paper_tasks", "export_and_serve")


def _notebook_run(path):
    """A notebook's top-to-bottom run: large, on its backend; extra large if it
    trains the six bundled tasks."""
    tier = pytest.mark.extra_large if path.stem in SIX_TASK_NOTEBOOKS else pytest.mark.large
    backend = pytest.mark.backends(
        NOTEBOOK_BACKENDS[path.stem], reason="each notebook runs once, on one backend"
    )
    return pytest.param(path, id=path.stem, marks=[tier, backend])
SCRIPTS = {
    "layers_quickstart.py": ["--epochs=3", "--samples=128"],
    "multitask_quickstart.py": ["--epochs=2", "--steps_per_epoch=3"],
}


def test_every_example_is_listed_in_the_examples_readme_and_run_here():
    listed = (ROOT / "examples" / "README.md").read_text()
    folder = ROOT / "examples"
    examples = sorted(p.name for p in folder.iterdir() if p.suffix in {".py", ".ipynb"})
    assert len(notebooks.NOTEBOOKS) == 5
    for name in examples:
        assert f"]({name})" in listed, f"examples/README.md does not link {name}"
    assert sorted(SCRIPTS) == [name for name in examples if name.endswith(".py")]
    assert sorted(NOTEBOOK_BACKENDS) == sorted(path.stem for path in notebooks.NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_stored_notebook_outputs_come_from_running_its_current_code(path):
    assert notebooks.problems(path) == []


def test_the_output_check_notices_a_changed_code_cell(tmp_path):
    import nbformat

    notebook = nbformat.read(notebooks.NOTEBOOKS[0], as_version=4)
    cell = next(c for c in notebook.cells if c.cell_type == "code" and "import keras" in c.source)
    cell.source += "\nprint('changed')"
    changed = tmp_path / "changed.ipynb"
    nbformat.write(notebook, changed)
    assert "its code changed since its outputs were stored" in notebooks.problems(changed)


@pytest.mark.large
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            "layers_quickstart.py",
            marks=pytest.mark.backends("jax", reason="an example script runs once"),
        ),
        pytest.param(
            "multitask_quickstart.py",
            marks=pytest.mark.backends("torch", reason="an example script runs once"),
        ),
    ],
)
def test_example_script_runs(name):
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend()}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *SCRIPTS[name]],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Both print their loss per epoch; it must fall.
    line = next(line for line in result.stdout.splitlines() if line.startswith(("loss", "loss:")))
    losses = [float(v) for v in line.split("[")[1].rstrip("]").split(",")]
    assert losses[-1] < losses[0], result.stdout


@pytest.mark.backends("torch", reason="backend-independent: the scripts' flag checks")
def test_example_scripts_refuse_bad_flags():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "layers_quickstart.py"), "--epochs=0"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "epochs" in result.stderr


@pytest.mark.parametrize("path", [_notebook_run(path) for path in notebooks.NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path):
    parameters = notebooks.test_parameters(path)
    assert parameters, f"{path.name} has no test parameters in its metadata"
    notebook, _ = notebooks.execute(path, keras.backend.backend(), parameters)
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    backend_line = f"on {keras.backend.backend()}"
    assert any(backend_line in "".join(o.get("text", "")) for o in outputs)
