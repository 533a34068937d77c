"""Image modality: raw pixels -> a sequence of positions."""

import operator

import keras
import numpy as np
from keras import ops

from keras_multimodel.errors import InputError
from keras_multimodel.layers import layer_utils
from keras_multimodel.layers.separable_conv import SeparableConv2D
from keras_multimodel.modalities.augmentation import shift_and_flip
from keras_multimodel.modalities.base import (
    Modality,
    check_finite,
    describe,
    register_modality,
    spec_dtype,
    spec_error,
    spec_rank,
)


@register_modality
class Image(Modality):
    """Image modality net (input only): raw pixels to a sequence of positions.

    The bottom takes `(batch, height, width, channels)` images, uint8 or float, of
    one size per batch (any size, or exactly `image_size` when it is set: a task
    trained at one size refuses other sizes in `generate`, in datasets and in its
    SavedModel signature, rather than answer off its training distribution; resize
    them first), standardises each image inside the model (zero mean, unit
    variance, so uint8 `[0, 255]` and float `[0, 1]` pixels give the same
    features and serving takes raw pixels), then runs the entry flow: two 3x3
    convolutions (the first with stride 2) and `num_blocks` residual blocks of two
    separable 3x3 convolutions with a stride-2 max-pool (Kaiser et al., 2017, 2.3).
    The `(batch, H', W', hidden_size)` result, `H' = ceil(height / 2^(num_blocks+1))`,
    is flattened to `(batch, H' * W', hidden_size)` with every position real.

    In training only, images can be shifted by whole pixels at random
    (`random_shift`, edges repeated) and mirrored left to right (`random_flip`; see
    `augmentation.shift_and_flip`): off by default. Turn flips on only where a
    mirrored image keeps its target (clothes, not arrows or text).

    Args:
        channels: number of image channels (1 for grayscale, 3 for RGB).
        num_blocks: residual blocks; each halves the height and width.
        random_shift: the largest random shift in training, as a fraction of the
            height and of the width (0: none).
        random_flip: mirror half the training images left to right.
        seed: seed of the random shifts and flips.
        image_size: `(height, width)` every image must have, or None (the
            default) for any size.
        **kwargs: `Modality` arguments.

    Example:
    >>> import numpy as np
    >>> net = Image(channels=1).bind(hidden_size=32)
    >>> x, mask = net.bottom(np.zeros((2, 28, 28, 1), "uint8"))
    >>> tuple(x.shape), tuple(mask.shape)
    ((2, 16, 32), (2, 16))
    """

    can_be_target = False
    is_sequence = False

    def __init__(
        self,
        channels=3,
        num_blocks=2,
        random_shift=0.0,
        random_flip=False,
        seed=None,
        image_size=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if image_size is not None:
            image_size = _image_size(image_size)
        for arg, value in (("channels", channels), ("num_blocks", num_blocks)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"Image: `{arg}` must be a positive int; received {value!r}.")
        shift_ok = isinstance(random_shift, (int, float)) and 0 <= random_shift < 0.5
        if isinstance(random_shift, bool) or not shift_ok:
            raise InputError(
                f"Image: `random_shift` must be a fraction in [0, 0.5); received {random_shift!r}."
            )
        if not isinstance(random_flip, bool):
            raise InputError(
                f"Image: `random_flip` must be True or False; received {random_flip!r}."
            )
        self.channels = channels
        self.num_blocks = num_blocks
        self.random_shift = float(random_shift)
        self.random_flip = random_flip
        self.seed = seed
        self.image_size = image_size

    def build(self, input_shape=None):
        d = self._require_hidden_size()
        image_shape = (None, None, None, self.channels)
        if self.random_shift or self.random_flip:
            self.seed_generator = keras.random.SeedGenerator(self.seed, name="augmentation_seed")

        def conv(filters, name, shape, strides=1):
            layer = keras.layers.Conv2D(
                filters,
                3,
                strides=strides,
                padding="same",
                use_bias=False,
                dtype=self.dtype_policy,
                name=name,
            )
            return layer_utils.built(layer, shape)

        def norm(name, channels=d):
            layer = keras.layers.LayerNormalization(dtype=self.dtype_policy, name=name)
            return layer_utils.built(layer, (None, None, None, channels))

        half = max(d // 2, 1)
        self.stem_convs = [
            conv(half, "stem_conv_0", image_shape, strides=2),
            conv(d, "stem_conv_1", (None, None, None, half)),
        ]
        self.stem_norms = [norm("stem_norm_0", half), norm("stem_norm_1")]
        feature_shape = (None, None, None, d)
        self.block_convs, self.block_norms, self.block_pools = [], [], []
        for i in range(self.num_blocks):
            self.block_convs.append(
                [
                    layer_utils.built(
                        SeparableConv2D(d, dtype=self.dtype_policy, name=f"block_{i}_conv_{j}"),
                        feature_shape,
                    )
                    for j in range(2)
                ]
            )
            self.block_norms.append([norm(f"block_{i}_norm_{j}") for j in range(2)])
            self.block_pools.append(
                keras.layers.MaxPooling2D(3, strides=2, padding="same", dtype=self.dtype_policy)
            )
        self.built = True

    def bottom(self, inputs, training=None):
        x = ops.cast(inputs, "float32")
        if training and (self.random_shift or self.random_flip):
            x = shift_and_flip(x, self.seed_generator, self.random_shift, self.random_flip)
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        variance = ops.var(x, axis=(1, 2, 3), keepdims=True)
        size = ops.cast(ops.prod(ops.shape(x)[1:]), "float32")
        x = (x - mean) / ops.maximum(ops.sqrt(variance), ops.rsqrt(size))  # per-image standardised
        x = ops.cast(x, self.compute_dtype)
        for conv, norm in zip(self.stem_convs, self.stem_norms, strict=True):
            x = ops.relu(norm(conv(x)))  # (B, H/2, W/2, d) after the strided conv
        for convs, norms, pool in zip(
            self.block_convs, self.block_norms, self.block_pools, strict=True
        ):
            h = x
            for conv, norm in zip(convs, norms, strict=True):
                h = norm(conv(ops.relu(h)))
            x = pool(h) + pool(x)  # residual, (B, H/2, W/2, d)
        shape = ops.shape(x)
        x = ops.reshape(x, (shape[0], shape[1] * shape[2], shape[3]))  # (B, H'W', d)
        return x, ops.ones(ops.shape(x)[:2], dtype="bool")

    def check_inputs(self, inputs, task_name):
        shape = tuple(getattr(inputs, "shape", ()))
        dtype = keras.backend.standardize_dtype(getattr(inputs, "dtype", "object"))
        if (
            len(shape) != 4
            or shape[-1] != self.channels
            or not (dtype == "uint8" or "float" in dtype)
        ):
            raise InputError(
                f"Task {task_name!r} takes images: uint8 or float pixels of shape "
                f"(batch, height, width, {self.channels}); received {describe(inputs)}."
                + (
                    " Integer ids of rank 2 look like text: use a text task."
                    if len(shape) == 2 and "int" in dtype
                    else ""
                )
            )
        if not _fits(shape[1:3], self.image_size):
            raise InputError(
                f"Task {task_name!r} takes images of {_size(self.image_size)} pixels (the size "
                f"it was trained on); received {_size(shape[1:3])}. Resize them first (e.g. "
                "`tf.image.resize`); `predict` resizes image files itself."
            )
        check_finite(inputs, task_name, "pixels")
        return ops.convert_to_tensor(inputs)

    def check_spec(self, spec, role, task_name):
        c = self.channels
        expected = f"an image of shape (height, width, {c}), uint8 or float (Image(channels={c}))"
        dtype, rank = spec_dtype(spec), spec_rank(spec)
        if dtype != "uint8" and "float" not in dtype:
            fix = "Give uint8 pixels in [0, 255] (or float pixels)."
        elif rank == 4:
            fix = "The dataset looks batched: give mixture single examples (`.unbatch()`)."
        elif rank == 2:
            fix = "Add a channel axis (`image[..., None]`) and use Image(channels=1)."
        elif rank != 3:
            fix = "Reshape each example to (height, width, channels)."
        elif spec.shape[-1] is not None and spec.shape[-1] != c:
            fix = (
                f"Build the task with Image(channels={spec.shape[-1]}), or convert the images "
                f"to {c} channels."
            )
        elif not _fits(spec.shape[:2], self.image_size):
            expected = (
                f"an image of shape {(*self.image_size, c)} (Image(image_size="
                f"{self.image_size}))"
            )
            fix = "Resize the images (e.g. `tf.image.resize`) to the task's `image_size`."
        else:
            return
        raise spec_error(task_name, role, expected, spec, fix)

    def serving_spec(self, sentence_piece=None):
        import tensorflow as tf

        shape = [None, *(self.image_size or (None, None)), self.channels]
        return {"image": tf.TensorSpec(shape, tf.uint8, name="image")}

    def serving_inputs(self, raw, sentence_piece=None):
        import tensorflow as tf

        image = raw["image"]
        return image, tf.ones(tf.shape(image)[:1], tf.bool)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "num_blocks": self.num_blocks,
                "random_shift": self.random_shift,
                "random_flip": self.random_flip,
                "seed": self.seed,
                "image_size": self.image_size,
            }
        )
        return config


def _size(height_width):
    """`28x28` (None as `?`)."""
    return "x".join("?" if v is None else str(v) for v in height_width)


def _image_size(value):
    """`(height, width)` as two positive Python ints, or an `InputError`."""
    try:
        if not isinstance(value, (tuple, list, np.ndarray)) or any(
            isinstance(v, bool) for v in value
        ):
            raise TypeError
        height, width = (operator.index(v) for v in value)
        valid = height > 0 and width > 0
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise InputError(
            "Image: `image_size` must be None or (height, width), two positive ints; "
            f"received {value!r}."
        )
    return (height, width)


def _fits(height_width, image_size):
    """Whether a `(height, width)` (None: unknown) can be `image_size` (None: any)."""
    return image_size is None or all(
        v is None or v == size for v, size in zip(height_width, image_size, strict=True)
    )
