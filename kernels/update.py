"""Fused optimizer updates: one pass over the flat parameter vector.

The rules are those of ``torch.optim.SGD`` (dampening 0) and ``torch.optim.Adam``
(L2 weight decay added to the gradient, not AdamW). ``grads`` holds gradient
SUMS over a batch; dividing by ``count`` (the batch size) happens in the same
pass. Each rule is written once for a block of elements (``sgd_block``,
``adam_block``): ``sgd_update``/``adam_update`` run it over the whole vector,
``update_range`` over the rows each part of a mini-batch owns (see
kernels/batch.py). The online step's fused layer loop (``online_layer``, called
by kernels/backward.py) is here too: ``update_range`` and ``online_layer`` are
the places that pick the rule from ``hyper[H_OPT]``, and a new optimizer
touches this module, fastbp/optim.py and the reference only.

The per-element scalar rules (``sgd_scalar``, ``adam_scalar``) take and return
numbers only: a helper that takes an array costs reference counting per call.
"""

import numpy as np

from fastbp.kernels._jit import jit_serial
from fastbp.kernels.codes import (
    H_BETA1,
    H_BETA2,
    H_EPS,
    H_EPS_MODE,
    H_LR,
    H_MOMENTUM,
    H_NESTEROV,
    H_OPT,
    SGD,
)
from fastbp.kernels.layout import block


@jit_serial
def sgd_scalar(w, g, b, lr, momentum, g_keep, b_scale, wd):
    """(new w, new momentum buffer) for parameter ``w``, gradient ``g``, buffer ``b``.

    g += wd w; b = momentum b + g (b starts at 0, so the first step gives b = g as
    torch's clone); step along g + momentum b (Nesterov: g_keep 1, b_scale
    momentum) or b (g_keep 0, b_scale 1), written without a branch.
    """
    g = g + wd * w
    b = momentum * b + g
    return w - lr * (g_keep * g + b_scale * b), b


@jit_serial
def adam_scalar(w, g, m, v, step_size, one_m_b1, beta2, one_m_b2, inv_bc2_sqrt, eps, wd):
    """(new w, new m, new v) under Adam.

    g += wd w; m = m + (1 - beta1)(g - m) (torch's lerp);
    v = beta2 v + (1 - beta2) g^2; w - step_size m / (sqrt(v) / bc2_sqrt + eps),
    the division by bc2_sqrt made a product with its inverse (kernels are IEEE, so
    the compiler does not do it: one division an element instead of two, Adam's
    update pass 1.5x faster; within an ulp of torch's quotient),
    constants from ``adam_constants`` rounded to the parameters' dtype.
    """
    g = g + wd * w
    m = m + one_m_b1 * (g - m)
    v = beta2 * v + one_m_b2 * g * g
    return w - step_size * (m / (np.sqrt(v) * inv_bc2_sqrt + eps)), m, v


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
def adam_eps(eps, bc2_sqrt, eps_mode):
    """The eps of ``adam_scalar``'s torch placement, sqrt(v) / bc2_sqrt + eps, that
    gives scikit-learn's placement when ``eps_mode`` is 1: its step
    lr bc2_sqrt / (1 - beta1^t) m / (sqrt(v) + eps) equals ours with eps / bc2_sqrt."""
    return eps / bc2_sqrt if eps_mode != 0 else eps


@jit_serial
def momentum_factors(momentum, nesterov):
    """(g_keep, b_scale) of ``sgd_scalar``: Nesterov (1, momentum), else (0, 1)."""
    return (1.0, momentum) if nesterov else (0.0, 1.0)


@jit_serial
def sgd_block(params, grads, count, buf, lr, momentum, nesterov, wd, k0, k1):
    dt = params.dtype.type
    lr_, mom_, wd_, inv_n = dt(lr), dt(momentum), dt(wd), dt(1.0 / count)
    g_keep, b_scale = momentum_factors(momentum, nesterov)
    g_keep_, b_scale_ = dt(g_keep), dt(b_scale)
    p, gr, b = params[k0:k1], grads[k0:k1], buf[k0:k1]
    if momentum == 0:
        for k in range(p.shape[0]):
            p[k] = p[k] - lr_ * (gr[k] * inv_n + wd_ * p[k])
    else:
        for k in range(p.shape[0]):
            p[k], b[k] = sgd_scalar(p[k], gr[k] * inv_n, b[k], lr_, mom_, g_keep_, b_scale_,
                                  wd_)


@jit_serial
def adam_block(params, grads, count, m, v, step, lr, beta1, beta2, eps, wd, eps_mode, k0,
               k1):
    dt = params.dtype.type
    step_size, one_m_b1, one_m_b2, bc2_sqrt = adam_constants(lr, beta1, beta2, step)
    c1, c2, c3, c4 = dt(step_size), dt(one_m_b1), dt(one_m_b2), dt(1.0 / bc2_sqrt)
    b2, eps_, wd_ = dt(beta2), dt(adam_eps(eps, bc2_sqrt, eps_mode)), dt(wd)
    inv_n = dt(1.0 / count)  # a product, not a division, per element
    p, gr, mm, vv = params[k0:k1], grads[k0:k1], m[k0:k1], v[k0:k1]
    for k in range(p.shape[0]):
        p[k], mm[k], vv[k] = adam_scalar(p[k], gr[k] * inv_n, mm[k], vv[k], c1, c2, b2, c3, c4,
                                         eps_, wd_)


@jit_serial
def sgd_update(params, grads, count, buf, lr, momentum, nesterov, wd):
    """params <- SGD step with gradient grads / count; momentum buffer ``buf``.
    Float hyper-parameters come as float64, rounded once to the params' dtype."""
    sgd_block(params, grads, count, buf, lr, momentum, nesterov, wd, 0, params.shape[0])


@jit_serial
def adam_update(params, grads, count, m, v, step, lr, beta1, beta2, eps, wd, eps_mode=0):
    """params <- Adam step ``step`` (1-based) with gradient grads / count."""
    adam_block(params, grads, count, m, v, step, lr, beta1, beta2, eps, wd, eps_mode, 0,
               params.shape[0])


@jit_serial
def plain_sgd(hyper):
    """Whether ``hyper`` asks for SGD without momentum: the rule without state,
    which the mini-batch step fuses into the gradient product (tiles.sgd_step_tn)."""
    return int(hyper[H_OPT]) == SGD and hyper[H_MOMENTUM] == 0.0


@jit_serial
def update_range(params, grads, count, buf1, buf2, hyper, step, decay, k0, k1):
    """The optimizer step of ``hyper`` on params[k0:k1] with gradient grads / count,
    weight decay ``decay`` (the caller's: weight_decay, plus the L2 penalty for
    weights), Adam step ``step``; ``buf1`` is the momentum buffer or Adam's first
    moment, ``buf2`` Adam's second."""
    if int(hyper[H_OPT]) == SGD:
        sgd_block(params, grads, count, buf1, hyper[H_LR], hyper[H_MOMENTUM],
                  hyper[H_NESTEROV] != 0.0, decay, k0, k1)
    else:
        adam_block(params, grads, count, buf1, buf2, step, hyper[H_LR], hyper[H_BETA1],
                   hyper[H_BETA2], hyper[H_EPS], decay, hyper[H_EPS_MODE], k0, k1)


@jit_serial
def online_constants(hyper, step, params):
    """The constants of one online step of ``hyper``'s rule (Adam step ``step``,
    1-based), rounded to the dtype of ``params``, for ``online_layer``:
    SGD (lr, momentum, g_keep, b_scale, 0, 0); Adam (step_size, 1 - beta1, beta2,
    1 - beta2, 1 / bc2_sqrt, eps)."""
    dt = params.dtype.type
    if int(hyper[H_OPT]) == SGD:
        keep, scale = momentum_factors(hyper[H_MOMENTUM], hyper[H_NESTEROV] != 0.0)
        return (dt(hyper[H_LR]), dt(hyper[H_MOMENTUM]), dt(keep), dt(scale), dt(0.0),
                dt(0.0))
    # two powers per step: not worth paying for SGD
    c1, c2, c3, c4 = adam_constants(hyper[H_LR], hyper[H_BETA1], hyper[H_BETA2], step)
    return (dt(c1), dt(c2), dt(hyper[H_BETA2]), dt(c3), dt(1.0 / c4),
            dt(adam_eps(hyper[H_EPS], c4, hyper[H_EPS_MODE])))


@jit_serial
def online_layer(params, buf1, buf2, hyper, c, woff, boff, n_out, n_in, delta_l, a_prev,
                 delta_prev, back, wd_w, wd):
    """Layer l of the online step (kernels/backward.py): for each weight W^l_ij,
    read once, add W^l_ij delta^l_i to ``delta_prev`` (when ``back``) and replace
    it by its update with gradient delta^l_i a^(l-1)_j under ``hyper``'s rule with
    constants ``c`` (``online_constants``) and decay ``wd_w``; the biases (when
    ``boff`` >= 0) with gradient delta^l and decay ``wd``. Same rules as
    ``sgd_update``/``adam_update`` with count 1.

    Lives here, not in backward.py, so that a new optimizer touches this module
    only. A call per layer, not inlined by numba: measured as fast as the loops
    written inside online_step (paired batch-1 runs on 64-32-10 and
    784-256-128-10, SGD, momentum, Adam, within 2%); the first compile of the
    batch-1 path takes ~0.7 s longer (~6 s).
    """
    W = block(params, woff, n_out, n_in)
    if int(hyper[H_OPT]) != SGD:
        M = block(buf1, woff, n_out, n_in)
        V = block(buf2, woff, n_out, n_in)
        for i in range(n_out):
            d = delta_l[i]
            for j in range(n_in):
                w_ij = W[i, j]
                if back:
                    delta_prev[j] += w_ij * d
                W[i, j], M[i, j], V[i, j] = adam_scalar(
                    w_ij, d * a_prev[j], M[i, j], V[i, j], c[0], c[1], c[2], c[3], c[4], c[5],
                    wd_w)
        if boff >= 0:
            for k in range(boff, boff + n_out):
                params[k], buf1[k], buf2[k] = adam_scalar(
                    params[k], delta_l[k - boff], buf1[k], buf2[k], c[0], c[1], c[2], c[3],
                    c[4], c[5], wd)
    elif c[1] != 0:
        M = block(buf1, woff, n_out, n_in)
        for i in range(n_out):
            d = delta_l[i]
            for j in range(n_in):
                w_ij = W[i, j]
                if back:
                    delta_prev[j] += w_ij * d
                W[i, j], M[i, j] = sgd_scalar(w_ij, d * a_prev[j], M[i, j], c[0], c[1], c[2],
                                              c[3], wd_w)
        if boff >= 0:
            for k in range(boff, boff + n_out):
                params[k], buf1[k] = sgd_scalar(params[k], delta_l[k - boff], buf1[k], c[0],
                                                c[1], c[2], c[3], wd)
    else:
        lr = c[0]
        for i in range(n_out):
            d = delta_l[i]
            if back:
                for j in range(n_in):
                    w_ij = W[i, j]
                    delta_prev[j] += w_ij * d
                    W[i, j] = w_ij - lr * (d * a_prev[j] + wd_w * w_ij)
            else:
                for j in range(n_in):
                    w_ij = W[i, j]
                    W[i, j] = w_ij - lr * (d * a_prev[j] + wd_w * w_ij)
        if boff >= 0:
            for k in range(boff, boff + n_out):
                params[k] -= lr * (delta_l[k - boff] + wd * params[k])
