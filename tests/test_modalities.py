import keras
import numpy as np
import pytest
from conftest import to_numpy

import keras_multimodel as kmm
from keras_multimodel.modalities import Audio, ClassLabel, Image, Modality, Text


def test_image_bottom_standardises_raw_pixels(rng):
    net = Image(channels=3, num_blocks=2).bind(hidden_size=16)
    pixels = rng.integers(0, 256, (2, 32, 24, 3)).astype("uint8")
    x_uint8, mask = net.bottom(pixels)
    x_float, _ = net.bottom(pixels.astype("float32") / 255.0)
    assert tuple(x_uint8.shape) == (2, 4 * 3, 16)  # 32x24 -> 4x3 positions
    assert to_numpy(mask).all()
    np.testing.assert_allclose(to_numpy(x_uint8), to_numpy(x_float), atol=1e-4)


def test_audio_mask_follows_lengths_and_padding_does_not_leak(rng):
    net = Audio(num_mel_bins=20).bind(hidden_size=8)
    waveform = rng.normal(size=(2, 16000)).astype("float32")
    x, mask = net.bottom({"waveform": waveform, "length": np.array([16000, 6400])})
    # 101 frames -> 51 -> 26; 41 frames -> 21 -> 11.
    assert tuple(x.shape) == (2, 26, 8)
    assert to_numpy(mask).sum(axis=1).tolist() == [26, 11]
    noisy = waveform.copy()
    noisy[1, 6400 + 4 * 160 :] = rng.normal(size=noisy[1, 6400 + 4 * 160 :].shape)
    y, _ = net.bottom({"waveform": noisy, "length": np.array([16000, 6400])})
    # Samples past the length (beyond the last window's reach) change no real position.
    np.testing.assert_allclose(to_numpy(x)[1, :9], to_numpy(y)[1, :9], atol=1e-5)


def test_audio_takes_int16_pcm_as_its_float_scaling(rng):
    net = Audio(num_mel_bins=20).bind(hidden_size=8)
    pcm = rng.integers(-32768, 32768, (2, 8000)).astype("int16")
    lengths = np.array([8000, 5000])
    x_pcm, _ = net.bottom({"waveform": pcm, "length": lengths})
    x_float, _ = net.bottom({"waveform": pcm / np.float32(32768), "length": lengths})
    np.testing.assert_allclose(to_numpy(x_pcm), to_numpy(x_float), atol=1e-5)
    checked = net.check_inputs({"waveform": pcm, "length": lengths}, "speech")
    np.testing.assert_allclose(to_numpy(checked["waveform"]), pcm / 32768, atol=1e-7)


def test_text_embeds_with_padding_mask_and_scale():
    net = Text(vocab_size=10).bind(hidden_size=16)
    x, mask = net.bottom(np.array([[4, 2, 1, 0]]))
    assert to_numpy(mask).tolist() == [[True, True, True, False]]
    table = to_numpy(net.embedding.embeddings)
    np.testing.assert_allclose(to_numpy(x)[0, 0], table[4] * 4.0, rtol=1e-6)


def test_label_smoothed_loss_matches_its_definition(rng):
    net = Text(vocab_size=5, label_smoothing=0.1).bind(hidden_size=4)
    logits = rng.normal(size=(1, 2, 5)).astype("float32")
    tokens = np.array([[3, 1]])
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -0.9 * np.take_along_axis(log_probs, tokens[..., None], -1)[..., 0] - 0.1 * (
        log_probs.mean(-1)
    )
    np.testing.assert_allclose(to_numpy(net.loss(tokens, logits)), expected, rtol=1e-5)


def test_class_label_is_one_position():
    net = ClassLabel(7).bind(hidden_size=8)
    tokens = net.target_tokens(np.array([3, 5]))
    assert to_numpy(tokens).tolist() == [[3], [5]]
    assert tuple(net.top(np.zeros((2, 1, 8), "float32")).shape) == (2, 1, 7)


def test_custom_modality_subclass_registers_and_trains():
    @kmm.modalities.register_modality(package="tests")
    class Vector(Modality):
        """Fixed-size float vectors, one body position per value."""

        is_sequence = False
        can_be_target = False

        def build(self, input_shape=None):
            self.project = keras.layers.Dense(self._require_hidden_size(), name="project")
            self.project.build((None, None, 1))
            self.built = True

        def bottom(self, inputs, training=None):
            x = self.project(keras.ops.expand_dims(keras.ops.cast(inputs, "float32"), -1))
            return x, keras.ops.ones(keras.ops.shape(x)[:2], dtype="bool")

        def check_inputs(self, inputs, task_name):
            return keras.ops.convert_to_tensor(inputs, "float32")

    task = kmm.Task("sign", inputs="vector", targets=("class_label", {"num_classes": 2}))
    model = kmm.MultiModel([task], hidden_size=16)
    assert list(model.groups) == ["vector_to_class_label"]
    assert model.generate("sign", np.ones((3, 5), "float32")).shape == (3,)


def test_modalities_share_nets_by_settings():
    tasks = [
        kmm.Task("a", Text(50), Text(50)),
        kmm.Task("b", Text(50), ClassLabel(3)),
        kmm.Task("c", Text(60), Text(50)),
    ]
    model = kmm.MultiModel(tasks, hidden_size=16)
    assert sorted(model.nets) == ["class_label", "text", "text_2"]
    assert model.groups == {
        "text_to_text": ["a"],
        "text_to_class_label": ["b"],
        "text_2_to_text": ["c"],
    }


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Text(vocab_size=1), "vocab_size"),
        (lambda: Text(10, end_token_id=0), "end_token_id"),
        (lambda: Image(channels=0), "channels"),
        (lambda: Image(image_size=28), r"`image_size` must be None or \(height, width\)"),
        (lambda: Image(image_size=(28, 0)), "two positive ints; received"),
        (lambda: ClassLabel(1), "num_classes"),
        (lambda: Audio(frame_step=0), "frame_step"),
        (lambda: kmm.modalities.get("smell"), "Registered modalities"),
        (lambda: kmm.Task("t", ClassLabel(3), ClassLabel(3)), "cannot be an input"),
        (lambda: kmm.Task("t", Text(5), Image()), "cannot be a target"),
        (lambda: kmm.Task("bad name", Text(5), Text(5)), "identifier"),
        (lambda: kmm.Task("moe", Text(5), Text(5)), "reserved"),
    ],
)
def test_bad_settings_get_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()
