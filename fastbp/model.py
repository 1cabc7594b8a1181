"""The public Model: validate -> convert -> one kernel call -> wrap."""

import functools
import io
import json
import numbers
import os
import tempfile
import time
import warnings
import zipfile

import numba
import numpy as np

from fastbp import _codes, datasets
from fastbp import _validation as v
from fastbp import callbacks as fcallbacks
from fastbp._version import __version__
from fastbp.kernels import batch as kbatch
from fastbp.kernels import forward as kforward
from fastbp.kernels import train as ktrain
from fastbp.kernels.layout import BOFF, UNIT, WOFF, make_layout, row_width

_FORMAT = "fastbp-model"
_FORMAT_VERSION = 1
# Rows of scratch per chunk when a whole data set goes through ``dataset_pass``:
# a fixed size (not the thread count) keeps sums identical at any thread count.
_PASS_CHUNK = 256
_PAGE = 4096  # bytes; see Model._activations
_LINE = 64  # bytes in a cache line
# Below this many FLOPs per batch a parallel region costs more than it saves
# (thread wake-up and barriers, ~10 us, far worse when another process holds a
# core), so such batches run the serial kernels. Same bits either way.
PARALLEL_MIN_FLOPS = 4e6
# Parts a batch is split into (of its samples, and of the rows of each W^l) when an
# epoch runs serially; in parallel, one part per thread. The parts change no bit
# (each element of a product comes out of one tile in a fixed order, see
# kernels/tiles.py), only speed: measured on 784-1024-1024-10 at batch 256, one
# thread ran 2.5% faster with 1 part than with 2 (each part reads all of W), and
# 2 threads gave the same with 2, 4 or 8 parts. Tests raise it to exercise splits.
SERIAL_PARTS = 1
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


class Model:
    """A fully connected network trained by backpropagation on fastbp's kernels.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths ``[n_in, h1, ..., n_out]``, at least two entries >= 1.
    hidden : {"sigmoid", "tanh", "relu", "leaky_relu", "linear"}
    output : {"linear", "sigmoid", "softmax", "tanh"}
    loss : {"mse", "cross_entropy"}
        cross_entropy needs a softmax or sigmoid output.
    init : {"xavier", "he", "normal", "uniform", "zeros"} or float
        Weight initialisation; a float sets every weight to it. Biases start at 0.
    bias : bool
    dtype : {"float32", "float64"}
    seed : int or None
        Seeds the initial weights and the shuffling stream.

    Attributes
    ----------
    params : ndarray, shape (n_params,)
        Every parameter, layer by layer: W^1, b^1, W^2, b^2, ...
    weights, biases : list of ndarray
        Views into ``params``: ``weights[l - 1]`` is W^l, shape (n_l, n_(l-1)).
    epochs_done : int
        Epochs trained in total, across ``fit`` calls (an epoch undone after a
        divergence does not count); saved and restored by :meth:`save` and
        :meth:`load`, so a resumed run goes on with ``epochs=total - epochs_done``.

    Examples
    --------
    >>> import numpy as np, fastbp
    >>> X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    >>> y = np.array([0, 1, 1, 0])
    >>> model = fastbp.Model([2, 8, 2], hidden="tanh", output="softmax",
    ...                      loss="cross_entropy", seed=0)
    >>> history = model.fit(X, y, epochs=300, batch_size=4, lr=0.5, momentum=0.9)
    >>> model.predict(X).argmax(axis=1).tolist()
    [0, 1, 1, 0]
    """

    # Set by a callback to end ``fit`` after the current epoch; fit resets it.
    stop_training = False

    def __init__(self, sizes, *, hidden="sigmoid", output="linear", loss="mse",
                 init="xavier", bias=True, dtype="float32", seed=None):
        self.sizes = v.check_sizes(sizes)
        self.hidden = v.check_choice("hidden", hidden, _codes.HIDDEN)
        self.output = v.check_choice("output", output, _codes.OUTPUT)
        self.loss_name = v.check_choice("loss", loss, _codes.LOSS)
        if self.loss_name == "cross_entropy" and self.output not in _codes.CROSS_ENTROPY_OUTPUTS:
            raise ValueError(
                f"loss='cross_entropy' needs output='softmax' or 'sigmoid', got output={output!r}"
            )
        if self.output == "softmax" and self.sizes[-1] < 2:
            raise ValueError("output='softmax' needs at least 2 outputs (sizes[-1] >= 2)")
        self.init = v.check_init(init)
        self.bias = v.check_bool("bias", bias)
        self.dtype = v.check_dtype(dtype)
        self.seed = v.check_seed(seed)
        self._layout, n_params = make_layout(self.sizes, self.bias)
        self._codes = np.array(
            [_codes.HIDDEN[self.hidden], _codes.OUTPUT[self.output], _codes.LOSS[self.loss_name]],
            dtype=np.int64,
        )
        init_seq, shuffle_seq = np.random.SeedSequence(self.seed).spawn(2)
        self._rng = np.random.default_rng(shuffle_seq)
        self.params = _line_aligned_zeros(n_params, self.dtype)
        self._make_views()
        self._initialise(np.random.default_rng(init_seq))
        self._reset_optimizer(None)
        self.epochs_done = 0
        # state_dict() of the last lr schedule after its latest step (None before
        # one): saved with the model, resumed by a matching schedule (schedules.py)
        self._schedule_state = None

    # -- pickling: weights/biases are views into params ------------------------

    def __getstate__(self):
        # Pickled as they are, the views would come back as copies detached from
        # ``params`` (writes into model.weights[l] would no longer train).
        return {k: v for k, v in vars(self).items() if k not in ("weights", "biases")}

    def __setstate__(self, state):
        vars(self).update(state)
        for name in ("params", "_buf1", "_buf2"):  # line-aligned, as built
            arr = getattr(self, name)
            setattr(self, name, _line_aligned_zeros(arr.size, arr.dtype))
            getattr(self, name)[...] = arr
        self._make_views()

    # -- construction helpers -------------------------------------------------

    def _make_views(self):
        self.weights, self.biases = [], []
        for l in range(1, len(self.sizes)):
            n_in, n_out = self.sizes[l - 1], self.sizes[l]
            w_off = self._layout[WOFF, l]
            self.weights.append(self.params[w_off : w_off + n_out * n_in].reshape(n_out, n_in))
            if self.bias:
                b_off = self._layout[BOFF, l]
                self.biases.append(self.params[b_off : b_off + n_out])

    def _initialise(self, rng):
        # Draw in float64, then round: both dtypes start from the same numbers.
        for W in self.weights:
            n_out, n_in = W.shape
            if isinstance(self.init, float):
                W[...] = self.init
            elif self.init == "xavier":
                limit = np.sqrt(6.0 / (n_in + n_out))
                W[...] = rng.uniform(-limit, limit, size=W.shape)
            elif self.init == "he":
                W[...] = rng.normal(0.0, np.sqrt(2.0 / n_in), size=W.shape)
            elif self.init == "normal":
                W[...] = rng.normal(0.0, np.sqrt(1.0 / n_in), size=W.shape)
            elif self.init == "uniform":
                limit = 1.0 / np.sqrt(n_in)
                W[...] = rng.uniform(-limit, limit, size=W.shape)
            else:  # zeros
                W[...] = 0.0

    def _reset_optimizer(self, key):
        # buf1: momentum buffer or Adam's first moment; buf2: Adam's second moment.
        self._opt_key = key
        self._buf1 = _line_aligned_zeros(self.params.size, self.dtype)
        self._buf2 = _line_aligned_zeros(self.params.size, self.dtype)
        self._step = 0

    @property
    def n_layers(self):
        """Number of weight layers L."""
        return len(self.sizes) - 1

    @property
    def flops_per_sample(self):
        """Training FLOPs per sample: 2 per weight forward, 2 for its gradient, 2
        for propagating delta back through it (which the first layer skips)."""
        n_weights = [a * b for a, b in zip(self.sizes[:-1], self.sizes[1:])]
        return 6 * sum(n_weights) - 2 * n_weights[0]

    @property
    def is_classifier(self):
        return self.output == "softmax" or (
            self.output == "sigmoid" and self.loss_name == "cross_entropy"
        )

    def __repr__(self):
        return (
            f"Model({list(self.sizes)}, hidden={self.hidden!r}, output={self.output!r}, "
            f"loss={self.loss_name!r}, bias={self.bias}, dtype={self.dtype.name!r})"
        )

    # -- conversion at the boundary -------------------------------------------

    def _X(self, X, name="X", allow_1d=False):
        return v.check_X(name, X, self.sizes[0], self.dtype, allow_1d=allow_1d)

    def _XY(self, X, Y, xname="X", yname="Y"):
        Xc, _ = self._X(X, xname)
        T = v.check_Y(yname, Y, Xc.shape[0], self.sizes[-1], self.dtype,
                      self.loss_name == "cross_entropy")
        return Xc, T

    def _gemm_buffers(self, rows):
        """Layer-major scratch for ``rows`` samples (see kernels/batch.py)."""
        width = row_width(self._layout)
        zs, deltas = (_line_aligned_zeros(rows * width, self.dtype) for _ in range(2))
        return self._activations(rows, width), zs, deltas, np.zeros(rows, dtype=np.float64)

    def _activations(self, rows, width):
        """The activations buffer for ``rows`` samples, placed apart from the weights.

        The forward tiles read rows of a layer's inputs A^(l-1) and of its W^l side
        by side, both ``n_(l-1)`` elements apart. When the two blocks start at the
        same offset within a 4 KiB page and their rows are 4 KiB long (1024
        float32), all the rows a tile reads fall in the same L1 cache sets and
        evict each other: measured on 784-1024-1024-10 at batch 256, the second
        layer's product ran at 60 instead of 90 GFLOP/s, and epochs differed by 25%
        from run to run as malloc placed the buffers. So the buffer starts at the
        offset (in cache lines) that keeps every layer's input block furthest, in
        the worst layer, from its W^l within a page.
        """
        item, layout = self.dtype.itemsize, self._layout
        buf = np.zeros(rows * width + _PAGE // item, dtype=self.dtype)
        gaps = [item * (rows * int(layout[UNIT, l - 1]) - int(layout[WOFF, l]))
                for l in range(1, layout.shape[1])]

        def nearest(shift):  # the closest any input block comes to its W^l in a page
            return min(min((shift + g) % _PAGE, -(shift + g) % _PAGE) for g in gaps)

        shift = max(range(0, _PAGE, 64), key=nearest)
        start = (self.params.ctypes.data + shift - buf.ctypes.data) % _PAGE // item
        return buf[start : start + rows * width]

    @staticmethod
    def _parts(parallel):
        """How many parts the GEMM kernels split a batch into: one per thread for a
        parallel run, else SERIAL_PARTS. Results do not depend on it."""
        return numba.get_num_threads() if parallel else SERIAL_PARTS

    def _big_enough(self, rows):
        return rows * self.flops_per_sample >= PARALLEL_MIN_FLOPS

    def _parallel(self, rows):
        """Whether work on ``rows`` samples at a time is worth a parallel region."""
        return numba.get_num_threads() > 1 and self._big_enough(rows)

    def _pass(self, Xc, T, want_loss, want_grads):
        """(loss sum, outputs, gradient sums) over all samples: one kernel call."""
        rows = min(_PASS_CHUNK, Xc.shape[0])
        out = np.empty((Xc.shape[0], self.sizes[-1]), dtype=self.dtype)
        grads = _line_aligned_zeros(self.params.size, self.dtype)
        chunk_grads = (_line_aligned_zeros(self.params.size, self.dtype) if want_grads
                       else grads[:0])
        parallel = self._parallel(rows)
        total = kbatch.dataset_pass(self._net(), Xc, T, want_loss, want_grads, parallel,
                                    self._parts(parallel), self._gemm_buffers(rows),
                                    chunk_grads, out, grads)
        return total, out, grads

    # -- inference --------------------------------------------------------------

    def predict(self, X):
        """Output activations a^L, shape (n_samples, n_out); (n_out,) for a 1-D X."""
        Xc, one_sample = self._X(X, allow_1d=True)
        threads = numba.config.NUMBA_NUM_THREADS  # thread ids run up to this
        A = np.zeros((threads, row_width(self._layout)), dtype=self.dtype)
        Z = np.zeros_like(A)
        out = np.empty((Xc.shape[0], self.sizes[-1]), dtype=self.dtype)
        kforward.predict_batch(self._net(), Xc, out, A, Z)
        return out[0] if one_sample else out

    def loss(self, X, Y):
        """Mean per-sample loss over the samples of X, Y."""
        Xc, T = self._XY(X, Y)
        total, _, _ = self._pass(Xc, T, True, False)
        return total / Xc.shape[0]

    def gradients(self, X, Y):
        """(list of dW, list of db): mean gradients over the samples; no update."""
        Xc, T = self._XY(X, Y)
        _, _, grads = self._pass(Xc, T, True, True)
        grads /= Xc.shape[0]
        dWs, dbs = [], []
        for l in range(1, len(self.sizes)):
            n_in, n_out = self.sizes[l - 1], self.sizes[l]
            w_off = self._layout[WOFF, l]
            dWs.append(grads[w_off : w_off + n_in * n_out].reshape(n_out, n_in).copy())
            if self.bias:
                b_off = self._layout[BOFF, l]
                dbs.append(grads[b_off : b_off + n_out].copy())
        return dWs, dbs

    def _accuracy(self, out, T):
        if self.output == "softmax":
            return float(np.mean(out.argmax(axis=1) == T.argmax(axis=1)))
        return float(np.mean(np.all((out > 0.5) == (T > 0.5), axis=1)))

    def _evaluate(self, Xc, T):
        total, out, _ = self._pass(Xc, T, True, False)
        result = {"loss": total / Xc.shape[0]}
        if self.is_classifier:
            result["accuracy"] = self._accuracy(out, T)
        return result

    def evaluate(self, X, Y):
        """{"loss": mean loss} plus "accuracy" for classifiers (softmax: argmax;
        sigmoid with cross_entropy: every output thresholded at 0.5)."""
        Xc, T = self._XY(X, Y)
        return self._evaluate(Xc, T)

    # -- training ---------------------------------------------------------------

    def fit(self, X, Y, *, epochs=1, batch_size=1, lr=0.1, optimizer="sgd",
            momentum=0.0, nesterov=False, weight_decay=0.0, shuffle=True,
            validation_data=None, progress=False, callbacks=None, lr_schedule=None,
            validation_split=None, n_threads=None, sample_weight=None, class_weight=None,
            l2=0.0, betas=_codes.ADAM_BETAS, eps=_codes.ADAM_EPS, eps_mode="torch"):
        """Train by mini-batch backpropagation; returns a :class:`History`.

        Each epoch is one compiled call (:func:`fastbp.kernels.train.train_epoch`).
        Optimizer semantics are torch.optim.SGD / torch.optim.Adam; optimizer
        state persists across calls with the same optimizer, momentum, nesterov,
        weight_decay, betas, eps and eps_mode. If the loss or the parameters become
        non-finite, training stops with :class:`TrainingDivergedError` and the
        parameters are restored to their values before that epoch (a callback
        such as :class:`fastbp.callbacks.TerminateOnNaN` may turn that into a
        normal stop, see :mod:`fastbp.callbacks`).

        Parameters
        ----------
        callbacks : callback or list of callbacks, optional
            Objects with any of the hooks described in :mod:`fastbp.callbacks`;
            one sets ``model.stop_training = True`` to stop after the epoch.
        lr_schedule : fastbp.schedules.LRSchedule, optional
            Gives each epoch's learning rate, starting from ``lr``; the rates are
            recorded as ``History.history["lr"]`` (see :mod:`fastbp.schedules`).
        validation_split : float in (0, 1), optional
            Hold out this fraction of (X, Y) as validation data, instead of
            ``validation_data``, as :func:`fastbp.datasets.train_test_split` does:
            per class for classifiers (softmax, or a single sigmoid output with
            cross_entropy; ``round(f * n_class)`` of each class, at least one, at
            most all but one), at random otherwise (``round(f * n)``, at least one,
            at most n - 1). The split is drawn from a generator derived from the
            model's seed, not from the shuffling stream: the same seed and data give
            the same split in every ``fit`` call, and the draw changes no training.
        n_threads : int, optional
            numba threads for this call (capped at ``numba.config.NUMBA_NUM_THREADS``);
            the previous count is restored afterwards, also on error. Results do
            not depend on it.
        sample_weight : array of shape (n_samples,), optional
            Weights >= 0 (not all 0). Each batch's gradient becomes the weighted
            mean sum_i w_i g_i / sum_i w_i of its per-sample gradients, and the
            ``"loss"`` of History the weighted mean loss. A batch whose weights
            sum to 0 takes no step (Adam's step count still advances). Validation
            scores stay unweighted. With ``validation_split`` the weights are
            split with the samples.
        class_weight : "balanced" or dict {class: weight}, optional
            Classifiers only (softmax, or a single sigmoid output with
            cross_entropy): multiplies each sample's weight by its class's (the
            argmax of a softmax target, ``t > 0.5`` for a sigmoid one).
            "balanced" gives class k the weight n / (n_classes * n_k), as
            scikit-learn; a dict's missing classes weigh 1.
        betas, eps : default (0.9, 0.999) and 1e-8
            Adam's decay rates of the moment estimates and the term added to the
            denominator, as ``torch.optim.Adam`` (where scikit-learn adds eps to
            sqrt(v) before the bias correction of v: equal up to that placement).
            Only for optimizer='adam'; part of the optimizer settings.
        eps_mode : "torch" (default) or "sklearn"
            Where Adam adds ``eps``: to the bias-corrected sqrt(v) as torch, or to
            sqrt(v) before the correction as scikit-learn's MLP (``fastbp.sklearn``
            uses it, so its Adam follows scikit-learn's).
        l2 : float >= 0, default 0
            scikit-learn's ``alpha``: the penalty l2/2 ||W||^2 on the weights (not
            the biases) divided by each batch's total sample weight (its size
            when unweighted), i.e. l2 W / sum_i w_i added to the weights'
            gradient. Unlike ``weight_decay`` (torch's: every parameter, not
            scaled), it is part of the loss being minimised; History's
            ``"loss"`` reports the data term only.
        """
        epochs = v.check_positive_int("epochs", epochs)
        batch_size = v.check_positive_int("batch_size", batch_size)
        lr = v.check_nonneg_float("lr", lr)
        optimizer = v.check_choice("optimizer", optimizer, _codes.OPTIMIZER)
        momentum = v.check_nonneg_float("momentum", momentum)
        nesterov = v.check_bool("nesterov", nesterov)
        weight_decay = v.check_nonneg_float("weight_decay", weight_decay)
        l2 = v.check_nonneg_float("l2", l2)
        betas = v.check_betas(betas)
        eps = v.check_nonneg_float("eps", eps)
        eps_mode = v.check_choice("eps_mode", eps_mode, _codes.ADAM_EPS_MODES)
        if optimizer != "adam" and (betas != _codes.ADAM_BETAS or eps != _codes.ADAM_EPS
                                    or eps_mode != "torch"):
            raise ValueError("betas, eps and eps_mode apply to optimizer='adam' only")
        shuffle = v.check_bool("shuffle", shuffle)
        progress = v.check_bool("progress", progress)
        callbacks = v.check_callbacks(callbacks)
        lr_schedule = v.check_lr_schedule(lr_schedule)
        n_threads = v.check_n_threads(n_threads)
        if nesterov and (optimizer != "sgd" or momentum == 0):
            raise ValueError("nesterov=True needs optimizer='sgd' and momentum > 0")
        if optimizer == "adam" and momentum != 0:
            raise ValueError("momentum applies to optimizer='sgd' only; Adam uses its betas")
        if validation_split is not None:
            validation_split = v.check_fraction("validation_split", validation_split)
            if validation_data is not None:
                raise ValueError("validation_split and validation_data are mutually "
                                 "exclusive: pass one of them")
        Xc, T = self._XY(X, Y)
        weights = self._sample_weights(T, sample_weight, class_weight)
        val = None
        if validation_data is not None:
            Xv, Yv = v.check_validation_data(validation_data)
            val = self._XY(Xv, Yv, "validation_data[0]", "validation_data[1]")
        elif validation_split is not None:
            train, held_out = self._validation_split(T, validation_split)
            Xc, T, val = Xc[train], T[train], (Xc[held_out], T[held_out])
            if weights is not None:
                weights = weights[train]
                if not weights.any():
                    raise ValueError("sample_weight/class_weight: every sample left for "
                                     "training after validation_split weighs 0")
        metrics = ["loss", "samples_per_second", "lr"]
        if val is not None:
            metrics += ["val_loss", "val_accuracy"] if self.is_classifier else ["val_loss"]
        if lr_schedule is not None:
            lr_schedule._attach(self, lr, metrics)
        if progress and not any(isinstance(cb, fcallbacks.ProgressBar) for cb in callbacks):
            callbacks.append(fcallbacks.ProgressBar(force=True))

        threads_before = numba.get_num_threads()
        try:
            if n_threads is not None:
                numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
            return self._fit_epochs(
                Xc, T, val, epochs, batch_size, lr,
                (optimizer, momentum, nesterov, weight_decay, *betas, eps, eps_mode),
                shuffle, fcallbacks._CallbackList(callbacks), lr_schedule, metrics, weights, l2)
        finally:
            numba.set_num_threads(threads_before)

    def _sample_weights(self, T, sample_weight, class_weight):
        """fit's per-sample weights in the model's dtype, or None when unweighted."""
        if sample_weight is None and class_weight is None:
            return None
        n = T.shape[0]
        weights = (np.ones(n) if sample_weight is None
                   else v.check_sample_weight(sample_weight, n, self.dtype))
        if class_weight is not None:
            if not (self.output == "softmax" or (self.is_classifier and self.sizes[-1] == 1)):
                raise ValueError("class_weight needs a classifier: output='softmax', or one "
                                 "sigmoid output with loss='cross_entropy'")
            if self.output == "softmax":
                labels, n_classes = T.argmax(axis=1), self.sizes[-1]
            else:
                labels, n_classes = (T[:, 0] > 0.5).astype(np.int64), 2
            weights = weights * v.class_weights(class_weight, labels, n_classes)
        weights = weights.astype(self.dtype)
        if not weights.any():
            raise ValueError("sample_weight/class_weight give every sample weight 0")
        return weights

    def _validation_split(self, T, fraction):
        """(train indices, held-out indices) for ``validation_split``."""
        # A child of the shuffling stream's SeedSequence, made without spawning
        # (which would change the parent): the split never consumes the shuffling
        # stream, so fit(epochs=1) twice still equals fit(epochs=2) once and
        # every call holds out the same samples.
        bits = self._rng.bit_generator
        seq = getattr(bits, "seed_seq", None) or bits._seed_seq  # public from NumPy 1.25
        split_seq = np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, _SPLIT_KEY))
        stratify = self.output == "softmax" or (self.is_classifier and self.sizes[-1] == 1)
        labels = (T.argmax(axis=1) if self.output == "softmax" else T[:, 0] > 0.5)
        try:
            train, _, held_out, _ = datasets.train_test_split(
                np.arange(T.shape[0]), labels.astype(np.int64), fraction,
                seed=int(split_seq.generate_state(1)[0]), stratify=stratify)
        except ValueError as exc:
            raise ValueError(f"validation_split={fraction} cannot split these "
                             f"{T.shape[0]} samples: {exc}") from None
        return train, held_out

    def _fit_epochs(self, Xc, T, val, epochs, batch_size, lr, key, shuffle, cbs, schedule,
                    metrics, weights=None, l2=0.0):
        """The epoch loop of :meth:`fit` (arguments checked, threads set)."""
        if key != self._opt_key:
            self._reset_optimizer(key)
        optimizer, momentum, nesterov, weight_decay, beta1, beta2, eps, eps_mode = key
        hyper = np.zeros(_codes.N_HYPER, dtype=np.float64)
        hyper[[_codes.H_OPT, _codes.H_LR, _codes.H_MOMENTUM, _codes.H_NESTEROV, _codes.H_WD]] = (
            _codes.OPTIMIZER[optimizer], lr, momentum, float(nesterov), weight_decay
        )
        hyper[[_codes.H_BETA1, _codes.H_BETA2, _codes.H_EPS]] = (beta1, beta2, eps)
        hyper[_codes.H_EPS_MODE] = _codes.ADAM_EPS_MODES[eps_mode]
        hyper[_codes.H_L2] = l2
        # The kernels take an empty array for "every weight 1" (their fast path).
        total_weight = Xc.shape[0] if weights is None else float(weights.sum(dtype=np.float64))
        if weights is None:
            weights = np.zeros(0, dtype=self.dtype)

        n = Xc.shape[0]
        epoch_kernel = self._epoch_kernel(batch_size, n)
        net, opt, data = self._net(), (self._buf1, self._buf2, hyper), (Xc, T, weights)
        parallel = self._parallel(min(batch_size, n))
        n_batches = -(-n // batch_size)
        history = History()
        # An epoch over no samples loads (or compiles) the kernels, so that the
        # first epoch's samples/s is not the JIT's; its cost is kept, not hidden.
        start = time.perf_counter()
        if parallel:
            ktrain.region_probe(np.zeros(2))  # loaded too, outside the timing
        epoch_kernel(net, opt, self._step, data, np.arange(0), parallel)
        history.setup_seconds = time.perf_counter() - start
        self.stop_training = False
        logs = {}
        try:
            cbs.call("on_fit_begin", self, {
                "epochs": epochs, "batch_size": batch_size, "n_samples": n,
                "n_validation": 0 if val is None else val[0].shape[0], "lr": lr,
                "n_threads": numba.get_num_threads(), "metrics": list(metrics)})
            batch_callbacks = cbs.wanting("on_batches_end")
            for epoch in range(1, epochs + 1):
                epoch_lr = lr if schedule is None else schedule.lr
                if (isinstance(epoch_lr, bool) or not isinstance(epoch_lr, numbers.Real)
                        or not np.isfinite(epoch_lr) or epoch_lr < 0):
                    raise ValueError(f"lr_schedule gave lr={epoch_lr!r} for epoch {epoch}: "
                                     "a learning rate must be a finite number >= 0")
                epoch_lr = float(epoch_lr)
                hyper[_codes.H_LR] = epoch_lr
                saved = (self.params.copy(), self._buf1.copy(), self._buf2.copy(),
                         self._step, self._rng.bit_generator.state)
                order = self._rng.permutation(n) if shuffle else np.arange(n)
                epoch_parallel = parallel and not _threads_held_up()
                history.held_up_epochs += parallel and not epoch_parallel
                start = time.perf_counter()
                run = functools.partial(epoch_kernel, net, opt)
                tail = (epoch_parallel,)
                if batch_callbacks:
                    total = self._epoch_in_chunks(run, tail, data, order, batch_size, epoch,
                                                  batch_callbacks)
                else:
                    total = run(self._step, data, order, *tail)
                seconds = time.perf_counter() - start
                self._step += n_batches
                epoch_loss = total / total_weight
                if not (np.isfinite(epoch_loss) and np.isfinite(self.params).all()):
                    self.params[...] = saved[0]
                    self._buf1[...], self._buf2[...], self._step = saved[1], saved[2], saved[3]
                    self._rng.bit_generator.state = saved[4]
                    cbs.call("on_divergence", self, epoch, {"loss": epoch_loss, "lr": epoch_lr})
                    if not self.stop_training:
                        raise TrainingDivergedError(
                            f"training diverged in epoch {epoch}: the loss became "
                            f"{epoch_loss} (try a smaller lr); parameters restored to "
                            f"before epoch {epoch}"
                        )
                    history.diverged_epoch = epoch
                    break
                record = {"loss": epoch_loss, "samples_per_second": n / max(seconds, 1e-12)}
                if val is not None:
                    for name, value in self._evaluate(*val).items():
                        record["val_" + name] = value
                if schedule is not None:
                    record["lr"] = epoch_lr
                history._append(epoch, **record)
                logs = {**record, "lr": epoch_lr}
                if schedule is not None:
                    schedule.step(dict(logs))
                    # before the callbacks: a ModelCheckpoint saves the state
                    # after this epoch's step, from which the next epoch starts
                    self._schedule_state = schedule.state_dict()
                self.epochs_done += 1
                cbs.call("on_epoch_end", self, epoch, logs)
                if self.stop_training:
                    break
            if history.held_up_epochs:
                warnings.warn(
                    f"{history.held_up_epochs} of {len(history.epochs)} epochs ran on one "
                    "thread: other processes held the CPUs, which stalls numba's "
                    "spinning threads at every parallel region (same results either "
                    "way; fewer n_threads, or OMP_WAIT_POLICY=passive, avoid it)",
                    RuntimeWarning, stacklevel=3)
            cbs.call("on_fit_end", self, dict(logs))
        except BaseException as exc:
            cbs.call("on_exception", self, exc)
            raise
        return history

    def _epoch_in_chunks(self, run, tail, data, order, batch_size, epoch, callbacks):
        """One epoch as several kernel calls over whole batches of ``order``, with
        ``on_batches_end`` after each (for progress bars).

        The same batches in the same order with the same step numbers as one call,
        so the parameters are bit-identical; only the loss sum is added in
        another order (last-bit differences in History's "loss"). Chunks start at
        about 1% of the epoch and double while they take under 0.05 s, so a fast
        epoch costs a handful of calls and a slow one reports every ~0.1 s.
        """
        n = order.shape[0]
        n_batches = -(-n // batch_size)
        done, total, chunk = 0, 0.0, max(1, n_batches // 100)
        while done < n_batches:
            stop = min(n_batches, done + chunk)
            begin = time.perf_counter()
            total += run(self._step + done, data, order[done * batch_size:stop * batch_size],
                         *tail)
            if time.perf_counter() - begin < 0.05:
                chunk *= 2
            done = stop
            logs = {"batches": done, "n_batches": n_batches,
                    "samples": min(done * batch_size, n), "n_samples": n}
            for cb in callbacks:
                cb.on_batches_end(self, epoch, logs)
        return total

    def _net(self):
        """The kernels' ``net`` tuple (see kernels/batch.py)."""
        return self.params, self._layout, self._codes

    def _epoch_kernel(self, batch_size, n):
        """The epoch kernel for this batch size, with its scratch buffers bound:
        ``epoch(net, opt, step, data, order, parallel)`` (see kernels/train.py)."""
        if batch_size == 1:
            width = row_width(self._layout)
            A, Z, D = (_line_aligned_zeros(width, self.dtype).reshape(1, width) for _ in range(3))
            scratch = (A, Z, D, np.zeros(1))  # and one sample's loss

            def epoch(net, opt, step, data, order, parallel):
                return ktrain.train_epoch_online(net, opt, step, data, order, scratch)

            return epoch
        rows = min(batch_size, n)
        scratch = (*self._gemm_buffers(rows), _line_aligned_zeros(self.params.size, self.dtype))

        def epoch(net, opt, step, data, order, parallel):
            return ktrain.train_epoch_gemm(net, opt, step, data, order, batch_size, parallel,
                                           self._parts(parallel), scratch)

        return epoch

    # -- persistence --------------------------------------------------------------

    def _config(self):
        return {
            "sizes": list(self.sizes), "hidden": self.hidden, "output": self.output,
            "loss": self.loss_name, "init": self.init, "bias": self.bias,
            "dtype": self.dtype.name, "seed": self.seed,
        }

    def save(self, path):
        """Write the model to exactly ``path`` (an .npz archive), atomically: a
        temporary file in the same folder, then ``os.replace``.

        The file holds the whole training state: the configuration, the
        parameters, the optimizer's buffers, settings and step count, the
        shuffling generator's state, :attr:`epochs_done`, the state of the last
        lr schedule (see :mod:`fastbp.schedules`) and the fastbp version. So
        ``Model.load(path).fit(...)`` for the remaining epochs, with the same
        data and fit arguments (and a schedule built as before), gives the
        parameters of the run that never stopped, bit for bit.
        """
        path = os.fspath(path)
        meta = {"format": _FORMAT, "format_version": _FORMAT_VERSION,
                "fastbp_version": __version__, "config": self._config(),
                "optimizer": list(self._opt_key) if self._opt_key else None,
                "step": self._step, "rng_state": self._rng.bit_generator.state,
                "epochs_done": self.epochs_done,
                "lr_schedule": self._schedule_state_for_file()}
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".fastbp-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, meta=np.array(json.dumps(meta)), params=self.params,
                         buf1=self._buf1, buf2=self._buf2)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save`. A truncated, corrupt or foreign
        file raises ValueError; a missing one OSError."""
        path = os.fspath(path)
        with open(path, "rb") as fh:
            data = fh.read()
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in ("meta", "params", "buf1", "buf2")}
            meta = json.loads(str(arrays["meta"]))
        except (zipfile.BadZipFile, KeyError, ValueError, EOFError, OSError) as exc:
            raise ValueError(f"{path} is not a fastbp model file ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a fastbp model file (no fastbp header)")
        if meta.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"{path} has model format {meta.get('format_version')}, "
                             f"this fastbp reads {_FORMAT_VERSION}")
        try:
            model = cls(**meta["config"])
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"{path} holds an invalid model configuration: {exc}") from None
        for name in ("params", "buf1", "buf2"):
            arr = arrays[name]
            if arr.shape != model.params.shape or arr.dtype != model.dtype:
                raise ValueError(f"{path}: {name} has shape {arr.shape} and dtype {arr.dtype}, "
                                 f"expected {model.params.shape} {model.dtype}")
        model.params[...] = arrays["params"]
        model._buf1[...], model._buf2[...] = arrays["buf1"], arrays["buf2"]
        try:
            key = meta.get("optimizer")
            defaults = [*_codes.ADAM_BETAS, _codes.ADAM_EPS, "torch"]
            if key and 4 <= len(key) < 8:  # files from before these were settings
                key = [*key, *defaults[len(key) - 4:]]
            model._opt_key = tuple(key) if key else None
            model._step = int(meta.get("step", 0))
            model._rng.bit_generator.state = meta["rng_state"]
            # files from before these keys: no epochs counted, no schedule
            model.epochs_done = int(meta.get("epochs_done", 0))
            schedule = meta.get("lr_schedule")
            if model.epochs_done < 0 or not isinstance(schedule, (dict, type(None))):
                raise ValueError("bad epochs_done or lr_schedule")
            model._schedule_state = schedule
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"{path} holds an invalid training state: {exc!r}") from None
        written_by = meta.get("fastbp_version") or "(version not recorded)"
        if written_by != __version__:
            warnings.warn(
                f"{path} was written by fastbp {written_by}, this is fastbp "
                f"{__version__}: it loads, but training on from it may not repeat "
                f"the bits fastbp {written_by} would give",
                UserWarning, stacklevel=2)
        return model

    def _schedule_state_for_file(self):
        """The remembered schedule state if json can write it, else None (with a
        warning): a custom schedule's odd state must not make a checkpoint fail."""
        try:
            json.dumps(self._schedule_state)
        except (TypeError, ValueError) as exc:
            warnings.warn(f"the lr schedule's state is not JSON-able ({exc}); the "
                          "file is saved without it", UserWarning, stacklevel=3)
            return None
        return self._schedule_state


# A parallel region takes ~3 us when the cores are free and ~8 ms when another
# process holds one (libgomp's spinning threads wait for a time slice at every
# region: measured M batch 32 on 2 threads fell from ~85,000 to ~2,000 samples/s).
# Under load a region is still quick now and then (both threads happen to run),
# so one slow region of five counts; on free cores none took 1 ms (measured max
# ~0.2 ms).
_HELD_UP_SECONDS = 1e-3
_PROBES = 5


def _line_aligned_zeros(n, dtype):
    """n zeros starting at a cache line (64 bytes), for the parameters and every
    kernel buffer. With AVX-512 a vector is a line: rows whose length is a multiple
    of 16 float32 (every layer of the bench grid) then load whole lines, where
    numpy's 16-byte alignment split every load over two; and parallel parts, split
    at such multiples, never write one line from two threads. Measured against the
    same buffers 16 bytes off a line (same kernels, alternating epochs):
    784-1024-1024-10 at batch 256 5.7% faster on 1 thread, 784-256-128-10 at
    batch 32 7% on 2 threads, 64-32-10 at batch 64 on 2 threads 2.3x."""
    item = np.dtype(dtype).itemsize
    buf = np.zeros(n + _LINE // item, dtype=dtype)
    start = (-buf.ctypes.data % _LINE) // item
    return buf[start : start + n]


def _threads_held_up():
    """Whether numba's threads are held up by other processes right now (any of
    five probe regions over 1 ms; ~15 us in all on free cores). Then an epoch
    runs its serial kernels, which give the same bits."""
    out = np.zeros(2)
    for _ in range(_PROBES):
        start = time.perf_counter()
        ktrain.region_probe(out)
        if time.perf_counter() - start > _HELD_UP_SECONDS:
            return True
    return False

