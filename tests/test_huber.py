"""The huber loss's delta: every kernel path against the reference, the checks of
the argument, and the model file. (The huber head at delta 1 runs through every
head-parametrized test: conftest.HEADS.)"""

import pickle

import numpy as np
import pytest
from conftest import TOL, make_problem

import fastbp
from fastbp import reference

SIZES = [3, 6, 2]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("path", ["online", "partial", "full", "parts-parallel"])
def test_huber_delta_trains_like_the_reference_on_every_path(path, dtype, monkeypatch):
    from fastbp import _threads as policy

    batch_size = {"online": 1, "partial": 3, "full": 10, "parts-parallel": 4}[path]
    if path == "parts-parallel":
        monkeypatch.setattr(policy, "SERIAL_PARTS", 3)
        monkeypatch.setattr(policy, "PARALLEL_MIN_FLOPS", 0)
        monkeypatch.setattr(policy, "held_up", lambda: False)
    X, T = make_problem(SIZES, "linear", "huber", 10, seed=6)
    T = 3.0 * T  # residuals well beyond delta and within it
    model = fastbp.Model(SIZES, hidden="tanh", loss="huber", huber_delta=0.3, dtype=dtype,
                         seed=6, init="uniform")
    residual = np.abs(model.predict(X) - T)
    assert 0.05 < np.mean(residual < 0.3) < 0.95
    p0 = model.params.astype(np.float64)
    Ws, bs = reference.unflatten(p0, SIZES, True)
    np.testing.assert_allclose(
        model.loss(X, T), reference.mean_loss(Ws, bs, X, T, "tanh", "linear", "huber",
                                              huber_delta=0.3), **TOL[dtype])
    model.fit(X.astype(dtype), T, epochs=2, batch_size=batch_size, shuffle=False, lr=0.05,
              momentum=0.9)
    expected = reference.train(p0, SIZES, True, X, T, [np.arange(10)] * 2, batch_size, "tanh",
                               "linear", "huber", lr=0.05, momentum=0.9, huber_delta=0.3)
    tol = TOL["float64"] if dtype == "float64" else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.params, expected, **tol)
    other = reference.train(p0, SIZES, True, X, T, [np.arange(10)] * 2, batch_size, "tanh",
                            "linear", "huber", lr=0.05, momentum=0.9)
    assert np.abs(other - expected).max() > 1e-3  # the delta reached the kernels


def test_reference_huber_gradient_is_the_finite_difference():
    X, T = make_problem(SIZES, "linear", "huber", 6, seed=2)
    T = 3.0 * T
    Ws, bs = reference.unflatten(np.random.default_rng(2).normal(size=38), SIZES, True)
    dWs, _ = reference.gradients(Ws, bs, X, T, "tanh", "linear", "huber", huber_delta=0.4)
    eps = 1e-6
    for (i, j) in [(0, 0), (1, 2), (0, 5)]:
        Wp = [W.copy() for W in Ws]
        Wm = [W.copy() for W in Ws]
        Wp[1][i, j] += eps
        Wm[1][i, j] -= eps
        numeric = (reference.mean_loss(Wp, bs, X, T, "tanh", "linear", "huber",
                                       huber_delta=0.4)
                   - reference.mean_loss(Wm, bs, X, T, "tanh", "linear", "huber",
                                         huber_delta=0.4)) / (2 * eps)
        np.testing.assert_allclose(dWs[1][i, j], numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        (dict(loss="huber", output="sigmoid"), ValueError, "output='linear'"),
        (dict(loss="huber", output="softmax"), ValueError, "output='linear'"),
        (dict(loss="huber", huber_delta=0.0), ValueError, "huber_delta"),
        (dict(loss="huber", huber_delta=-1.0), ValueError, "huber_delta"),
        (dict(loss="huber", huber_delta=float("inf")), ValueError, "huber_delta"),
        (dict(loss="huber", huber_delta="1"), TypeError, "huber_delta"),
        (dict(loss="huber", huber_delta=True), TypeError, "huber_delta"),
        (dict(loss="mse", huber_delta=2.0), ValueError, "huber_delta applies to"),
    ],
)
def test_bad_huber_arguments_name_themselves(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        fastbp.Model(SIZES, **kwargs)


def test_huber_delta_is_saved_loaded_and_pickled(tmp_path):
    model = fastbp.Model(SIZES, loss="huber", huber_delta=0.25, seed=1)
    assert "huber_delta=0.25" in repr(model)
    model.save(tmp_path / "m.npz")
    loaded = fastbp.Model.load(tmp_path / "m.npz")
    assert loaded.huber_delta == 0.25 and loaded.loss_name == "huber"
    X, T = make_problem(SIZES, "linear", "huber", 8, seed=1)
    assert loaded.loss(X, T) == model.loss(X, T)
    assert pickle.loads(pickle.dumps(model)).huber_delta == 0.25
    plain = fastbp.Model(SIZES, seed=1)
    assert "huber" not in repr(plain) and "huber_delta" not in plain._config()
    state = plain.__getstate__()
    del state["huber_delta"]  # a model pickled before the huber loss existed
    old = fastbp.Model.__new__(fastbp.Model)
    old.__setstate__(state)
    assert old.huber_delta == 1.0 and old.loss(X, T) == plain.loss(X, T)
