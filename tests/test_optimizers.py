"""The fused update kernels against the reference rules, several steps."""

import numpy as np
import pytest
from conftest import TOL

from fastbp import reference
from fastbp.kernels.update import adam_update, sgd_update

SGD_CASES = [
    dict(momentum=0.0, nesterov=False, weight_decay=0.0),
    dict(momentum=0.9, nesterov=False, weight_decay=0.0),
    dict(momentum=0.9, nesterov=True, weight_decay=0.0),
    dict(momentum=0.0, nesterov=False, weight_decay=0.1),
    dict(momentum=0.5, nesterov=True, weight_decay=0.1),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", SGD_CASES, ids=["plain", "momentum", "nesterov", "wd",
                                                 "nesterov-wd"])
def test_sgd_update_follows_torch_rule(case, dtype):
    rng = np.random.default_rng(0)
    p = rng.normal(size=50).astype(dtype)
    buf = np.zeros_like(p)
    expected_p, expected_buf = p.astype(np.float64), None
    for _step in range(4):
        grad_sum = rng.normal(size=50).astype(dtype)  # a sum over a batch of 3
        sgd_update(p, grad_sum, 3, buf, 0.1, case["momentum"], case["nesterov"],
                   case["weight_decay"])
        expected_p, expected_buf = reference.sgd_step(
            expected_p, grad_sum.astype(np.float64) / 3, expected_buf, 0.1, **case)
    np.testing.assert_allclose(p, expected_p, **TOL[dtype])
    if case["momentum"]:
        np.testing.assert_allclose(buf, expected_buf, **TOL[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05], ids=["plain", "wd"])
def test_adam_update_follows_torch_rule(weight_decay, dtype):
    rng = np.random.default_rng(1)
    p = rng.normal(size=40).astype(dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    ep, em, ev = p.astype(np.float64), np.zeros(40), np.zeros(40)
    for step in range(1, 6):
        grad_sum = rng.normal(size=40).astype(dtype)
        adam_update(p, grad_sum, 2, m, v, step, 0.01, 0.9, 0.999, 1e-8, weight_decay, 0)
        ep, em, ev = reference.adam_step(ep, grad_sum.astype(np.float64) / 2, em, ev, step,
                                         0.01, weight_decay=weight_decay)
    # Adam divides by sqrt(v): float32 carries a few more ulps than a plain product
    tol = TOL[dtype] if dtype == "float64" else dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p, ep, **tol)
    np.testing.assert_allclose(m, em, **tol)
    np.testing.assert_allclose(v, ev, **tol)


@pytest.mark.parametrize("eps_mode", ["torch", "sklearn"])
@pytest.mark.parametrize("batch_size", [1, 4], ids=["online", "bs4-partial"])
def test_adam_settings_follow_reference(batch_size, eps_mode):
    """betas, eps and eps_mode reach both Adam kernels (the fused online step and
    the mini-batch update); a large eps makes its placement show."""
    import fastbp

    rng = np.random.default_rng(3)
    X, T = rng.normal(size=(10, 3)), rng.normal(size=(10, 2))
    model = fastbp.Model([3, 4, 2], hidden="tanh", dtype="float64", seed=1)
    start = model.params.copy()
    kwargs = dict(lr=0.01, betas=(0.8, 0.95), eps=1e-2, eps_mode=eps_mode)
    model.fit(X, T, epochs=2, batch_size=batch_size, shuffle=False, optimizer="adam",
              **kwargs)
    expected = reference.train(start, [3, 4, 2], True, X, T, [np.arange(10)] * 2, batch_size,
                               "tanh", "linear", "mse", optimizer="adam", **kwargs)
    np.testing.assert_allclose(model.params, expected, **TOL["float64"])
    other = reference.train(start, [3, 4, 2], True, X, T, [np.arange(10)] * 2, batch_size,
                            "tanh", "linear", "mse", optimizer="adam",
                            **{**kwargs, "eps_mode": {"torch": "sklearn",
                                                      "sklearn": "torch"}[eps_mode]})
    assert np.abs(other - expected).max() > 1e-6  # the placement matters here
