"""The NumPy reference against central finite differences (float64)."""

import numpy as np
import pytest
from conftest import HEAD_IDS, HEADS, HIDDEN, make_problem

from fastbp import reference

EPS = 1e-6


def numeric_gradient(p, sizes, bias, X, T, hidden, output, loss):
    """Central differences of the mean loss with respect to every flat parameter."""
    grad = np.empty_like(p)
    for k in range(p.size):
        step = np.zeros_like(p)
        step[k] = EPS
        up = reference.mean_loss(*reference.unflatten(p + step, sizes, bias), X, T,
                                 hidden, output, loss)
        down = reference.mean_loss(*reference.unflatten(p - step, sizes, bias), X, T,
                                   hidden, output, loss)
        grad[k] = (up - down) / (2 * EPS)
    return grad


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize("hidden", HIDDEN)
def test_backprop_equals_finite_differences(hidden, head, bias):
    output, loss = head
    sizes = [3, 4, 3]
    rng = np.random.default_rng(1)
    X, T = make_problem(sizes, output, loss, 4, seed=2)
    Ws = [rng.uniform(-1, 1, size=(m, n)) for n, m in zip(sizes[:-1], sizes[1:])]
    bs = [rng.uniform(-0.5, 0.5, size=m) for m in sizes[1:]] if bias else None
    p = reference.flatten(Ws, bs)
    dWs, dbs = reference.gradients(Ws, bs, X, T, hidden, output, loss)
    analytic = reference.flatten(dWs, dbs)
    numeric = numeric_gradient(p, sizes, bias, X, T, hidden, output, loss)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_flatten_unflatten_round_trip():
    sizes = [2, 3, 1]
    p = np.arange(13, dtype=float)
    Ws, bs = reference.unflatten(p, sizes, True)
    assert [W.shape for W in Ws] == [(3, 2), (1, 3)]
    assert [b.shape for b in bs] == [(3,), (1,)]
    np.testing.assert_array_equal(Ws[0].ravel(), p[:6])  # W^1 first, then b^1
    np.testing.assert_array_equal(bs[0], p[6:9])
    np.testing.assert_array_equal(reference.flatten(Ws, bs), p)


def test_softmax_mse_delta_is_the_jacobian_product():
    """delta^L = a o ((a - t) - <a - t, a>) equals J^T (a - t), J from differences."""
    z = np.array([0.3, -1.2, 2.0])
    t = np.array([0.0, 1.0, 0.0])
    a = reference.activation("softmax", z)
    jac = np.empty((3, 3))
    for k in range(3):
        dz = np.zeros(3)
        dz[k] = EPS
        jac[:, k] = (reference.activation("softmax", z + dz)
                     - reference.activation("softmax", z - dz)) / (2 * EPS)
    expected = jac.T @ (a - t)
    closed_form = a * ((a - t) - np.dot(a - t, a))
    np.testing.assert_allclose(reference.output_delta(a, z, t, "softmax", "mse"), expected,
                               rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(closed_form, expected, rtol=1e-7, atol=1e-10)
