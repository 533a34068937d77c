"""The main job's own train step: real batches of its six tasks, per length bucket.

    python benchmarks/main_job_step.py                       # the backend of KERAS_BACKEND
    KERAS_BACKEND=jax python benchmarks/main_job_step.py --profile_dir /tmp/trace
    python benchmarks/main_job_step.py --profile_dir /tmp/tf-trace   # needs `pip install xprof`

`train_step.py` times a two-task toy; this times what `train` runs: the `tiny`
MultiModel of the six bundled tasks, its shared 4,000-piece vocabulary, and batches
of 48 drawn by `data.mixture` as `train` draws them (one batch per length bucket,
`--bucketing` as `train`'s "fitted" or the "doubling" of 32 and 64 tokens). It
prints the first step of each bucket (which compiles), the median of `--steps`
steps after 3 warm-up steps, and their mean weighted by how often each bucket
comes in the first 300 batches. With `--profile_dir` it also writes a
profiler trace of 5 steps of the longest bucket (and the compiled programs, under
`hlo/`) and prints the kernels' time per op family (by the layer each kernel's HLO
instruction comes from), the time no kernel ran (Python and dispatch), and the
largest kernels.

    python benchmarks/main_job_step.py --bucketing=doubling  # before fitted buckets
"""

import ast
import collections
import glob
import gzip
import json
import os
import re
import statistics
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 15, "Timed steps per bucket.")
flags.DEFINE_string(
    "profile_dir", None, "Write a trace of 5 steps here and summarise it (TensorFlow: xprof)."
)
flags.DEFINE_enum("bucketing", "fitted", ["fitted", "doubling"], "mixture's bucket lengths.")
flags.DEFINE_enum("tokenizer", "bpe", ["bpe", "unigram"], "The shared vocabulary's model.")
# (the choices of keras_multimodel.data.vocabulary.MODEL_TYPES; flags are defined before
# the package is imported, so that its backend follows KERAS_BACKEND)
flags.DEFINE_integer("batch_size", None, "Examples per step (default: train's).")
flags.DEFINE_list("body", [], "Body settings over the preset's, e.g. hidden_size=128.")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                  "Model.compile's jit_compile (Keras's auto: no XLA for TensorFlow on a CPU).")


# Op families, by the layer names in each HLO instruction's `op_name` (first match).
FAMILIES = (
    ("optimizer (Adam)", r"adam|optimizer"),
    ("normalisation", r"layer_normalization|norm(?!al)|_var\b"),  # not random_normal
    ("speech features (log-mel)", r"mel_spectrogram|fft"),
    ("MoE (routing, experts)", r"/moe(_\d+)?/"),
    ("attention", r"attention"),
    ("convolution and pooling", r"conv|pool"),
    ("output layer and loss", r"softmax|cross_entropy|one_hot|log\b|exp\b"),
    ("embedding", r"embedding"),
)


def _trace_events(profile_dir):
    """The newest trace's events under `profile_dir`: JAX's trace.json.gz, or
    TensorFlow's xplane.pb converted by xprof (`pip install xprof`)."""
    traces = glob.glob(f"{profile_dir}/plugins/profile/*/*.trace.json.gz")
    if traces:
        with gzip.open(max(traces, key=os.path.getmtime)) as f:  # this run's, if reused
            return json.load(f)["traceEvents"]
    planes = glob.glob(f"{profile_dir}/plugins/profile/*/*.xplane.pb")
    if not planes:
        raise SystemExit(f"no trace under {profile_dir}/plugins/profile/")
    from xprof.convert import raw_to_tool_data

    data, _ = raw_to_tool_data.xspace_to_tool_data(
        [max(planes, key=os.path.getmtime)], "trace_viewer", {}
    )
    return json.loads(data)["traceEvents"]


def _op_names(hlo_dir, kernels):
    """{instruction: op_name} of the dumped optimised program that holds the most of
    `kernels` (names); an instruction without metadata takes its operands' ("" if
    none has any)."""
    best = {}
    for path in glob.glob(f"{hlo_dir}/*after_optimizations.txt"):
        with open(path) as f:
            lines = re.findall(r"^\s*(?:ROOT )?%(\S+) = (.*)$", f.read(), re.M)
        if sum(name in kernels for name, _ in lines) <= sum(n in best for n in kernels):
            continue
        named = {name: re.search(r'op_name="([^"]*)"', rest) for name, rest in lines}
        operands = {name: re.findall(r"%([\w.-]+)", rest) for name, rest in lines}
        best = {}
        for name in named:
            seen, queue = set(), [name]
            while queue and name not in best:
                current = queue.pop(0)
                if named.get(current):
                    best[name] = named[current].group(1)
                elif current not in seen:
                    seen.add(current)
                    queue.extend(operands.get(current, [])[:4])
            best.setdefault(name, "")
    return best


def _print_profile(profile_dir, steps, step_ms):
    """Prints the kernels' time per op family; a kernel is an event named after an
    instruction of the compiled train step."""
    events = [e for e in _trace_events(profile_dir) if e.get("ph") == "X" and "dur" in e]
    names = _op_names(f"{profile_dir}/hlo", {e.get("name") for e in events})
    kernels, families, spans = collections.Counter(), collections.Counter(), []
    for event in events:
        if event.get("name") in names:
            kernels[event["name"]] += event["dur"]
            spans.append((event["ts"], event["ts"] + event["dur"]))
    for kernel, us in kernels.items():
        op = names[kernel]
        family = next((f for f, p in FAMILIES if re.search(p, op, re.IGNORECASE)), "other")
        families[family if op else "unattributed"] += us
    busy, reach = 0.0, None
    for begin, end in sorted(spans):  # the union of the kernels' intervals
        if reach is None or begin > reach:
            busy, reach = busy + end - begin, end
        elif end > reach:
            busy, reach = busy + end - reach, end
    span = max(e for _, e in spans) - min(b for b, _ in spans)
    total = sum(families.values())
    print(f"Step {step_ms:.1f} ms; in the trace, XLA kernels ran {busy / 1000 / steps:.1f} ms "
          f"per step (on any thread) of {span / 1000 / steps:.1f} ms; kernel time summed "
          f"over threads {total / 1000 / steps:.1f} ms per step, by op family:")  # fmt: skip
    for family, us in families.most_common():
        print(f"  {us / 1000 / steps:7.1f} ms  {100 * us / total:5.1f}%  {family}")
    print("Largest kernels, ms per step:")
    for kernel, us in kernels.most_common(8):
        print(f"  {us / 1000 / steps:7.1f}  {kernel}  {names[kernel][:90]}")


def main(argv):
    del argv
    if FLAGS.profile_dir:  # the compiled programs, to name each kernel's layer
        dump = f"--xla_dump_to={FLAGS.profile_dir}/hlo --xla_dump_hlo_as_text"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {dump}".strip()
    import keras
    import tensorflow as tf

    from keras_multimodel.cli.config import TrainConfig
    from keras_multimodel.data import bundled, mixture, train_tokenizer
    from keras_multimodel.models import MultiModel

    config = TrainConfig()
    batch_size = FLAGS.batch_size or config.batch_size
    body = {key: ast.literal_eval(value) for key, value in (i.split("=") for i in FLAGS.body)}
    texts = bundled.training_texts(config.tasks, config.data_size)
    tokenizer = train_tokenizer(
        texts, config.vocabulary_size, fit_to_texts=True, model_type=FLAGS.tokenizer
    )
    tasks = bundled.make_tasks(tokenizer, config.tasks, config.data_size)
    model = MultiModel(tasks, preset=config.preset, tokenizer=tokenizer, **body)
    sets = {name: bundled.load(name, "train", tokenizer, config.data_size) for name in config.tasks}
    data = mixture(
        sets, batch_size, model, num_buckets=config.num_buckets,
        bucketing=FLAGS.bucketing, seed=0,
    )  # fmt: skip
    batches, counts = {}, collections.Counter()
    for batch in data.take(300):  # the first batch of each bucket, and how often each comes
        length = int(batch["text_to_text"]["targets"].shape[1])
        batches.setdefault(length, tf.nest.map_structure(lambda t: t.numpy(), batch))
        counts[length] += 1
    jit_compile = {"auto": "auto", "true": True, "false": False}[FLAGS.jit_compile]
    optimizer = keras.optimizers.Adam(1e-3, global_clipnorm=1.0)
    model.compile(optimizer=optimizer, jit_compile=jit_compile)
    backend = keras.backend.backend()
    for length, batch in sorted(batches.items()):
        start = time.perf_counter()
        model.train_on_batch(batch)
        print(f"{backend}: {length}-token bucket, first step {time.perf_counter() - start:.1f} s")
    medians = {}
    for length, batch in sorted(batches.items()):
        for _ in range(3):
            model.train_on_batch(batch)
        times = []
        for _ in range(FLAGS.steps):
            start = time.perf_counter()
            model.train_on_batch(batch)
            times.append(time.perf_counter() - start)
        median = medians[length] = 1000 * statistics.median(times)
        print(f"{backend}: {length}-token bucket, median step {median:.1f} ms")
    total = sum(counts.values())
    mean = sum(medians[n] * counts[n] for n in counts) / total
    shares = ", ".join(f"{n} tokens {100 * counts[n] / total:.0f}%" for n in sorted(counts))
    print(f"{backend}: {FLAGS.bucketing} buckets ({shares}): {mean:.1f} ms per batch")
    if FLAGS.profile_dir:
        if backend == "jax":
            import jax

            with jax.profiler.trace(FLAGS.profile_dir, create_perfetto_trace=True):
                for _ in range(5):
                    model.train_on_batch(batches[max(batches)])
        else:
            tf.profiler.experimental.start(FLAGS.profile_dir)
            for _ in range(5):
                model.train_on_batch(batches[max(batches)])
            tf.profiler.experimental.stop()
        _print_profile(FLAGS.profile_dir, 5, medians[max(batches)])


if __name__ == "__main__":
    app.run(main)
