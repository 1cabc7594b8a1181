"""Fused optimizer updates: one pass over the flat parameter vector.

The rules are those of ``torch.optim.SGD`` (dampening 0) and ``torch.optim.Adam``
(L2 weight decay added to the gradient, not AdamW), written per element once
(``sgd_element``, ``adam_element``) and used both by the flat update kernels and
by the fused online step. ``grads`` holds gradient SUMS; dividing by ``count``
(the batch size) happens in the same pass.
"""

import numpy as np
from numba import prange

from fastbp.kernels._jit import jit_parallel, jit_serial


@jit_serial
def sgd_element(w, g, buf, k, lr, momentum, nesterov, wd):
    """New value of parameter ``w`` with gradient ``g``; updates ``buf[k]``.

    g += wd w; buf = momentum buf + g (buf starts at 0, so the first step
    gives buf = g as torch's clone); g = g + momentum buf (nesterov) or buf;
    w - lr g.
    """
    g = g + wd * w
    if momentum != 0:
        b = momentum * buf[k] + g
        buf[k] = b
        g = g + momentum * b if nesterov else b
    return w - lr * g


@jit_serial
def adam_constants(lr, beta1, beta2, step):
    """Float64 step_size = lr / (1 - beta1^t), 1 - beta1, 1 - beta2 and
    sqrt(1 - beta2^t) for Adam step ``t`` (1-based), computed once per step as
    torch does in Python floats."""
    return (
        lr / (1.0 - beta1**step),
        1.0 - beta1,
        1.0 - beta2,
        (1.0 - beta2**step) ** 0.5,
    )


@jit_serial
def adam_element(w, g, m, v, k, step_size, one_m_b1, beta2, one_m_b2, bc2_sqrt, eps, wd):
    """New value of ``w`` under Adam; updates moments ``m[k]``, ``v[k]``.

    g += wd w; m = m + (1 - beta1)(g - m) (torch's lerp);
    v = beta2 v + (1 - beta2) g^2; w - step_size m / (sqrt(v) / bc2_sqrt + eps),
    constants from ``adam_constants`` rounded to the parameters' dtype.
    """
    g = g + wd * w
    mk = m[k] + one_m_b1 * (g - m[k])
    vk = beta2 * v[k] + one_m_b2 * g * g
    m[k] = mk
    v[k] = vk
    return w - step_size * (mk / (np.sqrt(vk) / bc2_sqrt + eps))


@jit_parallel
def sgd_update(params, grads, count, buf, lr, momentum, nesterov, wd):
    """params <- SGD step with gradient grads / count; momentum buffer ``buf``.

    Float hyper-parameters come as float64 and are rounded once to the
    parameters' dtype. Element-wise, so parallel and serial give the same bits.
    """
    dt = params.dtype.type
    lr_, mom_, wd_, n = dt(lr), dt(momentum), dt(wd), dt(count)
    for k in prange(params.shape[0]):
        params[k] = sgd_element(params[k], grads[k] / n, buf, k, lr_, mom_, nesterov, wd_)


@jit_parallel
def adam_update(params, grads, count, m, v, step, lr, beta1, beta2, eps, wd):
    """params <- Adam step ``step`` (1-based) with gradient grads / count."""
    dt = params.dtype.type
    step_size, one_m_b1, one_m_b2, bc2_sqrt = adam_constants(lr, beta1, beta2, step)
    c1, c2, c3, c4 = dt(step_size), dt(one_m_b1), dt(one_m_b2), dt(bc2_sqrt)
    b2, eps_, wd_, n = dt(beta2), dt(eps), dt(wd), dt(count)
    for k in prange(params.shape[0]):
        params[k] = adam_element(
            params[k], grads[k] / n, m, v, k, c1, c2, b2, c3, c4, eps_, wd_
        )
