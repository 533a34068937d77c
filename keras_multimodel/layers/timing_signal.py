"""Sinusoidal timing signals (Vaswani et al., 2017), as used by MultiModel's attention."""

import math

from keras import ops


def timing_signal(positions, channels, min_timescale=1.0, max_timescale=1.0e4):
    """Sinusoids of geometrically spaced wavelengths for each position.

    Args:
        positions: 1-D tensor of positions (any numeric dtype), shape `(L,)`.
        channels: width of the signal; the first half are sines, the second half
            cosines, and an odd width gets one zero channel at the end.
        min_timescale: shortest wavelength.
        max_timescale: longest wavelength.

    Returns:
        float32 tensor of shape `(L, channels)`.

    Example:
    >>> from keras import ops
    >>> tuple(ops.shape(timing_signal(ops.arange(5), 8)))
    (5, 8)
    """
    num_timescales = channels // 2
    log_increment = math.log(max_timescale / min_timescale) / max(num_timescales - 1, 1)
    inv_timescales = min_timescale * ops.exp(
        ops.arange(num_timescales, dtype="float32") * -log_increment
    )
    scaled = ops.cast(positions, "float32")[:, None] * inv_timescales[None, :]  # (L, C/2)
    signal = ops.concatenate([ops.sin(scaled), ops.cos(scaled)], axis=1)  # (L, 2*(C/2))
    if channels % 2:
        signal = ops.pad(signal, [[0, 0], [0, 1]])
    return signal


def add_timing_signal(x, start=0):
    """Adds `timing_signal` to `x` of shape `(B, T, C)` for positions `start .. start+T-1`.

    `start` may be a Python int or a scalar tensor (the decoding position).
    """
    length, channels = ops.shape(x)[1], ops.shape(x)[2]
    positions = ops.arange(length) + start
    return x + ops.cast(timing_signal(positions, channels), x.dtype)[None]
