"""Routing for MoELayer: noisy top-k gating, balancing losses and static-shape dispatch.

Pure `keras.ops` functions, one implementation shared by `MoELayer` and the
benchmark baselines. Notation: G groups, N tokens per group, E experts, k experts per token, C slots
(capacity) per expert, d channels.

Every function takes a leading **group** axis G: tokens are routed within their
group, with a capacity per group (GShard's "local groups"). Under data parallelism
one group per data shard keeps routing and dispatch on the shard's own device.

References: Shazeer et al., 2017, "Outrageously Large Neural Networks" (noisy top-k
gating, importance and load losses); Lepikhin et al., 2020, "GShard" (capacity and
position-in-expert by cumulative count).
"""

import fractions
import math
from typing import NamedTuple

from keras import ops

# Smallest noise standard deviation; keeps the load estimate's division finite.
NOISE_EPSILON = 1e-2


class Routing(NamedTuple):
    """Which experts each token goes to, and with what weight.

    Attributes:
        gates: `(G, N, k)` float32 softmax weights of the chosen experts; 0 for padding.
        experts: `(G, N, k)` int32 chosen expert ids, best first.
        aux_loss: scalar float32 balancing loss `cv²(importance) + cv²(load)`, the
            mean over groups (not yet scaled by the loss coefficient).
        importance: `(G, E)` float32 sum of gates per expert.
        load: `(G, E)` float32 (smooth, in training with noise) number of tokens per expert.
    """

    gates: object
    experts: object
    aux_loss: object
    importance: object
    load: object


class Dispatch(NamedTuple):
    """Static-shape assignment of (token, choice) pairs to expert slots, per group.

    Attributes:
        slots: `(G, k * N)` int32 flat slot `expert * C + position` of each
            assignment, choice-major (all first choices, then all second choices,
            ...); `E * C` for assignments that are padding or over capacity.
        top_k: k, the number of choices per token.
        capacity: C, slots per expert and group.
        kept: `(G, k * N)` bool, True where the assignment got a slot.
        slot_tokens: `(G, E * C)` int32 token (within the group) held by each slot
            (0 where empty).
        filled: `(G, E * C)` bool, True where the slot holds a token.
        dropped_fraction: scalar float32, dropped / routed assignments of real
            tokens, the mean over groups (as a data-parallel run's replicas see it).
    """

    slots: object
    top_k: int
    capacity: object
    kept: object
    slot_tokens: object
    filled: object
    dropped_fraction: object


def cv_squared(values):
    """Squared coefficient of variation `var / mean²` over the last axis (0 if constant)."""
    values = ops.cast(values, "float32")
    mean = ops.mean(values, axis=-1)
    return ops.var(values, axis=-1) / (ops.square(mean) + 1e-10)


def top_k_indices(values, k):
    """Indices of each row's `k` largest values, largest first: `(..., E)` -> `(..., k)`.

    `k` argmax passes rather than `ops.top_k`: JAX lowers `top_k` to a StableHLO
    composite op that TensorFlow runtimes a little older than the exporting JAX
    cannot read (a SavedModel export of the MoE failed to load in TensorFlow 2.21),
    while argmax is a plain reduction. Ties go to the lower index, as in `top_k`.
    """
    num_values = values.shape[-1]
    chosen = []
    for _ in range(k):
        index = ops.argmax(values, axis=-1)  # (...,)
        chosen.append(index)
        taken = ops.one_hot(index, num_values, dtype=values.dtype) > 0  # (..., E)
        values = ops.where(taken, float("-inf"), values)
    return ops.cast(ops.stack(chosen, axis=-1), "int32")


def _normal_cdf(x):
    return 0.5 * (1.0 + ops.erf(x / math.sqrt(2.0)))


def noisy_top_k_routing(clean_logits, noise_logits, valid, top_k, noise=None):
    """Noisy top-k gating and its balancing loss (Shazeer et al., 2017, appendix A).

    `H = clean_logits + noise * softplus(noise_logits)`; the top k of H get a
    softmax weight, the others 0. Without `noise` (evaluation, or noise switched
    off) H is the clean logits and `load` is a hard count. The balancing loss is
    computed per group and averaged (as in GShard), so it needs no communication
    between data shards, and is the same on one device and on many.

    Args:
        clean_logits: `(G, N, E)` float32, `x · W_g`.
        noise_logits: `(G, N, E)` float32, `x · W_noise`; unused without `noise`.
        valid: `(G, N)` float32, 1 for real tokens and 0 for padding.
        top_k: experts per token, `1 <= top_k <= E`.
        noise: optional `(G, N, E)` standard normal samples.

    Returns:
        A `Routing`.
    """
    num_experts = clean_logits.shape[-1]
    if noise is not None:
        noise_std = ops.softplus(noise_logits) + NOISE_EPSILON  # (G, N, E)
        logits = clean_logits + noise * noise_std
    else:
        logits = clean_logits
    # One more than k: the (k+1)-th value is the threshold the load estimate needs.
    extra = 1 if top_k < num_experts else 0
    # Indices only from top_k; values through a one-hot product, whose gradient is
    # elementwise (top_k's own gradient is a scatter, slow on CPU and growing with E).
    top_experts = top_k_indices(ops.stop_gradient(logits), top_k + extra)  # (G, N, k + extra)
    top_one_hot = ops.one_hot(top_experts, num_experts, dtype=logits.dtype)  # (G, N, k+x, E)
    top_values = ops.sum(top_one_hot * logits[..., None, :], axis=-1)  # (G, N, k + extra)
    if top_k > 1:
        gates = ops.softmax(top_values[..., :top_k], axis=-1) * valid[..., None]  # (G, N, k)
    else:  # a softmax over one value is 1
        gates = ops.ones_like(top_values[..., :1]) * valid[..., None]  # (G, N, 1)
    experts = ops.cast(top_experts[..., :top_k], "int32")  # (G, N, k)

    chosen = ops.sum(top_one_hot[..., :top_k, :], axis=-2)  # (G, N, E), 0/1
    importance = ops.sum(top_one_hot[..., :top_k, :] * gates[..., None], axis=(-3, -2))  # (G, E)
    if noise is not None and extra:
        # P(expert e stays in the top k if its noise were redrawn), per token.
        threshold_if_in = top_values[..., top_k : top_k + 1]  # (G, N, 1): the (k+1)-th value
        threshold_if_out = top_values[..., top_k - 1 : top_k]  # (G, N, 1): the k-th value
        is_in = ops.greater(logits, threshold_if_in)  # (G, N, E)
        prob_if_in = _normal_cdf((clean_logits - threshold_if_in) / noise_std)
        prob_if_out = _normal_cdf((clean_logits - threshold_if_out) / noise_std)
        probability = ops.where(is_in, prob_if_in, prob_if_out)  # (G, N, E)
        load = ops.sum(probability * valid[..., None], axis=-2)  # (G, E)
    else:
        load = ops.sum(chosen * valid[..., None], axis=-2)  # (G, E)
    aux_loss = ops.mean(cv_squared(importance) + cv_squared(load))
    return Routing(gates, experts, aux_loss, importance, load)


def expert_capacity(num_tokens, num_experts, top_k, capacity_factor):
    """Slots per expert: `ceil(capacity_factor * k * N / E)`, at most N.

    `capacity_factor=None` means no drops: every expert can take every token.
    `num_tokens` (per group) may be a Python int, a symbolic dimension (JAX shape
    polymorphism, as in a SavedModel export with an unknown batch size) or a
    scalar tensor (a TensorFlow graph with an unknown shape): the ceiling is taken
    in integer arithmetic, `(N * a + b - 1) // b` with `a / b = cf * k / E`, which
    all three support (a symbolic dimension cannot become a float).

    >>> expert_capacity(10, num_experts=4, top_k=2, capacity_factor=1.25)
    7
    """
    if capacity_factor is None:
        return num_tokens
    slots_per_token = fractions.Fraction(capacity_factor * top_k / num_experts)
    slots_per_token = slots_per_token.limit_denominator(10_000)
    if slots_per_token >= 1:
        return num_tokens  # room for every token in every expert
    a, b = slots_per_token.numerator, slots_per_token.denominator
    if hasattr(num_tokens, "dtype"):  # a tensor: int64, so N * a cannot overflow
        return ops.cast((ops.cast(num_tokens, "int64") * a + b - 1) // b, "int32")
    return (num_tokens * a + b - 1) // b  # in [1, N] for N >= 1


def dispatch(experts, valid, num_experts, capacity):
    """Assigns each (token, choice) a slot in its expert's fixed-size buffer, per group.

    First choices of all tokens take slots before second choices, so dropping
    under load hits the less important choices first. Positions come from a
    cumulative count, so every shape is static.

    Args:
        experts: `(G, N, k)` int32 chosen experts.
        valid: `(G, N)` float32, 1 for real tokens; padding takes no slot.
        num_experts: E.
        capacity: C, slots per expert and group.

    Returns:
        A `Dispatch`.
    """
    groups, top_k = experts.shape[0], experts.shape[2]
    num_tokens = ops.shape(experts)[1]
    choice_major = ops.reshape(ops.transpose(experts, (0, 2, 1)), (groups, -1))  # (G, k*N)
    routed = ops.tile(ops.cast(valid, "int32"), (1, top_k))  # (G, k*N)
    one_hot = ops.one_hot(choice_major, num_experts, dtype="int32") * routed[..., None]
    # Slot of each assignment: its rank among earlier assignments to the same expert.
    running = ops.cumsum(one_hot, axis=1)  # (G, k*N, E)
    position = ops.sum((running - 1) * one_hot, axis=-1)  # (G, k*N)
    kept = ops.logical_and(routed > 0, position < capacity)
    overflow_slot = num_experts * capacity
    slots = ops.where(kept, choice_major * capacity + position, overflow_slot)  # (G, k*N)
    # Token of each slot, without a scatter (XLA on TF compiles scatters here very
    # slowly): sort assignments by expert, stably; expert e's c-th slot holds the
    # assignment at sorted index start[e] + c, if the expert got more than c.
    num_assignments = ops.shape(choice_major)[1]
    expert_key = ops.where(routed > 0, choice_major, num_experts)  # padding sorts last
    order = ops.argsort(expert_key * num_assignments + ops.arange(num_assignments), axis=-1)
    counts = running[:, -1]  # (G, E) assignments per expert
    starts = ops.cumsum(counts, axis=-1) - counts  # (G, E)
    slot_index = ops.arange(capacity, dtype="int32")  # (C,)
    sorted_index = ops.minimum(starts[..., None] + slot_index, num_assignments - 1)  # (G, E, C)
    assignment = ops.take_along_axis(order, ops.reshape(sorted_index, (groups, -1)), axis=1)
    filled = ops.reshape(slot_index < counts[..., None], (groups, -1))  # (G, E*C)
    slot_tokens = ops.where(filled, ops.cast(assignment % num_tokens, "int32"), 0)  # (G, E*C)
    num_routed = ops.cast(ops.sum(routed, axis=-1), "float32")  # (G,)
    num_dropped = num_routed - ops.cast(ops.sum(ops.cast(kept, "int32"), axis=-1), "float32")
    dropped_fraction = ops.mean(num_dropped / ops.maximum(num_routed, 1.0))
    return Dispatch(slots, top_k, capacity, kept, slot_tokens, filled, dropped_fraction)


def gather_expert_inputs(x, dispatch_, num_experts):
    """Gathers token rows into the expert buffer: `(G, N, d)` -> `(G, E, C, d)`.

    Empty slots are 0.
    """
    groups, channels = x.shape[0], ops.shape(x)[-1]
    rows = _take_rows(x, dispatch_.slot_tokens)  # (G, E*C, d)
    rows = rows * ops.cast(dispatch_.filled, rows.dtype)[..., None]
    return ops.reshape(rows, (groups, num_experts, -1, channels))  # (G, E, C, d)


def combine_expert_outputs(expert_outputs, dispatch_, gates):
    """Weights each kept assignment's expert output by its gate and sums per token.

    Args:
        expert_outputs: `(G, E, C, d)`.
        dispatch_: the `Dispatch` that filled the buffer.
        gates: `(G, N, k)` gate weights.

    Returns:
        `(G, N, d)`; a token whose assignments were all dropped gets 0.
    """
    groups, channels = expert_outputs.shape[0], ops.shape(expert_outputs)[-1]
    flat = ops.reshape(expert_outputs, (groups, -1, channels))  # (G, E*C, d)
    # Dropped assignments read any row (the last) and get weight 0. Gathering from a
    # concatenated zero row instead makes TF's XLA compile hang on the gradient.
    slots = ops.minimum(dispatch_.slots, ops.shape(flat)[1] - 1)  # (G, k*N)
    rows = _take_rows(flat, slots)  # (G, k*N, d)
    rows = ops.reshape(rows, (groups, dispatch_.top_k, -1, channels))  # (G, k, N, d)
    weights = ops.transpose(gates, (0, 2, 1)) * ops.cast(
        ops.reshape(dispatch_.kept, (groups, dispatch_.top_k, -1)), gates.dtype
    )  # (G, k, N)
    return ops.sum(rows * ops.cast(weights, rows.dtype)[..., None], axis=1)  # (G, N, d)


def _take_rows(x, indices):
    """Rows of each group: `x` `(G, N, d)`, `indices` `(G, M)` -> `(G, M, d)`.

    One group (one device) takes a plain gather, faster on TensorFlow than the
    batched gather several groups need.
    """
    if x.shape[0] == 1:
        return ops.take(x[0], indices[0], axis=0)[None]
    return ops.take_along_axis(x, indices[..., None], axis=1)
