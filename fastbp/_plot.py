"""Training curves with matplotlib: ``History.plot`` and ``fastbp train --plot``.

matplotlib is optional (the ``plot`` extra) and imported only when a plot is
drawn, so ``import fastbp`` never pays for it.
"""

import os

INSTALL_HINT = 'pip install "fastbp[plot]"'


def _matplotlib(what):
    """Import matplotlib, or raise ImportError saying how to install it."""
    try:
        import matplotlib  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{what} needs matplotlib, which is not installed: {INSTALL_HINT} "
            "(or pip install matplotlib)"
        ) from exc
    return matplotlib


def _curves(history, suffix):
    """(key, values) of the history's lists whose key ends in ``suffix``."""
    return [
        (key, values)
        for key, values in history.history.items()
        if key.endswith(suffix) and len(values)
    ]


def _draw(ax, epochs, curves, ylabel, linestyle="-"):
    from matplotlib.ticker import MaxNLocator

    for key, values in curves:
        # training curves blue, validation curves orange, in every panel
        color = "C1" if key.startswith("val_") else "C0"
        ax.plot(
            epochs,
            values,
            linestyle,
            color=color,
            marker="." if len(values) < 30 else None,
            label=key,
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


def plot_history(history, ax=None, accuracy=None, title=None):
    """Draw ``history`` (see :meth:`fastbp.History.plot`); (figure, [Axes, ...])."""
    _matplotlib("History.plot")
    epochs = list(history.epochs)
    losses = _curves(history, "loss")
    accuracies = _curves(history, "accuracy")
    with_accuracy = bool(accuracies) if accuracy is None else bool(accuracy)
    if with_accuracy and not accuracies:
        raise ValueError(
            "accuracy=True, but the history has no accuracy values (they are "
            "recorded for classifiers trained with validation data)"
        )
    if ax is None:
        import matplotlib.pyplot as plt

        fig, made = plt.subplots(
            1,
            2 if with_accuracy else 1,
            figsize=(10 if with_accuracy else 5.5, 4),
            squeeze=False,
            layout="constrained",
        )
        axes = list(made[0])
        twin = False
    elif isinstance(ax, (list, tuple)) or _is_array(ax):
        axes = list(ax.flat) if _is_array(ax) else list(ax)
        if len(axes) != (2 if with_accuracy else 1):
            raise ValueError(
                f"ax holds {len(axes)} Axes; give "
                + ("2 (losses, accuracies)" if with_accuracy else "1 (losses)")
                + " or a single Axes"
            )
        fig, twin = axes[0].figure, False
    else:
        axes, fig, twin = [ax], ax.figure, with_accuracy
    loss_ax = axes[0]
    _draw(loss_ax, epochs, losses, "loss")
    drawn = [loss_ax]
    if with_accuracy:
        acc_ax = loss_ax.twinx() if twin else axes[1]
        _draw(acc_ax, epochs, accuracies, "accuracy", "--" if twin else "-")
        drawn.append(acc_ax)
        if twin:  # one legend for both y-axes
            handles = [h for a in drawn for h in a.get_legend_handles_labels()[0]]
            loss_ax.legend(handles, [h.get_label() for h in handles])
        else:
            acc_ax.legend()
            loss_ax.legend()
    else:
        loss_ax.legend()
    if title is not None:
        if ax is None:
            fig.suptitle(title)
        else:
            loss_ax.set_title(title)
    return fig, drawn


def _is_array(ax):
    return hasattr(ax, "flat") and hasattr(ax, "shape")


def save_history_plot(history, path, title=None):
    """Write ``history``'s curves to ``path`` (format from the suffix) with the
    Agg canvas: no display and no pyplot state are involved."""
    _matplotlib("--plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = 2 if _curves(history, "accuracy") else 1
    fig = Figure(figsize=(10 if panels == 2 else 5.5, 4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    plot_history(history, ax=list(axes), title=None)
    if title is not None:
        fig.suptitle(title)
    fig.savefig(os.fspath(path), dpi=100)
    return path


def check_plot_path(path):
    """Raise before training if ``--plot PATH`` cannot be written: matplotlib
    missing (ImportError), an unknown suffix or a missing folder (ValueError)."""
    _matplotlib("--plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    if suffix not in formats:
        raise ValueError(
            f"--plot {path}: the file name must end in one of "
            f"{', '.join('.' + f for f in sorted(formats))}"
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"--plot {path}: folder {folder} does not exist")
