"""Per-token decoding latency of `MultiModel.generate`: cached against recomputation.

    KERAS_BACKEND=jax python benchmarks/decode_cache.py
    KERAS_BACKEND=tensorflow python benchmarks/decode_cache.py

A text-to-text MultiModel (`--preset`, 8000-token vocabulary) decodes a batch of
`--batch_size` 32-token inputs greedily to exactly L tokens (no early stop) for
each L in `--lengths`, with caches (`use_cache=True`: causal-conv states and
attention keys/values, constant work per step) and without (every step runs the
decoder over the whole prefix buffer). Each (mode, L) is compiled once, run once
untimed, then timed `--repeats` times; the table gives the median milliseconds
per generated token.
"""

import statistics
import time

import keras
import numpy as np
from absl import app, flags

import keras_multimodel as kmm
from keras_multimodel.modalities import Text

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "tiny", "MultiModel preset.")
flags.DEFINE_list("lengths", ["16", "32", "64", "128", "256"], "Output lengths L.")
flags.DEFINE_integer("batch_size", 1, "Sequences decoded together.")
flags.DEFINE_integer("repeats", 5, "Timed runs per (mode, length); median.")


def main(argv):
    keras.utils.set_random_seed(0)
    lengths = sorted(map(int, FLAGS.lengths))
    text = Text(vocab_size=8000, max_length=max(lengths))
    model = kmm.MultiModel([kmm.Task("translate", text, text)], preset=FLAGS.preset)
    inputs = np.random.default_rng(0).integers(2, 8000, (FLAGS.batch_size, 32)).astype("int32")

    def per_token_ms(length, use_cache):
        def run():
            return model.generate(
                "translate", inputs, max_length=length, use_cache=use_cache, stop_at_end=False
            )

        run()  # compile
        times = []
        for _ in range(FLAGS.repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times) / length

    print(
        f"backend={keras.backend.backend()} preset={FLAGS.preset} batch={FLAGS.batch_size} "
        f"repeats={FLAGS.repeats} (median ms per generated token)"
    )
    print("| L | cached ms/token | recompute ms/token | speed-up |")
    print("|---|---|---|---|")
    cached = {}
    for length in lengths:
        cached[length] = per_token_ms(length, True)
        recompute = per_token_ms(length, False)
        print(
            f"| {length} | {cached[length]:.2f} | {recompute:.2f} | "
            f"{recompute / cached[length]:.1f}x |",
            flush=True,
        )
    print(
        f"cached per-token latency, L={lengths[-1]} / L={lengths[0]}: "
        f"{cached[lengths[-1]] / cached[lengths[0]]:.2f}"
    )


if __name__ == "__main__":
    app.run(main)
