"""A griffe extension for the docs site (mkdocs.yml): docstring examples as code.

The package's docstrings write their examples as doctests (`>>>` lines, then the
expected output, up to a blank line), which pytest runs. Markdown would render them
as running text, and read `[...]` in them as links; this fences each such block as
Python code, outside any block already fenced.
"""

import re

import griffe

_PROMPT = re.compile(r"^(\s*)>>> ")
_FENCE = re.compile(r"^\s*(```|~~~)")


def fence_doctests(text):
    """`text` with each run of doctest lines (up to a blank line) fenced as Python."""
    out, in_fence, in_doctest, indent = [], False, False, ""
    for line in text.splitlines():
        if in_doctest and not line.strip():
            out.append(f"{indent}```")
            in_doctest = False
        elif not in_doctest and not in_fence and _PROMPT.match(line):
            indent = _PROMPT.match(line).group(1)
            out.append(f"{indent}```python")
            in_doctest = True
        elif not in_doctest and _FENCE.match(line):
            in_fence = not in_fence
        out.append(line)
    if in_doctest:
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    """Fences the doctests of every docstring griffe loads."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None and ">>> " in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
