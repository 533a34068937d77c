"""The documentation site builds, and every public symbol it documents has a docstring.

Both tests read files only (mkdocs.yml, docs/, the package's source through griffe,
as the site's API reference does), so they run once, on the default backend. They
need the `docs` extra (`pip install -e ".[docs]"`; `scripts/install.sh` installs it)
and skip, saying so, without it.
"""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The modules of the API reference (docs/api/): their `__all__`, or for a module
# without one, the public names it defines.
PUBLIC_MODULES = (
    "keras_multimodel",
    "keras_multimodel.layers",
    "keras_multimodel.modalities",
    "keras_multimodel.models",
    "keras_multimodel.data",
    "keras_multimodel.callbacks",
    "keras_multimodel.export",
    "keras_multimodel.samplers",
)
NEEDS_NO_DOCSTRING = {"keras_multimodel.__version__"}
ONCE = pytest.mark.backends("tensorflow", reason="reads files, on any backend: once is enough")


def _require(module, what):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{what} needs {module}: install the docs extra (pip install -e '.[docs]')")


@ONCE
def test_the_docs_site_builds_without_warnings(tmp_path):
    _require("mkdocs", "building the docs site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr}"
    assert (tmp_path / "api" / "keras_multimodel" / "index.html").exists()


def _public_symbols(package, module_name):
    """`{dotted name: docstring}` of the public symbols of `module_name`."""
    module = package[module_name.partition(".")[2]] if "." in module_name else package
    if module.exports is not None:
        names = [str(name) for name in module.exports]
    else:
        names = [name for name, member in module.members.items() if member.is_public]
    symbols = {}
    for name in names:
        member = module[name]
        target = member.final_target if member.is_alias else member
        symbols[f"{module_name}.{name}"] = target.docstring.value if target.docstring else ""
    return symbols


@pytest.fixture(scope="module")
def package():
    _require("griffe", "reading the docstrings as the API reference does")
    import griffe

    return griffe.load("keras_multimodel", search_paths=[str(ROOT)], allow_inspection=False)


@ONCE
@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_symbol_has_a_docstring(package, module_name):
    symbols = _public_symbols(package, module_name)
    missing = {name for name, doc in symbols.items() if not doc.strip()} - NEEDS_NO_DOCSTRING
    # For a constant, the docstring is a string literal on the line after it.
    assert not missing, f"public symbols without a docstring: {', '.join(sorted(missing))}"
