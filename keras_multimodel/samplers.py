"""The named samplers: what `generate`, `evaluate`, `predict`, `export` and the
bundled tasks' records accept by name, in one place.

Every named sampler is deterministic, so a SavedModel can serve it; `generate` also
takes any `keras_hub.samplers.Sampler` instance (random ones included).

>>> from keras_multimodel import samplers
>>> samplers.NAMES
('greedy', 'beam')
>>> type(samplers.get("beam")).__name__, samplers.describe("beam")
('BeamSampler', 'beam search, 4 beams')
"""

from keras_multimodel.errors import InputError

NAMES = ("greedy", "beam")
"""The sampler names: greedy decoding and beam search."""
BEAM_WIDTH = 4
"""Beams of "beam"."""
DEFAULT = "greedy"
"""The sampler of a task that names none."""


def get(name):
    """A new `keras_hub.samplers.Sampler` for `name`."""
    import keras_hub

    check(name, "sampler")
    if name == "greedy":
        return keras_hub.samplers.GreedySampler()
    return keras_hub.samplers.BeamSampler(num_beams=BEAM_WIDTH)


def describe(name):
    """How `name` decodes, in words."""
    check(name, "sampler")
    return "greedy" if name == "greedy" else f"beam search, {BEAM_WIDTH} beams"


def choose(name, default):
    """The sampler to decode with: `name` when given, else `default` (a task's
    own); a one-line error naming `--sampler` for an unknown name.

    >>> choose(None, "beam"), choose("greedy", "beam")
    ('beam', 'greedy')
    """
    if name is None:
        return default
    check(name, "sampler (--sampler)")
    return name


def check(name, where):
    """A one-line InputError unless `name` is a sampler name; `where` says whose."""
    if not isinstance(name, str) or name not in NAMES:
        raise InputError(f"{where} must be one of {', '.join(NAMES)}; received {name!r}")
