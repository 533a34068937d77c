"""Padding-mask helpers. A mask is `(B, T)` and True (or 1) at real positions."""

from keras import ops


def zero_padding(x, mask):
    """Zeroes the padded positions of `x` `(B, T, C)`; returns `x` when `mask` is None."""
    if mask is None:
        return x
    return x * ops.cast(mask, x.dtype)[:, :, None]


def attention_mask(query_length, key_mask=None, causal=False, query_offset=0):
    """Boolean mask broadcastable to `(B, heads, T, S)`: which keys each query may see.

    Args:
        query_length: T, the number of queries.
        key_mask: optional `(B, S)` padding mask of the keys.
        causal: if True, query t sees keys `<= t + query_offset` only, which needs
            `key_mask` or S == T to know S; pass `key_mask` for a cache.
        query_offset: position of the first query (a scalar tensor while decoding).

    Returns:
        A bool tensor of shape `(B or 1, 1, T or 1, S)`, or None when nothing is masked.
    """
    mask = None
    if key_mask is not None:
        mask = ops.cast(key_mask, "bool")[:, None, None, :]  # (B, 1, 1, S)
    if causal:
        key_length = query_length if key_mask is None else ops.shape(key_mask)[1]
        query_positions = ops.arange(query_length) + query_offset
        key_positions = ops.arange(key_length)
        causal_mask = key_positions[None, :] <= query_positions[:, None]  # (T, S)
        causal_mask = causal_mask[None, None]
        mask = causal_mask if mask is None else ops.logical_and(mask, causal_mask)
    return mask
