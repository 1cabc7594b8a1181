"""Learning-rate schedules for ``Model.fit(..., lr_schedule=...)``.

A schedule gives the learning rate of each epoch. Like the schedulers of
``torch.optim.lr_scheduler`` it is stepped once after every epoch: the first
epoch trains at ``fit``'s ``lr`` (the base rate; for ``CosineWithWarmup`` with
warm-up, the first warm-up rate), and after epoch ``e`` the schedule moves on,
exactly as ``scheduler.step()`` after each epoch of a torch loop. The sequences
equal torch's (``StepLR``, ``ExponentialLR``, ``ReduceLROnPlateau`` bit for
bit; ``CosineWithWarmup`` equals ``SequentialLR(LinearLR, CosineAnnealingLR)``
to rounding), which the tests check.

A schedule keeps its state between ``fit`` calls on the same model, so
``fit(epochs=1)`` twice follows the schedule as ``fit(epochs=2)`` once. Given to
another model it starts again from the beginning; given to the same model with a
different ``lr`` it raises ``ValueError`` (call :meth:`LRSchedule.reset` to start
again). The learning rate each epoch used is recorded as ``History.history["lr"]``.

Resuming. The model remembers the state of the last schedule it trained with
(:meth:`LRSchedule.state_dict`, updated after every epoch's step) and
``Model.save`` stores it, so that a checkpoint holds the schedule as it was
after that epoch. A schedule given to ``fit`` that is not already running for
this model (a new object, or one used with another model) resumes from that
remembered state when

* it is of the same class (module and name),
* its configuration (:meth:`LRSchedule.config`, the constructor arguments)
  is equal, and
* ``fit``'s ``lr`` equals the remembered ``base_lr``;

otherwise, or when :meth:`LRSchedule.reset` was called since it was last used,
it starts afresh at ``fit``'s ``lr``. So ``Model.load(path)`` and ``fit`` with
the same arguments and a schedule built as before continues the run bit for bit
(and a save/load round trip changes nothing). Call ``reset()`` to start a
schedule afresh on a model that remembers one of the same kind.

Examples
--------
>>> from fastbp.schedules import StepLR
>>> schedule = StepLR(step_size=2, gamma=0.5)
>>> schedule.start(0.1)
>>> rates = []
>>> for epoch in range(5):
...     rates.append(schedule.lr)
...     _ = schedule.step()
>>> rates
[0.1, 0.1, 0.05, 0.05, 0.025]
"""

import math
import numbers
import weakref

from fastbp import _validation as v

__all__ = [
    "CosineWithWarmup",
    "ExponentialLR",
    "LRSchedule",
    "ReduceLROnPlateau",
    "StepLR",
]


class LRSchedule:
    """Base class: subclasses set ``self.lr`` in :meth:`_first_lr` and :meth:`_next_lr`.

    A subclass lists its constructor arguments in ``_config_keys`` (the
    schedule's :meth:`config`; without it every public number, string or bool
    set before the start counts) and any progress besides ``base_lr``,
    ``last_epoch`` and ``lr`` in ``_state_keys`` (JSON-able values), so that
    :meth:`state_dict` captures it.

    Attributes
    ----------
    base_lr : float or None
        The rate given to :meth:`start` (``fit``'s ``lr``); None before the start.
    last_epoch : int
        Number of :meth:`step` calls since the start (torch's ``last_epoch``).
    lr : float or None
        The rate of the next epoch.
    monitor : str or None
        The ``logs`` value :meth:`step` needs (``ReduceLROnPlateau``), else None.
    """

    monitor = None
    _config_keys = None  # None: the public scalar attributes (see the class doc)
    _state_keys = ()

    def __init__(self):
        self.reset()
        self._fresh_start = False  # reset() by the user: never resume

    def reset(self):
        """Forget the progress: the next ``fit`` (or :meth:`start`) begins afresh,
        also on a model that remembers a schedule of this kind."""
        self.base_lr = None
        self.last_epoch = -1
        self.lr = None
        self._model = None
        self._fresh_start = True

    # -- state ------------------------------------------------------------------

    @classmethod
    def _class_name(cls):
        return f"{cls.__module__}.{cls.__qualname__}"

    def config(self):
        """The constructor arguments, a dict of JSON-able values.

        Two schedules of one class with equal configs give the same rates from
        the same state; :meth:`state_dict` holds it and resuming compares it.
        """
        if self._config_keys is not None:
            return {key: getattr(self, key) for key in self._config_keys}
        progress = {"base_lr", "last_epoch", "lr", *self._state_keys}
        return {
            key: _plain(value)
            for key, value in sorted(vars(self).items())
            if not key.startswith("_")
            and key not in progress
            and (value is None or isinstance(value, (str, bool, numbers.Real)))
        }

    def state_dict(self):
        """Everything needed to continue the schedule, as a JSON-able dict:
        "class", "config" (:meth:`config`), "base_lr", "last_epoch", "lr" and the
        subclass's progress (ReduceLROnPlateau: "best", "num_bad_epochs",
        "cooldown_counter"). Floats survive ``json`` exactly (Python writes the
        shortest repr that reads back to the same float; inf as Infinity)."""
        state = {
            "class": self._class_name(),
            "config": self.config(),
            "base_lr": self.base_lr,
            "last_epoch": self.last_epoch,
            "lr": self.lr,
        }
        for key in self._state_keys:
            state[key] = getattr(self, key, None)
        return state

    def load_state_dict(self, state):
        """Continue from ``state`` (from :meth:`state_dict` of a schedule of the
        same class and config; ValueError otherwise). Not tied to any model
        until ``fit`` attaches it.

        Parameters
        ----------
        state : dict
            A :meth:`state_dict` of a schedule of this class and config.
        """
        if not self._matches(state):
            raise ValueError(
                f"cannot load the state of {_describe_state(state)} into "
                f"{type(self).__name__} with config {self.config()}: the class and "
                "config must be equal"
            )
        self.base_lr = None if state["base_lr"] is None else float(state["base_lr"])
        self.last_epoch = int(state["last_epoch"])
        self.lr = None if state["lr"] is None else float(state["lr"])
        for key in self._state_keys:
            setattr(self, key, state[key])
        self._model = None
        self._fresh_start = False

    def _matches(self, state):
        """Whether ``state`` comes from a schedule of this class and config."""
        try:
            return (
                isinstance(state, dict)
                and state.get("class") == self._class_name()
                and state.get("config") == self.config()
                and all(key in state for key in ("base_lr", "last_epoch", "lr"))
                and all(key in state for key in self._state_keys)
            )
        except Exception:  # a config that cannot be compared
            return False

    def start(self, base_lr):
        """Begin the schedule at ``base_lr``: ``lr`` becomes the first epoch's rate.

        Parameters
        ----------
        base_lr : float >= 0
            The rate the schedule scales (``fit``'s ``lr``).
        """
        self.base_lr = v.check_nonneg_float("lr", base_lr)
        self.last_epoch = 0
        self.lr = self._first_lr()

    def step(self, logs=None):
        """Move on by one epoch; returns the rate of the next epoch.

        Parameters
        ----------
        logs : dict, optional
            The epoch's values (``fit``'s logs); ReduceLROnPlateau reads its
            ``monitor`` there.
        """
        if self.base_lr is None:
            raise RuntimeError(f"{type(self).__name__}.step() before start()")
        self.last_epoch += 1
        self.lr = float(self._next_lr({} if logs is None else logs))
        return self.lr

    def _first_lr(self):
        return self.base_lr

    def _next_lr(self, logs):
        raise NotImplementedError

    def _attach(self, model, base_lr, metrics):
        """Called by ``fit``: continue for the same model and rate; else resume
        the model's remembered state when class, config and rate match (see the
        module doc) and reset() was not called; else start."""
        if self.monitor is not None and self.monitor not in metrics:
            raise ValueError(
                f"lr_schedule monitors {self.monitor!r}, which fit does not log "
                f"(it logs {sorted(metrics)}); pass validation_data or "
                "validation_split to log val_loss and val_accuracy"
            )
        same_model = self._model is not None and self._model() is model
        if same_model and self.base_lr is not None:
            if base_lr != self.base_lr:
                raise ValueError(
                    "lr_schedule is part-way through a schedule started at "
                    f"lr={self.base_lr} "
                    f"for this model: pass lr={self.base_lr} to continue it, or call "
                    f"lr_schedule.reset() to start it again at lr={base_lr}"
                )
            return
        remembered = getattr(model, "_schedule_state", None)
        if (
            not getattr(self, "_fresh_start", False)
            and remembered is not None
            and self._matches(remembered)
            and remembered["base_lr"] == base_lr
        ):
            self.load_state_dict(remembered)
        else:
            self.start(base_lr)
        self._fresh_start = False
        self._model = weakref.ref(model)

    def __repr__(self):
        return f"{type(self).__name__}(lr={self.lr}, last_epoch={self.last_epoch})"


def _plain(value):
    """NumPy scalars -> the Python bool, int or float json writes."""
    if isinstance(value, (str, bool)) or value is None:
        return value
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _describe_state(state):
    if isinstance(state, dict):
        return f"{state.get('class')} with config {state.get('config')}"
    return f"a {type(state).__name__}"


class StepLR(LRSchedule):
    """Multiply the rate by ``gamma`` every ``step_size`` epochs (torch's ``StepLR``).

    The rate of epoch ``e`` (from 0) is ``lr * gamma ** (e // step_size)``,
    computed by repeated multiplication as torch does.

    Parameters
    ----------
    step_size : int >= 1
        Epochs between two reductions.
    gamma : float > 0, default 0.1
        The factor of each reduction.
    """

    _config_keys = ("step_size", "gamma")

    def __init__(self, step_size, gamma=0.1):
        self.step_size = v.check_positive_int("step_size", step_size)
        self.gamma = v.check_positive_float("gamma", gamma)
        super().__init__()

    def _next_lr(self, logs):
        if self.last_epoch % self.step_size == 0:
            return self.lr * self.gamma
        return self.lr


class ExponentialLR(LRSchedule):
    """Multiply the rate by ``gamma`` after every epoch (torch's ``ExponentialLR``).

    Parameters
    ----------
    gamma : float > 0
        The factor applied after each epoch.
    """

    _config_keys = ("gamma",)

    def __init__(self, gamma):
        self.gamma = v.check_positive_float("gamma", gamma)
        super().__init__()

    def _next_lr(self, logs):
        return self.lr * self.gamma


class CosineWithWarmup(LRSchedule):
    """Linear warm-up, then half a cosine from ``lr`` down to ``min_lr``.

    For epoch ``e`` (from 0), with ``w = warmup_epochs`` and ``T = total_epochs - w``::

        e < w:          lr * (e + 1) / (w + 1)
        w <= e < w + T: min_lr + (lr - min_lr) * (1 + cos(pi * (e - w) / T)) / 2
        e >= w + T:     min_lr

    torch's ``SequentialLR([LinearLR(start_factor=1 / (w + 1), total_iters=w),
    CosineAnnealingLR(T_max=T, eta_min=min_lr)], milestones=[w])`` gives the same
    rates up to rounding over the first ``total_epochs`` epochs (after them torch's
    cosine rises again; this one stays at ``min_lr``).

    Parameters
    ----------
    total_epochs : int >= 1
        Epochs of warm-up and cosine together.
    warmup_epochs : int >= 0, default 0
        Epochs of linear warm-up (less than ``total_epochs``).
    min_lr : float >= 0, default 0
        The rate at the end of the cosine, and after it.
    """

    _config_keys = ("total_epochs", "warmup_epochs", "min_lr")

    def __init__(self, total_epochs, warmup_epochs=0, min_lr=0.0):
        self.total_epochs = v.check_positive_int("total_epochs", total_epochs)
        self.warmup_epochs = v.check_nonneg_int("warmup_epochs", warmup_epochs)
        if self.warmup_epochs >= self.total_epochs:
            raise ValueError(
                f"warmup_epochs must be less than total_epochs ({self.total_epochs}), "
                f"got {self.warmup_epochs}"
            )
        self.min_lr = v.check_nonneg_float("min_lr", min_lr)
        super().__init__()

    def lr_at(self, epoch):
        """The rate of epoch ``epoch`` for the current ``base_lr``.

        Parameters
        ----------
        epoch : int >= 0
            The epoch, counted from 0 since :meth:`start`.
        """
        w, total = self.warmup_epochs, self.total_epochs
        if epoch < w:
            return self.base_lr * (epoch + 1) / (w + 1)
        if epoch >= total:
            return self.min_lr
        progress = (epoch - w) / (total - w)
        return (
            self.min_lr
            + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * progress)) / 2
        )

    def _first_lr(self):
        return self.lr_at(0)

    def _next_lr(self, logs):
        return self.lr_at(self.last_epoch)


class ReduceLROnPlateau(LRSchedule):
    """Multiply the rate by ``factor`` when ``monitor`` stops improving (torch's rule).

    An epoch improves on the best value so far when ``value < best * (1 - threshold)``
    (mode "min") or ``value > best * (1 + threshold)`` (mode "max"); after more than
    ``patience`` epochs in a row without improvement the rate becomes
    ``max(lr * factor, min_lr)`` and ``cooldown`` epochs follow in which the count
    stays at zero. A change smaller than 1e-8 is skipped, as in torch.

    Parameters
    ----------
    monitor : str, default "val_loss"
        A key of ``fit``'s logs: "loss", "val_loss", "val_accuracy", ...
    factor : float in (0, 1), default 0.1
        What a reduction multiplies the rate by.
    patience : int >= 0, default 10
        Epochs without improvement to allow before a reduction.
    min_lr : float >= 0, default 0.0
        The rate never goes below this.
    threshold : float >= 0, default 1e-4
        The relative margin an improvement must beat the best by.
    mode : {"auto", "min", "max"}, default "auto"
        "auto" maximises names ending in "accuracy" and minimises the rest.
    cooldown : int >= 0, default 0
        Epochs after a reduction in which no bad epochs are counted.
    """

    _EPS = 1e-8  # torch's default eps
    _config_keys = (
        "monitor",
        "factor",
        "patience",
        "min_lr",
        "threshold",
        "mode",
        "cooldown",
    )
    _state_keys = ("best", "num_bad_epochs", "cooldown_counter")

    def __init__(
        self,
        monitor="val_loss",
        factor=0.1,
        patience=10,
        min_lr=0.0,
        threshold=1e-4,
        mode="auto",
        cooldown=0,
    ):
        self.monitor = v.check_monitor("monitor", monitor)
        self.factor = v.check_positive_float("factor", factor)
        if self.factor >= 1:
            raise ValueError(f"factor must be in (0, 1), got {self.factor}")
        self.patience = v.check_nonneg_int("patience", patience)
        self.min_lr = v.check_nonneg_float("min_lr", min_lr)
        self.threshold = v.check_nonneg_float("threshold", threshold)
        self.mode = resolve_mode(self.monitor, mode)
        self.cooldown = v.check_nonneg_int("cooldown", cooldown)
        super().__init__()

    def start(self, base_lr):
        super().start(base_lr)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def _is_better(self, value):
        if self.mode == "min":
            return value < self.best * (1 - self.threshold)
        return value > self.best * (1 + self.threshold)

    def _next_lr(self, logs):
        if self.monitor not in logs:
            raise KeyError(
                f"ReduceLROnPlateau needs {self.monitor!r} in the epoch's logs"
            )
        value = float(logs[self.monitor])
        if self._is_better(value):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        lr = self.lr
        if self.num_bad_epochs > self.patience:
            new_lr = max(lr * self.factor, self.min_lr)
            if lr - new_lr > self._EPS:
                lr = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        return lr


def resolve_mode(monitor, mode):
    """ "min" or "max" for ``mode`` ("auto": max for accuracies, min otherwise)."""
    mode = v.check_choice("mode", mode, ("auto", "min", "max"))
    if mode == "auto":
        return "max" if monitor.endswith("accuracy") else "min"
    return mode


def check_lr_schedule(value):
    """None or a ``fastbp.schedules.LRSchedule``."""
    if value is not None and not isinstance(value, LRSchedule):
        raise TypeError(
            "lr_schedule must be a fastbp.schedules schedule (StepLR, ExponentialLR, "
            f"CosineWithWarmup, ReduceLROnPlateau or an LRSchedule subclass), got "
            f"{v._describe(value)}"
        )
    return value
