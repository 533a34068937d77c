"""translate_en_es and translate_es_en: Bible verses, English <-> Spanish.

World English Bible and Reina-Valera 1909 (both public domain), verse-aligned from
Debian's SWORD modules. "small": pairs of at most 16 English and 20 Spanish words
(7.8k training, 170 validation, 170 test); "full": up to 60 and 70 words.
"""

from keras_multimodel import metrics
from keras_multimodel.data.bundled import baselines, sources
from keras_multimodel.data.bundled.formats import TextFormat
from keras_multimodel.data.bundled.record import Baseline, BundledTask, Metric, register


def _examples(source, target):
    def examples(split, data_size):
        pairs = sources.bible_pairs(split, data_size)
        return [p[source] for p in pairs], [p[target] for p in pairs]

    return examples


def _record(name, description, source, target):
    return register(
        BundledTask(
            name=name,
            description=description,
            inputs=TextFormat(),
            targets=TextFormat(),
            examples=_examples(source, target),
            metrics=(
                Metric("BLEU", metrics.bleu),
                Metric("looping outputs (share)", metrics.looping_share, higher_is_better=False),
            ),
            baselines=(
                Baseline("copy the input", baselines.copy_the_input),
                Baseline("word-overlap retrieval", baselines.retrieval_translation, learned=True),
            ),
            # Beam search, as tensor2tensor decoded translation: it translates better
            # than greedy on the validation split (benchmarks/README.md#decodingpy-
            # greedy-decoding-against-beam-search-per-task).
            sampler="beam",
        )
    )


ENGLISH_TO_SPANISH = _record("translate_en_es", "English verse -> Spanish", 0, 1)
SPANISH_TO_ENGLISH = _record("translate_es_en", "Spanish verse -> English", 1, 0)
