"""Training-time augmentation: SpecAugment masks, image shifts and flips."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import to_numpy

import keras_multimodel as kmm
from keras_multimodel.modalities import Audio, ClassLabel, Image
from keras_multimodel.modalities.augmentation import shift_and_flip, spec_augment


def _augment(features, frames, **settings):
    seed = keras.random.SeedGenerator(7)
    return to_numpy(spec_augment(features, np.array(frames), seed, **settings))


def test_spec_augment_frequency_bands_cover_the_same_bins_of_every_real_frame(rng):
    features = rng.normal(size=(1024, 30, 20)).astype("float32")
    frames = rng.integers(1, 31, 1024)
    out = _augment(features, frames, frequency_masks=2, frequency_mask_width=4, time_masks=0)
    widths = []
    for x, y, n in zip(features, out, frames, strict=True):
        masked = y != x
        assert not masked[n:].any(), "padded frames are never masked"
        bins = masked[:n].any(axis=0)
        assert (masked[:n] == bins[None, :]).all(), "a band covers the same bins in every frame"
        np.testing.assert_allclose(y[masked], x[:n].mean(), atol=1e-5)  # the example's mean
        widths.append(int(bins.sum()))
    assert max(widths) <= 2 * 4
    # Widths are drawn from 0 up: with 1024 examples, both bands empty (p = 1/25 each)
    # and the two together wider than one (p > 1/5) each come many times.
    assert min(widths) == 0 and max(widths) > 4


def test_spec_augment_time_spans_are_whole_frames_within_the_fraction(rng):
    features = rng.normal(size=(64, 50, 8)).astype("float32")
    frames = rng.integers(1, 51, 64)
    out = _augment(features, frames, frequency_masks=0, time_masks=2, time_mask_fraction=0.2)
    spans = []
    for x, y, n in zip(features, out, frames, strict=True):
        masked = y != x
        steps = masked.any(axis=1)
        assert not steps[n:].any(), "padded frames are never masked"
        assert (masked[steps] == True).all(), "a span covers every bin of its frames"  # noqa: E712
        assert steps.sum() <= 2 * np.floor(0.2 * n)
        spans.append(int(steps.sum()))
    assert max(spans) > 0


def test_spec_augment_with_no_masks_changes_nothing(rng):
    features = rng.normal(size=(2, 10, 6)).astype("float32")
    out = _augment(features, [10, 4], frequency_masks=0, time_masks=0)
    np.testing.assert_array_equal(out, features)


def test_audio_masks_only_in_training_and_keeps_its_settings(rng):
    net = Audio(num_mel_bins=20, frequency_masks=2, frequency_mask_width=5, time_masks=2, seed=1)
    net = net.bind(hidden_size=8)
    plain = Audio(num_mel_bins=20).bind(hidden_size=8)
    plain.set_weights(net.get_weights())  # same convolutions, no masks
    inputs = {"waveform": rng.normal(size=(2, 16000)).astype("float32"), "length": [16000, 8000]}
    inputs["length"] = np.array(inputs["length"])
    reference = to_numpy(plain.bottom(inputs)[0])
    np.testing.assert_allclose(to_numpy(net.bottom(inputs)[0]), reference, atol=1e-6)
    trained = to_numpy(net.bottom(inputs, training=True)[0])
    assert np.abs(trained - reference).max() > 1e-3
    config = Audio.from_config(net.get_config()).get_config()
    assert (config["frequency_masks"], config["frequency_mask_width"]) == (2, 5)
    assert (config["time_masks"], config["time_mask_fraction"]) == (2, 0.1)


def test_shifts_move_whole_pixels_and_repeat_the_edges(rng):
    images = rng.integers(0, 256, (64, 10, 8, 2)).astype("float32")
    out = to_numpy(shift_and_flip(images, keras.random.SeedGenerator(5), shift=0.25))
    moves = set()
    for image, shifted in zip(images, out, strict=True):
        candidates = {
            (dy, dx): image[np.clip(np.arange(10) - dy, 0, 9)][:, np.clip(np.arange(8) - dx, 0, 7)]
            for dy in range(-2, 3)  # floor(0.25 * 10) rows
            for dx in range(-2, 3)  # floor(0.25 * 8) columns
        }
        matches = [move for move, c in candidates.items() if np.array_equal(c, shifted)]
        assert matches, "every output is the input moved by at most 2 rows and 2 columns"
        moves.add(matches[0])
    assert len(moves) > 10  # the moves differ from image to image


def test_flips_mirror_half_the_images(rng):
    images = rng.integers(0, 256, (256, 6, 6, 1)).astype("uint8")
    out = to_numpy(shift_and_flip(images, keras.random.SeedGenerator(2), shift=0.0, flip=True))
    same = (out == images).all(axis=(1, 2, 3))
    mirrored = (out == images[:, :, ::-1]).all(axis=(1, 2, 3))
    assert (same | mirrored).all() and out.dtype == np.uint8
    assert 0.35 < mirrored.mean() < 0.65


def test_image_flips_mirror_whole_images_in_training_only(rng):
    net = Image(channels=1, random_flip=True, seed=3).bind(hidden_size=8)
    images = rng.integers(0, 256, (16, 12, 12, 1)).astype("uint8")
    unflipped = to_numpy(net.bottom(images)[0])
    mirrored = to_numpy(net.bottom(images[:, :, ::-1])[0])
    trained = to_numpy(net.bottom(images, training=True)[0])
    same = np.isclose(trained, unflipped, atol=1e-5).all(axis=(1, 2))
    flipped = np.isclose(trained, mirrored, atol=1e-5).all(axis=(1, 2))
    assert (same | flipped).all(), "each image is itself or its mirror image"
    assert same.any() and flipped.any()


def test_image_shifts_repeat_edges_in_training_only(rng):
    net = Image(channels=3, random_shift=0.25, seed=3).bind(hidden_size=8)
    images = rng.integers(0, 256, (8, 16, 16, 3)).astype("uint8")
    reference = to_numpy(net.bottom(images)[0])
    assert np.abs(to_numpy(net.bottom(images, training=True)[0]) - reference).max() > 1e-3
    flat = np.broadcast_to(images[:, :1, :1], images.shape)  # one colour: shifts change nothing
    np.testing.assert_allclose(
        to_numpy(net.bottom(flat, training=True)[0]), to_numpy(net.bottom(flat)[0]), atol=1e-5
    )


def test_a_bundled_format_passes_its_augmentation_to_the_modality():
    from keras_multimodel.data import bundled

    image = bundled.ImageFormat((28, 28, 1), random_shift=0.1, random_flip=True)
    assert (image.modality(None).random_shift, image.modality(None).random_flip) == (0.1, True)
    audio = bundled.AudioFormat(16000, 8.0, time_masks=2).modality(None)
    assert (audio.time_masks, audio.frequency_masks, audio.max_length) == (2, 0, 128000)
    # The main job trains without augmentation (it cost accuracy at its budget).
    clothes = bundled.get("classify_image").inputs.modality(None)
    assert (clothes.random_shift, clothes.random_flip) == (0.0, False)


def test_configs_saved_before_augmentation_load_and_a_seed_does_not_split_nets():
    audio = Audio(num_mel_bins=8)  # a width over 8 bins is only checked when masking
    config = {k: v for k, v in audio.get_config().items() if "mask" not in k and k != "seed"}
    assert Audio.from_config(config).get_config() == audio.get_config()
    tasks = [
        kmm.Task("a", Image(channels=1, random_flip=True, seed=1), ClassLabel(2)),
        kmm.Task("b", Image(channels=1, random_flip=True), ClassLabel(2)),
    ]
    assert len(kmm.MultiModel(tasks, hidden_size=8).groups) == 1


def test_fit_draws_new_augmentations_every_step(rng):
    """The modalities' seed states advance inside `fit` (JAX's stateless step too)."""
    image = Image(channels=1, random_flip=True, random_shift=0.1, seed=0)
    audio = Audio(num_mel_bins=20, frequency_masks=1, time_masks=1, seed=1)
    text = kmm.modalities.Text(vocab_size=12, max_length=8, end_token_id=1)
    model = kmm.MultiModel(
        [kmm.Task("clothes", image, ClassLabel(3)), kmm.Task("speech", audio, text)],
        hidden_size=16,
        num_experts=2,
        encoder_blocks=1,
        decoder_layers=1,
    )
    sets = {
        "clothes": tf.data.Dataset.from_tensor_slices(
            (rng.integers(0, 256, (8, 12, 12, 1)).astype("uint8"), rng.integers(0, 3, 8))
        ),
        "speech": tf.data.Dataset.from_tensor_slices(
            (rng.normal(size=(8, 3200)).astype("float32"), rng.integers(2, 12, (8, 4)))
        ),
    }
    data = kmm.data.mixture(sets, batch_size=4, tasks=model, seed=0)
    model.compile(optimizer="adam")
    if keras.backend.backend() == "jax":
        assert model.jit_compile  # the augmentation compiles with the step

    def states():
        return {v.path: to_numpy(v).copy() for v in model.variables if "seed" in v.path}

    before = states()
    assert len(before) == 4  # image, audio, the encoder's and decoder's MoE noise
    model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
    after = states()
    assert all((after[path] != before[path]).any() for path in before)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Image(random_shift=0.5), "random_shift"),
        (lambda: Image(random_shift=True), "random_shift"),
        (lambda: Image(random_flip=1), "random_flip"),
        (lambda: Audio(frequency_masks=-1), "frequency_masks"),
        (lambda: Audio(frequency_masks=1, frequency_mask_width=81), "frequency_mask_width"),
        (lambda: Audio(frequency_mask_width=-1), "frequency_mask_width"),
        (lambda: Audio(time_masks=1.5), "time_masks"),
        (lambda: Audio(time_mask_fraction=1.0), "time_mask_fraction"),
    ],
)
def test_bad_augmentation_settings_get_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()
