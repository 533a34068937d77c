"""caption_image: 32x32 emoji glyphs -> their Unicode names.

Noto Color Emoji glyphs (Apache-2.0) rendered with Pillow, captioned with their
CLDR short names (PyPI `emoji`, BSD): 1,386 training, 104 validation and 138 test
pairs, skin-tone variants and flags left out. Names are 1-5 words, so 4-gram
matches are rare: BLEU is smoothed.
"""

import functools

from keras_multimodel import metrics
from keras_multimodel.data.bundled import baselines, sources
from keras_multimodel.data.bundled.formats import ImageFormat, TextFormat
from keras_multimodel.data.bundled.record import Baseline, BundledTask, Metric, register


def examples(split, data_size):
    data = sources.npz("emoji.npz")
    keep = data["split"] == sources.SPLITS.index(split)
    return data["images"][keep], [str(c) for c in data["captions"][keep]]


RECORD = register(
    BundledTask(
        name="caption_image",
        description="32x32 emoji -> its Unicode name",
        inputs=ImageFormat((32, 32, 3)),
        targets=TextFormat(),
        examples=examples,
        metrics=(
            Metric("BLEU (smoothed)", functools.partial(metrics.bleu, smooth=True)),
            Metric("looping outputs (share)", metrics.looping_share, higher_is_better=False),
        ),
        baselines=(
            Baseline("empty output", baselines.empty_output),
            Baseline("nearest image's caption", baselines.nearest_neighbour_caption, learned=True),
        ),
    )
)
