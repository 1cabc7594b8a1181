"""scikit-learn drop-in replacements: :class:`MLPClassifier` and :class:`MLPRegressor`.

Swap the import and keep the rest of the code::

    from sklearn.neural_network import MLPClassifier   # before
    from fastbp.sklearn import MLPClassifier           # after

The estimators take the constructor parameters of scikit-learn 1.9's
``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor`` with the same defaults
and meanings, plus ``n_threads``; they set the same fitted attributes (``coefs_``
as (n_in, n_out) arrays, ``intercepts_``, ``loss_curve_``, ``n_iter_``, ``t_``, ...)
and have the same methods, and they work in ``Pipeline``, ``GridSearchCV``,
``clone`` and pickle. Training runs on :class:`fastbp.Model`, one ``Model.fit``
call per epoch (float32 when X is float32, else float64), driven by the epoch loop
of scikit-learn's ``_fit_stochastic``: the same initial weights for the same
``random_state``, the same L2 penalty, learning-rate schedules, momentum (Nesterov
too), ``tol``/``n_iter_no_change`` stopping, early stopping on the same
validation split, ``ConvergenceWarning`` and verbose messages.

``solver="lbfgs"`` is scipy's L-BFGS-B, as scikit-learn's, on the same objective
(data loss plus ``alpha``/2 ||W||^2 over the total sample weight) with its gradient
from one pass of fastbp's kernels over the whole data set: from the same initial
weights it takes scikit-learn's steps to rounding (float64: 1e-16 at the start,
1e-13 after 20 iterations) and stops at the same optimum, with the same
``max_iter``/``max_fun``/``tol`` options, ``ConvergenceWarning`` and ``n_iter_``/
``loss_``. ``MLPRegressor(loss="poisson")`` trains ``Model(output="exp",
loss="poisson")``: the half Poisson deviance summed over the outputs, as
scikit-learn's (targets must be >= 0: a ValueError, where scikit-learn computes nan).

scikit-learn's own ``neural_network/tests/test_mlp.py`` passes on these estimators
with only its import line changed (tests/test_sklearn_upstream.py runs it). Three of
its tests read scikit-learn-private names, which the estimators answer:
``test_learning_rate_warmstart`` and ``test_adaptive_learning_rate`` read
``_optimizer.learning_rate`` (the current SGD rate), ``test_gradient`` calls
``_loss_grad_lbfgs`` (the L-BFGS objective in scikit-learn's packing); and
``test_fit`` sets ``coefs_``, ``intercepts_`` and the other fitted attributes by hand,
from which the estimators predict and train as scikit-learn's do.

Differences from scikit-learn, all small and deliberate:

- With ``early_stopping=True``, an epoch whose loss turns non-finite ends training
  with a ``ConvergenceWarning``: as in scikit-learn the best weights are restored
  and ``validation_scores_`` ends with nan, but scikit-learn trains its remaining
  epochs on the nan weights first (each scoring nan), so its ``n_iter_`` is larger.
- With ``shuffle=True`` the order of the samples comes from fastbp's own seeded
  generator (its seed drawn from ``random_state``), so trajectories differ from
  scikit-learn's; with ``shuffle=False`` they agree to rounding (float64 SGD
  weights to 3e-10 relative after 20-40 epochs, see tests/test_sklearn.py).
- Adam is scikit-learn's too, ``epsilon`` added to sqrt(v) before its bias
  correction (``Model.fit(eps_mode="sklearn")``); the tests follow scikit-learn's
  trajectories to rounding.
- ``loss_curve_`` includes the L2 term ``alpha/2 ||W||^2`` as scikit-learn does,
  but scikit-learn adds it per batch with that batch's weights, which one epoch
  call does not expose: the term is interpolated linearly between the weights at
  the epoch's start and end (exact with one batch per epoch, the default for up
  to 200 samples, or with ``alpha=0``). With ``sample_weight`` and several batches
  an epoch's data loss is the weighted mean over the epoch, where scikit-learn
  averages per-batch weighted means; with one batch, or no weights, they agree.
- Sparse X is accepted and densified; read-only X is copied (numba would compile
  its kernels again for read-only arrays).
- The cross-entropy is computed from the logits (log-sum-exp), where scikit-learn
  clips probabilities to [eps, 1 - eps]: the reported losses differ only for
  probabilities below ~1e-16.

``python -m fastbp.bench.digits`` prints the digits comparison of the README
(:func:`fastbp.bench.digits.compare_digits`): held-out accuracy and fit time
against scikit-learn.

Examples
--------
>>> from sklearn.datasets import load_iris
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> from fastbp.sklearn import MLPClassifier
>>> X, y = load_iris(return_X_y=True)
>>> clf = make_pipeline(StandardScaler(), MLPClassifier(
...     hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=300, random_state=0))
>>> clf.fit(X, y)[-1].coefs_[0].shape, clf.predict_proba(X).shape
((4, 16), (150, 3))
>>> bool(clf.score(X, y) > 0.95)
True
"""


import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import column_or_1d
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    type_of_target,
    unique_labels,
)
from sklearn.utils.validation import (
    check_is_fitted,
    validate_data,
)

from fastbp._sklearn_base import _BaseMLP, _store_params

__all__ = ["MLPClassifier", "MLPRegressor"]

class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by fastbp: a drop-in replacement
    for ``sklearn.neural_network.MLPClassifier`` (scikit-learn 1.9).

    Parameters, defaults, fitted attributes and methods are scikit-learn's (see its
    documentation); the differences are listed in :mod:`fastbp.sklearn`. Multiclass
    targets train a softmax output with cross-entropy, binary and multilabel targets
    sigmoid outputs with binary cross-entropy.

    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The width of each hidden layer.
    activation : {"identity", "logistic", "tanh", "relu"}, default="relu"
        The hidden layers' activation.
    solver : {"lbfgs", "sgd", "adam"}, default="adam"
        "lbfgs": scipy's L-BFGS-B on the whole data set's loss and gradient (the
        kernels' data-set pass), as scikit-learn's; "sgd" and "adam": one
        ``Model.fit`` call per epoch.
    alpha : float, default=0.0001
        L2 penalty on the weights (not the intercepts), divided by the batch's
        total sample weight.
    batch_size : int or "auto", default="auto"
        "auto" is ``min(200, n_samples)``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        The SGD step schedule, as scikit-learn's.
    learning_rate_init : float, default=0.001
        The initial step size.
    power_t : float, default=0.5
        The exponent of "invscaling".
    max_iter : int, default=200
        The most epochs to train.
    shuffle : bool, default=True
        Visit the samples in a new order each epoch.
    random_state : int, RandomState instance or None, default=None
        Draws the initial weights as scikit-learn does, the early-stopping split,
        and the seed of fastbp's shuffling stream.
    tol : float, default=1e-4
        The improvement of the loss (or validation score) that counts.
    verbose : bool, default=False
        Print the loss after each epoch.
    warm_start : bool, default=False
        Continue from the previous fit's weights.
    momentum : float, default=0.9
        SGD's momentum.
    nesterovs_momentum : bool, default=True
        Nesterov momentum for SGD.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` and stop when its score stops improving.
    validation_fraction : float, default=0.1
        The share held out for early stopping.
    beta_1 : float, default=0.9
        Adam's decay rate of the first moment.
    beta_2 : float, default=0.999
        Adam's decay rate of the second moment.
    epsilon : float, default=1e-8
        Adam's term added to the denominator (where scikit-learn adds it).
    n_iter_no_change : int, default=10
        Epochs without an improvement of ``tol`` before stopping.
    max_fun : int, default=15000
        Unused (L-BFGS only).
    n_threads : int or None, default=None
        numba threads for fit and predict (None: numba's current count). Results do
        not depend on it.

    Attributes
    ----------
    classes_, loss_, best_loss_, loss_curve_, validation_scores_,
    best_validation_score_, t_, coefs_, intercepts_, n_features_in_,
    feature_names_in_, n_iter_, n_layers_, n_outputs_, out_activation_
        As in scikit-learn. ``coefs_[i]`` (n_in, n_out) and ``intercepts_[i]`` are
        views into the parameters of the underlying :class:`fastbp.Model`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastbp.sklearn import MLPClassifier
    >>> X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 10, dtype=float)
    >>> y = np.array(["no", "yes", "yes", "no"] * 10)
    >>> clf = MLPClassifier(hidden_layer_sizes=(8,), activation="tanh", solver="sgd",
    ...                     learning_rate_init=0.5, max_iter=500, random_state=0)
    >>> clf.fit(X, y).predict(X[:4]).tolist()
    ['no', 'yes', 'yes', 'no']
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, max_fun=15000, n_threads=None):
        _store_params(self, locals())

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as "
                        f"in the previous call to fit. Previously got {self.classes_}, "
                        f"`y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError("`y` has classes not in `self.classes_`. "
                                 f"`self.classes_` has {self.classes_}. 'y' has {classes}.")
        return X, self._label_binarizer.transform(y).astype(bool)

    def predict(self, X):
        """Predicted classes, shape (n_samples,) or (n_samples, n_classes) (multilabel).

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The inputs.
        """
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward(X, check_input=check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, accuracy_score)

    def _check_solver(self):
        if self.solver not in ("sgd", "adam"):
            raise AttributeError("partial_fit is only available for stochastic "
                                 f"optimizers. {self.solver} is not stochastic.")
        return True

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y), keeping the optimizer state between calls.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            Class labels (an indicator matrix for multilabel targets).
        sample_weight : array-like of shape (n_samples,), optional
            Weights >= 0 of the samples in the loss and its gradient.
        classes : array-like of shape (n_classes,), optional
            All classes of all calls; required on the first call.
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns as ``classes_``.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The inputs.
        """
        check_is_fitted(self)
        y_pred = self._forward(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def predict_log_proba(self, X):
        """log of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The inputs.
        """
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by fastbp: a drop-in replacement
    for ``sklearn.neural_network.MLPRegressor`` (scikit-learn 1.9).

    A linear output trained on the squared error (``loss_`` is half the mean
    squared error per output, as scikit-learn reports it). Parameters are those of
    :class:`MLPClassifier` plus ``loss`` ({"squared_error", "poisson"}, default
    "squared_error"; "poisson" raises NotImplementedError at fit); the differences
    from scikit-learn are listed in :mod:`fastbp.sklearn`.

    Parameters
    ----------
    loss : {"squared_error", "poisson"}, default="squared_error"
        "poisson" raises NotImplementedError at fit.
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate : as MLPClassifier
        Same meaning and defaults as in :class:`MLPClassifier`.
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol : as MLPClassifier
        Same meaning and defaults as in :class:`MLPClassifier`.
    verbose, warm_start, momentum, nesterovs_momentum, early_stopping : as MLPClassifier
        Same meaning and defaults as in :class:`MLPClassifier`.
    validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change : as MLPClassifier
        Same meaning and defaults as in :class:`MLPClassifier`.
    max_fun, n_threads : as MLPClassifier
        Same meaning and defaults as in :class:`MLPClassifier`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastbp.sklearn import MLPRegressor
    >>> X = np.linspace(-1, 1, 50).reshape(-1, 1)
    >>> reg = MLPRegressor(hidden_layer_sizes=(16,), activation="tanh", solver="sgd",
    ...                    learning_rate_init=0.1, max_iter=500, random_state=0)
    >>> bool(reg.fit(X, X.ravel() ** 2).score(X, X.ravel() ** 2) > 0.9)
    True
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu",
                 *, solver="adam", alpha=0.0001, batch_size="auto",
                 learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
                 warm_start=False, momentum=0.9, nesterovs_momentum=True,
                 early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 n_threads=None):
        _store_params(self, locals())

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def predict(self, X):
        """Predicted values, shape (n_samples,) or (n_samples, n_outputs).

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The inputs.
        """
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward(X, check_input=check_input)
        return y_pred.ravel() if y_pred.shape[1] == 1 else y_pred

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, r2_score)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), keeping the optimizer state between calls.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The targets.
        sample_weight : array-like of shape (n_samples,), optional
            Weights >= 0 of the samples in the loss and its gradient.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

