"""parse_en: English sentence -> linearised dependency parse.

Silver parses (spaCy `en_core_web_sm`, MIT) of World English Bible sentences, one
"label offset" pair per token, e.g. "The earth was formless ." -> "det +1 nsubj +1
root 0 acomp -1 punct -2". "small": sentences of at most 12 tokens (10.1k training,
318 validation, 336 test); "full": up to 20.
"""

from keras_multimodel import metrics
from keras_multimodel.data.bundled import baselines, sources
from keras_multimodel.data.bundled.formats import TextFormat
from keras_multimodel.data.bundled.record import Baseline, BundledTask, Metric, register


def examples(split, data_size):
    rows = sources.parse_rows(split, data_size)
    return [r[0] for r in rows], [r[1] for r in rows]


RECORD = register(
    BundledTask(
        name="parse_en",
        description="English sentence -> linearised dependency parse",
        inputs=TextFormat(),
        targets=TextFormat(),
        examples=examples,
        metrics=(
            Metric("LAS", lambda refs, outs: metrics.attachment_scores(refs, outs)[1]),
            Metric("UAS", lambda refs, outs: metrics.attachment_scores(refs, outs)[0]),
            Metric("exact match", metrics.exact_match),
        ),
        baselines=(
            Baseline("majority label+head", baselines.majority_parser),
            Baseline("per-word majority", baselines.lexicalised_parser, learned=True),
        ),
        # Beam search: it parses better than greedy decoding on the validation split
        # (benchmarks/README.md#decodingpy-greedy-decoding-against-beam-search-per-task).
        sampler="beam",
    )
)
