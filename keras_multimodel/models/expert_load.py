"""`expert_load`: which experts each task's tokens go to, in a trained MultiModel."""

import contextlib
import dataclasses
import numbers

import keras
import numpy as np

from keras_multimodel.errors import InputError


@dataclasses.dataclass(frozen=True)
class ExpertLoad:
    """Router assignment counts of a MultiModel's MoE layers, per task.

    Attributes:
        tasks: task names, the first axis of `counts`.
        layers: MoE layer paths (`"encoder/moe"`, `"decoder/moe"`), the second axis.
        counts: `(tasks, layers, experts)` int64: how many of the task's real
            (unpadded) tokens the router sent to each expert, counting each of a
            token's `top_k` choices. Capacity is not applied: this is what the router
            chose, before any assignment is dropped.
        tokens: `(tasks, layers)` int64: the real tokens each layer routed per task.
    """

    tasks: tuple
    layers: tuple
    counts: np.ndarray
    tokens: np.ndarray

    def fractions(self):
        """`counts` as a share of each task's assignments in each layer (rows sum to 1;
        0 for a task that had no tokens)."""
        totals = self.counts.sum(axis=-1, keepdims=True)
        return np.divide(
            self.counts, totals, out=np.zeros(self.counts.shape, "float64"), where=totals > 0
        )


def expert_load(model, batches, steps=None):
    """Counts the experts each task's tokens are routed to, over some batches.

    Runs the model eagerly (inference mode: no gating noise) on each group's
    sub-batch and records every MoE layer's top-k choices for every real token,
    attributed to the token's task. Useful to see whether tasks share experts or
    claim their own, per MoE layer (e.g. as a heat map, or with
    `tf.summary.histogram` in TensorBoard).

    Args:
        model: a `MultiModel`.
        batches: an iterable of the batches `fit` takes, `{group: {"inputs",
            "targets", "task_id"}}`, e.g. a `keras_multimodel.data.mixture` dataset.
        steps: how many batches to read; None reads until `batches` ends (it must
            end: pass `steps` for a repeated dataset).

    Returns:
        An `ExpertLoad`.

    Example:
    >>> import numpy as np
    >>> import keras_multimodel as kmm
    >>> from keras_multimodel.modalities import ClassLabel, Image
    >>> model = kmm.MultiModel([kmm.Task("digits", Image(channels=1), ClassLabel(10))])
    >>> batch = {"image_to_class_label": {"inputs": np.zeros((2, 28, 28, 1), "uint8"),
    ...          "targets": np.array([3, 5]), "task_id": np.array([0, 0])}}
    >>> load = kmm.models.expert_load(model, [batch])
    >>> load.counts.shape  # (tasks, MoE layers, experts)
    (1, 2, 4)
    >>> int(load.counts[0, 1].sum())  # decoder MoE: 1 position per example, top-2
    4
    """
    moe_layers = getattr(model, "moe_layers", None)
    if moe_layers is None or not hasattr(model, "plan"):
        raise InputError(f"expert_load: expected a MultiModel; received {type(model).__name__}.")
    if steps is not None and (
        isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1
    ):
        raise InputError(f"expert_load: `steps` must be a positive int or None; got {steps!r}.")
    if not moe_layers:
        raise InputError("expert_load: this MultiModel has no MoE layers (use_moe=False).")
    num_tasks, num_experts = len(model.tasks), moe_layers[0].num_experts
    counts = np.zeros((num_tasks, len(moe_layers), num_experts), "int64")
    task_ids = None  # the current sub-batch's task id per example

    def observer_of(layer_index):
        def observe(routing, valid, input_shape):
            experts = keras.ops.convert_to_numpy(routing.experts)  # (N, k)
            real = keras.ops.convert_to_numpy(valid) > 0  # (N,)
            per_example = len(real) // int(input_shape[0])
            task = np.repeat(task_ids, per_example)[real]  # (real tokens,)
            for choice in experts[real].T:  # each of the k choices
                np.add.at(counts[:, layer_index], (task, choice), 1)

        return observe

    seen = 0
    with contextlib.ExitStack() as stack:
        for i, moe in enumerate(moe_layers):
            stack.enter_context(moe.observe_routing(observer_of(i)))
        for batch in batches:
            model._check_batch(batch)
            for group, sub_batch in batch.items():
                task_ids = np.asarray(keras.ops.convert_to_numpy(sub_batch["task_id"]), "int64")
                _check_task_ids(model, group, task_ids)
                if task_ids.size:
                    model({group: sub_batch}, training=False)
            seen += 1
            if steps is not None and seen >= steps:
                break  # before fetching another batch
    if seen == 0:
        raise InputError("expert_load: `batches` yielded no batch.")
    return ExpertLoad(
        tasks=tuple(task.name for task in model.tasks),
        layers=tuple(moe.path for moe in moe_layers),
        counts=counts,
        tokens=counts.sum(axis=-1) // model.body_config.top_k,  # each token counted top_k times
    )


def _check_task_ids(model, group, task_ids):
    allowed = {model.plan.task_index[name]: name for name in model.plan.groups[group]}
    wrong = sorted(set(task_ids.reshape(-1).tolist()) - set(allowed))
    if task_ids.ndim != 1 or wrong:
        raise InputError(
            f"expert_load: group {group!r} holds tasks {allowed} (task_id: name); its "
            f"sub-batch's task_id must be a vector of those ids; received ids {wrong or task_ids}."
        )
