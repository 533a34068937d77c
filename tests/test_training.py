import pathlib
import runpy

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_multimodel as kmm
from keras_multimodel.modalities import ClassLabel, Image, Text


class TracedMultiModel(kmm.MultiModel):
    """Records the batch shapes of every trace of the loss (one per compiled program)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.traces = []

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        self.traces.append(tuple(tuple(t.shape) for t in keras.tree.flatten(x)))
        return super().compute_loss(x, y, y_pred, sample_weight, training)


@pytest.mark.backends("tensorflow", "jax", reason="torch runs eagerly: nothing is compiled")
def test_fit_compiles_one_program_per_bucket_and_never_after_the_first_epoch(rng):
    text = Text(vocab_size=20, max_length=32)
    model = TracedMultiModel(
        [kmm.Task("label", Image(channels=1), ClassLabel(3)), kmm.Task("copy", text, text)],
        hidden_size=16,
        encoder_blocks=1,  # the smallest body: what is counted is programs, not layers
        decoder_layers=1,
    )
    lengths = [3, 5, 4, 6, 20, 25, 30, 18]  # four short (bucket 16), four long (bucket 32)
    sequences = [rng.integers(2, 20, n).astype("int32") for n in lengths]
    texts = tf.data.Dataset.from_generator(
        lambda: ((s, s) for s in sequences),
        output_signature=(tf.TensorSpec([None], tf.int32),) * 2,
    )
    images = tf.data.Dataset.from_tensor_slices(
        (rng.integers(0, 255, (8, 8, 8, 1)).astype("uint8"), np.arange(8) % 3)
    )
    dataset = kmm.data.mixture(
        {"label": images, "copy": texts}, 8, tasks=model, num_buckets=2, shuffle_buffer=0
    )
    model.compile(optimizer="adam")
    per_epoch = []
    callback = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: per_epoch.append(len(model.traces))
    )
    history = model.fit(dataset, steps_per_epoch=4, epochs=3, verbose=0, callbacks=[callback])
    concrete = {shapes for shapes in model.traces if None not in sum(shapes, ())}
    text_lengths = {shapes[-2][1] for shapes in concrete}  # text targets (B, T)
    assert text_lengths <= {16, 32}
    assert 1 <= per_epoch[0] <= 2, model.traces  # at most one per bucket
    if keras.backend.backend() == "tensorflow":  # (JAX also traces once, symbolically)
        # Each bucket's step is traced once: the optimizer's variables exist before
        # the first trace, so TensorFlow does not trace it again.
        assert len(model.traces) == len(set(model.traces)), model.traces
    assert per_epoch[1] == per_epoch[2] == per_epoch[0], "retraced after the first epoch"
    assert {"loss", "label_loss", "label_accuracy", "copy_loss", "copy_token_accuracy"} <= set(
        history.history
    )


@pytest.mark.large
@pytest.mark.backends("tensorflow", reason="trains for a minute: once, on the default backend")
def test_readme_quickstart_learns_both_tasks_and_survives_save_load():
    path = pathlib.Path(__file__).parents[1] / "examples" / "multitask_quickstart.py"
    results = runpy.run_path(str(path))["main"](steps_per_epoch=50, epochs=3, verbose=0)
    loss = results["loss"]
    assert loss[-1] < 0.6 * loss[0], loss
    assert results["quadrant_accuracy"] >= results["chance"] + 0.5, results
    source, output = results["example"]
    assert output.shape == (16,) and output.max() > 0
    assert results["same_after_load"]


@pytest.mark.large
@pytest.mark.backends("tensorflow", reason="the README's code, on the default backend")
def test_readme_quickstart_code_runs(tmp_path, monkeypatch):
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    start = readme.index("## Quickstart: one model, two modalities")
    begin = readme.index("```python", start) + len("```python")
    code = readme[begin : readme.index("```", begin)]
    code = code.replace("steps_per_epoch=60, epochs=4", "steps_per_epoch=5, epochs=1")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "multimodel.keras").exists()
    sources = namespace["sources"][:2]
    np.testing.assert_array_equal(
        namespace["restored"].generate("reverse", sources),
        namespace["model"].generate("reverse", sources),
    )
