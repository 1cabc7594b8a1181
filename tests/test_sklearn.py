"""fastbp.sklearn: scikit-learn's MLP estimators on fastbp's kernels.

With ``shuffle=False`` and one ``random_state`` the two implementations start from
the same weights and walk the same trajectory, so most tests fit both and compare
the fitted attributes: that proves the mapping (initialisation, L2 penalty, the
learning-rate schedules with momentum, stopping rules, early stopping, reported
losses), not just that training "works".
"""

import copy
import pickle
import subprocess
import sys
import warnings

import numba
import numpy as np
import pytest

pytest.importorskip("sklearn")

from numpy.testing import assert_allclose, assert_array_equal  # noqa: E402
from sklearn import neural_network as sknn  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils._param_validation import InvalidParameterError  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastbp import sklearn as fbsk  # noqa: E402
from fastbp.bench import digits as bench_digits  # noqa: E402
from fastbp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Same trajectory, different summation order: float64 results agree to ~1e-13
# after tens of epochs (measured), so 1e-8 leaves room and still catches any
# difference in the rules (those show at 1e-3 or more).
TIGHT = dict(rtol=1e-8, atol=1e-12)

_rng = np.random.RandomState(0)
X = _rng.normal(size=(60, 5))
TARGETS = {
    "multiclass": _rng.randint(0, 3, 60),
    "binary": np.array(["no", "yes"])[_rng.randint(0, 2, 60)],
    "multilabel": _rng.randint(0, 2, (60, 3)),
    "regression": _rng.normal(size=(60, 2)),
}
ACTIVATION = {"multiclass": "tanh", "binary": "relu", "multilabel": "logistic",
              "regression": "tanh"}


def _kind(target):
    return "MLPRegressor" if target == "regression" else "MLPClassifier"


def _fit_pair(target, sample_weight=None, **params):
    """(sklearn's estimator, fastbp's) fitted with the same parameters."""
    params = {"hidden_layer_sizes": (7, 4), "activation": ACTIVATION[target],
              "random_state": 0, "shuffle": False, "max_iter": 20, **params}
    pair = getattr(sknn, _kind(target))(**params), getattr(fbsk, _kind(target))(**params)
    for est in pair:
        est.fit(X, TARGETS[target], sample_weight=sample_weight)
    return pair


def _assert_same(sk, fb, loss_rtol=TIGHT["rtol"], **tol):
    tol = tol or TIGHT
    assert (fb.n_iter_, fb.t_, fb.n_layers_, fb.n_outputs_, fb.out_activation_) == (
        sk.n_iter_, sk.t_, sk.n_layers_, sk.n_outputs_, sk.out_activation_)
    for ours, theirs in zip(fb.coefs_ + fb.intercepts_, sk.coefs_ + sk.intercepts_,
                            strict=True):
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
        assert_allclose(ours, theirs, **tol)
    assert_allclose(fb.loss_curve_, sk.loss_curve_, rtol=loss_rtol)
    assert_allclose(fb.loss_, sk.loss_, rtol=loss_rtol)
    if sk.best_loss_ is not None:
        assert_allclose(fb.best_loss_, sk.best_loss_, rtol=loss_rtol)
    if hasattr(sk, "predict_proba"):
        assert_allclose(fb.predict_proba(X), sk.predict_proba(X), **tol)
        assert_array_equal(fb.predict(X), sk.predict(X))
    else:
        assert_allclose(fb.predict(X), sk.predict(X), **tol)


# (id, parameters, one batch per epoch?) -- mini-batches and alpha > 0 make the
# loss_curve_ approximate (the L2 term is interpolated within the epoch).
SGD_CASES = [
    ("constant-plain-full-alpha", dict(momentum=0.0, alpha=1e-2)),
    ("constant-nesterov-mini", dict(batch_size=16, alpha=0.0)),
    ("constant-heavyball-mini-alpha", dict(nesterovs_momentum=False, batch_size=16,
                                           alpha=1e-2)),
    ("invscaling-nesterov-full-alpha", dict(learning_rate="invscaling",
                                            learning_rate_init=0.5, alpha=1e-2)),
    ("invscaling-heavyball-mini", dict(learning_rate="invscaling", learning_rate_init=0.5,
                                       nesterovs_momentum=False, batch_size=7, alpha=0.0)),
    ("adaptive-nesterov-full-alpha", dict(learning_rate="adaptive", tol=0.05,
                                          n_iter_no_change=2, max_iter=40, alpha=1e-3)),
    ("adaptive-heavyball-mini", dict(learning_rate="adaptive", tol=0.05, n_iter_no_change=2,
                                     max_iter=40, nesterovs_momentum=False, batch_size=16,
                                     alpha=0.0)),
]


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("params", [p for _, p in SGD_CASES],
                         ids=[i for i, _ in SGD_CASES])
def test_sgd_follows_sklearn(target, params):
    params = {"solver": "sgd", "learning_rate_init": 0.1, **params}
    sk, fb = _fit_pair(target, **params)
    exact_loss = params.get("batch_size", 60) >= 60 or params["alpha"] == 0
    _assert_same(sk, fb, loss_rtol=TIGHT["rtol"] if exact_loss else 1e-3)
    if params.get("learning_rate") == "adaptive":  # the case does divide the rate
        assert fb._lr == pytest.approx(sk._optimizer.learning_rate, rel=1e-12)
        assert fb._lr < params["learning_rate_init"]


@pytest.mark.parametrize("target", ["multiclass", "regression"])
@pytest.mark.parametrize("batch_size", [60, 16], ids=["full", "mini"])
def test_adam_follows_sklearn(target, batch_size):
    # Model.fit(eps_mode="sklearn"): epsilon added to sqrt(v) before the bias
    # correction, as sklearn does. (With torch's placement the weights were up to
    # 3e-5 apart.) Mini-batch loss curves carry the interpolated L2 term (see
    # fastbp/sklearn.py), hence their looser loss tolerance.
    params = dict(solver="adam", learning_rate_init=0.01, batch_size=batch_size, alpha=1e-3)
    sk, fb = _fit_pair(target, **params)
    _assert_same(sk, fb, loss_rtol=TIGHT["rtol"] if batch_size == 60 else 1e-3)


def test_adam_betas_and_epsilon_follow_sklearn():
    # Non-default beta_1, beta_2 and a large epsilon (its placement shows most)
    sk, fb = _fit_pair("multiclass", solver="adam", learning_rate_init=0.01, batch_size=60,
                       beta_1=0.8, beta_2=0.99, epsilon=1e-4)
    _assert_same(sk, fb)
    default = _fit_pair("multiclass", solver="adam", learning_rate_init=0.01,
                        batch_size=60)[1]
    assert np.abs(default.coefs_[0] - fb.coefs_[0]).max() > 1e-4  # the settings mattered


@pytest.mark.parametrize("target", ["binary", "multiclass", "regression"])
def test_early_stopping_follows_sklearn(target):
    # binary is split stratified, multiclass (several binarized columns) is not,
    # exactly as sklearn does; the best weights are restored at the end.
    sk, fb = _fit_pair(target, solver="sgd", learning_rate_init=0.1, early_stopping=True,
                       validation_fraction=0.25, n_iter_no_change=3, max_iter=60,
                       tol=1e-3)
    assert sk.n_iter_ < 60  # it stopped early
    _assert_same(sk, fb)
    assert_allclose(fb.validation_scores_, sk.validation_scores_, **TIGHT)
    assert fb.best_validation_score_ == pytest.approx(sk.best_validation_score_, rel=1e-10)
    assert fb.best_loss_ is None


def test_early_stopping_restores_the_best_epoch():
    # shuffle=True: fastbp's own trajectory. The run that stops at the first best
    # epoch ends with the weights the longer run restored.
    y = TARGETS["multiclass"]
    params = dict(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.2,
                  early_stopping=True, validation_fraction=0.3, n_iter_no_change=4,
                  tol=0.0, random_state=3, max_iter=200)
    long = MLPClassifier(**params).fit(X, y)
    scores = long.validation_scores_
    assert len(scores) == long.n_iter_ and long.best_validation_score_ == max(scores)
    best = int(np.argmax(scores))
    assert best < long.n_iter_ - 1  # the last epoch was not the best
    short = MLPClassifier(**{**params, "max_iter": best + 1}).fit(X, y)
    for a, b in zip(long.coefs_ + long.intercepts_, short.coefs_ + short.intercepts_,
                    strict=True):
        assert_array_equal(a, b)
    unrestored = MLPClassifier(**{**params, "early_stopping": False,
                                  "max_iter": long.n_iter_})
    assert not np.array_equal(long.coefs_[0], unrestored.fit(X, y).coefs_[0])


@pytest.mark.parametrize("target", ["multiclass", "binary", "regression"])
def test_sample_weight_follows_sklearn(target):
    # With several batches an epoch, fastbp's epoch loss is the weighted mean over
    # the epoch, sklearn's the mean of per-batch weighted means: ~2% apart here.
    sw = np.random.RandomState(1).uniform(0.2, 3.0, size=X.shape[0])
    for params, loss_rtol in [(dict(alpha=1e-2), TIGHT["rtol"]),
                              (dict(alpha=1e-2, batch_size=16), 5e-2)]:
        sk, fb = _fit_pair(target, sample_weight=sw, solver="sgd", learning_rate_init=0.1,
                           tol=0.0, **params)
        _assert_same(sk, fb, loss_rtol=loss_rtol)


def test_integer_sample_weight_equals_repeated_samples():
    y = TARGETS["multiclass"]
    sw = np.random.RandomState(2).randint(0, 4, size=X.shape[0])
    params = dict(hidden_layer_sizes=(6,), solver="sgd", learning_rate_init=0.1,
                  alpha=1e-2, max_iter=15, random_state=0)  # one batch an epoch
    weighted = MLPClassifier(**params).fit(X, y, sample_weight=sw)
    repeated = MLPClassifier(**params).fit(X.repeat(sw, axis=0), y.repeat(sw))
    assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X), **TIGHT)
    assert_allclose(weighted.loss_curve_, repeated.loss_curve_, **TIGHT)


def test_float32_stays_float32_and_follows_sklearn():
    X32 = X.astype(np.float32)
    params = dict(hidden_layer_sizes=(7,), solver="sgd", learning_rate_init=0.1,
                  shuffle=False, random_state=0, max_iter=10)
    sk = sknn.MLPClassifier(**params).fit(X32, TARGETS["multiclass"])
    fb = MLPClassifier(**params).fit(X32, TARGETS["multiclass"])
    assert all(c.dtype == np.float32 for c in fb.coefs_ + fb.intercepts_)
    assert fb.predict_proba(X32).dtype == np.float32
    for ours, theirs in zip(fb.coefs_ + fb.intercepts_, sk.coefs_ + sk.intercepts_,
                            strict=True):
        assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_verbose_prints_what_sklearn_prints(capsys):
    params = dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.1, tol=0.05,
                  n_iter_no_change=2, max_iter=12, verbose=True)
    outputs = []
    for early_stopping in (False, True):
        _fit_pair("multiclass", early_stopping=early_stopping, **params)
        sk_out, fb_out = capsys.readouterr().out.split("Iteration 1,", 2)[1:]
        outputs.append(fb_out)
        assert fb_out == sk_out
    assert "Setting learning rate to" in outputs[0] and "Validation score" in outputs[1]


def test_warm_start_follows_sklearn():
    pair = _fit_pair("multiclass", solver="sgd", learning_rate_init=0.1, max_iter=5)
    for est in pair:  # a second fit continues the weights, with a new optimizer
        est.set_params(warm_start=True, max_iter=4).fit(X, TARGETS["multiclass"])
    assert len(pair[1].loss_curve_) == 9
    _assert_same(*pair)


def test_partial_fit_follows_sklearn():
    y = TARGETS["multiclass"]
    params = dict(hidden_layer_sizes=(7,), solver="sgd", learning_rate="invscaling",
                  learning_rate_init=0.3, shuffle=False, random_state=0, batch_size=16)
    sk, fb = sknn.MLPClassifier(**params), MLPClassifier(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # partial_fit warns of nothing
        for _ in range(4):
            for est in (sk, fb):
                est.partial_fit(X, y, classes=[0, 1, 2])
    _assert_same(sk, fb, loss_rtol=1e-5)  # 4 batches an epoch and alpha > 0
    with pytest.raises(ValueError, match="classes not in"):
        fb.partial_fit(X, y + 5)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_equals_fit_one_epoch_at_a_time(solver):
    y = TARGETS["regression"]
    params = dict(hidden_layer_sizes=(9,), solver=solver, learning_rate="invscaling",
                  learning_rate_init=0.05, batch_size=8, random_state=4, tol=0.0)
    whole = MLPRegressor(max_iter=5, **params).fit(X, y)
    steps = MLPRegressor(**params)
    for _ in range(5):
        steps.partial_fit(X, y)
    assert steps.n_iter_ == 1 and steps.t_ == whole.t_ == 5 * X.shape[0]
    for a, b in zip(whole.coefs_ + whole.intercepts_, steps.coefs_ + steps.intercepts_,
                    strict=True):
        assert_array_equal(a, b)
    assert_array_equal(whole.loss_curve_, steps.loss_curve_)


def test_pipeline_and_grid_search_follow_sklearn():
    X_iris, y_iris = load_iris(return_X_y=True)
    grid = {"mlpclassifier__alpha": [1e-4, 1.0],
            "mlpclassifier__hidden_layer_sizes": [(3,), (12,)]}
    params = dict(solver="sgd", learning_rate_init=0.05, max_iter=15, shuffle=False,
                  random_state=0)
    results = []
    for cls in (sknn.MLPClassifier, MLPClassifier):
        search = GridSearchCV(make_pipeline(StandardScaler(), cls(**params)), grid, cv=3)
        results.append(search.fit(X_iris, y_iris))
    sk, fb = results
    assert_allclose(fb.cv_results_["mean_test_score"], sk.cv_results_["mean_test_score"])
    assert fb.best_params_ == sk.best_params_
    assert isinstance(fb.best_estimator_[-1], MLPClassifier)
    assert fb.score(X_iris, y_iris) == pytest.approx(sk.score(X_iris, y_iris))


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_pickle_clone_and_deepcopy(kind):
    y = TARGETS["multiclass"] if kind == "classifier" else TARGETS["regression"]
    cls = MLPClassifier if kind == "classifier" else MLPRegressor
    first = {"classes": [0, 1, 2]} if kind == "classifier" else {}
    est = cls(hidden_layer_sizes=(6,), solver="adam", random_state=1, batch_size=16)
    est.partial_fit(X, y, **first)
    after_one = [c.copy() for c in est.coefs_]
    method = "predict_proba" if kind == "classifier" else "predict"
    before = getattr(est, method)(X)
    copies = [pickle.loads(pickle.dumps(est)), copy.deepcopy(est)]
    est.partial_fit(X, y)
    for other in copies:
        assert_array_equal(getattr(other, method)(X), before)
        # the optimizer state and the shuffling stream travel too
        other.partial_fit(X, y)
        assert_array_equal(getattr(other, method)(X), getattr(est, method)(X))
        assert_array_equal(other.coefs_[0], est.coefs_[0])
        # coefs_ are still views into the network's parameters
        other.coefs_[0][...] = 0.0
        assert_array_equal(other._model.weights[0], 0.0)
    copied = clone(est)
    assert copied.get_params() == est.get_params() and not hasattr(copied, "coefs_")
    assert_array_equal(copied.partial_fit(X, y, **first).coefs_[0], after_one[0])


def test_assigned_coefs_are_used_like_sklearn():
    sk, fb = _fit_pair("multiclass", solver="sgd", max_iter=3, learning_rate_init=0.1)
    rng = np.random.RandomState(5)
    new = [rng.normal(size=c.shape) for c in sk.coefs_]
    sk.coefs_, fb.coefs_ = new, [c.copy() for c in new]
    assert_allclose(fb.predict_proba(X), sk.predict_proba(X), **TIGHT)


def test_sparse_input_equals_dense():
    from scipy import sparse

    y = TARGETS["multiclass"]
    Xs = X.copy()
    Xs[np.abs(Xs) < 0.8] = 0.0
    params = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0)
    dense = MLPClassifier(**params).fit(Xs, y)
    sp = MLPClassifier(**params).fit(sparse.csr_matrix(Xs), y)
    assert_array_equal(sp.coefs_[0], dense.coefs_[0])
    assert_array_equal(sp.predict_proba(sparse.csc_matrix(Xs)), dense.predict_proba(Xs))


def test_n_threads_does_not_change_results():
    rng = np.random.RandomState(0)
    Xb, yb = rng.normal(size=(400, 30)), rng.randint(0, 3, 400)  # big enough for 2 parts
    before = numba.get_num_threads()
    fits = [MLPClassifier(hidden_layer_sizes=(256,), max_iter=2, random_state=0,
                          n_threads=n).fit(Xb, yb) for n in (1, 2)]
    assert numba.get_num_threads() == before
    assert_array_equal(fits[0].coefs_[0], fits[1].coefs_[0])
    assert_array_equal(fits[0].predict_proba(Xb), fits[1].predict_proba(Xb))


# -- solver="lbfgs": scipy's L-BFGS-B on the kernels' whole-data loss and gradient ---


@pytest.mark.parametrize("target", ["multiclass", "binary", "multilabel", "regression"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_lbfgs_takes_sklearns_steps(target, weighted):
    """From the same initial weights (same random_state), float64: the same
    objective and gradient to rounding, so L-BFGS takes the same steps. Measured:
    the difference starts at 1e-16 and grows to 1e-13 in 20 iterations (1e-8 by 40
    for relu, whose kinks amplify it)."""
    weight = np.linspace(0.2, 2.0, len(X)) if weighted else None
    theirs, ours = _fit_pair(target, sample_weight=weight, solver="lbfgs",
                             hidden_layer_sizes=(7,), alpha=0.01, max_iter=20, random_state=3)
    assert not hasattr(ours, "loss_curve_") and not hasattr(theirs, "loss_curve_")
    assert ours.n_iter_ == theirs.n_iter_ == 20
    assert_allclose(ours.loss_, theirs.loss_, rtol=1e-10)
    for mine, sk in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_,
                        strict=True):
        assert_allclose(mine, sk, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("target", ["multiclass", "regression"])
def test_lbfgs_reaches_sklearns_optimum(target):
    """Run to convergence (gtol = tol): the same optimum to the optimizer's tolerance."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # both must converge
        theirs, ours = _fit_pair(target, solver="lbfgs", hidden_layer_sizes=(6,), alpha=0.1,
                                 max_iter=2000, tol=1e-6, random_state=1)
    assert abs(ours.loss_ - theirs.loss_) <= 1e-6 * max(1.0, theirs.loss_)
    if target == "regression":
        assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-3, atol=1e-4)
    else:
        assert_array_equal(ours.predict(X), theirs.predict(X))


def test_lbfgs_warns_as_sklearn_and_respects_max_fun():
    ours, theirs = (est(solver="lbfgs", hidden_layer_sizes=(5,), max_fun=6, max_iter=500,
                        random_state=0) for est in (MLPRegressor, sknn.MLPRegressor))
    found = []
    for est in (ours, theirs):
        with pytest.warns(ConvergenceWarning) as record:
            est.fit(X, TARGETS["regression"])
        found.append([str(w.message) for w in record])
    assert found[0] == found[1] and "F,G EVALUATIONS EXCEEDS LIMIT" in found[0][0]
    assert ours.n_iter_ == theirs.n_iter_ < 500
    with pytest.warns(ConvergenceWarning, match=r"lbfgs failed to converge after 2 "):
        MLPClassifier(solver="lbfgs", max_iter=2, random_state=0).fit(X, TARGETS["binary"])


def test_lbfgs_in_float32_reaches_sklearns_loss():
    Xf = X.astype(np.float32)
    kw = dict(solver="lbfgs", hidden_layer_sizes=(8,), max_iter=60, random_state=0)
    ours = MLPClassifier(**kw).fit(Xf, TARGETS["multiclass"])
    theirs = sknn.MLPClassifier(**kw).fit(Xf, TARGETS["multiclass"])
    assert ours.coefs_[0].dtype == np.float32
    assert_allclose(ours.loss_, theirs.loss_, rtol=0.05)


def test_an_interrupted_lbfgs_fit_leaves_the_model_as_it_was(monkeypatch):
    est = MLPRegressor(solver="lbfgs", hidden_layer_sizes=(4,), max_iter=5, warm_start=True,
                       random_state=0).fit(X, X[:, 0])
    before = [c.copy() for c in est.coefs_ + est.intercepts_]
    calls = []
    real = type(est._model)._pass

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(est._model), "_pass", interrupted)
    with pytest.raises(KeyboardInterrupt):
        est.fit(X, X[:, 0])
    assert len(calls) == 4
    for now, then in zip(est.coefs_ + est.intercepts_, before, strict=True):
        assert_array_equal(now, then)


COUNTS = np.random.RandomState(7).poisson(np.exp(0.5 * X[:, :2]))  # (60, 2) counts


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_poisson_regression_follows_sklearn(solver):
    """loss="poisson": an exp output with the half Poisson deviance, summed over the
    outputs (sklearn's poisson_loss), its gradient a - t: sklearn's trajectory."""
    kw = dict(loss="poisson", solver=solver, hidden_layer_sizes=(6,), activation="tanh",
              learning_rate_init=0.01, alpha=1e-3, shuffle=False, max_iter=20,
              random_state=0)
    theirs = sknn.MLPRegressor(**kw).fit(X, COUNTS)
    ours = MLPRegressor(**kw).fit(X, COUNTS)
    assert ours.out_activation_ == theirs.out_activation_ == "exp"
    assert ours._model.output == "exp" and ours._model.loss_name == "poisson"
    assert ours.n_iter_ == theirs.n_iter_
    for mine, sk in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_,
                        strict=True):
        assert_allclose(mine, sk, rtol=1e-7, atol=1e-10)
    assert_allclose(ours.loss_, theirs.loss_, rtol=1e-8)
    assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-7)
    assert (ours.predict(X) > 0).all()


def test_hand_set_coefficients_predict_and_train_as_in_sklearn():
    """Fitted attributes set by hand on an estimator never fitted (sklearn's own
    test_fit does this): it predicts from them, and partial_fit trains from them."""
    def hand_set(est):
        est.coefs_ = [np.array([[0.1, 0.2], [0.3, 0.1], [0.5, 0.0]]), np.array([[0.1], [0.2]])]
        est.intercepts_ = [np.array([0.1, 0.1]), np.array([1.0])]
        est.n_outputs_, est.n_layers_, est.out_activation_ = 1, 3, "logistic"
        est.n_features_in_, est.n_iter_, est.t_ = 3, 0, 0
        est.best_loss_, est.loss_curve_, est._no_improvement_count = np.inf, [], 0
        est.classes_ = np.array([0, 1])
        from sklearn.preprocessing import LabelBinarizer
        est._label_binarizer = LabelBinarizer().fit([0, 1])
        return est

    x = np.array([[0.6, 0.8, 0.7]])
    ours = hand_set(MLPClassifier(solver="sgd", activation="logistic", momentum=0))
    theirs = hand_set(sknn.MLPClassifier(solver="sgd", activation="logistic", momentum=0))
    assert_allclose(ours.predict_proba(x), theirs.predict_proba(x), rtol=1e-12)
    kw = dict(learning_rate_init=0.1, alpha=0.1, max_iter=1, hidden_layer_sizes=2,
              random_state=1)
    ours = hand_set(MLPClassifier(solver="sgd", activation="logistic", momentum=0, **kw))
    theirs = hand_set(sknn.MLPClassifier(solver="sgd", activation="logistic", momentum=0,
                                         **kw))
    for est in (ours, theirs):
        est.partial_fit(x, [0], classes=[0, 1])
    for mine, sk in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_,
                        strict=True):
        assert_allclose(mine, sk, rtol=1e-12)


def test_a_diverging_fit_with_early_stopping_keeps_the_best_weights():
    """As sklearn's: the loss turns non-finite, the best finite weights are kept,
    validation_scores_ ends with nan and fit returns (sklearn then trains its
    remaining epochs on nan weights; fastbp stops and warns)."""
    iris_X, iris_y = load_iris(return_X_y=True)
    est = MLPRegressor(hidden_layer_sizes=100, activation="identity", solver="sgd",
                       learning_rate_init=1, max_iter=20, early_stopping=True,
                       n_iter_no_change=10, random_state=0)
    with pytest.warns(ConvergenceWarning, match="diverged in epoch"):
        est.fit(iris_X, iris_y)
    assert np.isnan(est.validation_scores_[-1]) and isinstance(est.validation_scores_[-1],
                                                               float)
    assert np.isfinite(est._model.params).all()
    best = int(np.nanargmax(est.validation_scores_))
    assert est.best_validation_score_ == est.validation_scores_[best]
    assert np.isfinite(est.score(iris_X, iris_y))  # the best weights predict
    with pytest.raises(ValueError, match="non-finite parameter weights"):  # no early stop
        MLPRegressor(hidden_layer_sizes=100, activation="identity", solver="sgd",
                     learning_rate_init=1, max_iter=20, random_state=0).fit(iris_X, iris_y)


def test_convergence_warning_at_max_iter():
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\)"):
        MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, X[:, 0])


@pytest.mark.parametrize(
    "params, error, match",
    [
        (dict(activation="softplus"), InvalidParameterError, "activation"),
        (dict(learning_rate_init=0.0), InvalidParameterError, "learning_rate_init"),
        (dict(momentum=1.5), InvalidParameterError, "momentum"),
        (dict(batch_size=0), InvalidParameterError, "batch_size"),
        (dict(n_threads=0), InvalidParameterError, "n_threads"),
        (dict(n_iter_no_change=0), InvalidParameterError, "n_iter_no_change"),
        (dict(hidden_layer_sizes=(4, 0)), ValueError, "hidden_layer_sizes must be > 0"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_parameters_raise_sklearn_errors(params, error, match):
    assert issubclass(InvalidParameterError, ValueError)
    with pytest.raises(error, match=match):
        MLPClassifier(**params).fit(X, TARGETS["binary"])


def test_other_sklearn_errors():
    with pytest.raises(ValueError, match=r"loss='poisson' needs targets y >= 0"):
        MLPRegressor(loss="poisson").fit(X, X[:, 0])
    with pytest.raises(ValueError, match=r"loss='poisson' needs targets y >= 0"):
        MLPRegressor(loss="poisson", solver="lbfgs").fit(X, X[:, 0])
    with pytest.raises(InvalidParameterError, match="loss"):
        MLPRegressor(loss="huber").fit(X, X[:, 0])
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(X)
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier().partial_fit(X, TARGETS["binary"])
    with pytest.raises(ValueError, match="validation set is too small"):
        MLPRegressor(early_stopping=True, validation_fraction=0.01).fit(X, X[:, 0])
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(X, X[:, 0])
    with pytest.raises(ValueError, match="non-finite parameter weights"):  # diverges
        MLPRegressor(solver="sgd", learning_rate_init=1.0, random_state=0).fit(
            X, X[:, 0] * 1e6)
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")  # as in sklearn
    fitted = MLPRegressor(hidden_layer_sizes=(3,), max_iter=1).fit(X, X[:, 0])
    with pytest.raises(ValueError, match="features"):
        fitted.predict(X[:, :4])
    with pytest.raises(ValueError, match="layer sizes"):
        fitted.set_params(warm_start=True, hidden_layer_sizes=(4,)).fit(X, X[:, 0])


def test_the_dropin_table_times_both_for_each_solver_and_dtype():
    from fastbp.bench import dropin

    rows = dropin.compare("digits", solvers=("lbfgs", "adam"), dtypes=("float32",),
                          repeats=1, max_iter=3)
    assert [(r["solver"], r["name"]) for r in rows] == [
        ("lbfgs", "scikit-learn"), ("lbfgs", "fastbp"), ("adam", "scikit-learn"),
        ("adam", "fastbp")]
    assert all(r["seconds"] > 0 and 0 <= r["accuracy"] <= 1 for r in rows)
    assert rows[0]["n_iter"] == rows[1]["n_iter"] == 3
    lines = dropin.table(rows).splitlines()
    assert len(lines) == 4 and lines[2].startswith("| lbfgs | float32 |")


def test_compare_digits_runs_both_and_formats_a_table():
    rows = bench_digits.compare_digits(random_states=(0,), repeats=1, max_iter=2,
                                       dtypes=("float32",), hidden_layer_sizes=(16,),
                                       learning_rate_init=0.01)
    assert [(r["name"], r["dtype"]) for r in rows] == [("scikit-learn", "float32"),
                                                       ("fastbp", "float32")]
    for r in rows:
        assert r["n_iter"] == [2] and 0.5 < r["accuracy"][0] <= 1 and r["seconds"] > 0
    table = bench_digits.format_comparison(rows)
    assert table.count("\n") == 3 and "| fastbp | float32 |" in table


def test_docstring_examples():
    import doctest

    result = doctest.testmod(fbsk)
    assert result.attempted >= 6 and result.failed == 0


def test_import_fastbp_does_not_import_sklearn():
    code = "import sys, fastbp; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@parametrize_with_checks(
    # max_iter=100 as sklearn's own checks give its MLPs
    [MLPClassifier(max_iter=100), MLPRegressor(max_iter=100),
     MLPClassifier(solver="lbfgs", max_iter=100), MLPRegressor(solver="lbfgs", max_iter=100)],
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
def test_held_up_epochs_give_one_warning_per_fit(restore_threads, monkeypatch):
    """The drop-in calls Model.fit once per epoch: epochs run serially because
    other processes held the CPUs warn once for the whole fit, not per epoch."""
    from fastbp import _threads

    monkeypatch.setattr(_threads, "PARALLEL_MIN_FLOPS", 0)  # parallel at 2 threads
    monkeypatch.setattr(_threads, "held_up", lambda: True)
    numba.set_num_threads(2)
    X, y = load_iris(return_X_y=True)
    clf = fbsk.MLPClassifier((8,), max_iter=6, batch_size=50, n_iter_no_change=100,
                             random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(X, y)
    held = [w for w in caught if "ran on one thread" in str(w.message)]
    assert len(held) == 1
    assert "6 of 6 epochs ran on one thread" in str(held[0].message)


def test_held_up_probe_is_reused_for_a_moment(monkeypatch):
    """held_up() checks at most once per PROBE_VALID_SECONDS: a fit per epoch
    does not pay the check each time."""
    from fastbp import _threads

    calls = []
    monkeypatch.setattr(_threads, "_others_running", lambda limit: calls.append(1) or False)
    monkeypatch.setattr(_threads, "_last_probe", [-1.0, False])
    monkeypatch.setattr(_threads, "PROBE_VALID_SECONDS", 60.0)
    assert [_threads.held_up() for _ in range(10)] == [False] * 10
    assert len(calls) == 1
    monkeypatch.setattr(_threads, "PROBE_VALID_SECONDS", 0.0)
    _threads.held_up()
    assert len(calls) == 2
