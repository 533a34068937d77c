"""Task: what one output of a MultiModel is; TaskPlan: how tasks share nets and batches."""

import json
import re

import keras

from keras_multimodel import modalities
from keras_multimodel.errors import InputError

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
RESERVED_NAMES = ("moe",)  # `{name}_loss` would clash with the MoE logs


class Task:
    """One task of a MultiModel: an input modality, a target modality and a command.

    The decoder is told which output to produce by the task's **command token**, a
    learned embedding (Kaiser et al., 2017: "To-English", "To-Parse-Tree", ...).
    Tasks with the same `command` share it; by default each task has its own.

    Args:
        name: identifier used in batches, logs (`{name}_loss`) and `generate`.
        inputs: input `Modality` (or a registered name, or `(name, settings)`).
        targets: target `Modality` (or a registered name, or `(name, settings)`).
        loss_weight: weight of this task's loss in the total loss.
        command: name of the command token; defaults to `name`.

    Example:
    >>> import keras_multimodel as kmm
    >>> task = kmm.Task("mnist", inputs=kmm.modalities.Image(channels=1),
    ...                 targets=kmm.modalities.ClassLabel(10))
    >>> task.metric_name
    'mnist_accuracy'
    """

    def __init__(self, name, inputs, targets, loss_weight=1.0, command=None):
        if not isinstance(name, str) or not _NAME.match(name):
            raise InputError(
                f"Task: `name` must be an identifier (letters, digits, underscores, starting "
                f"with a letter); received {name!r}."
            )
        if name in RESERVED_NAMES:
            raise InputError(
                f"Task: the name {name!r} is reserved (the logs' `moe_loss` and "
                "`moe_dropped_fraction` are the MoE layers'); choose another name."
            )
        self.name = name
        self.inputs = modalities.get(inputs)
        self.targets = modalities.get(targets)
        if not self.inputs.can_be_input:
            raise InputError(
                f"Task {name!r}: {type(self.inputs).__name__} cannot be an input modality."
            )
        if not self.targets.can_be_target:
            raise InputError(
                f"Task {name!r}: {type(self.targets).__name__} cannot be a target modality; "
                "targets can be Text, ClassLabel or a custom modality with a top."
            )
        if (
            isinstance(loss_weight, bool)
            or not isinstance(loss_weight, (int, float))
            or (loss_weight < 0)
        ):
            raise InputError(
                f"Task {name!r}: `loss_weight` must be a number >= 0; received {loss_weight!r}."
            )
        self.loss_weight = float(loss_weight)
        command = name if command is None else command
        if not isinstance(command, str) or not command:
            raise InputError(f"Task {name!r}: `command` must be a non-empty string.")
        self.command = command

    @property
    def metric_name(self):
        """Log name of the task's metric: accuracy for labels, token accuracy otherwise."""
        kind = "token_accuracy" if self.targets.is_sequence else "accuracy"
        return f"{self.name}_{kind}"

    def get_config(self):
        return {
            "name": self.name,
            "inputs": keras.saving.serialize_keras_object(self.inputs),
            "targets": keras.saving.serialize_keras_object(self.targets),
            "loss_weight": self.loss_weight,
            "command": self.command,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for role in ("inputs", "targets"):
            config[role] = keras.saving.deserialize_keras_object(config[role])
        return cls(**config)

    def __repr__(self):
        return (
            f"Task({self.name!r}, inputs={type(self.inputs).__name__}, "
            f"targets={type(self.targets).__name__}, loss_weight={self.loss_weight})"
        )


class TaskPlan:
    """How a list of tasks maps onto shared nets, groups and command tokens.

    - **nets**: one per distinct modality configuration, named after the modality
      (`image`, `text`, and `text_2` for a second text configuration);
    - **groups**: tasks with the same input and target nets, named
      `{input net}_to_{target net}`; a batch holds one sub-batch per group;
    - **commands**: one command token per distinct `Task.command`.

    `MultiModel` and `keras_multimodel.data.mixture` both use this plan, so their
    batch structure always agrees.
    """

    def __init__(self, tasks):
        tasks = list(tasks)
        if not tasks:
            raise InputError("MultiModel needs at least one Task; received none.")
        for task in tasks:
            if not isinstance(task, Task):
                raise TypeError(
                    f"Expected keras_multimodel.Task objects; received {type(task).__name__}: "
                    f"{task!r}."
                )
        names = [task.name for task in tasks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise InputError(f"Task names must be unique; repeated: {duplicates}.")
        self.tasks = tasks
        self.nets = {}  # net name -> unbound Modality spec
        keys = {}  # (class, settings) -> net name
        self.input_net, self.target_net, self.group, self.command_index = {}, {}, {}, {}
        self.groups = {}  # group name -> [task names]
        self.commands = []
        for task in tasks:
            for spec, table in ((task.inputs, self.input_net), (task.targets, self.target_net)):
                key = (type(spec), json.dumps(spec.settings(), sort_keys=True, default=str))
                if key not in keys:
                    base, n = spec.modality_name(), 1
                    name = base
                    while name in self.nets:
                        n += 1
                        name = f"{base}_{n}"
                    keys[key] = name
                    self.nets[name] = spec
                table[task.name] = keys[key]
            group = f"{self.input_net[task.name]}_to_{self.target_net[task.name]}"
            self.group[task.name] = group
            self.groups.setdefault(group, []).append(task.name)
            if task.command not in self.commands:
                self.commands.append(task.command)
            self.command_index[task.name] = self.commands.index(task.command)
        self.task_index = {name: i for i, name in enumerate(names)}
        self.by_name = dict(zip(names, tasks, strict=True))

    def task(self, name):
        """The Task called `name`; a clear error lists the known tasks."""
        if name not in self.by_name:
            raise InputError(f"Unknown task {name!r}. This model's tasks: {list(self.by_name)}.")
        return self.by_name[name]
