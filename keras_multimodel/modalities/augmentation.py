"""Training-time augmentation inside modality nets (identity outside training)."""

from keras import ops, random


def spec_augment(
    features,
    frames,
    seed,
    frequency_masks=2,
    frequency_mask_width=15,
    time_masks=2,
    time_mask_fraction=0.1,
):
    """SpecAugment's masks (Park et al., 2019) over a batch of log-mel features.

    Each example gets `frequency_masks` bands of `w ~ U{0..frequency_mask_width}`
    consecutive mel bins and `time_masks` spans of `w ~ U{0..time_mask_fraction *
    frames}` consecutive real frames, placed uniformly at random; masked entries take
    the example's mean feature over its real frames (the value a normalised feature
    would have at zero). Padded frames are never masked, and no mask reaches past an
    example's `frames`.

    Args:
        features: `(B, T, F)` float features.
        frames: `(B,)` int, the real frames of each example.
        seed: a `keras.random.SeedGenerator` (or an int).
        frequency_masks: bands of mel bins per example.
        frequency_mask_width: the widest band, in bins (at most F).
        time_masks: spans of frames per example.
        time_mask_fraction: the longest span, as a fraction of the example's frames.

    Returns:
        `(B, T, F)` features with the masked entries replaced.

    >>> import numpy as np
    >>> x = np.arange(2 * 10 * 4, dtype="float32").reshape(2, 10, 4)
    >>> y = spec_augment(x, np.array([10, 5]), seed=0, frequency_masks=0, time_masks=1,
    ...                  time_mask_fraction=0.5)
    >>> bool(np.all(np.asarray(y)[1, 5:] == x[1, 5:]))  # padded frames are left alone
    True
    """
    features = ops.convert_to_tensor(features)
    dtype = features.dtype
    batch, length, bins = ops.shape(features)[0], ops.shape(features)[1], ops.shape(features)[2]
    frames = ops.cast(frames, "float32")  # (B,)
    real = ops.arange(length)[None, :] < ops.cast(frames[:, None], "int32")  # (B, T)
    total = ops.sum(ops.cast(features, "float32") * ops.cast(real, "float32")[..., None], (1, 2))
    mean = total / ops.maximum(frames * ops.cast(bins, "float32"), 1.0)  # (B,)
    # One draw for every mask: (B, masks, [width, start]) in [0, 1).
    draws = random.uniform((batch, frequency_masks + time_masks, 2), seed=seed)
    widest = ops.full((batch, frequency_masks), float(frequency_mask_width))
    band = _spans(draws[:, :frequency_masks], widest, ops.cast(bins, "float32"), bins)  # (B, F)
    widest = ops.floor(time_mask_fraction * frames)[:, None] * ops.ones((1, time_masks))
    span = _spans(draws[:, frequency_masks:], widest, frames[:, None], length)  # (B, T)
    masked = ops.logical_or(band[:, None, :], span[:, :, None])  # (B, T, F)
    masked = ops.logical_and(masked, real[:, :, None])  # bands stop at the last real frame
    return ops.where(masked, ops.cast(mean, dtype)[:, None, None], features)


def _spans(draws, widest, extent, size):
    """`(B, M)` spans of width `U{0..widest}` starting uniformly in `[0, extent - width]`
    (`draws`: `(B, M, 2)` uniform), as a `(B, size)` bool mask of the positions any
    span covers."""
    width = ops.floor(draws[..., 0] * (widest + 1.0))
    start = ops.floor(draws[..., 1] * (extent - width + 1.0))
    positions = ops.cast(ops.arange(size), "float32")[None, None, :]  # (1, 1, size)
    inside = ops.logical_and(
        positions >= start[..., None], positions < (start + width)[..., None]
    )  # (B, M, size)
    return ops.any(inside, axis=1)


def shift_and_flip(images, seed, shift=0.1, flip=False):
    """Shifts each image by whole pixels, and with `flip` mirrors half of them.

    Each image moves by `dy ~ U{-s_h..s_h}` rows and `dx ~ U{-s_w..s_w}` columns,
    `s_h = floor(shift * height)` (`s_w` likewise), repeating its edge pixels into
    the space it leaves (the background, in centred pictures); with `flip`, it is
    also mirrored left to right with probability 1/2. Written with `keras.ops`
    gathers, so it compiles with the rest of a training step on every backend.

    Args:
        images: `(B, H, W, C)` pixels.
        seed: a `keras.random.SeedGenerator` (or an int).
        shift: the largest shift, as a fraction of the height and of the width.
        flip: mirror left to right at random.

    Returns:
        `(B, H, W, C)` images of the same dtype.

    >>> import numpy as np
    >>> image = np.arange(9, dtype="float32").reshape(1, 3, 3, 1)
    >>> out = np.asarray(shift_and_flip(image, seed=1, shift=0.0, flip=True))[0, ..., 0]
    >>> out.tolist() in (image[0, ..., 0].tolist(), image[0, :, ::-1, 0].tolist())
    True
    """
    images = ops.convert_to_tensor(images)
    batch, height, width, channels = (ops.shape(images)[i] for i in range(4))
    draws = random.uniform((batch, 3), seed=seed)  # (B, [dy, dx, flip])

    def sources(draw, size):  # (B, size): the source of each output row (or column)
        most = ops.floor(shift * ops.cast(size, "float32"))
        offset = ops.cast(ops.floor(draw * (2.0 * most + 1.0)) - most, "int32")  # (B,)
        return ops.clip(ops.arange(size)[None, :] - offset[:, None], 0, size - 1)

    rows, columns = sources(draws[:, 0], height), sources(draws[:, 1], width)
    if flip:
        columns = ops.where(draws[:, 2:] < 0.5, width - 1 - columns, columns)
    shape = (batch, height, width, channels)
    images = ops.take_along_axis(images, ops.broadcast_to(rows[:, :, None, None], shape), 1)
    return ops.take_along_axis(images, ops.broadcast_to(columns[:, None, :, None], shape), 2)
