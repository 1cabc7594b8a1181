"""Callbacks for ``Model.fit(..., callbacks=[...])``.

A callback is any object with some of these methods (all optional); ``fit``
calls them in the order the callbacks were given:

``on_fit_begin(model, logs)``
    Before the first epoch. ``logs``: "epochs", "batch_size", "n_samples",
    "n_validation" (0 without validation data), "lr" (fit's), "n_threads" and
    "metrics", the keys every epoch's logs will hold. Raising here (e.g. for a
    monitored value that is never logged) stops ``fit`` before any training.
``on_epoch_end(model, epoch, logs)``
    After each epoch (``epoch`` counts from 1 in each ``fit`` call). ``logs``:
    "loss", "samples_per_second", "lr" (the rate the epoch used) and, with
    validation data, "val_loss" and, for classifiers, "val_accuracy".
``on_batches_end(model, epoch, logs)``
    During an epoch, after each run of batches (for progress displays). ``logs``:
    "batches" and "samples" done so far in the epoch, "n_batches", "n_samples".
    ``fit`` runs an epoch as kernel calls of about 0.1 s each (so that Ctrl-C
    lands promptly; the same bits as one call) and reports after each one to the
    callbacks that define this hook (not the no-op of :class:`Callback`) and do
    not set ``wants_batch_progress = False``.
``on_fit_end(model, logs)``
    When training ends normally, by running all epochs or by a stop; ``logs`` are
    the last epoch's (empty if none completed).
``on_divergence(model, epoch, logs)``
    When an epoch's loss or parameters became NaN/inf. ``fit`` has already put
    back the parameters, optimizer state and shuffling stream of before the
    epoch (which is not recorded in the History); ``logs`` holds "loss" and "lr".
    If a callback sets ``model.stop_training = True`` here, ``fit`` ends
    normally (``on_fit_end`` runs, ``History.diverged_epoch`` names the epoch);
    otherwise it raises :class:`fastbp.TrainingDivergedError`.
``on_exception(model, exc)``
    When an exception leaves ``fit`` after ``on_fit_begin`` (a divergence not
    handled, an error in a callback, KeyboardInterrupt): for cleanup only, the
    exception is raised again afterwards. An epoch the exception interrupted is
    undone whole: parameters, optimizer state and step, shuffling stream, the
    schedule's state and ``epochs_done`` are as before it.

Training stops after the current epoch when a callback sets
``model.stop_training = True``; ``fit`` resets it to False when it starts.

Examples
--------
>>> import numpy as np, fastbp
>>> from fastbp.callbacks import Callback
>>> class StopAt(Callback):
...     def on_epoch_end(self, model, epoch, logs):
...         model.stop_training = epoch == 3
>>> model = fastbp.Model([2, 1], seed=0)
>>> history = model.fit(np.eye(2), [0.0, 1.0], epochs=10, callbacks=[StopAt()])
>>> len(history.epochs)
3
"""

import csv
import io
import json
import math
import numbers
import os
import sys
import warnings

import numpy as np

from fastbp import _validation as v
from fastbp._persist import write_atomic
from fastbp.schedules import resolve_mode

__all__ = [
    "Callback",
    "EarlyStopping",
    "HistoryLogger",
    "ModelCheckpoint",
    "ProgressBar",
    "TerminateOnNaN",
]


class Callback:
    """Base class with every hook as a no-op; override the ones you need (the
    module docstring says when each is called and what ``logs`` holds)."""

    def on_fit_begin(self, model, logs):
        """Before the first epoch.

        Parameters
        ----------
        model : fastbp.Model
            The model being trained.
        logs : dict
            See the module docstring for its keys.
        """

    def on_epoch_end(self, model, epoch, logs):
        """After each epoch.

        Parameters
        ----------
        model : fastbp.Model
            The model being trained.
        epoch : int
            The epoch, counted from 1 in each ``fit`` call.
        logs : dict
            See the module docstring for its keys.
        """

    def on_batches_end(self, model, epoch, logs):
        """During an epoch, after each run of batches.

        Parameters
        ----------
        model : fastbp.Model
            The model being trained.
        epoch : int
            The epoch, counted from 1 in each ``fit`` call.
        logs : dict
            See the module docstring for its keys.
        """

    def on_fit_end(self, model, logs):
        """When training ends normally.

        Parameters
        ----------
        model : fastbp.Model
            The model being trained.
        logs : dict
            See the module docstring for its keys.
        """

    def on_divergence(self, model, epoch, logs):
        """When an epoch's loss or parameters became NaN/inf.

        Parameters
        ----------
        model : fastbp.Model
            The model being trained.
        epoch : int
            The epoch, counted from 1 in each ``fit`` call.
        logs : dict
            See the module docstring for its keys.
        """

    def on_exception(self, model, exc):
        """When an exception leaves ``fit``.

        Parameters
        ----------
        model : fastbp.Model
            The model being trained.
        exc : BaseException
            The exception leaving ``fit``.
        """


def _require(owner, what, key, logs):
    """Raise ValueError unless ``key`` will be in every epoch's logs."""
    metrics = logs.get("metrics", ())
    if key not in metrics:
        raise ValueError(
            f"{owner} {what}={key!r} is not logged by this fit "
            f"(it logs {sorted(metrics)}); "
            "pass validation_data or validation_split to log val_loss and val_accuracy"
        )


class _Best:
    """The best value of a monitored quantity so far ("min" or "max" mode)."""

    def __init__(self, monitor, mode, min_delta=0.0):
        self.monitor, self.mode, self.min_delta = (
            monitor,
            resolve_mode(monitor, mode),
            min_delta,
        )
        self.reset()

    def reset(self):
        self.value = math.inf if self.mode == "min" else -math.inf

    def improves(self, value):
        """Whether ``value`` beats the best by more than min_delta (NaN never does)."""
        if self.mode == "min":
            return value < self.value - self.min_delta
        return value > self.value + self.min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs.

    An epoch improves when its value beats the best so far by more than
    ``min_delta`` (lower for "min", higher for "max"; "auto" maximises names
    ending in "accuracy", minimises the rest; NaN never improves). With
    ``restore_best_weights`` the parameters of the best epoch are copied back
    into ``model.params`` (in place: ``model.weights`` stay valid views) when
    training ends, whether this callback stopped it or not. The optimizer state
    (momentum, Adam moments) and the shuffling stream are those of the last
    epoch run. State is reset at each ``fit``.

    Parameters
    ----------
    monitor : str, default "val_loss"
        A key of the epochs' logs ("loss", "val_loss", "val_accuracy", ...); fit
        raises at its start if it will not be logged.
    patience : int >= 0, default 0
        Epochs without improvement to allow before stopping.
    min_delta : float >= 0, default 0
        How much a value must beat the best to count as an improvement.
    mode : "auto" (default), "min" or "max"
        Whether lower or higher is better ("auto": higher for names ending in
        "accuracy").
    restore_best_weights : bool, default False
        Copy the best epoch's parameters back when training ends.

    Attributes
    ----------
    best : float
        Best monitored value of the last ``fit``.
    best_epoch : int or None
        Epoch (from 1) that reached it.
    stopped_epoch : int or None
        Epoch after which this callback stopped training; None if it did not.
    """

    def __init__(
        self,
        monitor="val_loss",
        patience=0,
        min_delta=0.0,
        mode="auto",
        restore_best_weights=True,
    ):
        self.monitor = v.check_monitor("monitor", monitor)
        self.patience = v.check_nonneg_int("patience", patience)
        self.min_delta = v.check_nonneg_float("min_delta", min_delta)
        self._best = _Best(self.monitor, mode, self.min_delta)
        self.mode = self._best.mode
        self.restore_best_weights = v.check_bool(
            "restore_best_weights", restore_best_weights
        )
        self.best, self.best_epoch, self.stopped_epoch = self._best.value, None, None
        self._best_params = None
        self.wait = 0

    def on_fit_begin(self, model, logs):
        _require("EarlyStopping", "monitor", self.monitor, logs)
        self._best.reset()
        self.best, self.best_epoch, self.stopped_epoch = self._best.value, None, None
        self._best_params = None
        self.wait = 0

    def on_epoch_end(self, model, epoch, logs):
        value = float(logs[self.monitor])
        if self._best.improves(value):
            self._best.value = self.best = value
            self.best_epoch = epoch
            self.wait = 0
            if self.restore_best_weights:
                if self._best_params is None:
                    self._best_params = model.params.copy()
                else:
                    self._best_params[...] = model.params
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            model.stop_training = True

    def on_fit_end(self, model, logs):
        if self.restore_best_weights and self._best_params is not None:
            model.params[...] = self._best_params


class TerminateOnNaN(Callback):
    """Stop training gracefully, with a warning, when a loss is not finite.

    Without it ``fit`` raises :class:`fastbp.TrainingDivergedError` when the
    training loss or the parameters become NaN/inf. With it ``fit`` returns
    instead: the diverged epoch is undone (parameters, optimizer state and
    shuffling stream as before it), left out of the History and named by
    ``History.diverged_epoch``. A non-finite validation loss also stops training
    (after that epoch, which is kept: its parameters are finite).

    Attributes
    ----------
    stopped_epoch : int or None
        The epoch that made it stop in the last ``fit``; None if it did not.
    """

    def __init__(self):
        self.stopped_epoch = None

    def on_fit_begin(self, model, logs):
        self.stopped_epoch = None

    def on_divergence(self, model, epoch, logs):
        self.stopped_epoch = epoch
        model.stop_training = True
        warnings.warn(
            f"TerminateOnNaN: the loss became {logs.get('loss')} in epoch {epoch}; "
            f"training stopped with the parameters of before epoch {epoch}",
            RuntimeWarning,
            stacklevel=2,
        )

    def on_epoch_end(self, model, epoch, logs):
        bad = [
            k
            for k, x in logs.items()
            if k.endswith("loss")
            and isinstance(x, numbers.Real)
            and not math.isfinite(x)
        ]
        if bad:
            self.stopped_epoch = epoch
            model.stop_training = True
            warnings.warn(
                f"TerminateOnNaN: {bad[0]} became {logs[bad[0]]} in epoch {epoch}; "
                "training stopped",
                RuntimeWarning,
                stacklevel=2,
            )


class ModelCheckpoint(Callback):
    """Save the model with ``model.save`` (atomic) every ``every`` epochs.

    ``path`` may hold ``str.format`` fields: ``{epoch}`` (from 1 in each ``fit``),
    ``{epochs_done}`` (the model's epochs in total, across ``fit`` calls and
    resumes: ``model.epochs_done``) and the logged values, e.g.
    ``"ckpt-{epochs_done:03d}-{val_loss:.3f}.npz"``; without fields every save
    replaces the same file. With ``save_best_only`` an epoch is saved only when
    ``monitor`` improves on the best saved so far in this ``fit`` ("auto" mode:
    accuracies up, the rest down).

    Each file holds the whole training state as it is after the epoch (see
    ``Model.save``): ``Model.load`` and ``fit`` for the remaining
    ``total - model.epochs_done`` epochs continue the run exactly.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write, with optional ``str.format`` fields (above).
    every : int >= 1, default 1
        Save after every ``every``-th epoch.
    save_best_only : bool, default False
        Save only when ``monitor`` improves on the best saved in this ``fit``.
    monitor : str, default "val_loss"
        The logged value ``save_best_only`` compares.
    mode : "auto" (default), "min" or "max"
        Whether lower or higher ``monitor`` is better.

    Attributes
    ----------
    saved : list of str
        Paths written in the last ``fit``, in order.
    """

    def __init__(
        self, path, every=1, save_best_only=False, monitor="val_loss", mode="auto"
    ):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"path must be a str or path-like, got {type(path).__name__}"
            )
        self.path = os.fspath(path)
        self.every = v.check_positive_int("every", every)
        self.save_best_only = v.check_bool("save_best_only", save_best_only)
        self.monitor = v.check_monitor("monitor", monitor)
        self._best = _Best(self.monitor, mode)
        self.saved = []

    def _format(self, epoch, logs, epochs_done):
        return self.path.format(epoch=epoch, epochs_done=epochs_done, **logs)

    def on_fit_begin(self, model, logs):
        if self.save_best_only:
            _require("ModelCheckpoint", "monitor", self.monitor, logs)
        dummy = dict.fromkeys(logs.get("metrics", ()), 0.0)
        try:
            first = self._format(1, dummy, getattr(model, "epochs_done", 0) + 1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"ModelCheckpoint path {self.path!r} has a field fit does not "
                f"log or a bad format ({exc!r}); fields: epoch, epochs_done and "
                f"{sorted(dummy)}"
            ) from None
        folder = os.path.dirname(os.path.abspath(first))
        if "{" not in os.path.dirname(self.path) and not os.path.isdir(folder):
            raise ValueError(
                f"ModelCheckpoint path {self.path!r}: folder {folder} does not exist"
            )
        self._best.reset()
        self.saved = []

    def on_epoch_end(self, model, epoch, logs):
        if epoch % self.every:
            return
        if self.save_best_only:
            value = float(logs[self.monitor])
            if not self._best.improves(value):
                return
            self._best.value = value
        path = self._format(epoch, logs, getattr(model, "epochs_done", epoch))
        model.save(path)
        self.saved.append(path)


class HistoryLogger(Callback):
    """Write the epochs' logs to ``path`` after every epoch: CSV or JSON by suffix.

    ``.csv``: a header ``epoch,loss,...`` and one row per epoch. ``.json``: an
    object of lists, ``{"epoch": [1, 2, ...], "loss": [...], ...}``, like
    ``History.history``. The file is rewritten atomically each epoch and holds
    the epochs of the current ``fit`` (a new ``fit`` starts it again).

    Parameters
    ----------
    path : str or os.PathLike
        The file; its suffix (``.csv`` or ``.json``) picks the format.
    """

    def __init__(self, path):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"path must be a str or path-like, got {type(path).__name__}"
            )
        self.path = os.fspath(path)
        self.format = os.path.splitext(self.path)[1].lower().lstrip(".")
        if self.format not in ("csv", "json"):
            raise ValueError(f"path must end in .csv or .json, got {self.path!r}")
        self.rows = []

    def on_fit_begin(self, model, logs):
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise ValueError(
                f"HistoryLogger path {self.path!r}: folder {folder} does not exist"
            )
        self.rows = []

    def on_epoch_end(self, model, epoch, logs):
        self.rows.append({"epoch": epoch, **logs})
        keys = list(dict.fromkeys(k for row in self.rows for k in row))
        if self.format == "csv":
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
            writer.writeheader()
            writer.writerows(
                {k: _plain(x) for k, x in row.items()} for row in self.rows
            )
            text = buf.getvalue()
        else:
            table = {k: [_plain(row.get(k)) for row in self.rows] for k in keys}
            text = json.dumps(table, indent=1) + "\n"
        write_atomic(self.path, lambda fh: fh.write(text), binary=False)


def _plain(x):
    """NumPy scalars -> Python numbers (json and csv write those exactly)."""
    return x.item() if isinstance(x, np.generic) else x


class ProgressBar(Callback):
    """Training progress: on a terminal (or in a notebook) a tqdm bar over the
    epochs, moving within an epoch as its batches are done ("epoch k/N, batch
    b/B"), with the loss, validation values, lr and samples/s after each epoch.

    Off a terminal (a file, a pipe, a CI log; ``file``, default ``sys.stderr`` at
    ``fit`` time) there are no carriage-return redraws: with ``force=True`` one
    plain line per epoch, written and flushed as the epoch ends; without it,
    nothing. ``fit(progress=True)`` adds a forced one unless ``callbacks`` already
    holds a ProgressBar.

    Parameters
    ----------
    file : writable text stream, optional
        Where to write (default: ``sys.stderr`` when fit begins).
    force : bool, default False
        Report off a terminal too, as one line per epoch.
    leave : bool, default True
        Keep the finished bar on the terminal.
    """

    def __init__(self, file=None, force=False, leave=True):
        self.file = file
        self.force = v.check_bool("force", force)
        self.leave = v.check_bool("leave", leave)
        self.bar = None
        self._lines = None  # the stream of one-line-per-epoch reports, off a terminal

    @staticmethod
    def _live(stream):
        from tqdm import autonotebook, std

        # tqdm.autonotebook's tqdm is the plain one except in a notebook kernel
        if autonotebook.tqdm is not std.tqdm:
            return True
        isatty = getattr(stream, "isatty", None)
        try:
            return callable(isatty) and bool(isatty())
        except (ValueError, OSError):  # a closed stream
            return False

    def on_fit_begin(self, model, logs):
        from tqdm.auto import tqdm

        stream = sys.stderr if self.file is None else self.file
        self._epochs, self._done = logs.get("epochs"), 0
        if not self._live(stream):
            self._lines = stream if self.force else None
            return
        # whole epochs in the text ("epoch 3/30"): the bar's own counter would show
        # the fraction within an epoch ("5.333333333333333/30")
        self.bar = tqdm(total=self._epochs, desc="fit", file=stream, leave=self.leave,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix} "
                                   "[{elapsed}<{remaining}]")
        self.bar.set_postfix_str(f"epoch 0/{self._epochs}", refresh=False)

    @property
    def wants_batch_progress(self):
        """Only a live bar asks fit for progress within epochs."""
        return self.bar is not None

    def on_batches_end(self, model, epoch, logs):
        if self.bar is None:
            return
        position = epoch - 1 + logs["batches"] / logs["n_batches"]
        self.bar.set_postfix_str(f"epoch {epoch}/{self._epochs}, "
                                 f"batch {logs['batches']}/{logs['n_batches']}", refresh=False)
        self.bar.update(position - self._done)  # tqdm redraws at most every 0.1 s
        self._done = position

    def on_epoch_end(self, model, epoch, logs):
        if self.bar is None and self._lines is None:
            return
        shown = [f"epoch {epoch}/{self._epochs}"]
        for key in ("loss", "val_loss", "val_accuracy", "lr"):
            if key in logs:
                shown.append(f"{key}={logs[key]:.4g}")
        shown.append(f"samples/s={logs.get('samples_per_second', 0.0):,.0f}")
        if self.bar is None:
            self._lines.write(f"fit: {'  '.join(shown)}\n")
            self._lines.flush()
            return
        self.bar.set_postfix_str(", ".join(shown), refresh=False)
        self.bar.update(epoch - self._done)
        self._done = epoch

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self._lines = None

    def on_fit_end(self, model, logs):
        self._close()

    def on_exception(self, model, exc):
        self._close()


class _CallbackList:
    """Calls one hook on every callback that has it, in order (used by ``fit``)."""

    def __init__(self, callbacks):
        self.callbacks = list(callbacks)

    def wanting(self, hook):
        """The callbacks with their own ``hook`` (not Callback's no-op) that do not
        set ``wants_batch_progress = False``."""
        return [cb for cb in self.callbacks
                if callable(getattr(cb, hook, None))
                and getattr(type(cb), hook, None) is not getattr(Callback, hook)
                and getattr(cb, "wants_batch_progress", True)]

    def call(self, hook, *args):
        for cb in self.callbacks:
            method = getattr(cb, hook, None)
            if method is not None:
                method(*args)
