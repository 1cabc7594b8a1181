"""The training loop of ``Model.fit``: epochs, rollback on divergence, epochs in
chunks for progress callbacks, sample and class weights, the validation split.

``train`` takes checked, converted arguments (``Model.fit`` is the boundary) and
makes one kernel call per epoch (several with ``on_batches_end`` callbacks).
"""

import numbers
import time
import warnings

import numba
import numpy as np

from fastbp import _buffers, _threads, datasets
from fastbp import _validation as v
from fastbp.kernels import train as ktrain
from fastbp.kernels.codes import H_EPOCH, H_LR

# Last spawn-key entry of the generator that draws ``validation_split`` (a child
# of the shuffling stream's SeedSequence; "SPLT" in ASCII).
_SPLIT_KEY = 0x53504C54


class TrainingDivergedError(FloatingPointError):
    """The loss or the parameters became NaN/inf during ``fit``."""


class History:
    """Per-epoch records of one ``fit`` call.

    ``history`` maps "loss", "samples_per_second", with validation data (or
    ``validation_split``) "val_loss" and "val_accuracy" (classifiers), and with an
    ``lr_schedule`` "lr" (the rate each epoch used) to lists with one entry per
    epoch. ``epochs`` numbers the epochs run (from 1); a callback that stops
    training early makes it shorter. ``setup_seconds`` is the time spent loading
    or compiling the kernels before the first epoch (not counted in samples/s).
    ``diverged_epoch`` is the epoch undone because the loss became NaN/inf when a
    callback (``TerminateOnNaN``) stopped training instead of an error, else None.
    ``held_up_epochs`` counts the epochs run on one thread because other processes
    held the cores (see ``Model.fit``); the parameters are the same bits either way.
    """

    def __init__(self):
        self.history = {"loss": [], "samples_per_second": []}
        self.epochs = []
        self.setup_seconds = 0.0  # JIT compile or cache load before the first epoch
        self.diverged_epoch = None
        self.held_up_epochs = 0

    def _append(self, epoch, **values):
        self.epochs.append(epoch)
        for key, value in values.items():
            self.history.setdefault(key, []).append(value)

    def _pop(self):
        """Take back the last epoch's records (an epoch undone after recording)."""
        self.epochs.pop()
        for values in self.history.values():
            if values:
                values.pop()

    def __repr__(self):
        last = {k: vals[-1] for k, vals in self.history.items() if vals}
        return f"History(epochs={len(self.epochs)}, last={last})"

    def plot(self, ax=None, *, accuracy=None, title=None):
        """Draw the loss curves and, for classifiers, the accuracy curves per epoch.

        Needs matplotlib (``pip install "fastbp[plot]"``), imported only here.
        One panel holds every history key ending in "loss" ("loss", "val_loss"),
        a second one every key ending in "accuracy" ("val_accuracy", present for
        classifiers with validation data), against ``History.epochs``.

        Parameters
        ----------
        ax : matplotlib Axes or sequence of two Axes, optional
            Where to draw: None makes a new figure (``matplotlib.pyplot``) with one
            or two panels; one Axes gets the losses, and the accuracies on a twin
            y-axis (``ax.twinx()``); two Axes get the losses and the accuracies.
        accuracy : bool, optional
            Draw the accuracy curves; default: when the history has any.
        title : str, optional
            Title of the figure (of the losses' Axes when ``ax`` is given).

        Returns
        -------
        (figure, list of Axes)
            The figure and the Axes drawn on: ``[loss_ax]`` or
            ``[loss_ax, accuracy_ax]``.
        """
        from fastbp._plot import plot_history

        return plot_history(self, ax=ax, accuracy=accuracy, title=title)


# -- the data: weights and the validation split ------------------------------------


def sample_weights(model, T, sample_weight, class_weight):
    """fit's per-sample weights in the model's dtype, or None when unweighted."""
    if sample_weight is None and class_weight is None:
        return None
    n = T.shape[0]
    weights = (np.ones(n) if sample_weight is None
               else v.check_sample_weight(sample_weight, n, model.dtype))
    if class_weight is not None:
        if not _stratified(model):
            raise ValueError("class_weight needs a classifier: output='softmax', or one "
                             "sigmoid output with loss='cross_entropy'")
        labels, n_classes = _labels(model, T)
        weights = weights * v.class_weights(class_weight, labels, n_classes)
    weights = weights.astype(model.dtype)
    if not weights.any():
        raise ValueError("sample_weight/class_weight give every sample weight 0")
    return weights


def _stratified(model):
    """Classes to weigh and stratify by: softmax, or one sigmoid cross_entropy output."""
    return model.output == "softmax" or (model.is_classifier and model.sizes[-1] == 1)


def _labels(model, T):
    """(class of each target row, number of classes) for a stratified model."""
    if model.output == "softmax":
        return T.argmax(axis=1), model.sizes[-1]
    return (T[:, 0] > 0.5).astype(np.int64), 2


def validation_split(model, T, fraction):
    """(train indices, held-out indices) for ``validation_split``."""
    # A child of the shuffling stream's SeedSequence, made without spawning
    # (which would change the parent): the split never consumes the shuffling
    # stream, so fit(epochs=1) twice still equals fit(epochs=2) once and
    # every call holds out the same samples.
    bits = model._rng.bit_generator
    seq = getattr(bits, "seed_seq", None) or bits._seed_seq  # public from NumPy 1.25
    split_seq = np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, _SPLIT_KEY))
    labels = (T.argmax(axis=1) if model.output == "softmax" else T[:, 0] > 0.5)
    try:
        train, _, held_out, _ = datasets.train_test_split(
            np.arange(T.shape[0]), labels.astype(np.int64), fraction,
            seed=int(split_seq.generate_state(1)[0]), stratify=_stratified(model))
    except ValueError as exc:
        raise ValueError(f"validation_split={fraction} cannot split these "
                         f"{T.shape[0]} samples: {exc}") from None
    return train, held_out


# -- the epochs ---------------------------------------------------------------------


def _epoch_kernel(model, batch_size, n, online):
    """``run(head, order, weights, parallel, start)``: this batch size's epoch kernel
    (see fastbp.kernels.train; ``online``: batch size 1's fused one) with its scratch
    buffers bound; ``head`` holds its first arguments, params .. T; the loss sum
    goes on from ``start``."""
    if online:
        scratch = _buffers.online_scratch(model._layout, model.dtype)

        def run(head, order, weights, parallel, start):  # serial: no parallel, no parts
            return ktrain.train_epoch_online(*head, order, weights, *scratch, start)

        return run
    rows = min(batch_size, n)
    acts, zs, deltas, losses = _buffers.batch_scratch(model.params, model._layout, rows,
                                                      model.dtype)
    grads = _buffers.line_aligned_zeros(model.params.size, model.dtype)
    no_out = np.empty((0, model.sizes[-1]), dtype=model.dtype)

    def run(head, order, weights, parallel, start):
        return _threads.run_region(parallel, ktrain.TRAIN, True, *head, order, weights,
                                   batch_size, acts, zs, deltas, losses, grads, grads[:0],
                                   no_out, start)

    return run


_WARM = set()  # (batch size 1, parallel, dtype) of the kernels warm_up has loaded


class _Loop:
    """One ``fit`` call's epochs: the kernel call, the rollback, the records."""

    def __init__(self, model, Xc, T, weights, batch_size, lr, shuffle, rows=None):
        self.model, self.Xc, self.T, self.batch_size, self.shuffle = (
            model, Xc, T, batch_size, shuffle)
        self.rows = rows  # the rows of Xc trained on (None: all)
        self.n = Xc.shape[0] if rows is None else rows.shape[0]
        self.n_batches = -(-self.n // batch_size)
        # The kernels take an empty array for "every weight 1" (their fast path).
        self.total_weight = (self.n if weights is None else float(
            (weights if rows is None else weights[rows]).sum(dtype=np.float64)))
        self.weights = np.zeros(0, dtype=model.dtype) if weights is None else weights
        settings = model._optimizer.settings
        # Clipping needs the whole gradient before the step: not the online kernel,
        # which updates each layer as the delta recursion leaves it.
        self.online = batch_size == 1 and not (settings.clip_norm or settings.clip_value)
        self.kernel = _epoch_kernel(model, batch_size, self.n, self.online)
        self.parallel = _threads.parallel(min(batch_size, self.n), model.sizes)
        self.hyper = model._kernel_hyper(model._optimizer.settings.hyper(lr), train=True)
        # The first call's size, before any is measured: FLOPs at a modest rate, plus
        # the update of every parameter (Adam's sqrt and division: 1.4 ms a sample for
        # 300,000 parameters at batch 1, measured, against 52 us for SGD).
        update = (1e-9 if model._optimizer.settings.kind == "sgd" else 5e-9) * model.params.size
        self.batches_per_second = 1.0 / (
            6.0 * model.params.size * batch_size / _FIRST_GUESS_FLOPS + update)

    def run(self, step, order, parallel, start=0.0):
        """Batches of ``order`` from step ``step``: the kernel's loss sum, from ``start``."""
        model, opt = self.model, self.model._optimizer
        head = (model.params, opt.buf1, opt.buf2, model._layout, model._codes, self.hyper,
                step, self.Xc, self.T)
        return self.kernel(head, order, self.weights, parallel, start)

    def warm_up(self):
        """An epoch over no samples: loads (or compiles) the kernels, so that the
        first epoch's samples/s is not the JIT's; returns its seconds. Once per
        process and kind of kernel: an empty parallel region costs a time slice
        (~8 ms) on a busy machine, and the drop-in calls fit once per epoch."""
        start = time.perf_counter()
        kind = (self.online, self.parallel, self.model.dtype)
        if kind not in _WARM:
            if self.parallel:
                _threads.held_up()  # checked here, outside the timing (answer reused)
            self.run(self.model._optimizer.step, np.arange(0), self.parallel)
            _WARM.add(kind)
        return time.perf_counter() - start

    def epoch(self, epoch, lr, batch_callbacks):
        """One epoch at rate ``lr``: (mean loss, seconds, ran parallel); seconds is None
        when the loss or the parameters became non-finite. The caller restores the
        model then, and on any exception (``train``)."""
        model, opt = self.model, self.model._optimizer
        self.hyper[H_LR] = lr
        self.hyper[H_EPOCH] = model.epochs_done  # the dropout masks' epoch
        order = model._rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        if self.rows is not None:
            order = self.rows[order]
        parallel = self.parallel and not _threads.held_up()
        start = time.perf_counter()
        total = self._in_chunks(order, epoch, parallel, batch_callbacks)
        seconds = time.perf_counter() - start
        opt.step += self.n_batches
        loss = total / self.total_weight
        if not (np.isfinite(loss) and np.isfinite(model.params).all()):
            return loss, None, parallel
        return loss, seconds, parallel

    def _in_chunks(self, order, epoch, parallel, callbacks):
        """One epoch as kernel calls over whole batches of ``order`` of about
        CHUNK_SECONDS each, with ``on_batches_end`` after each (progress bars).

        Why: Python handles Ctrl-C only between calls, and one call per epoch took
        2.2 s to give way on a 200,000-sample epoch. The same batches in the same
        order with the same step numbers as one call, and each call's loss sum goes
        on from the last one's: the same bits, parameters and loss. The first call's
        size comes from the batches per second of the last epoch (a FLOP estimate
        before the first), so a 1 ms epoch stays one call.
        """
        n, batch_size, step = self.n, self.batch_size, self.model._optimizer.step
        done, total = 0, 0.0
        chunk = max(1, int(CHUNK_SECONDS * self.batches_per_second))
        while done < self.n_batches:
            stop = min(self.n_batches, done + chunk)
            begin = time.perf_counter()
            total = self.run(step + done, order[done * batch_size:stop * batch_size],
                             parallel, total)
            seconds = time.perf_counter() - begin
            if seconds > 0:
                self.batches_per_second = (stop - done) / seconds
                chunk = max(1, int(CHUNK_SECONDS * self.batches_per_second))
            done = stop
            logs = {"batches": done, "n_batches": self.n_batches,
                    "samples": min(done * batch_size, n), "n_samples": n}
            for cb in callbacks:
                cb.on_batches_end(self.model, epoch, logs)
        return total

    def snapshot(self, schedule):
        """What an epoch changes: parameters, optimizer state and step, the shuffling
        stream, the schedule's state, epochs_done."""
        model = self.model
        return (model.params.copy(), model._optimizer.snapshot(),
                model._rng.bit_generator.state, model._schedule_state, model.epochs_done,
                None if schedule is None else
                (schedule.state_dict(), schedule._model, schedule._fresh_start))

    def restore(self, saved, schedule):
        """Put back a ``snapshot``: the model as it was before the epoch."""
        model = self.model
        model.params[...] = saved[0]
        model._optimizer.restore(saved[1])
        model._rng.bit_generator.state = saved[2]
        model._schedule_state, model.epochs_done = saved[3], saved[4]
        if schedule is not None and schedule.state_dict() != saved[5][0]:
            schedule.load_state_dict(saved[5][0])  # detaches it: attach it again
            schedule._model, schedule._fresh_start = saved[5][1:]


# Seconds of training per kernel call: Ctrl-C lands within about this, and each
# call costs a launch of the region (~10-50 us: under 0.1% of 0.1 s).
CHUNK_SECONDS = 0.1
# FLOP/s assumed for the first call of a fit (6 FLOPs a parameter a sample): a
# quarter of what M reaches on one core (~90 GFLOP/s); an underestimate only costs
# one more call.
_FIRST_GUESS_FLOPS = 2e10


def _checked_lr(schedule, lr, epoch):
    epoch_lr = lr if schedule is None else schedule.lr
    if (isinstance(epoch_lr, bool) or not isinstance(epoch_lr, numbers.Real)
            or not np.isfinite(epoch_lr) or epoch_lr < 0):
        raise ValueError(f"lr_schedule gave lr={epoch_lr!r} for epoch {epoch}: "
                         "a learning rate must be a finite number >= 0")
    return float(epoch_lr)


HELD_UP_MESSAGE = "epochs ran on one thread"


def warn_held_up(held_up, epochs, stacklevel):
    """The one warning of a fit (or a drop-in's fit) whose epochs ran serially."""
    warnings.warn(
        f"{held_up} of {epochs} {HELD_UP_MESSAGE}: other processes held the CPUs, which "
        "stalls a parallel epoch's threads whenever one of them waits for the other "
        "(same results either way; fewer n_threads avoids the check)",
        RuntimeWarning, stacklevel=stacklevel)


def train(model, Xc, T, val, *, epochs, batch_size, lr, settings, shuffle, cbs, schedule,
          metrics, weights, rows=None, make_loop=None):
    """The epoch loop of ``Model.fit`` (arguments checked, threads set): a History.
    ``make_loop`` (default ``_Loop``) builds the epochs' runner from
    (model, Xc, T, weights, batch_size, lr, shuffle, rows): fastbp.distributed's
    runs each batch across processes under the same loop."""
    model._optimizer.use(settings)
    loop = (make_loop or _Loop)(model, Xc, T, weights, batch_size, lr, shuffle, rows)
    history = History()
    history.setup_seconds = loop.warm_up()
    model.stop_training = False
    logs = {}
    try:
        cbs.call("on_fit_begin", model, {
            "epochs": epochs, "batch_size": batch_size, "n_samples": loop.n,
            "n_validation": 0 if val is None else
            (val[0] if val[2] is None else val[2]).shape[0], "lr": lr,
            "n_threads": numba.get_num_threads(), "metrics": list(metrics)})
        batch_callbacks = cbs.wanting("on_batches_end")
        for epoch in range(1, epochs + 1):
            epoch_lr = _checked_lr(schedule, lr, epoch)
            saved = loop.snapshot(schedule)
            try:  # an epoch lands whole or not at all: Ctrl-C, an error, a callback
                loss, seconds, parallel = loop.epoch(epoch, epoch_lr, batch_callbacks)
                if seconds is not None:
                    logs = _record(model, history, epoch, loss,
                                   loop.n / max(seconds, 1e-12), val, schedule, epoch_lr)
                    model.epochs_done += 1
            except BaseException:
                loop.restore(saved, schedule)
                if history.epochs and history.epochs[-1] == epoch:  # recorded already
                    history._pop()
                raise
            history.held_up_epochs += loop.parallel and not parallel
            if seconds is None:
                loop.restore(saved, schedule)
                cbs.call("on_divergence", model, epoch, {"loss": loss, "lr": epoch_lr})
                if not model.stop_training:
                    raise TrainingDivergedError(
                        f"training diverged in epoch {epoch}: the loss became "
                        f"{loss} (try a smaller lr); parameters restored to "
                        f"before epoch {epoch}"
                    )
                history.diverged_epoch = epoch
                break
            cbs.call("on_epoch_end", model, epoch, logs)
            if model.stop_training:
                break
        if history.held_up_epochs:
            warn_held_up(history.held_up_epochs, len(history.epochs), stacklevel=4)
        cbs.call("on_fit_end", model, dict(logs))
    except BaseException as exc:
        cbs.call("on_exception", model, exc)
        raise
    return history


def _record(model, history, epoch, loss, samples_per_second, val, schedule, epoch_lr):
    """Append the epoch to ``history``, step the schedule; the callbacks' logs."""
    record = {"loss": loss, "samples_per_second": samples_per_second}
    if val is not None:
        for name, value in model._evaluate(*val).items():
            record["val_" + name] = value
    if schedule is not None:
        record["lr"] = epoch_lr
    history._append(epoch, **record)
    logs = {**record, "lr": epoch_lr}
    if schedule is not None:
        schedule.step(dict(logs))
        # before the callbacks: a ModelCheckpoint saves the state after this
        # epoch's step, from which the next epoch starts
        model._schedule_state = schedule.state_dict()
    return logs
