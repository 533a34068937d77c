"""Audio modality: waveforms -> log-mel features -> a shortened sequence."""

import keras
import numpy as np
from keras import ops

from keras_multimodel.errors import InputError
from keras_multimodel.layers.layer_utils import check_rate
from keras_multimodel.modalities.augmentation import spec_augment
from keras_multimodel.modalities.base import (
    Modality,
    check_finite,
    describe,
    register_modality,
    spec_dtype,
    spec_error,
    spec_rank,
)

PCM_SCALE = 32768.0  # an int16 PCM sample s is the float sample s / 32768


def to_float(waveform):
    """A waveform (numpy) as float32 in [-1, 1]: int16 PCM is scaled as the `Audio`
    net scales it, floats are cast.

    >>> to_float(np.array([0, 16384, -32768], "int16")).tolist()
    [0.0, 0.5, -1.0]
    """
    waveform = np.asarray(waveform)
    if waveform.dtype == np.int16:
        return waveform.astype("float32") / np.float32(PCM_SCALE)
    return waveform.astype("float32", copy=False)


@register_modality
class Audio(Modality):
    """Audio modality net (input only): waveforms with lengths.

    Inputs are `{"waveform": (batch, samples), "length": (batch,) int}` (or a bare
    `(batch, samples)` array, every sample real). Waveforms are float samples in
    [-1, 1] or int16 PCM (scaled by 1 / 32768 in the net): a `tf.data` pipeline of
    int16 holds half the memory of float32. The bottom computes log-mel
    features inside the model (`keras.layers.MelSpectrogram`, 25 ms windows every
    10 ms by default), then `num_conv_layers` strided convolutions, each halving
    time. Positions past each waveform's length are masked. In training only, the
    features can be masked as in SpecAugment (Park et al., 2019; see
    `augmentation.spec_augment`): off by default.

    Args:
        sample_rate: samples per second of the waveforms.
        num_mel_bins: mel channels.
        frame_length: samples per analysis window.
        frame_step: samples between windows.
        num_conv_layers: stride-2 conv layers after the features.
        max_length: the longest waveform accepted, in samples (30 s by default).
        frequency_masks: SpecAugment bands of mel bins masked per training example.
        frequency_mask_width: the widest band, in mel bins (at most `num_mel_bins`).
        time_masks: SpecAugment spans of frames masked per training example.
        time_mask_fraction: the longest span, as a fraction of the example's frames.
        seed: seed of the masks.
        **kwargs: `Modality` arguments.

    Example:
    >>> import numpy as np
    >>> net = Audio().bind(hidden_size=16)
    >>> x, mask = net.bottom({"waveform": np.zeros((2, 16000), "float32"),
    ...                       "length": np.array([16000, 8000])})
    >>> tuple(x.shape), [int(n) for n in np.asarray(mask).sum(axis=1)]
    ((2, 26, 16), [26, 13])
    """

    can_be_target = False
    is_sequence = False

    def __init__(
        self,
        sample_rate=16000,
        num_mel_bins=80,
        frame_length=400,
        frame_step=160,
        num_conv_layers=2,
        max_length=30 * 16000,
        frequency_masks=0,
        frequency_mask_width=15,
        time_masks=0,
        time_mask_fraction=0.1,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for arg, value in (
            ("sample_rate", sample_rate),
            ("num_mel_bins", num_mel_bins),
            ("frame_length", frame_length),
            ("frame_step", frame_step),
            ("num_conv_layers", num_conv_layers),
            ("max_length", max_length),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"Audio: `{arg}` must be a positive int; received {value!r}.")
        for arg, value in (("frequency_masks", frequency_masks), ("time_masks", time_masks)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"Audio: `{arg}` must be an int >= 0; received {value!r}.")
        widest = num_mel_bins if frequency_masks else None  # unchecked while unused
        if (
            isinstance(frequency_mask_width, bool)
            or not isinstance(frequency_mask_width, int)
            or frequency_mask_width < 0
            or (widest is not None and frequency_mask_width > widest)
        ):
            raise InputError(
                f"Audio: `frequency_mask_width` must be an int in [0, num_mel_bins="
                f"{num_mel_bins}]; received {frequency_mask_width!r}."
            )
        self.frequency_masks = frequency_masks
        self.frequency_mask_width = frequency_mask_width
        self.time_masks = time_masks
        self.time_mask_fraction = check_rate("Audio", "time_mask_fraction", time_mask_fraction)
        self.seed = seed
        self.sample_rate = sample_rate
        self.num_mel_bins = num_mel_bins
        self.frame_length = frame_length
        self.frame_step = frame_step
        self.num_conv_layers = num_conv_layers
        self.max_length = max_length

    def build(self, input_shape=None):
        d = self._require_hidden_size()
        fft_length = 1 << (self.frame_length - 1).bit_length()
        self.features = keras.layers.MelSpectrogram(
            fft_length=fft_length,
            sequence_stride=self.frame_step,
            sequence_length=self.frame_length,
            sampling_rate=self.sample_rate,
            num_mel_bins=self.num_mel_bins,
            power_to_db=False,  # log below: per example, no batch-wide max
            dtype="float32",
            name="mel_spectrogram",
        )
        if self.frequency_masks or self.time_masks:
            self.seed_generator = keras.random.SeedGenerator(self.seed, name="spec_augment_seed")
        self.convs, self.norms = [], []
        channels = self.num_mel_bins
        for i in range(self.num_conv_layers):
            conv = keras.layers.Conv1D(
                d,
                3,
                strides=2,
                padding="same",
                use_bias=False,
                dtype=self.dtype_policy,
                name=f"conv_{i}",
            )
            conv.build((None, None, channels))
            norm = keras.layers.LayerNormalization(dtype=self.dtype_policy, name=f"norm_{i}")
            norm.build((None, None, d))
            self.convs.append(conv)
            self.norms.append(norm)
            channels = d
        self.built = True

    def bottom(self, inputs, training=None):
        waveform, length = inputs["waveform"], inputs["length"]
        pcm = keras.backend.standardize_dtype(waveform.dtype) == "int16"
        waveform = ops.cast(waveform, "float32")
        if pcm:
            waveform = waveform / PCM_SCALE
        mel = self.features(waveform)  # (B, mels, frames)
        x = ops.log(ops.transpose(mel, (0, 2, 1)) + 1e-6)  # (B, frames, mels)
        frames = ops.cast(length, "int32") // self.frame_step + 1  # centred windows
        if training and (self.frequency_masks or self.time_masks):
            x = spec_augment(
                x,
                frames,
                self.seed_generator,
                self.frequency_masks,
                self.frequency_mask_width,
                self.time_masks,
                self.time_mask_fraction,
            )
        for conv, norm in zip(self.convs, self.norms, strict=True):
            mask = ops.arange(ops.shape(x)[1])[None, :] < frames[:, None]  # (B, T)
            x = x * ops.cast(mask, x.dtype)[..., None]
            x = ops.relu(norm(conv(ops.cast(x, self.compute_dtype))))  # (B, ceil(T/2), d)
            frames = (frames + 1) // 2
        mask = ops.arange(ops.shape(x)[1])[None, :] < frames[:, None]
        return x, mask

    def check_inputs(self, inputs, task_name):
        if not isinstance(inputs, dict):
            shape = tuple(getattr(inputs, "shape", np.shape(inputs)))
            inputs = {
                "waveform": inputs,
                "length": np.full(shape[:1], shape[-1] if shape else 0, "int32"),
            }
        if set(inputs) != {"waveform", "length"}:
            raise InputError(
                f"Task {task_name!r} takes audio: a (batch, samples) float or int16 array, "
                f"or a dict with keys 'waveform' and 'length'; received keys {sorted(inputs)}."
            )
        waveform, length = inputs["waveform"], inputs["length"]
        shape = tuple(getattr(waveform, "shape", np.shape(waveform)))
        dtype = keras.backend.standardize_dtype(getattr(waveform, "dtype", "object"))
        if len(shape) != 2 or not ("float" in dtype or dtype == "int16"):
            raise InputError(
                f"Task {task_name!r} takes audio: float (or int16 PCM) waveforms of shape "
                f"(batch, samples) at {self.sample_rate} Hz; received {describe(waveform)}."
            )
        if dtype == "int16":
            waveform = to_float(waveform)
        if shape[1] is not None and shape[1] > self.max_length:
            raise InputError(
                f"Task {task_name!r}: waveforms of {shape[1]} samples exceed the configured "
                f"maximum max_length={self.max_length}. Split the audio, or build the "
                "modality with a larger `max_length`."
            )
        lengths = np.asarray(length)
        if lengths.shape != shape[:1] or (
            lengths.size and (lengths.min() < 1 or lengths.max() > shape[1])
        ):
            raise InputError(
                f"Task {task_name!r}: audio 'length' must hold one length per waveform, in "
                f"[1, {shape[1]}]; received {describe(lengths)} with values "
                f"{np.ravel(lengths).tolist()[:8]}."
            )
        check_finite(waveform, task_name, "audio samples")
        return {
            "waveform": ops.convert_to_tensor(waveform, "float32"),
            "length": ops.convert_to_tensor(lengths, "int32"),
        }

    def prepare(self, value, role):
        import tensorflow as tf

        if isinstance(value, dict):
            waveform, length = value["waveform"], value["length"]
        else:
            waveform = value
            length = tf.shape(waveform)[0]
        if waveform.dtype != tf.int16:  # int16 PCM stays so up to the net
            waveform = tf.cast(waveform, "float32")
        tf.debugging.assert_rank(waveform, 1, message="audio waveforms must be 1-D per example")
        return {"waveform": waveform, "length": tf.reshape(tf.cast(length, "int32"), [])}

    def check_spec(self, spec, role, task_name):
        expected = (
            f"a 1-D float (or int16 PCM) waveform at {self.sample_rate} Hz, or a dict with "
            "keys 'waveform' and 'length'"
        )
        if isinstance(spec, dict):
            if set(spec) != {"waveform", "length"}:
                raise spec_error(
                    task_name, role, expected, spec, "Use exactly the keys 'waveform' and 'length'."
                )
            length = spec["length"]
            if "int" not in spec_dtype(length) or spec_rank(length) != 0:
                raise spec_error(
                    task_name, role, expected, spec, "'length' is one integer per example."
                )
            spec = spec["waveform"]
        dtype, rank = spec_dtype(spec), spec_rank(spec)
        if "float" not in dtype and dtype != "int16":
            fix = (
                "Give float samples in [-1, 1] or int16 PCM; convert other integer PCM "
                "to float, e.g. `tf.cast(samples, 'float32') / 2**31` for 32-bit audio."
            )
        elif rank == 2:
            fix = "The dataset looks batched (or stereo): give mono single examples."
        elif rank != 1:
            fix = "Give each waveform as a 1-D array of samples."
        else:
            return
        raise spec_error(task_name, role, expected, spec, fix)

    def serving_spec(self, sentence_piece=None):
        import tensorflow as tf

        return {
            "waveform": tf.TensorSpec([None, None], tf.float32, name="waveform"),
            "length": tf.TensorSpec([None], tf.int32, name="length"),
        }

    def serving_inputs(self, raw, sentence_piece=None):
        import tensorflow as tf

        waveform, length = raw["waveform"], raw["length"]
        samples = tf.shape(waveform)[1]
        seconds = self.max_length / self.sample_rate
        checks = [
            tf.debugging.assert_less_equal(
                samples,
                self.max_length,
                message=f"waveforms of more than {self.max_length} samples ({seconds:g} s at "
                f"{self.sample_rate} Hz) are longer than this model takes",
            ),
            tf.debugging.assert_equal(
                tf.shape(length)[0], tf.shape(waveform)[0], message="one length per waveform"
            ),
            tf.debugging.assert_greater_equal(
                length, 1, message="an audio length is below 1 sample"
            ),
            tf.debugging.assert_less_equal(
                length, samples, message="an audio length is beyond the end of its waveform"
            ),
            tf.debugging.assert_all_finite(waveform, "audio samples must be finite (no NaN/inf)"),
        ]
        with tf.control_dependencies(checks):
            # Padded to `max_length` samples (zeros past `length` are masked), as
            # `predict` and `evaluate` do: one static length, which a JAX export needs
            # (its log-mel features are not shape-polymorphic in time).
            waveform = tf.pad(waveform, [[0, 0], [0, self.max_length - samples]])
            waveform = tf.ensure_shape(waveform, [None, self.max_length])
        return {"waveform": waveform, "length": length}, tf.ones(tf.shape(length), tf.bool)

    def serving_example(self, spec):
        example = super().serving_example(spec)
        example["length"] = example["length"] + 1  # one sample of silence
        return example

    def max_lengths(self, role):
        return {"waveform": self.max_length, "length": None}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sample_rate": self.sample_rate,
                "num_mel_bins": self.num_mel_bins,
                "frame_length": self.frame_length,
                "frame_step": self.frame_step,
                "num_conv_layers": self.num_conv_layers,
                "max_length": self.max_length,
                "frequency_masks": self.frequency_masks,
                "frequency_mask_width": self.frequency_mask_width,
                "time_masks": self.time_masks,
                "time_mask_fraction": self.time_mask_fraction,
                "seed": self.seed,
            }
        )
        return config
