"""The package's user-facing errors.

Every check at the package's boundary (bad arguments, inputs, files or data) raises
an `InputError`: a `ValueError` whose message says what was expected, what came and
how to fix it, fit to be shown as one line. The command line prints these as
`error: ...`; any other exception is a bug and keeps its traceback.
"""


class InputError(ValueError):
    """Bad input from the user: an argument, a batch, a file, a flag.

    >>> try:
    ...     raise InputError("expected a positive int; received 0")
    ... except ValueError as error:
    ...     print(f"error: {error}")
    error: expected a positive int; received 0
    """


class DataError(InputError):
    """Bad or unusable data: a missing file or package, a corrupt or over-long example."""
