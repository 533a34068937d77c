"""`MultiModel.score`: the paper's per-token metrics under teacher forcing."""

import operator

import keras
import numpy as np
from keras import ops

from keras_multimodel.errors import InputError
from keras_multimodel.modalities.base import pick_tokens
from keras_multimodel.modalities.text import check_token_ids
from keras_multimodel.models.compiling import compile_function


def token_hits(logits, tokens):
    """1.0 where a token's logit is the largest of its row, else 0.0: `(B, T, V), (B, T)
    -> (B, T)`, the argmax accuracy without an argmax.

    XLA on CPU runs `argmax` (a reduction over (value, index) pairs) several times
    slower than a plain `max` (docs/history.md#the-main-jobs-step-main_job_steppy-
    and-argmax-on-xlacpu). A tie with the largest
    logit counts as a hit (argmax would pick the lower index): rare with float32
    logits, less rare with bfloat16 ones (mixed precision), where accuracy can read
    slightly high. A token outside `[0, V)` is never a hit (its loss is NaN, see
    `Modality.loss`).

    >>> import numpy as np
    >>> logits = np.array([[[0.1, 2.0, 0.3], [1.0, 0.0, -1.0], [3.0, 0.0, 0.0]]], "float32")
    >>> np.asarray(token_hits(logits, np.array([[1, 2, 3]]))).tolist()
    [[1.0, 0.0, 0.0]]
    """
    logits = ops.convert_to_tensor(logits)
    picked, valid = pick_tokens(logits, tokens)  # (B, T)
    hit = ops.logical_and(valid, ops.greater_equal(picked, ops.max(logits, axis=-1)))
    return ops.cast(hit, "float32")


class ScoringMixin:
    """Per-token accuracy and log-perplexity of a task's targets, for `MultiModel`."""

    def score(self, task, inputs, targets, examples=None):
        """Scores one batch of `(inputs, targets)` under teacher forcing.

        The decoder sees the true previous targets (as in training) and every target
        position is scored: its log-likelihood without label smoothing, and whether
        the most likely token (or class) is the target. These are the quantities the
        paper compares joint and single-task training with (per-token accuracy and
        log-perplexity); a label target is one position (accuracy and log-loss).

        Args:
            task: task name.
            inputs: a batch of raw inputs, as `generate` takes them (texts too, for a
                model with a tokenizer).
            targets: class ids `(B,)`, or token ids `(B, T)` with 0 as padding:
                every non-zero position is scored, so include the end token where
                it should count (as `evaluate` does).
            examples: score only the first `examples` rows (default: all). The
                rest pad the batch to a size already compiled, so scoring a data set
                in fixed-size batches compiles one program per task group.

        Returns:
            numpy `{"tokens", "correct", "log_likelihood"}`: sums over the batch's
            real target positions. Log-perplexity is
            `-log_likelihood / tokens`, accuracy `correct / tokens`.

        Example:
        >>> import numpy as np
        >>> import keras_multimodel as kmm
        >>> from keras_multimodel.modalities import ClassLabel, Image
        >>> model = kmm.MultiModel([kmm.Task("d", Image(channels=1), ClassLabel(10))])
        >>> sums = model.score("d", np.zeros((4, 8, 8, 1), "uint8"), np.array([1, 2, 3, 4]))
        >>> int(sums["tokens"]), bool(sums["log_likelihood"] < 0)
        (4, True)
        """
        task = self.plan.task(task)
        input_net, target_net = self.nets_of(task.name)
        inputs = self._tokenize_inputs(task.name, input_net, inputs)  # strings too
        inputs = input_net.check_inputs(inputs, task.name)
        targets = _checked_targets(task.name, target_net, targets)
        batch = int(keras.tree.flatten(inputs)[0].shape[0])
        if batch != len(targets):
            raise InputError(
                f"score({task.name!r}): {batch} inputs but {len(targets)} targets; give one "
                "target per input."
            )
        count = _example_count(task.name, examples, len(targets))
        key = (self.plan.group[task.name], "score")
        if key not in self._generate_functions:
            self._generate_functions[key] = compile_function(self, self._scores)
        sub_batch = {
            "inputs": inputs,
            "targets": targets,
            "task_id": np.full(len(targets), self.plan.task_index[task.name], "int32"),
        }
        rows = self._generate_functions[key]({self.plan.group[task.name]: sub_batch})
        return {
            name: np.asarray(ops.convert_to_numpy(value))[:count].sum(dtype="float64")
            for name, value in rows.items()
        }

    def _scores(self, batch):
        ((group, sub_batch),) = batch.items()
        target_net = self.nets_of(self.plan.groups[group][0])[1]
        logits = ops.cast(self(batch, training=False)[group], "float32")  # (B, T, V)
        tokens = target_net.target_tokens(sub_batch["targets"])  # (B, T)
        mask = target_net.target_mask(tokens)
        log_probs = ops.log_softmax(logits, axis=-1)
        picked = ops.take_along_axis(log_probs, tokens[..., None], axis=-1)[..., 0]
        hits = token_hits(logits, tokens)
        return {  # per example: `score` sums the real ones
            "tokens": ops.sum(mask, axis=-1),
            "correct": ops.sum(hits * mask, axis=-1),
            "log_likelihood": ops.sum(picked * mask, axis=-1),
        }


def _example_count(task_name, examples, batch_size):
    """`examples` (None: the whole batch) as an int in `[1, batch_size]`, or an error."""
    if examples is None:
        return batch_size
    try:
        count = None if isinstance(examples, bool) else operator.index(examples)
    except TypeError:
        count = None
    if count is None or not 0 < count <= batch_size:
        raise InputError(
            f"score({task_name!r}): `examples` must be an int in [1, {batch_size}] (the batch "
            f"size); received {examples!r}."
        )
    return count


def _checked_targets(task_name, target_net, targets):
    """`targets` as int32 numpy ids the target net can score, or an `InputError`:
    class ids `(B,)` in `[0, num_classes)`, or token ids `(B, T)` as `check_token_ids`
    takes them (in the vocabulary, at most `max_length`, none empty)."""
    where = f"score({task_name!r})"
    targets = np.asarray(targets)
    if "int" not in targets.dtype.name:
        raise InputError(
            f"{where}: targets must be integer class or token ids; received dtype "
            f"{targets.dtype.name}."
        )
    if not targets.size:
        raise InputError(f"{where}: the batch is empty; give at least one example.")
    if target_net.is_sequence:
        check_token_ids(targets, task_name, "targets", target_net.vocab_size, target_net.max_length)
        return targets.astype("int32")
    if targets.ndim != 1 or targets.min() < 0 or targets.max() >= target_net.num_classes:
        raise InputError(
            f"{where}: targets must be class ids of shape (batch,) in [0, "
            f"{target_net.num_classes}); received shape {targets.shape} with ids in "
            f"[{targets.min()}, {targets.max()}]."
        )
    return targets.astype("int32")
