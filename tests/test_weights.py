"""sample_weight, class_weight and the weights-only L2 penalty ``l2``.

Semantics (Model.fit's docstring): each batch's gradient is the weighted mean
sum_i w_i g_i / sum_i w_i of its per-sample gradients plus l2 W / sum_i w_i on the
weights (not the biases); a batch weighing 0 takes no step. Checked against the
equation-by-equation reference for every kernel path (online, GEMM serial and
parallel parts), against torch with per-sample weighted losses, and by the
identity "integer weight k == the sample repeated k times" over one full batch.
"""

import numba
import numpy as np
import pytest
from conftest import TOL, make_model, make_problem, reference

import fastbp
from fastbp._training import validation_split

DTYPES = ["float64", "float32"]
# 1: the fused online step; 4 leaves a partial batch of 3 (n = 11); 11: the whole set.
BATCH_SIZES = [1, 4, 11]
BATCH_IDS = ["online", "bs4-partial", "full"]
OPTIMIZERS = {
    "sgd": dict(optimizer="sgd", lr=0.2),
    "momentum-wd": dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01),
    "nesterov": dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True),
    "adam": dict(optimizer="adam", lr=0.01),
}


def weights_for(n, seed=0, zeros=True):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.2, 3.0, size=n)
    if zeros:
        w[[2, 7]] = 0.0  # zero weights: no gradient from those samples
    return w


def train_both(sizes, hidden, output, loss, dtype, batch_size, fit_kwargs, w, l2, bias=True,
               epochs=2, n=11):
    X, T = make_problem(sizes, output, loss, n, seed=3)
    model = make_model(sizes, hidden, output, loss, dtype, bias=bias, seed=5)
    start = model.params.astype(np.float64)
    rng = np.random.default_rng(np.random.SeedSequence(5).spawn(2)[1])
    orders = [rng.permutation(n) for _ in range(epochs)]
    history = model.fit(X, T, epochs=epochs, batch_size=batch_size, sample_weight=w, l2=l2,
                        **fit_kwargs)
    # The kernels see the weights rounded to the model's dtype.
    w_used = None if w is None else np.asarray(w, dtype=dtype).astype(np.float64)
    expected = reference.train(start, sizes, bias, X.astype(dtype).astype(np.float64),
                               T.astype(dtype).astype(np.float64), orders, batch_size,
                               hidden, output, loss, sample_weight=w_used, l2=l2,
                               **fit_kwargs)
    return model, expected, start, history, (X, T)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size", BATCH_SIZES, ids=BATCH_IDS)
@pytest.mark.parametrize("opt_id", list(OPTIMIZERS))
def test_weighted_training_matches_reference(opt_id, batch_size, dtype):
    model, expected, start, _, _ = train_both(
        [4, 6, 3], "tanh", "softmax", "cross_entropy", dtype, batch_size,
        OPTIMIZERS[opt_id], weights_for(11), l2=0.3)
    assert np.abs(expected - start).max() > 1e-3
    tol = TOL[dtype] if dtype == "float64" else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.params, expected, **tol)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("batch_size", BATCH_SIZES, ids=BATCH_IDS)
def test_l2_spares_biases_and_matches_reference(batch_size, bias):
    """l2 alone (no weights): the weights shrink, the biases follow the data only."""
    model, expected, _, _, _ = train_both(
        [3, 5, 2], "sigmoid", "linear", "mse", "float64", batch_size,
        dict(optimizer="sgd", lr=0.3), None, l2=0.5, bias=bias)
    np.testing.assert_allclose(model.params, expected, **TOL["float64"])
    # The same fit without l2 gives other weights but, after one step from the
    # same start, the same biases: the penalty has no bias term.
    X, T = make_problem([3, 5, 2], "linear", "mse", 11, seed=3)
    models = []
    for l2 in (0.0, 0.5):
        m = make_model([3, 5, 2], "sigmoid", "linear", "mse", bias=bias, seed=5)
        m.fit(X, T, epochs=1, batch_size=11, lr=0.3, l2=l2)
        models.append(m)
    assert not np.allclose(models[0].weights[0], models[1].weights[0])
    for b0, b1 in zip(models[0].biases, models[1].biases):
        np.testing.assert_array_equal(b0, b1)


def test_integer_weights_equal_repeated_samples():
    """One full batch: weight k on a sample == the sample appearing k times."""
    sizes = [4, 7, 3]
    X, T = make_problem(sizes, "softmax", "cross_entropy", 6, seed=1)
    w = np.array([1, 3, 0, 2, 1, 1])
    weighted = make_model(sizes, "relu", "softmax", "cross_entropy", seed=2)
    repeated = make_model(sizes, "relu", "softmax", "cross_entropy", seed=2)
    h1 = weighted.fit(X, T, epochs=3, batch_size=6, lr=0.1, momentum=0.9, sample_weight=w,
                      shuffle=False, l2=0.2)
    idx = np.repeat(np.arange(6), w)
    h2 = repeated.fit(X[idx], T[idx], epochs=3, batch_size=len(idx), lr=0.1, momentum=0.9,
                      shuffle=False, l2=0.2)
    np.testing.assert_allclose(weighted.params, repeated.params, **TOL["float64"])
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], **TOL["float64"])


def test_history_loss_is_the_weighted_mean():
    sizes = [3, 4, 2]
    X, T = make_problem(sizes, "linear", "mse", 9, seed=4)
    w = np.geomspace(0.01, 100.0, 9)
    model = make_model(sizes, "tanh", "linear", "mse", seed=1)
    Ws, bs = [W.copy() for W in model.weights], [b.copy() for b in model.biases]
    history = model.fit(X, T, epochs=1, batch_size=4, lr=0.0, sample_weight=w)
    want = reference.mean_loss(Ws, bs, X, T, "tanh", "linear", "mse", sample_weight=w)
    np.testing.assert_allclose(history.history["loss"][0], want, **TOL["float64"])
    unweighted = reference.mean_loss(Ws, bs, X, T, "tanh", "linear", "mse")
    assert abs(want - unweighted) > 1e-3  # the weighting mattered


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("batch_size", [1, 3], ids=["online", "bs3"])
def test_zero_weight_batch_takes_no_step(batch_size, optimizer):
    sizes = [3, 4, 2]
    X, T = make_problem(sizes, "linear", "mse", 6, seed=4)
    w = np.array([0.0, 0.0, 0.0, 1.0, 2.0, 1.0])
    model = make_model(sizes, "tanh", "linear", "mse", seed=1)
    start = model.params.copy()
    kwargs = dict(optimizer=optimizer, lr=0.05)
    model.fit(X[:3], T[:3], batch_size=batch_size, shuffle=False, sample_weight=np.ones(3),
              **kwargs)
    assert not np.array_equal(model.params, start)
    model = make_model(sizes, "tanh", "linear", "mse", seed=1)
    model.fit(X, T, batch_size=batch_size, shuffle=False, sample_weight=w, l2=1.0, **kwargs)
    expected = reference.train(start, sizes, True, X, T, [np.arange(6)], batch_size, "tanh",
                               "linear", "mse", sample_weight=w, l2=1.0, **kwargs)
    np.testing.assert_allclose(model.params, expected, **TOL["float64"])
    # Only samples 3..5 moved it: the same as training on them alone, after the
    # skipped steps (which Adam still counts).
    alone = reference.train(start, sizes, True, X[3:], T[3:], [np.arange(3)], batch_size,
                            "tanh", "linear", "mse", sample_weight=w[3:], l2=1.0, **kwargs)
    if optimizer == "sgd":
        np.testing.assert_allclose(model.params, alone, **TOL["float64"])
    assert np.isfinite(model.params).all()


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size", [1, 40], ids=["online", "gemm-parts"])
def test_weighted_training_bit_identical_at_any_thread_count(batch_size, dtype,
                                                            restore_threads, monkeypatch):
    from fastbp import _threads as model_module

    monkeypatch.setattr(model_module, "PARALLEL_MIN_FLOPS", 0)  # parallel at 2 threads
    sizes = [6, 80, 70, 4]
    X, T = make_problem(sizes, "softmax", "cross_entropy", 64, seed=5)
    w = weights_for(64, seed=3)
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        model = make_model(sizes, "relu", "softmax", "cross_entropy", dtype, seed=11)
        model.fit(X, T, epochs=2, batch_size=batch_size, lr=0.05, momentum=0.9,
                  sample_weight=w, l2=0.1)
        results.append(model.params.copy())
    assert np.array_equal(results[0], results[1])


def test_forced_parts_with_weights_match_reference(monkeypatch):
    """The GEMM kernel split into 2 parts of samples and rows, weighted, vs reference."""
    from fastbp import _threads as model_module

    monkeypatch.setattr(model_module, "SERIAL_PARTS", 2)
    monkeypatch.setattr(model_module, "PARALLEL_MIN_FLOPS", 0)
    sizes = [5, 9, 4]
    model, expected, _, _, _ = train_both(
        sizes, "relu", "softmax", "cross_entropy", "float64", 8,
        dict(optimizer="sgd", lr=0.1, momentum=0.5), weights_for(20, seed=8), l2=0.2, n=20)
    assert model_module.parts(False) == 2
    np.testing.assert_allclose(model.params, expected, **TOL["float64"])


# -- class_weight --------------------------------------------------------------------


def test_balanced_class_weight_is_sklearns():
    sklearn_utils = pytest.importorskip("sklearn.utils")
    y = np.array([0, 0, 0, 0, 1, 2, 2, 0, 1, 0])
    X = np.random.default_rng(0).normal(size=(10, 3))
    per_class = sklearn_utils.compute_class_weight("balanced", classes=np.arange(3), y=y)
    sizes = [3, 4, 3]
    a = make_model(sizes, "tanh", "softmax", "cross_entropy", seed=0)
    b = make_model(sizes, "tanh", "softmax", "cross_entropy", seed=0)
    a.fit(X, y, epochs=2, batch_size=4, lr=0.1, class_weight="balanced")
    b.fit(X, y, epochs=2, batch_size=4, lr=0.1, sample_weight=per_class[y])
    np.testing.assert_array_equal(a.params, b.params)
    # a dict, combined with sample weights: the product
    sw = weights_for(10, zeros=False)
    a = make_model(sizes, "tanh", "softmax", "cross_entropy", seed=0)
    b = make_model(sizes, "tanh", "softmax", "cross_entropy", seed=0)
    a.fit(X, y, batch_size=4, lr=0.1, class_weight={1: 5.0, 2: 0.5}, sample_weight=sw)
    b.fit(X, y, batch_size=4, lr=0.1, sample_weight=sw * np.array([1.0, 5.0, 0.5])[y])
    np.testing.assert_array_equal(a.params, b.params)


def test_class_weight_binary_sigmoid():
    X = np.random.default_rng(1).normal(size=(12, 2))
    y = (X[:, 0] > 0.8).astype(float)  # imbalanced
    a = fastbp.Model([2, 3, 1], output="sigmoid", loss="cross_entropy", dtype="float64",
                     seed=0)
    b = fastbp.Model([2, 3, 1], output="sigmoid", loss="cross_entropy", dtype="float64",
                     seed=0)
    a.fit(X, y, batch_size=5, lr=0.5, class_weight={1: 4.0})
    b.fit(X, y, batch_size=5, lr=0.5, sample_weight=np.where(y > 0.5, 4.0, 1.0))
    np.testing.assert_array_equal(a.params, b.params)


def test_class_weight_changes_the_decision_on_imbalanced_data():
    """Balanced weights raise the recall of a rare class (the reason to use them)."""
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0.0, 1.0, size=(190, 2)), rng.normal(1.2, 1.0, size=(10, 2))])
    y = np.r_[np.zeros(190, int), np.ones(10, int)]
    recalls = []
    for cw in (None, "balanced"):
        m = fastbp.Model([2, 8, 2], hidden="tanh", output="softmax", loss="cross_entropy",
                         dtype="float64", seed=0)
        m.fit(X, y, epochs=40, batch_size=20, lr=0.1, momentum=0.9, class_weight=cw)
        recalls.append((m.predict(X[y == 1]).argmax(axis=1) == 1).mean())
    assert recalls[1] > recalls[0] + 0.3


# -- against torch: per-sample weighted losses -------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size", [1, 4], ids=["online", "bs4-partial"])
def test_weighted_training_matches_torch(batch_size, dtype):
    torch = pytest.importorskip("torch")
    from test_torch import SIZES, TRAJ_TOL, TorchMLP, as_torch
    from test_torch import make_model as torch_model

    F = torch.nn.functional
    X, T = make_problem(SIZES, "softmax", "cross_entropy", 10, seed=1)
    w = weights_for(10, seed=2)
    l2 = 0.3
    model = torch_model("tanh", "softmax", "cross_entropy", dtype, seed=1)
    net = TorchMLP(model)
    model.fit(X, T, epochs=2, batch_size=batch_size, shuffle=False, lr=0.1, momentum=0.9,
              sample_weight=w, l2=l2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x, t, wt = as_torch(X, dtype), as_torch(T, dtype), as_torch(w, dtype)
    for _ in range(2):
        for first in range(0, 10, batch_size):
            sl = slice(first, first + batch_size)
            if wt[sl].sum() == 0:
                continue  # fastbp: a batch weighing 0 takes no step
            opt.zero_grad()
            per_sample = F.cross_entropy(net.logits(x[sl]), t[sl], reduction="none")
            penalty = sum((layer.weight**2).sum() for layer in net.layers)
            loss = ((wt[sl] * per_sample).sum() + 0.5 * l2 * penalty) / wt[sl].sum()
            loss.backward()
            opt.step()
    np.testing.assert_allclose(model.params, net.flat(), **TRAJ_TOL[dtype])


# -- bad input --------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(sample_weight=np.ones(5)), ValueError, "sample_weight has 5 entries"),
        (dict(sample_weight=np.ones((8, 1))), ValueError, "sample_weight must be 1-D"),
        (dict(sample_weight=-np.ones(8)), ValueError, "sample_weight must be >= 0"),
        (dict(sample_weight=np.zeros(8)), ValueError, "all zeros"),
        (dict(sample_weight=np.r_[np.ones(7), np.nan]), ValueError, "NaN"),
        (dict(sample_weight=["a"] * 8), TypeError, "sample_weight"),
        (dict(sample_weight=np.r_[np.ones(7), 1e300]), ValueError, "range"),
        (dict(class_weight="uniform"), ValueError, "class_weight must be 'balanced'"),
        (dict(class_weight=[1, 2]), TypeError, "class_weight"),
        (dict(class_weight={3: 1.0}), ValueError, "class_weight has key 3"),
        (dict(class_weight={0: -1.0}), ValueError, "class_weight"),
        (dict(class_weight={0: 0.0, 1: 0.0, 2: 0.0}), ValueError, "weight 0"),
        (dict(l2=-0.1), ValueError, "l2"),
        (dict(l2="big"), TypeError, "l2"),
    ],
)
def test_bad_weights_raise_and_change_nothing(kwargs, error, match):
    X, T = make_problem([3, 4, 3], "softmax", "cross_entropy", 8, seed=0)
    model = fastbp.Model([3, 4, 3], output="softmax", loss="cross_entropy", seed=0)
    before, X0, T0 = model.params.copy(), X.copy(), T.copy()
    sw = kwargs.get("sample_weight")
    sw0 = None if sw is None else np.array(sw, copy=True)
    with pytest.raises(error, match=match):
        model.fit(X, T, batch_size=4, **kwargs)
    assert np.array_equal(model.params, before)
    assert np.array_equal(X, X0) and np.array_equal(T, T0)
    if sw0 is not None:
        assert np.array_equal(np.asarray(sw), sw0, equal_nan=sw0.dtype.kind == "f")


def test_class_weight_needs_a_classifier():
    model = fastbp.Model([2, 3, 2], output="linear", loss="mse", seed=0)
    X, T = make_problem([2, 3, 2], "linear", "mse", 6)
    with pytest.raises(ValueError, match="class_weight needs a classifier"):
        model.fit(X, T, class_weight="balanced")


def test_validation_split_splits_the_weights():
    """The held-out samples' weights are dropped with them: training equals fitting
    the training part alone with its own weights."""
    sizes = [3, 5, 3]
    X, T = make_problem(sizes, "softmax", "cross_entropy", 30, seed=2)
    w = weights_for(30, zeros=False)
    model = make_model(sizes, "tanh", "softmax", "cross_entropy", seed=3)
    train, _ = validation_split(model, T, 0.2)
    other = make_model(sizes, "tanh", "softmax", "cross_entropy", seed=3)
    model.fit(X, T, batch_size=4, lr=0.1, sample_weight=w, validation_split=0.2)
    other.fit(X[train], T[train], batch_size=4, lr=0.1, sample_weight=w[train])
    np.testing.assert_array_equal(model.params, other.params)
