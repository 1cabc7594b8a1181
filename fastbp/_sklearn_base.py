"""The machinery behind :mod:`fastbp.sklearn`'s estimators: scikit-learn's epoch
loop (``_fit_stochastic``) driving one ``Model.fit`` call per epoch, parameter
validation, initialisation, early stopping and the rate schedules."""

import warnings
from numbers import Integral, Real

import numpy as np
import scipy.optimize
import scipy.sparse
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from fastbp._threads import numba_threads
from fastbp._training import HELD_UP_MESSAGE, warn_held_up
from fastbp.model import Model, TrainingDivergedError

_HIDDEN = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_OUTPUT = {"identity": "linear", "logistic": "sigmoid", "softmax": "softmax", "exp": "exp"}
_NON_FINITE = ("Solver produced non-finite parameter weights. The input data may "
               "contain large values and need to be preprocessed.")


def _dense(X):
    """A dense array (a read-only one is read in place by Model's boundary)."""
    if scipy.sparse.issparse(X):
        return X.toarray()
    return X


class _RateView:
    """What ``_BaseMLP._optimizer`` shows: the learning rate."""

    def __init__(self, learning_rate):
        self.learning_rate = learning_rate


def _store_params(est, params):
    """``__init__``'s body: every argument stored unchanged, as sklearn requires."""
    for name, value in params.items():
        if name not in ("self", "__class__"):
            setattr(est, name, value)


class _BaseMLP(BaseEstimator):
    """Shared fit/predict machinery; use MLPClassifier or MLPRegressor."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"),
                             Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "n_threads": [None, Interval(Integral, 1, None, closed="left")],
    }

    # -- fitting ------------------------------------------------------------------

    def _fit(self, X, y, sample_weight=None, incremental=False):
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        hidden = self.hidden_layer_sizes
        if not hasattr(hidden, "__iter__"):
            hidden = [hidden]
        hidden = list(hidden)
        if np.any(np.array(hidden) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        first_pass = (not hasattr(self, "coefs_")
                      or (not self.warm_start and not incremental))

        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        X = _dense(X)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        if self._poisson() and y.size and np.min(y) < 0:
            raise ValueError("loss='poisson' needs targets y >= 0 (counts or rates), got "
                             f"a minimum of {np.min(y)}")
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        layer_units = [X.shape[1], *hidden, y.shape[1]]
        rs = check_random_state(self.random_state)

        init = None
        if first_pass:
            init = self._initialize(y, layer_units, rs)
        elif getattr(self, "_model", None) is None:
            self._ensure_model(X.dtype)  # fitted attributes set by hand: train from them
        if init is None and list(self._model.sizes) != layer_units:
            raise ValueError(
                f"the network has layer sizes {list(self._model.sizes)} but this call "
                f"asks for {layer_units}: hidden_layer_sizes or the number of outputs "
                "changed since the last fit (refit with warm_start=False)")
        self.n_outputs_ = y.shape[1]

        lbfgs = self.solver == "lbfgs"
        # L-BFGS ignores early_stopping, as sklearn's: no split, no draw for it
        split = None if lbfgs else self._split(X, y, sample_weight, rs)
        if init is not None:  # the shuffling seed is drawn after sklearn's own draws
            self._build_model(layer_units, init, X.dtype, int(rs.randint(2**31 - 1)))
        self._sync_model()
        try:
            if lbfgs:
                self._fit_lbfgs(X, y, sample_weight)
            else:
                self._fit_stochastic(*split, incremental)
        finally:
            self._set_views()
        if not np.isfinite(self._model.params).all():
            raise ValueError(_NON_FINITE)
        return self

    def _initialize(self, y, layer_units, rs):
        """Set the attributes of a first fit; return the initial (coef, intercept)
        pairs drawn exactly as sklearn's ``_init_coef``, in the same order."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not isinstance(self, ClassifierMixin):
            self.out_activation_ = "exp" if self._poisson() else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"
        factor = 2.0 if self.activation == "logistic" else 6.0
        init = []
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:], strict=True):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coef = rs.uniform(-bound, bound, (fan_in, fan_out))
            intercept = rs.uniform(-bound, bound, fan_out)
            init.append((coef, intercept))
        for name in ("loss_curve_", "validation_scores_", "best_validation_score_",
                     "best_loss_"):
            self.__dict__.pop(name, None)  # set by the stochastic solvers only, as sklearn's
        if self.solver != "lbfgs":
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None
        self._model = None  # built once the split has drawn from rs (see _fit)
        for name in ("coefs_", "intercepts_"):
            self.__dict__.pop(name, None)
        return init

    def _build_model(self, layer_units, init, dtype, seed):
        classifier = isinstance(self, ClassifierMixin)
        loss = "cross_entropy" if classifier else "poisson" if self._poisson() else "mse"
        model = Model(layer_units, hidden=_HIDDEN[self.activation],
                      output=_OUTPUT[self.out_activation_], loss=loss, dtype=dtype, seed=seed)
        for W, b, (coef, intercept) in zip(model.weights, model.biases, init,
                                           strict=True):
            W[...] = coef.T  # sklearn's coef is (n_in, n_out), fastbp's W (n_out, n_in)
            b[...] = intercept
        self._model = model
        self._best_params = model.params.copy()
        self._set_views()

    def _ensure_model(self, dtype=None):
        """A Model built from ``coefs_``, ``intercepts_`` and ``out_activation_`` set by
        hand on an estimator never fitted (scikit-learn's own tests do that, and its
        estimators then predict and partial_fit from them). ``dtype``: the model's
        (default: float32 when every array is float32, else float64)."""
        if getattr(self, "_model", None) is not None:
            return
        check_is_fitted(self, ["coefs_", "intercepts_"])
        coefs = [np.asarray(c, dtype=float) for c in self.coefs_]
        intercepts = [np.asarray(b, dtype=float).reshape(-1) for b in self.intercepts_]
        if dtype is None:
            arrays = list(self.coefs_) + list(self.intercepts_)
            single = all(getattr(a, "dtype", None) == np.float32 for a in arrays)
            dtype = np.float32 if single else np.float64
        units = [coefs[0].shape[0]] + [c.shape[1] for c in coefs]
        self._build_model(units, list(zip(coefs, intercepts, strict=True)), dtype, seed=0)

    @property
    def _optimizer(self):
        """scikit-learn's private optimizer, as far as its own tests read it: the
        current ``learning_rate`` of a stochastic solver."""
        if self.solver == "lbfgs" or not hasattr(self, "_lr"):
            raise AttributeError("_optimizer: no stochastic solver has run")
        return _RateView(self._lr)

    def _loss_grad_lbfgs(self, packed_coef_inter, X, y, sample_weight, *unused):
        """scikit-learn's private L-BFGS objective, for code (its own tests) that calls
        it: (loss, gradient) at ``packed_coef_inter`` (coefs, then intercepts, each
        flattened in scikit-learn's (n_in, n_out) layout), which it also sets."""
        model = self._model
        arrays = model.weights + model.biases
        # sklearn's layout of each array (coefs transposed) and its offset in params
        shapes = [W.T.shape for W in model.weights] + [b.shape for b in model.biases]
        offsets = [(a.ctypes.data - model.params.ctypes.data) // model.params.itemsize
                   for a in arrays]
        start = 0
        for a, shape in zip(arrays, shapes, strict=True):
            a[...] = packed_coef_inter[start : start + a.size].reshape(shape).T
            start += a.size
        y = np.asarray(y)
        loss, grad = self._lbfgs_objective(X, y.reshape(len(y), -1), sample_weight)(
            model.params.astype(np.float64))
        return loss, np.concatenate([grad[o : o + a.size].reshape(a.shape).T.ravel()
                                     for o, a in zip(offsets, arrays, strict=True)])

    def _set_views(self):
        """coefs_/intercepts_ as views into the model's parameters."""
        if getattr(self, "_model", None) is not None:
            self.coefs_ = [W.T for W in self._model.weights]
            self.intercepts_ = list(self._model.biases)

    def _sync_model(self):
        """Copy coefs_/intercepts_ the user replaced (not views) into the model."""
        model = self._model
        for W, b, coef, intercept in zip(model.weights, model.biases, self.coefs_,
                                         self.intercepts_, strict=True):
            if getattr(coef, "base", None) is not model.params:
                W[...] = np.asarray(coef).T
            if getattr(intercept, "base", None) is not model.params:
                b[...] = intercept

    def _split(self, X, y, sample_weight, rs):
        """(X_train, Y_train, w_train, X_val, y_val, w_val) as sklearn's
        ``_fit_stochastic`` splits for early stopping (same draws from ``rs``)."""
        if not self.early_stopping:
            return X, y, sample_weight, None, None, None
        classifier = isinstance(self, ClassifierMixin)
        # sklearn stratifies on the binarized y only with one output column
        stratify = y if classifier and self.n_outputs_ == 1 else None
        arrays = (X, y) if sample_weight is None else (X, y, sample_weight)
        parts = train_test_split(*arrays, random_state=rs,
                                 test_size=self.validation_fraction, stratify=stratify)
        X_train, X_val, y_train, y_val = parts[:4]
        w_train, w_val = parts[4:] if sample_weight is not None else (None, None)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase "
                             "'validation_fraction' or the size of your dataset.")
        if classifier:
            y_val = self._label_binarizer.inverse_transform(y_val)
        return X_train, y_train, w_train, X_val, y_val, w_val

    def _fit_stochastic(self, X, y, sample_weight, X_val, y_val, sw_val, incremental):
        model = self._model
        sgd = self.solver == "sgd"
        if not incremental or not hasattr(self, "_lr"):
            # a new optimizer, as sklearn makes in every fit (warm_start too)
            self._lr = float(self.learning_rate_init)
            model._optimizer.reset(None)
        n_samples = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than "
                              "sample size. It is going to be clipped", stacklevel=2)
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        n_batches = -(-n_samples // batch_size)
        momentum = float(self.momentum) if sgd else 0.0
        fit_kw = dict(batch_size=batch_size, optimizer=self.solver, momentum=momentum,
                      nesterov=bool(sgd and self.nesterovs_momentum and momentum > 0),
                      shuffle=bool(self.shuffle), n_threads=self.n_threads)
        if self.solver == "adam":
            fit_kw.update(betas=(float(self.beta_1), float(self.beta_2)),
                          eps=float(self.epsilon), eps_mode="sklearn")
        if self.alpha:
            fit_kw["l2"] = float(self.alpha)
        if sample_weight is not None:
            fit_kw["sample_weight"] = sample_weight
        weight_total = n_samples if sample_weight is None else float(np.sum(sample_weight))
        X = np.ascontiguousarray(X, dtype=model.dtype)
        Y = np.ascontiguousarray(y, dtype=model.dtype)
        data_scale = self._data_scale(y.shape[1])

        early_stopping = self.early_stopping
        if early_stopping and self.validation_scores_ is None:  # early stopping turned on
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
        held_up = 0  # epochs run serially: one warning for the whole fit, at the end
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                sq_start = self._weights_sq() if self.alpha else 0.0
                try:
                    with warnings.catch_warnings():
                        warnings.filterwarnings("ignore", f".*{HELD_UP_MESSAGE}",
                                                RuntimeWarning)
                        history = model.fit(X, Y, epochs=1, lr=self._lr, **fit_kw)
                except TrainingDivergedError as exc:
                    if not early_stopping:
                        raise ValueError(_NON_FINITE) from exc
                    self._diverged(n_samples)
                    break
                held_up += history.held_up_epochs
                loss = history.history["loss"][-1] * data_scale
                if self.alpha:
                    # sklearn adds alpha/2 ||W_b||^2 / (batch weight) for the weights
                    # W_b before each batch b: interpolated between the epoch's ends
                    sq_end = self._weights_sq()
                    sq_sum = (n_batches * sq_start
                              + (sq_end - sq_start) * (n_batches - 1) / 2)
                    loss += 0.5 * self.alpha * sq_sum / weight_total
                self.loss_ = float(loss)
                self.n_iter_ += 1
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
                self._update_no_improvement_count(early_stopping, X_val, y_val, sw_val)
                if sgd and self.learning_rate == "invscaling":
                    self._set_lr(self.learning_rate_init / (self.t_ + 1) ** self.power_t)
                if self._no_improvement_count > self.n_iter_no_change:
                    what = "Validation score" if early_stopping else "Training loss"
                    msg = (f"{what} did not improve more than tol={self.tol:f} for "
                           f"{self.n_iter_no_change} consecutive epochs.")
                    if self._trigger_stopping(msg, sgd):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                        "reached and the optimization hasn't converged yet.",
                        ConvergenceWarning, stacklevel=2)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=2)
        if held_up:
            warn_held_up(held_up, self.n_iter_, stacklevel=3)
        if early_stopping:
            model.params[...] = self._best_params

    def _poisson(self):
        return getattr(self, "loss", None) == "poisson"

    def _data_scale(self, n_outputs):
        """sklearn's data loss over fastbp's (a sum over outputs): the squared error
        is averaged over the outputs, the log losses and the Poisson deviance summed."""
        if isinstance(self, ClassifierMixin) or self._poisson():
            return 1.0
        return 1.0 / n_outputs

    def _lbfgs_objective(self, X, y, sample_weight):
        """sklearn's L-BFGS objective on fastbp's flat parameter vector: theta ->
        (loss, gradient), both float64. The mean data loss (squared error averaged
        over outputs for a regressor) plus alpha/2 ||W||^2, both over the total sample
        weight; the gradient from one data-set pass of the kernels (every sample's
        gradient summed in a fixed order, at any thread count). Each call sets the
        model's parameters to theta."""
        model = self._model
        X = np.ascontiguousarray(X, dtype=model.dtype)
        Y = np.ascontiguousarray(y, dtype=model.dtype)
        weights = (None if sample_weight is None
                   else np.ascontiguousarray(sample_weight, dtype=model.dtype))
        weight_total = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
        data_scale = self._data_scale(Y.shape[1])
        penalised = np.zeros(model.params.size)  # 1 on the weights, 0 on the biases
        for W in model.weights:
            start = (W.ctypes.data - model.params.ctypes.data) // model.params.itemsize
            penalised[start : start + W.size] = 1.0
        alpha = float(self.alpha)
        order = np.arange(X.shape[0])

        def loss_and_gradient(theta):
            model.params[...] = theta
            total, _, sums = model._pass(X, Y, True, True, order, weights)
            theta = model.params.astype(np.float64)  # the point in the model's dtype
            penalty = float(np.sum(np.square(theta) * penalised))
            loss = total * data_scale / weight_total + 0.5 * alpha * penalty / weight_total
            return loss, (sums + alpha * penalised * theta) / weight_total

        return loss_and_gradient

    def _fit_lbfgs(self, X, y, sample_weight):
        """scipy's L-BFGS-B on ``_lbfgs_objective``, as sklearn's ``_fit_lbfgs``: the
        same function and gradient as its ``_loss_grad_lbfgs`` to rounding, with its
        options, warnings and n_iter_/loss_. The parameters are fastbp's flat vector
        (sklearn packs coefs then intercepts: L-BFGS does not depend on the order).
        An interrupted or failed call leaves the model as it was."""
        model = self._model
        objective = self._lbfgs_objective(X, y, sample_weight)
        before = model.params.copy()
        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        try:
            with numba_threads(self.n_threads):
                result = scipy.optimize.minimize(
                    objective, model.params.astype(np.float64), method="L-BFGS-B",
                    jac=True, options={"maxfun": self.max_fun, "maxiter": self.max_iter,
                                       "gtol": self.tol,
                                       **_get_additional_lbfgs_options_dict("iprint", iprint)})
        except BaseException:
            model.params[...] = before
            raise
        self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = float(result.fun)
        model.params[...] = result.x

    def _diverged(self, n_samples):
        """An epoch whose loss became non-finite, with early stopping: as sklearn, the
        epoch counts, its loss and validation score are nan, and the best weights are
        restored at the end of fit. sklearn trains its remaining epochs on the nan
        weights (each scoring nan) up to max_iter; fastbp stops here and says so."""
        self.n_iter_ += 1
        self.t_ += n_samples
        self.loss_ = float("nan")
        self.loss_curve_.append(self.loss_)
        self.validation_scores_.append(float("nan"))
        warnings.warn(
            f"Training diverged in epoch {self.n_iter_} (the loss became non-finite): "
            "stopped, and the weights of the best validation score "
            f"({self.best_validation_score_:g}) restored. Try a smaller "
            "learning_rate_init or scaled inputs.", ConvergenceWarning, stacklevel=4)

    def _weights_sq(self):
        # not np.dot: a BLAS call wakes BLAS's threads, whose spinning then slows
        # the next epoch's kernels (measured: float64 digits epochs 3 -> 12 ms)
        with np.errstate(over="ignore"):  # huge weights: an inf loss, as sklearn's
            return sum(float(np.square(W).sum()) for W in self._model.weights)

    def _set_lr(self, lr):
        """Change the SGD rate between epochs as sklearn does. sklearn's velocity
        holds the rate (v = momentum v - lr g), fastbp's buffer does not
        (b = momentum b + g, step lr b): rescaling b keeps v = -lr b."""
        lr = float(lr)
        if self.momentum > 0 and lr != self._lr:
            self._model._optimizer.rescale_momentum(self._lr / lr)
        self._lr = lr

    def _trigger_stopping(self, msg, sgd):
        """sklearn's optimizer.trigger_stopping: True to stop; adaptive SGD divides
        the rate by 5 instead until it is <= 1e-6."""
        if not sgd or self.learning_rate != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if self._lr <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self._set_lr(self._lr / 5.0)
        if self.verbose:
            print(f"{msg} Setting learning rate to {self._lr:f}")
        return False

    def _update_no_improvement_count(self, early_stopping, X_val, y_val, sw_val):
        if early_stopping:
            score = self._score(X_val, y_val, sw_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {self.validation_scores_[-1]:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = self._model.params.copy()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    # -- prediction -----------------------------------------------------------------

    def _forward(self, X, check_input=True):
        """Output activations, shape (n_samples, n_outputs)."""
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        self._ensure_model()
        self._sync_model()
        with numba_threads(self.n_threads):
            return self._model.predict(_dense(X))

    def _score_with_function(self, X, y, sample_weight, score_function):
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return score_function(y, y_pred, sample_weight=sample_weight)

    # -- pickling: coefs_/intercepts_ are views into the Model, rebuilt on load -------

    def __getstate__(self):
        state = dict(super().__getstate__())
        if state.get("_model") is not None:
            self._sync_model()
            state.pop("coefs_", None)
            state.pop("intercepts_", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._set_views()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
