"""The per-sample backward pass: the delta recursion of one sample with the
optimizer update fused into it (online training, batch size 1). Batches go
through :mod:`fastbp.kernels.batch`.

Inner loops run over 0-based views (see :mod:`fastbp.kernels.activations`).
"""

from fastbp.kernels._jit import jit_serial
from fastbp.kernels.activations import scale_by_derivative
from fastbp.kernels.codes import (
    H_BETA1,
    H_BETA2,
    H_EPS,
    H_EPS_MODE,
    H_LR,
    H_MOMENTUM,
    H_NESTEROV,
    H_OPT,
    H_WD,
    SGD,
)
from fastbp.kernels.layout import BOFF, SIZE, UNIT, WOFF, block
from fastbp.kernels.update import (
    adam_constants,
    adam_eps,
    adam_scalar,
    momentum_factors,
    sgd_scalar,
)


@jit_serial
def _layer_slices(layout, a, z, delta, l):
    """Views of layer l of one sample's rows: a^l, z^l, delta^l."""
    start = layout[UNIT, l]
    stop = start + layout[SIZE, l]
    return a[start:stop], z[start:stop], delta[start:stop]


@jit_serial
def online_step(params, layout, codes, hyper, step, a, z, delta, buf1, buf2, wd_weights):
    """Backward pass and optimizer update for one sample (batch size 1), fused;
    delta^L is in ``delta`` already (``activations.losses_and_deltas``).

    Walking down from layer L, each weight W^l_ij is read once: it feeds
    (W^l)^T delta^l for the next delta and is then replaced by its update with
    gradient delta^l_i a^(l-1)_j. ``step`` is the Adam step count of this update
    (1-based). Same rules as ``sgd_update``/``adam_update`` with count 1; with
    weight decay 0 the term wd w adds an exact zero. ``wd_weights`` is the decay
    of the weights: weight_decay plus the L2 penalty divided by the sample's
    weight (see train.train_epoch_online); biases decay by weight_decay only.

    Loops index one 2-D view per layer and per buffer actually used: a slice or
    a call per ROW costs ~10-20 ns of reference counting, a reshape ~25 ns, more
    than the arithmetic of a 32-wide row (measured on 64-32-10: 430 -> ~200 ns a
    step for the last layer alone).
    """
    n_layers = layout.shape[1] - 1
    dt = params.dtype.type
    adam = int(hyper[H_OPT]) != SGD
    lr, momentum = dt(hyper[H_LR]), dt(hyper[H_MOMENTUM])
    wd, wd_w = dt(hyper[H_WD]), dt(wd_weights)
    nesterov = hyper[H_NESTEROV] != 0.0
    keep, scale = momentum_factors(hyper[H_MOMENTUM], nesterov)
    g_keep, b_scale = dt(keep), dt(scale)
    beta2, eps = dt(hyper[H_BETA2]), dt(hyper[H_EPS])
    step_size = one_m_b1 = one_m_b2 = inv_bc2 = dt(0.0)
    if adam:  # two powers per step: not worth paying for SGD
        c1, c2, c3, c4 = adam_constants(hyper[H_LR], hyper[H_BETA1], hyper[H_BETA2], step)
        step_size, one_m_b1, one_m_b2, inv_bc2 = dt(c1), dt(c2), dt(c3), dt(1.0 / c4)
        eps = dt(adam_eps(hyper[H_EPS], c4, hyper[H_EPS_MODE]))
    for l in range(n_layers, 0, -1):
        n_in, n_out = layout[SIZE, l - 1], layout[SIZE, l]
        a_prev, z_prev, delta_prev = _layer_slices(layout, a, z, delta, l - 1)
        delta_l = _layer_slices(layout, a, z, delta, l)[2]
        back = l > 1
        if back:
            delta_prev[:] = 0
        W = block(params, layout[WOFF, l], n_out, n_in)
        b_off = layout[BOFF, l]
        if adam:
            M = block(buf1, layout[WOFF, l], n_out, n_in)
            V = block(buf2, layout[WOFF, l], n_out, n_in)
            for i in range(n_out):
                d = delta_l[i]
                for j in range(n_in):
                    w_ij = W[i, j]
                    if back:
                        delta_prev[j] += w_ij * d
                    W[i, j], M[i, j], V[i, j] = adam_scalar(
                        w_ij, d * a_prev[j], M[i, j], V[i, j], step_size, one_m_b1, beta2,
                        one_m_b2, inv_bc2, eps, wd_w)
            if b_off >= 0:
                for k in range(b_off, b_off + n_out):
                    params[k], buf1[k], buf2[k] = adam_scalar(
                        params[k], delta_l[k - b_off], buf1[k], buf2[k], step_size, one_m_b1,
                        beta2, one_m_b2, inv_bc2, eps, wd)
        elif momentum != 0:
            M = block(buf1, layout[WOFF, l], n_out, n_in)
            for i in range(n_out):
                d = delta_l[i]
                for j in range(n_in):
                    w_ij = W[i, j]
                    if back:
                        delta_prev[j] += w_ij * d
                    W[i, j], M[i, j] = sgd_scalar(w_ij, d * a_prev[j], M[i, j], lr, momentum,
                                                  g_keep, b_scale, wd_w)
            if b_off >= 0:
                for k in range(b_off, b_off + n_out):
                    params[k], buf1[k] = sgd_scalar(params[k], delta_l[k - b_off], buf1[k], lr,
                                                    momentum, g_keep, b_scale, wd)
        else:
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
            if b_off >= 0:
                for k in range(b_off, b_off + n_out):
                    params[k] -= lr * (delta_l[k - b_off] + wd * params[k])
        if back:
            scale_by_derivative(z_prev, a_prev, delta_prev, codes[0])
