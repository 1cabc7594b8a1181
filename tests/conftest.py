"""Shared fixtures: a seeded generator, tolerances per dtype, tiny problems."""

import numba
import numpy as np
import pytest

import fastbp
from fastbp import reference

# Named tolerances per dtype (STYLE.md). float32 kernels are compared with a
# float64 reference evaluated on the same (float32-rounded) parameters.
TOL = {
    "float64": dict(rtol=1e-10, atol=1e-12),
    "float32": dict(rtol=1e-5, atol=1e-6),
}

HIDDEN = ["sigmoid", "tanh", "relu", "leaky_relu", "linear"]
# (output, loss) pairs of the contract
HEADS = [
    ("linear", "mse"),
    ("sigmoid", "mse"),
    ("tanh", "mse"),
    ("softmax", "mse"),
    ("softmax", "cross_entropy"),
    ("sigmoid", "cross_entropy"),
    ("exp", "poisson"),
    ("linear", "huber"),
]
HEAD_IDS = [f"{o}-{lo}" for o, lo in HEADS]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def restore_threads():
    """Puts numba's thread count back after a test that changes it."""
    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


def make_problem(sizes, output, loss, n, seed=0):
    """Inputs X (n, n_in) and targets T (n, n_out) that fit the output/loss."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0]))
    n_out = sizes[-1]
    if output == "softmax":
        T = np.eye(n_out)[rng.integers(0, n_out, size=n)]
    elif output == "sigmoid" and loss == "cross_entropy":
        T = rng.integers(0, 2, size=(n, n_out)).astype(float)
    elif output in ("sigmoid",):
        T = rng.uniform(0.1, 0.9, size=(n, n_out))
    elif output == "tanh":
        T = rng.uniform(-0.9, 0.9, size=(n, n_out))
    elif output == "exp":  # counts, zeros included (0 log 0 = 0 in the Poisson loss)
        T = rng.poisson(1.5, size=(n, n_out)).astype(float)
    else:
        T = rng.normal(size=(n, n_out))
    return X, T


def reference_net(model):
    """(Ws, bs) float64 copies of the model's parameters for fastbp.reference."""
    Ws = [W.astype(np.float64) for W in model.weights]
    bs = [b.astype(np.float64) for b in model.biases] if model.bias else None
    return Ws, bs


def make_model(sizes, hidden, output, loss, dtype="float64", bias=True, seed=0):
    return fastbp.Model(sizes, hidden=hidden, output=output, loss=loss, dtype=dtype,
                        bias=bias, seed=seed, init="uniform" if hidden != "relu" else "he")


__all__ = ["TOL", "HIDDEN", "HEADS", "HEAD_IDS", "make_problem", "reference_net",
           "make_model", "reference"]
