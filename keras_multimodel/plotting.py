"""Plots of a MultiModel's training (matplotlib, an optional extra: `pip install
keras-multimodel[notebooks]`)."""

from keras_multimodel.errors import InputError

# Logged keys that are not a task's loss.
_NOT_TASK_LOSSES = ("loss", "moe_loss")


def task_loss_keys(history):
    """The per-task loss keys of a `fit` history, without the `val_` ones.

    >>> task_loss_keys({"loss": [], "copy_loss": [], "moe_loss": [], "val_copy_loss": []})
    ['copy_loss']
    """
    logs = getattr(history, "history", history)
    return [
        key
        for key in logs
        if key.endswith("_loss") and key not in _NOT_TASK_LOSSES and not key.startswith("val_")
    ]


def plot_history(history, keys=None, ax=None, title=None, xlabel="epoch"):
    """Draws logged values over epochs, one line per key (and its `val_` key if logged).

    Args:
        history: the `keras.callbacks.History` that `fit` returns, or its `.history`.
        keys: a logged key or a list of them; None draws every task's loss
            (`task_loss_keys`).
        ax: a matplotlib `Axes` to draw on; None makes a new figure.
        title: the axes' title.
        xlabel: the x axis' label.

    Returns:
        The matplotlib `Axes`.

    Example:
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> ax = plot_history({"loss": [3, 2], "copy_loss": [2, 1], "label_loss": [1.0, 0.5]})
    >>> sorted(line.get_label() for line in ax.get_lines())
    ['copy_loss', 'label_loss']
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "keras_multimodel.plotting needs matplotlib: pip install keras-multimodel[notebooks]"
        ) from error
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict):
        raise InputError(
            "plot_history: expected the History `fit` returns (or its .history dict); "
            f"received {type(history).__name__}."
        )
    if keys is None:
        keys = task_loss_keys(logs)
    else:
        keys = [keys] if isinstance(keys, str) else list(keys)
    missing = [key for key in keys if key not in logs]
    if missing or not keys:
        raise InputError(
            f"plot_history: no logged values for {missing or 'any task loss'}; "
            f"logged keys: {sorted(logs)}."
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for key in keys:
        epochs = range(1, len(logs[key]) + 1)
        (line,) = ax.plot(epochs, logs[key], label=key)
        if f"val_{key}" in logs:
            ax.plot(epochs, logs[f"val_{key}"], "--", color=line.get_color(), label=f"val_{key}")
    ax.set_xlabel(xlabel)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return ax
