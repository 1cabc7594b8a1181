"""The public Model: validate -> convert -> one kernel call -> wrap.

The parts behind it: :mod:`fastbp.optim` (optimizer settings and state),
``fastbp._training`` (the epoch loop, weights, validation split),
``fastbp._persist`` (the file format), ``fastbp._buffers`` (memory placement) and
``fastbp._threads`` (thread policy).
"""

import numpy as np

from fastbp import _buffers, _codes, _persist, _threads, _training, optim
from fastbp import _validation as v
from fastbp import callbacks as fcallbacks
from fastbp import schedules as fschedules
from fastbp._training import History, TrainingDivergedError
from fastbp.kernels import forward as kforward
from fastbp.kernels.codes import H_DROP_KEY, H_HUBER, N_HYPER
from fastbp.kernels.layout import BOFF, WOFF, make_layout, row_width
from fastbp.kernels.train import GRADIENTS, PASS

__all__ = ["History", "Model", "TrainingDivergedError"]

# Rows of scratch per chunk when a whole data set goes through a region (PASS):
# a fixed size (not the thread count) keeps sums identical at any thread count.
_PASS_CHUNK = 256
# Up to this many rows, predict runs forward_rows (one row at a time) instead of a
# region: measured on 784-256-128-10 float32, one row took ~50 us through a region
# (~25 us of Python set-up and scratch) against ~25 us; from 64 rows a region's
# 4-sample tiles ran ~3x faster per row. Same bits either way.
_FEW_ROWS = 4


class Model:
    """A fully connected network trained by backpropagation on fastbp's kernels.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths ``[n_in, h1, ..., n_out]``, at least two entries >= 1.
    hidden : {"sigmoid", "tanh", "relu", "leaky_relu", "linear"}
    output : {"linear", "sigmoid", "softmax", "tanh", "exp"}
    loss : {"mse", "cross_entropy", "poisson", "huber"}
        cross_entropy needs a softmax or sigmoid output; poisson (the half Poisson
        deviance, sum t log(t / a) - t + a, as scikit-learn's) goes with the exp
        output only, and needs targets >= 0; huber (torch's HuberLoss, summed over
        the outputs: 1/2 x^2 for |x| < huber_delta, else huber_delta (|x| -
        huber_delta / 2), x = a - t) with the linear output only.
    init : {"xavier", "he", "normal", "uniform", "zeros"} or float
        Weight initialisation; a float sets every weight to it. Biases start at 0.
    bias : bool
    dtype : {"float32", "float64"}
    seed : int or None
        Seeds the initial weights and the shuffling stream.
    huber_delta : float > 0, default 1.0
        Where the huber loss turns from quadratic to linear (loss="huber" only).
    dropout : float in [0, 1) or sequence of them, default 0
        Inverted dropout (``torch.nn.Dropout``) on the hidden layers' outputs, one
        rate for all or one per hidden layer; ``input_dropout`` on the inputs.
        Active in ``fit`` only. Each unit's keep/drop is a function of the
        model's key (from ``seed``), the epoch, the sample's row in the data and
        the unit (fastbp.kernels.dropout): the same masks at any thread count,
        batch size or number of processes, saved and resumed with the model.
    input_dropout : float in [0, 1), default 0

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
    metadata : dict
        Yours to fill with JSON-able values; saved and loaded with the model.
        ``fastbp train`` stores ``"classes"`` (the original class labels, output
        k meaning ``classes[k]``) and ``"data"`` (what it trained on) there.

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
                 init="xavier", bias=True, dtype="float32", seed=None, huber_delta=1.0,
                 dropout=0.0, input_dropout=0.0):
        self.sizes = v.check_sizes(sizes)
        self.hidden = v.check_choice("hidden", hidden, _codes.HIDDEN)
        self.output = v.check_choice("output", output, _codes.OUTPUT)
        self.loss_name = v.check_choice("loss", loss, _codes.LOSS)
        if self.loss_name == "cross_entropy" and self.output not in _codes.CROSS_ENTROPY_OUTPUTS:
            raise ValueError(
                f"loss='cross_entropy' needs output='softmax' or 'sigmoid', got output={output!r}"
            )
        if (self.loss_name == "poisson") != (self.output == "exp"):
            raise ValueError("loss='poisson' and output='exp' (its log link) go together, "
                             f"got output={output!r}, loss={loss!r}")
        self.huber_delta = v.check_positive_float("huber_delta", huber_delta)
        if self.loss_name == "huber" and self.output != "linear":
            raise ValueError(f"loss='huber' needs output='linear', got output={output!r}")
        if self.loss_name != "huber" and self.huber_delta != 1.0:
            raise ValueError(f"huber_delta applies to loss='huber' only, got loss={loss!r}")
        if self.output == "softmax" and self.sizes[-1] < 2:
            raise ValueError("output='softmax' needs at least 2 outputs (sizes[-1] >= 2)")
        self.dropout = v.check_dropout(dropout, len(self.sizes) - 2)
        self.input_dropout = v.check_rate("input_dropout", input_dropout)
        self.init = v.check_init(init)
        self.bias = v.check_bool("bias", bias)
        self.dtype = v.check_dtype(dtype)
        self.seed = v.check_seed(seed)
        self._layout, n_params = make_layout(self.sizes, self.bias)
        self._codes = np.array(
            [_codes.HIDDEN[self.hidden], _codes.OUTPUT[self.output], _codes.LOSS[self.loss_name]],
            dtype=np.int64,
        )
        # a third child for the dropout key: the first two stay what they were
        init_seq, shuffle_seq, drop_seq = np.random.SeedSequence(self.seed).spawn(3)
        self._dropout_key = int(drop_seq.generate_state(1, np.uint64)[0] >> np.uint64(11))
        self._rng = np.random.default_rng(shuffle_seq)
        self.params = _buffers.line_aligned_zeros(n_params, self.dtype)
        self._make_views()
        self._initialise(np.random.default_rng(init_seq))
        self._optimizer = optim.State(n_params, self.dtype)
        self.epochs_done = 0
        self.metadata = {}
        # state_dict() of the last lr schedule after its latest step (None before
        # one): saved with the model, resumed by a matching schedule (schedules.py)
        self._schedule_state = None

    # -- pickling: weights/biases are views into params ------------------------

    def __getstate__(self):
        # Pickled as they are, the views would come back as copies detached from
        # ``params`` (writes into model.weights[l] would no longer train).
        return {k: v for k, v in vars(self).items() if k not in ("weights", "biases")}

    def __setstate__(self, state):
        state.setdefault("metadata", {})  # pickled before metadata existed
        state.setdefault("huber_delta", 1.0)  # or before the huber loss
        state.setdefault("input_dropout", 0.0)  # or dropout
        state.setdefault("dropout", (0.0,) * (len(state["sizes"]) - 2))
        state.setdefault("_dropout_key", 0)
        vars(self).update(state)
        self.params = _buffers.line_aligned_copy(self.params)  # line-aligned, as built
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

    @property
    def n_layers(self):
        """Number of weight layers L."""
        return len(self.sizes) - 1

    @property
    def flops_per_sample(self):
        """Training FLOPs per sample: 2 per weight forward, 2 for its gradient, 2
        for propagating delta back through it (which the first layer skips)."""
        return _threads.flops_per_sample(self.sizes)

    @property
    def is_classifier(self):
        return _codes.is_classifier(self.output, self.loss_name)

    def __repr__(self):
        return (
            f"Model({list(self.sizes)}, hidden={self.hidden!r}, output={self.output!r}, "
            f"loss={self.loss_name!r}, bias={self.bias}, dtype={self.dtype.name!r}"
            + (f", huber_delta={self.huber_delta!r}" if self.loss_name == "huber" else "")
            + (f", dropout={list(self.dropout)}, input_dropout={self.input_dropout}"
               if any(self.dropout) or self.input_dropout else "")
            + ")"
        )

    def _kernel_hyper(self, hyper=None, train=False):
        """The kernels' settings array (fastbp.kernels.codes) for a call on this model:
        ``hyper`` (an optimizer's, from optim.Settings.hyper; None: zeros, a call that
        trains nothing) with the model's own slots filled in, and for a training
        call (``train``) the dropout rates. Every region and online call gets its
        ``hyper`` from here."""
        hyper = np.zeros(N_HYPER) if hyper is None else hyper
        hyper[H_HUBER] = self.huber_delta
        rates = (self.input_dropout, *self.dropout)
        if train and any(rates):  # fastbp.kernels.dropout: rates after the slots
            hyper[H_DROP_KEY] = float(self._dropout_key)  # < 2^53: exact
            hyper = np.concatenate([hyper, rates])
        return hyper

    # -- conversion at the boundary -------------------------------------------

    def _X(self, X, name="X", allow_1d=False):
        return v.check_X(name, X, self.sizes[0], self.dtype, allow_1d=allow_1d)

    def _XY(self, X, Y, xname="X", yname="Y"):
        Xc, _ = self._X(X, xname)
        T = v.check_Y(yname, Y, Xc.shape[0], self.sizes[-1], self.dtype,
                      self.loss_name == "cross_entropy", self.is_classifier,
                      poisson=self.loss_name == "poisson")
        return Xc, T

    def _pass(self, Xc, T, want_loss, want_grads, order=None, weights=None):
        """(loss sum, outputs, gradient sums or None) over the samples ``order`` picks
        (all by default; outputs in that order): one region (kernels.train.region),
        chunks of _PASS_CHUNK rows; with ``weights`` (one per row of Xc) each
        sample's loss and gradient count times its weight."""
        if order is None:
            order = np.arange(Xc.shape[0])
        rows = min(_PASS_CHUNK, order.shape[0])
        out = np.empty((order.shape[0], self.sizes[-1]), dtype=self.dtype)
        empty = self.params[:0]  # no optimizer state, no sample weights
        grads = sums = empty
        if want_grads:
            grads, sums = (_buffers.line_aligned_zeros(self.params.size, self.dtype)
                           for _ in range(2))
        total = _threads.run_region(
            _threads.parallel(rows, self.sizes), GRADIENTS if want_grads else PASS, want_loss,
            self.params, empty, empty, self._layout, self._codes, self._kernel_hyper(), 0, Xc, T,
            order, empty if weights is None else weights, rows,
            *_buffers.batch_scratch(self.params, self._layout, rows, self.dtype), grads, sums,
            out)
        return total, out, sums if want_grads else None

    # -- inference --------------------------------------------------------------

    def predict(self, X):
        """Output activations a^L, shape (n_samples, n_out); (n_out,) for a 1-D X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_in), or (n_in,) for one sample
            Inputs (real numbers, finite); read in place when C-contiguous in the
            model's dtype.
        """
        Xc, one_sample = self._X(X, allow_1d=True)
        if Xc.shape[0] == 0:
            return np.empty((0, self.sizes[-1]), dtype=self.dtype)
        if Xc.shape[0] <= _FEW_ROWS:
            out = np.empty((Xc.shape[0], self.sizes[-1]), dtype=self.dtype)
            a, z = (_buffers.line_aligned_zeros(row_width(self._layout), self.dtype)
                    for _ in range(2))
            kforward.forward_rows(self.params, self._layout, self._codes, Xc, out, a, z)
        else:
            no_targets = np.empty((0, self.sizes[-1]), dtype=self.dtype)
            _, out, _ = self._pass(Xc, no_targets, False, False)
        return out[0] if one_sample else out

    def loss(self, X, Y):
        """Mean per-sample loss over the samples of X, Y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_in)
            Inputs (real numbers, finite); read in place when C-contiguous in the
            model's dtype.
        Y : array-like of shape (n_samples, n_out), or (n_samples,)
            Targets, as for :meth:`fit` (1-D class labels for a classifier).
        """
        Xc, T = self._XY(X, Y)
        total, _, _ = self._pass(Xc, T, True, False)
        return total / Xc.shape[0]

    def gradients(self, X, Y):
        """(list of dW, list of db): mean gradients over the samples; no update.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_in)
            Inputs (real numbers, finite); read in place when C-contiguous in the
            model's dtype.
        Y : array-like of shape (n_samples, n_out), or (n_samples,)
            Targets, as for :meth:`fit` (1-D class labels for a classifier).
        """
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

    def _evaluate(self, Xc, T, order=None):
        """evaluate() on converted arrays, over the rows ``order`` picks (all by default)."""
        total, out, _ = self._pass(Xc, T, True, False, order)
        result = {"loss": total / out.shape[0]}
        if self.is_classifier:
            result["accuracy"] = self._accuracy(out, T if order is None else T[order])
        return result

    def evaluate(self, X, Y):
        """{"loss": mean loss} plus "accuracy" for classifiers (softmax: argmax;
        sigmoid with cross_entropy: every output thresholded at 0.5).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_in)
            Inputs (real numbers, finite); read in place when C-contiguous in the
            model's dtype.
        Y : array-like of shape (n_samples, n_out), or (n_samples,)
            Targets, as for :meth:`fit` (1-D class labels for a classifier).
        """
        Xc, T = self._XY(X, Y)
        return self._evaluate(Xc, T)

    # -- training ---------------------------------------------------------------

    def fit(self, X, Y, *, epochs=1, batch_size=1, lr=0.1, optimizer="sgd",
            momentum=0.0, nesterov=False, weight_decay=None, shuffle=True,
            validation_data=None, progress=False, callbacks=None, lr_schedule=None,
            validation_split=None, n_threads=None, sample_weight=None, class_weight=None,
            l2=0.0, betas=optim.ADAM_BETAS, eps=optim.ADAM_EPS, eps_mode="torch",
            alpha=optim.RMSPROP_ALPHA, centered=False, clip_norm=None, clip_value=None):
        """Train by mini-batch backpropagation; returns a :class:`History`.

        Each epoch is one compiled call (see :mod:`fastbp.kernels.train`).
        Optimizer semantics are torch.optim.SGD / Adam / AdamW / RMSprop; optimizer
        state persists across calls with the same optimizer, momentum, nesterov,
        weight_decay, betas, eps, eps_mode, alpha and centered. If the loss or the parameters become
        non-finite, training stops with :class:`TrainingDivergedError` and the
        parameters are restored to their values before that epoch (a callback
        such as :class:`fastbp.callbacks.TerminateOnNaN` may turn that into a
        normal stop, see :mod:`fastbp.callbacks`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_in)
            Inputs (real numbers, finite). A C-contiguous array of the model's dtype
            is read in place; anything else is converted once.
        Y : array-like of shape (n_samples, n_out), or (n_samples,) class labels
            Targets. 1-D integer labels 0 .. n_out - 1 are one-hot encoded for a
            softmax output (0/1 for a single sigmoid output); cross_entropy needs
            targets in [0, 1].
        epochs : int >= 0, default 1
            Passes over the data in this call. 0 trains nothing and returns an
            empty History (the inputs are still checked), so
            ``fit(epochs=total - model.epochs_done)`` is right after a resume
            whose checkpoint was complete.
        batch_size : int >= 1, default 1
            Samples per gradient step; the last batch of an epoch may be smaller.
            1 is online training (the update fused into the delta recursion).
        lr : float >= 0, default 0.1
            The learning rate (the base rate when ``lr_schedule`` is given).
        optimizer : "sgd" (default), "adam", "adamw" or "rmsprop"
            The update rule, with the semantics of ``torch.optim.SGD``, ``Adam``,
            ``AdamW`` or ``RMSprop``.
        momentum : float >= 0, default 0
            SGD's momentum (torch's form: v = momentum v + g, step lr v), or
            RMSprop's (v = momentum v + g / (sqrt(mean square) + eps), step lr v).
        nesterov : bool, default False
            Nesterov momentum (SGD; needs momentum > 0).
        weight_decay : float >= 0, default None
            torch's weight decay of every parameter, biases included (see ``l2``
            for scikit-learn's alpha): weight_decay * theta added to the gradient
            (sgd, adam, rmsprop), or AdamW's decoupled theta *= 1 - lr *
            weight_decay before its step. None: torch's default, 0.01 for adamw
            and 0 for the others.
        alpha : float in [0, 1], default 0.99
            RMSprop's smoothing constant of the mean square (torch's ``alpha``).
        centered : bool, default False
            Centered RMSprop: divide by the estimated standard deviation of the
            gradient instead of its root mean square (torch's ``centered``).
        clip_norm : float > 0, optional
            Clip each batch's mean gradient (the L2 penalty included, weight
            decay not) to this global L2 norm over all parameters before the
            step, as ``torch.nn.utils.clip_grad_norm_`` (scale
            clip_norm / (norm + 1e-6) when that is below 1). Needs the whole
            gradient before any update: batches of 1 then take the mini-batch
            path, and plain SGD loses the update fused into the gradient product.
        clip_value : float > 0, optional
            Clip each element of the mean gradient to [-clip_value, clip_value],
            as ``torch.nn.utils.clip_grad_value_``; exclusive with clip_norm.
        shuffle : bool, default True
            Visit the samples in a new random order each epoch, drawn from the
            model's generator (seeded by ``seed``); False keeps their order.
        validation_data : (X_val, Y_val), optional
            Scored after every epoch: ``"val_loss"`` (and ``"val_accuracy"`` for
            classifiers) in the History. Not used for training.
        progress : bool, default False
            Show a progress bar (tqdm) with the running loss and samples/s.
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
        plan = self._fit_plan(
            X, Y, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
            momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, shuffle=shuffle,
            validation_data=validation_data, progress=progress, callbacks=callbacks,
            lr_schedule=lr_schedule, validation_split=validation_split, n_threads=n_threads,
            sample_weight=sample_weight, class_weight=class_weight, l2=l2, betas=betas,
            eps=eps, eps_mode=eps_mode, alpha=alpha, centered=centered, clip_norm=clip_norm,
            clip_value=clip_value)
        if plan is None:  # as Keras: nothing to train (a resumed run already complete)
            return _training.History()
        n_threads = plan.pop("n_threads")
        with _threads.numba_threads(n_threads):
            return _training.train(self, **plan)

    def _fit_plan(self, X, Y, *, epochs, batch_size, lr, optimizer, momentum, nesterov,
                  weight_decay, shuffle, validation_data, progress, callbacks, lr_schedule,
                  validation_split, n_threads, sample_weight, class_weight, l2, betas, eps,
                  eps_mode, alpha, centered, clip_norm, clip_value):
        """fit's arguments checked and converted: ``_training.train``'s keyword
        arguments plus "n_threads", or None for epochs=0 (inputs still checked).
        fastbp.distributed.fit shares it, so both refuse the same input alike."""
        epochs = v.check_nonneg_int("epochs", epochs)
        batch_size = v.check_positive_int("batch_size", batch_size)
        lr = v.check_nonneg_float("lr", lr)
        settings = optim.Settings.checked(optimizer, momentum, nesterov, weight_decay, betas,
                                          eps, eps_mode, l2, alpha, centered, clip_norm,
                                          clip_value)
        shuffle = v.check_bool("shuffle", shuffle)
        progress = v.check_bool("progress", progress)
        callbacks = v.check_callbacks(callbacks)
        lr_schedule = fschedules.check_lr_schedule(lr_schedule)
        n_threads = v.check_n_threads(n_threads)
        settings.check_combination()
        if validation_split is not None:
            validation_split = v.check_fraction("validation_split", validation_split)
            if validation_data is not None:
                raise ValueError("validation_split and validation_data are mutually "
                                 "exclusive: pass one of them")
        Xc, T, rows, val, weights = self._fit_data(X, Y, validation_data, validation_split,
                                                   sample_weight, class_weight)
        if epochs == 0:
            return None
        metrics = ["loss", "samples_per_second", "lr"]
        if val is not None:
            metrics += ["val_loss", "val_accuracy"] if self.is_classifier else ["val_loss"]
        if lr_schedule is not None:
            lr_schedule._attach(self, lr, metrics)
        if progress and not any(isinstance(cb, fcallbacks.ProgressBar) for cb in callbacks):
            callbacks.append(fcallbacks.ProgressBar(force=True))
        return dict(Xc=Xc, T=T, val=val, epochs=epochs, batch_size=batch_size, lr=lr,
                    settings=settings, shuffle=shuffle,
                    cbs=fcallbacks._CallbackList(callbacks), schedule=lr_schedule,
                    metrics=metrics, weights=weights, rows=rows, n_threads=n_threads)

    def _fit_data(self, X, Y, validation_data, validation_split, sample_weight,
                  class_weight):
        """fit's (X, targets, training rows or None for all, validation (X, targets,
        rows or None) or None, weights or None), converted. ``validation_split``
        picks rows by index: neither part of X is copied."""
        Xc, T = self._XY(X, Y)
        weights = _training.sample_weights(self, T, sample_weight, class_weight)
        rows = val = None
        if validation_data is not None:
            Xv, Yv = v.check_validation_data(validation_data)
            val = (*self._XY(Xv, Yv, "validation_data[0]", "validation_data[1]"), None)
        elif validation_split is not None:
            rows, held_out = _training.validation_split(self, T, validation_split)
            val = (Xc, T, held_out)
            if weights is not None:
                if not weights[rows].any():
                    raise ValueError("sample_weight/class_weight: every sample left for "
                                     "training after validation_split weighs 0")
        return Xc, T, rows, val, weights

    # -- persistence --------------------------------------------------------------

    def _config(self):
        return {
            "sizes": list(self.sizes), "hidden": self.hidden, "output": self.output,
            "loss": self.loss_name, "init": self.init, "bias": self.bias,
            "dtype": self.dtype.name, "seed": self.seed,
            **({"huber_delta": self.huber_delta} if self.loss_name == "huber" else {}),
            **({"dropout": list(self.dropout), "input_dropout": self.input_dropout}
               if any(self.dropout) or self.input_dropout else {}),
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
        parameters of the run that never stopped, bit for bit. The file's
        permissions follow the umask (or those of the file it replaces), as a plain
        ``open`` would.

        Parameters
        ----------
        path : str or os.PathLike
            Where to write; its folder must exist (an error names ``path``).
        """
        _persist.save(self, path)

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save`. A truncated, corrupt or foreign
        file raises ValueError; a missing one OSError.

        Parameters
        ----------
        path : str or os.PathLike
            The model file.
        """
        return _persist.load(cls, path)
