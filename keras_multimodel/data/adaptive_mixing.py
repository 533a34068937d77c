"""`AdaptiveRates`: task sampling rates that follow the tasks' training losses."""

import math
import threading

import numpy as np

from keras_multimodel.errors import InputError


class AdaptiveRates:
    """Sampling rates that move with the tasks' training losses, in the spirit of
    tensor2tensor's loss-driven multi-problem mixing: a task is sampled in
    proportion to its moving-average training loss, so a task the model already
    fits well gives up examples to the ones it fits badly.

    Pass it as `mixture(..., rates=AdaptiveRates(...))` and put
    `keras_multimodel.callbacks.AdaptiveMixing(rates)` in `fit`'s callbacks, which
    feeds it each epoch's per-task losses. Nothing recompiles when the rates move:
    every group keeps the sub-batch size of the starting rates (a fixed shape), and
    the rates move which of a group's tasks fill it. A group with one task (in the
    main job: images, captions, speech) therefore keeps its share; the tasks that
    share a group (translation and parsing) trade examples among themselves.

    Args:
        tasks: the task names.
        initial: `{task: rate}` to start from (default: uniform); it also sets the
            groups' sub-batch sizes.
        decay: weight of the old average at each update (0: the latest loss only).
        floor: every task keeps at least `floor / len(tasks)` of the rate.

    Example:
    >>> rates = AdaptiveRates(["a", "b"])
    >>> rates.update({"a": 3.0, "b": 1.0})
    >>> {name: round(rate, 3) for name, rate in rates.rates.items()}
    {'a': 0.725, 'b': 0.275}
    >>> rates.weights(["b"]).tolist()
    [1.0]
    """

    def __init__(self, tasks, initial=None, decay=0.5, floor=0.1):
        self.tasks = list(tasks)
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise InputError(f"AdaptiveRates: `tasks` must be distinct names; got {tasks!r}.")
        if not (isinstance(decay, (int, float)) and 0 <= decay < 1):
            raise InputError(f"AdaptiveRates: `decay` must be in [0, 1); got {decay!r}.")
        if not (isinstance(floor, (int, float)) and 0 <= floor <= 1):
            raise InputError(f"AdaptiveRates: `floor` must be in [0, 1]; got {floor!r}.")
        initial = initial or {name: 1.0 for name in self.tasks}
        if set(initial) != set(self.tasks) or any(
            not isinstance(v, (int, float)) or not v > 0 for v in initial.values()
        ):
            raise InputError(
                f"AdaptiveRates: `initial` must give each task a rate > 0; got {initial!r}."
            )
        total = sum(initial.values())
        self.initial = {name: initial[name] / total for name in self.tasks}
        self.decay, self.floor = float(decay), float(floor)
        self._average = {}
        self._rates = dict(self.initial)
        self._lock = threading.Lock()  # tf.data reads the rates from its own threads

    @property
    def rates(self):
        """`{task: rate}`, summing to 1."""
        with self._lock:
            return dict(self._rates)

    def update(self, losses):
        """Takes `{task: training loss}` (tasks left out, or not finite, keep their
        average) and moves the rates."""
        for name, loss in losses.items():
            if name not in self.tasks:
                raise InputError(f"AdaptiveRates: unknown task {name!r}; tasks: {self.tasks}.")
            loss = float(loss)
            if math.isfinite(loss) and loss >= 0:
                old = self._average.get(name)
                self._average[name] = (
                    loss if old is None else self.decay * old + (1 - self.decay) * loss
                )
        if len(self._average) < len(self.tasks):
            return  # every task needs a loss before the rates move
        total = sum(self._average.values()) or 1.0
        n = len(self.tasks)
        rates = {
            name: (1 - self.floor) * self._average[name] / total + self.floor / n
            for name in self.tasks
        }
        with self._lock:
            self._rates = rates

    def weights(self, names):
        """The rates of `names`, normalised: a group's sampling weights (float32)."""
        rates = self.rates
        values = np.array([rates[name] for name in names], "float64")
        return (values / values.sum()).astype("float32")
