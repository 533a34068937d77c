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
        frequency_mask_width: the widest band, in bins (below F).
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
    total = ops.sum(features * ops.cast(real, dtype)[..., None], axis=(1, 2))  # (B,)
    mean = total / ops.cast(ops.maximum(frames * ops.cast(bins, "float32"), 1.0), dtype)
    masked = ops.zeros((batch, length, bins), "bool")
    if frequency_masks:
        widest = ops.full((batch, frequency_masks), float(frequency_mask_width))
        band = _spans(widest, ops.cast(bins, "float32"), bins, seed)  # (B, F)
        masked = ops.logical_or(masked, band[:, None, :])
    if time_masks:
        widest = ops.floor(time_mask_fraction * frames)[:, None] * ops.ones((1, time_masks))
        span = _spans(widest, frames[:, None], length, seed)  # (B, T)
        masked = ops.logical_or(masked, span[:, :, None])
    masked = ops.logical_and(masked, real[:, :, None])  # bands stop at the last real frame
    return ops.where(masked, ops.cast(mean, dtype)[:, None, None], features)


def _spans(widest, extent, size, seed):
    """`(B, M)` spans of width `U{0..widest}` starting uniformly in `[0, extent - width]`,
    as a `(B, size)` bool mask of the positions any span covers."""
    draws = random.uniform((*ops.shape(widest), 2), seed=seed)  # (B, M, 2) in [0, 1)
    width = ops.floor(draws[..., 0] * (widest + 1.0))
    start = ops.floor(draws[..., 1] * (extent - width + 1.0))
    positions = ops.cast(ops.arange(size), "float32")[None, None, :]  # (1, 1, size)
    inside = ops.logical_and(
        positions >= start[..., None], positions < (start + width)[..., None]
    )  # (B, M, size)
    return ops.any(inside, axis=1)
