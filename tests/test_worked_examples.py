"""The worked examples of the backpropagation notes, checked on fastbp.reference
and on fastbp.Model (float64).

Each expected value is written out by hand from the notes' formulas (never taken
from the code under test), so every test fails if either implementation computes
something else: a wrong derivative, a missing factor, a transposed weight, an
update with the wrong sign or step, or parameters that are not where the API says.
"""

import numpy as np
import pytest

import fastbp
from fastbp import reference

# Named tolerances (STYLE.md), float64 only in this file.
RTOL, ATOL = 1e-10, 1e-12


def close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def s(z):
    """The logistic sigmoid of the notes."""
    return 1.0 / (1.0 + np.exp(-z))


# ---------------------------------------------------------------------------
# 1. The chain x -> sigmoid -> sigmoid -> linear, three scalar weights, no bias
# ---------------------------------------------------------------------------

CHAIN_CASES = [  # (x, t, (w1, w2, w3))
    (0.8, 0.25, (0.6, -1.3, 0.9)),
    (-1.5, 1.0, (2.0, 0.7, -0.4)),
]
CHAIN_IDS = ["x0.8-t0.25", "x-1.5-t1.0"]


def chain_by_hand(x, t, w1, w2, w3):
    """(C, dC/dw1, dC/dw2, dC/dw3) for h1 = s(w1 x), h2 = s(w2 h1), y = w3 h2,
    C = 1/2 (y - t)^2, each derivative written out as in the notes."""
    h1 = s(w1 * x)
    h2 = s(w2 * h1)
    y = w3 * h2
    C = 0.5 * (y - t) ** 2
    dw3 = (y - t) * h2
    dw2 = (y - t) * w3 * h2 * (1 - h2) * h1
    dw1 = (y - t) * w3 * h2 * (1 - h2) * w2 * h1 * (1 - h1) * x
    return C, dw1, dw2, dw3


def chain_model(w):
    model = fastbp.Model([1, 1, 1, 1], hidden="sigmoid", output="linear", loss="mse",
                         bias=False, dtype="float64", seed=0)
    for l, value in enumerate(w):
        model.weights[l][...] = value
    return model


@pytest.mark.parametrize("x, t, w", CHAIN_CASES, ids=CHAIN_IDS)
def test_chain_hand_formulas_match_central_differences(x, t, w):
    # Guards the hand formulas themselves, so the next tests check against truth.
    eps = 1e-6
    _, *grads = chain_by_hand(x, t, *w)
    for k in range(3):
        up, down = list(w), list(w)
        up[k] += eps
        down[k] -= eps
        c_up, c_down = chain_by_hand(x, t, *up)[0], chain_by_hand(x, t, *down)[0]
        numeric = (c_up - c_down) / (2 * eps)
        close(grads[k], numeric, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("x, t, w", CHAIN_CASES, ids=CHAIN_IDS)
def test_chain_gradients_reference(x, t, w):
    C, dw1, dw2, dw3 = chain_by_hand(x, t, *w)
    Ws = [np.array([[value]]) for value in w]
    dWs, dbs = reference.backprop(Ws, None, np.array([x]), np.array([t]),
                                  "sigmoid", "linear", "mse")
    assert dbs is None
    assert [g.shape for g in dWs] == [(1, 1)] * 3
    close([g[0, 0] for g in dWs], [dw1, dw2, dw3])
    close(reference.mean_loss(Ws, None, np.array([[x]]), np.array([[t]]),
                              "sigmoid", "linear", "mse"), C)


@pytest.mark.parametrize("x, t, w", CHAIN_CASES, ids=CHAIN_IDS)
def test_chain_gradients_model(x, t, w):
    C, dw1, dw2, dw3 = chain_by_hand(x, t, *w)
    model = chain_model(w)
    assert model.biases == []
    close(model.params, w)  # three weights, nothing else
    dWs, dbs = model.gradients([[x]], [[t]])
    assert dbs == []
    assert [g.shape for g in dWs] == [(1, 1)] * 3
    close([g[0, 0] for g in dWs], [dw1, dw2, dw3])
    close(model.loss([[x]], [[t]]), C)
    close(model.predict([[x]])[0, 0], w[2] * s(w[1] * s(w[0] * x)))
    close(model.params, w)  # gradients/loss/predict do not update


# One SGD step: a single sample at batch size 1 (the fused online kernel), and
# three samples in one batch of 3 (batch kernel, gradient = mean of the three).
STEP_CASES = [([0.8], [0.25], 1), ([0.8, -1.5, 0.3], [0.25, 1.0, -0.6], 3)]
STEP_IDS = ["online-bs1", "batch-bs3"]


@pytest.mark.parametrize("xs, ts, batch_size", STEP_CASES, ids=STEP_IDS)
@pytest.mark.parametrize("x, t, w", CHAIN_CASES[:1], ids=CHAIN_IDS[:1])
def test_chain_one_sgd_step(x, t, w, xs, ts, batch_size):
    del x, t  # the samples of this test are xs, ts
    lr = 0.5
    hand = np.mean([chain_by_hand(xi, ti, *w)[1:] for xi, ti in zip(xs, ts)], axis=0)
    expected = np.array(w) - lr * hand
    assert np.all(np.abs(hand) > 1e-3)  # every weight really moves

    X, T = np.array(xs)[:, None], np.array(ts)[:, None]
    ref = reference.train(np.array(w, dtype=float), [1, 1, 1, 1], False, X, T,
                          [np.arange(len(xs))], batch_size, "sigmoid", "linear", "mse",
                          lr=lr)
    close(ref, expected)

    model = chain_model(w)
    model.fit(X, T, epochs=1, batch_size=batch_size, shuffle=False, lr=lr)
    close([W[0, 0] for W in model.weights], expected)
    close(np.array([W[0, 0] for W in model.weights]) - w, -lr * hand)


def test_chain_two_online_steps_use_updated_weights():
    # Batch size 1 over two samples: the second step's gradient is taken at the
    # weights left by the first step.
    lr, w = 0.5, np.array([0.6, -1.3, 0.9])
    (x1, t1), (x2, t2) = (0.8, 0.25), (-1.5, 1.0)
    after1 = w - lr * np.array(chain_by_hand(x1, t1, *w)[1:])
    after2 = after1 - lr * np.array(chain_by_hand(x2, t2, *after1)[1:])
    X, T = np.array([[x1], [x2]]), np.array([[t1], [t2]])
    ref = reference.train(w.copy(), [1, 1, 1, 1], False, X, T, [np.arange(2)], 1,
                          "sigmoid", "linear", "mse", lr=lr)
    close(ref, after2)
    model = chain_model(w)
    model.fit(X, T, epochs=1, batch_size=1, shuffle=False, lr=lr)
    close(model.params, after2)


# ---------------------------------------------------------------------------
# 2. One hidden layer, h = s(V x), z = s(W h), no biases, mse
# ---------------------------------------------------------------------------

ONE_HIDDEN_SIZES = [[3, 4, 2], [2, 5, 3], [4, 3, 1]]
ONE_HIDDEN_IDS = ["3-4-2", "2-5-3", "4-3-1"]


def one_hidden_by_hand(V, W, x, y):
    """(grad_W, grad_V) = (Omega (z - y) h^T, Lambda W^T Omega (z - y) x^T) with
    Omega = diag(z (1 - z)), Lambda = diag(h (1 - h)); column vectors throughout."""
    x, y = x.reshape(-1, 1), y.reshape(-1, 1)
    h = s(V @ x)
    z = s(W @ h)
    Omega = np.diag((z * (1 - z)).ravel())
    Lambda = np.diag((h * (1 - h)).ravel())
    grad_W = Omega @ (z - y) @ h.T
    grad_V = Lambda @ W.T @ Omega @ (z - y) @ x.T
    return grad_W, grad_V


def one_hidden_problem(sizes, n):
    rng = np.random.default_rng(sum(sizes))
    n_in, m, k = sizes
    V = rng.normal(0.0, 1.0, size=(m, n_in))
    W = rng.normal(0.0, 1.0, size=(k, m))
    X = rng.normal(size=(n, n_in))
    Y = rng.uniform(0.05, 0.95, size=(n, k))
    return V, W, X, Y


@pytest.mark.parametrize("sizes", ONE_HIDDEN_SIZES, ids=ONE_HIDDEN_IDS)
def test_one_hidden_layer_matrix_formulas(sizes):
    V, W, X, Y = one_hidden_problem(sizes, n=5)
    hand = [one_hidden_by_hand(V, W, x, y) for x, y in zip(X, Y)]
    assert hand[0][0].shape == W.shape and hand[0][1].shape == V.shape

    # reference, one sample
    dWs, dbs = reference.backprop([V, W], None, X[0], Y[0], "sigmoid", "sigmoid", "mse")
    assert dbs is None
    close(dWs[1], hand[0][0])
    close(dWs[0], hand[0][1])

    model = fastbp.Model(sizes, hidden="sigmoid", output="sigmoid", loss="mse",
                         bias=False, dtype="float64", seed=0)
    model.weights[0][...] = V
    model.weights[1][...] = W
    # model, one sample
    gW, gb = model.gradients(X[:1], Y[:1])
    assert gb == []
    close(gW[1], hand[0][0])
    close(gW[0], hand[0][1])
    # model and reference, batch: the mean of the per-sample formulas
    mean_W = np.mean([g[0] for g in hand], axis=0)
    mean_V = np.mean([g[1] for g in hand], axis=0)
    gW, _ = model.gradients(X, Y)
    close(gW[1], mean_W)
    close(gW[0], mean_V)
    rW, _ = reference.gradients([V, W], None, X, Y, "sigmoid", "sigmoid", "mse")
    close(rW[1], mean_W)
    close(rW[0], mean_V)


# ---------------------------------------------------------------------------
# 3. The 3-4-2 sigmoid network with biases: shapes and the delta formulas
# ---------------------------------------------------------------------------


def net342():
    model = fastbp.Model([3, 4, 2], hidden="sigmoid", output="sigmoid", loss="mse",
                         dtype="float64", seed=3)
    rng = np.random.default_rng(342)
    # Biases start at zero: give them values so that b^l really enters z^l.
    model.biases[0][...] = rng.normal(0.0, 0.5, size=4)
    model.biases[1][...] = rng.normal(0.0, 0.5, size=2)
    X = rng.normal(size=(6, 3))
    T = rng.uniform(0.05, 0.95, size=(6, 2))
    return model, X, T


def net342_by_hand(W1, b1, W2, b2, x, t):
    """(a2, dW1, db1, dW2, db2) from the delta formulas of the notes."""
    a1 = s(W1 @ x + b1)
    a2 = s(W2 @ a1 + b2)
    delta2 = (a2 - t) * a2 * (1 - a2)  # delta^2 = (a^2 - t) o a^2 (1 - a^2)
    delta1 = (W2.T @ delta2) * a1 * (1 - a1)  # delta^1 = W2^T delta^2 o a^1 (1 - a^1)
    return a2, np.outer(delta1, x), delta1, np.outer(delta2, a1), delta2


def test_342_shapes():
    model, X, T = net342()
    assert model.sizes == (3, 4, 2)
    assert [W.shape for W in model.weights] == [(4, 3), (2, 4)]
    assert [b.shape for b in model.biases] == [(4,), (2,)]
    assert model.params.shape == (3 * 4 + 4 + 4 * 2 + 2,)
    dWs, dbs = model.gradients(X, T)
    assert [g.shape for g in dWs] == [(4, 3), (2, 4)]
    assert [g.shape for g in dbs] == [(4,), (2,)]
    assert model.predict(X).shape == (6, 2)
    assert model.predict(X[0]).shape == (2,)
    rW, rb = reference.gradients([W.copy() for W in model.weights],
                                 [b.copy() for b in model.biases], X, T,
                                 "sigmoid", "sigmoid", "mse")
    assert [g.shape for g in rW] == [(4, 3), (2, 4)]
    assert [g.shape for g in rb] == [(4,), (2,)]


def test_342_delta_formulas():
    model, X, T = net342()
    W1, W2 = (W.copy() for W in model.weights)
    b1, b2 = (b.copy() for b in model.biases)
    hand = [net342_by_hand(W1, b1, W2, b2, x, t) for x, t in zip(X, T)]
    assert all(np.abs(h[2]).min() > 0 for h in hand)

    # one sample: reference.backprop and Model.gradients
    _, dW1, db1, dW2, db2 = hand[0]
    rW, rb = reference.backprop([W1, W2], [b1, b2], X[0], T[0],
                                "sigmoid", "sigmoid", "mse")
    for got, want in zip([*rW, *rb], [dW1, dW2, db1, db2]):
        close(got, want)
    mW, mb = model.gradients(X[:1], T[:1])
    for got, want in zip([*mW, *mb], [dW1, dW2, db1, db2]):
        close(got, want)

    # batch: mean over the samples
    want = [np.mean([h[k] for h in hand], axis=0) for k in (1, 3, 2, 4)]
    rW, rb = reference.gradients([W1, W2], [b1, b2], X, T, "sigmoid", "sigmoid", "mse")
    for got, w in zip([*rW, *rb], want):
        close(got, w)
    mW, mb = model.gradients(X, T)
    for got, w in zip([*mW, *mb], want):
        close(got, w)

    # forward pass and loss
    close(model.predict(X), [h[0] for h in hand])
    losses = [0.5 * np.sum((h[0] - t) ** 2) for h, t in zip(hand, T)]
    close(model.loss(X, T), np.mean(losses))


# ---------------------------------------------------------------------------
# 4. Symmetry: a constant initialisation is never broken; random init breaks it
# ---------------------------------------------------------------------------


def symmetry_data():
    rng = np.random.default_rng(7)
    return rng.normal(size=(7, 3)), rng.uniform(0.05, 0.95, size=(7, 2))


def assert_symmetric(W1, b1, W2):
    for i in range(1, W1.shape[0]):
        close(W1[i], W1[0])  # rows of W^1 equal
        close(b1[i], b1[0])  # entries of b^1 equal
        close(W2[:, i], W2[:, 0])  # columns of W^2 equal


@pytest.mark.parametrize("batch_size", [1, 3], ids=["bs1", "bs3"])
def test_constant_init_stays_symmetric(batch_size):
    X, T = symmetry_data()
    model = fastbp.Model([3, 4, 2], hidden="sigmoid", output="sigmoid", loss="mse",
                         init=0.5, dtype="float64", seed=0)
    assert np.all(np.concatenate([W.ravel() for W in model.weights]) == 0.5)
    assert np.all(np.concatenate(model.biases) == 0.0)
    start = model.params.copy()
    model.fit(X, T, epochs=5, batch_size=batch_size, lr=0.5, shuffle=True)
    assert np.abs(model.params - start).max() > 1e-2  # it did train
    W1, W2 = model.weights
    assert_symmetric(W1, model.biases[0], W2)

    # the reference keeps it too
    p = reference.train(start, [3, 4, 2], True, X, T, [np.arange(7)] * 5, batch_size,
                        "sigmoid", "sigmoid", "mse", lr=0.5)
    assert np.abs(p - start).max() > 1e-2
    (rW1, rW2), (rb1, _) = reference.unflatten(p, [3, 4, 2], True)
    assert_symmetric(rW1, rb1, rW2)


@pytest.mark.parametrize("batch_size", [1, 3], ids=["bs1", "bs3"])
def test_random_init_breaks_symmetry(batch_size):
    X, T = symmetry_data()
    model = fastbp.Model([3, 4, 2], hidden="sigmoid", output="sigmoid", loss="mse",
                         dtype="float64", seed=0)
    model.fit(X, T, epochs=5, batch_size=batch_size, lr=0.5, shuffle=False)
    W1, b1 = model.weights[0], model.biases[0]
    for i in range(1, 4):
        assert np.abs(W1[i] - W1[0]).max() > 1e-3
        assert abs(b1[i] - b1[0]) > 1e-6


# ---------------------------------------------------------------------------
# 5. params / weights / biases: one flat vector, views, the documented layout
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"], ids=["float64", "float32"])
def test_weights_and_biases_are_views_into_params(dtype):
    X = np.random.default_rng(5).normal(size=(4, 3))
    model = fastbp.Model([3, 4, 2], hidden="sigmoid", output="sigmoid", dtype=dtype,
                         seed=1)
    assert model.params.ndim == 1 and model.params.flags.c_contiguous
    assert model.params.dtype == np.dtype(dtype)
    for arr in (*model.weights, *model.biases):
        assert np.shares_memory(arr, model.params)
        assert arr.dtype == model.params.dtype

    before = model.predict(X)
    model.weights[0][0, 0] = 1.25
    assert model.params[0] == np.asarray(1.25, dtype=dtype)
    model.weights[1][1, 3] = -2.5  # W^2 starts after W^1 (12) and b^1 (4)
    assert model.params[16 + 1 * 4 + 3] == np.asarray(-2.5, dtype=dtype)
    model.biases[0][2] = 0.75
    assert model.params[12 + 2] == np.asarray(0.75, dtype=dtype)
    model.biases[1][1] = -0.5
    assert model.params[24 + 1] == np.asarray(-0.5, dtype=dtype)
    model.params[13] = 0.125  # and the other way round
    assert model.biases[0][1] == np.asarray(0.125, dtype=dtype)
    assert not np.allclose(model.predict(X), before)  # the model uses what was written


def test_params_layout_and_flatten():
    model, X, T = net342()
    W1, W2 = model.weights
    b1, b2 = model.biases
    p = model.params
    # W^1, b^1, W^2, b^2 in order, each W row-major
    np.testing.assert_array_equal(p[0:12], W1.ravel())
    np.testing.assert_array_equal(p[12:16], b1)
    np.testing.assert_array_equal(p[16:24], W2.ravel())
    np.testing.assert_array_equal(p[24:26], b2)
    np.testing.assert_array_equal(p, reference.flatten(model.weights, model.biases))
    Ws, bs = reference.unflatten(p, [3, 4, 2], True)
    for got, want in zip([*Ws, *bs], [W1, W2, b1, b2]):
        np.testing.assert_array_equal(got, want)
    # gradients come back in the same layout, as copies (not views of params)
    dWs, dbs = model.gradients(X, T)
    for g in (*dWs, *dbs):
        assert not np.shares_memory(g, p)
    rW, rb = reference.gradients([W1.copy(), W2.copy()], [b1.copy(), b2.copy()], X, T,
                                 "sigmoid", "sigmoid", "mse")
    close(reference.flatten(dWs, dbs), reference.flatten(rW, rb))
    # training updates params in place: the views stay views and see the update
    views = [*model.weights, *model.biases]
    before = p.copy()
    model.fit(X, T, epochs=1, batch_size=2, lr=0.5, shuffle=False)
    assert model.params is p
    assert not np.array_equal(p, before)
    for view, now in zip(views, [*model.weights, *model.biases]):
        assert np.shares_memory(view, p)
        np.testing.assert_array_equal(view, now)
    np.testing.assert_array_equal(p, reference.flatten(model.weights, model.biases))


def test_params_layout_without_biases():
    model = fastbp.Model([3, 4, 2], bias=False, dtype="float64", seed=2)
    assert model.biases == []
    assert model.params.shape == (12 + 8,)
    np.testing.assert_array_equal(model.params[:12], model.weights[0].ravel())
    np.testing.assert_array_equal(model.params[12:], model.weights[1].ravel())
    np.testing.assert_array_equal(model.params, reference.flatten(model.weights, None))
    model.weights[1][0, 0] = 3.0
    assert model.params[12] == 3.0
