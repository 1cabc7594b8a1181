"""Fused optimizer updates: one pass over the flat parameter vector.

The rules are those of ``torch.optim.SGD`` (dampening 0), ``torch.optim.Adam``
(L2 weight decay added to the gradient), ``torch.optim.AdamW`` (decoupled weight
decay: w times 1 - lr wd before Adam's step) and ``torch.optim.RMSprop`` (its
momentum and centered variants). ``grads`` holds gradient SUMS over a batch;
dividing by ``count`` (the batch size) happens in the same pass. Each rule is
written once for an element (``sgd_scalar``, ``adam_scalar``, ``rmsprop_scalar``)
and once for a block of elements (``sgd_block``, ``adam_block``,
``rmsprop_block``): ``sgd_update``/``adam_update`` run a block over the whole
vector, ``update_range`` over the rows each part of a mini-batch owns (see
kernels/batch.py). The online step's fused layer loop (``online_layer``, called
by kernels/backward.py) is here too: ``update_range`` and ``online_layer`` are
the places that pick the rule from ``hyper[H_OPT]``, and a new optimizer
touches this module, fastbp/optim.py and the reference only.

Buffers: ``buf1`` is SGD's or RMSprop's momentum buffer, or Adam's first moment;
``buf2`` Adam's second moment or RMSprop's square average, followed (centered
RMSprop only: ``buf2`` then holds 2 n elements) by RMSprop's gradient average.
One extra stretch of ``buf2`` rather than a third buffer, so that no kernel
signature changes for one variant of one optimizer.

The L2 penalty (scikit-learn's alpha, ``hyper[H_L2]``) is part of the loss, so
its gradient joins the data gradient under every rule, AdamW's included; torch's
``weight_decay`` is coupled (added to the gradient) for SGD, Adam and RMSprop and
decoupled for AdamW. Callers pass the L2 part (``l2_decay``); the rules add the
weight decay themselves.

The per-element scalar rules take and return numbers only: a helper that takes
an array costs reference counting per call.
"""

import numpy as np

from fastbp.kernels._jit import jit_serial
from fastbp.kernels.codes import (
    ADAMW,
    H_ALPHA,
    H_BETA1,
    H_BETA2,
    H_CENTERED,
    H_CLIP_NORM,
    H_CLIP_VALUE,
    H_EPS,
    H_EPS_MODE,
    H_L2,
    H_LR,
    H_MOMENTUM,
    H_NESTEROV,
    H_OPT,
    H_WD,
    RMSPROP,
    SGD,
)
from fastbp.kernels.layout import BOFF, SIZE, WOFF, block
from fastbp.kernels.tiles import matvec


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
def adam_scalar(w, g, m, v, step_size, one_m_b1, beta2, one_m_b2, inv_bc2_sqrt, eps, wd, keep):
    """(new w, new m, new v) under Adam (``keep`` 1) or AdamW (``keep`` 1 - lr wd,
    ``wd`` the L2 part only).

    g += wd w; m = m + (1 - beta1)(g - m) (torch's lerp);
    v = beta2 v + (1 - beta2) g^2; keep w - step_size m / (sqrt(v) / bc2_sqrt + eps)
    (AdamW's w (1 - lr wd) first; times 1 is exact, so Adam's bits are unchanged),
    the division by bc2_sqrt made a product with its inverse (kernels are IEEE, so
    the compiler does not do it: one division an element instead of two, Adam's
    update pass 1.5x faster; within an ulp of torch's quotient),
    constants from ``adam_constants`` rounded to the parameters' dtype.
    """
    g = g + wd * w
    m = m + one_m_b1 * (g - m)
    v = beta2 * v + one_m_b2 * g * g
    return keep * w - step_size * (m / (np.sqrt(v) * inv_bc2_sqrt + eps)), m, v


@jit_serial
def rmsprop_scalar(w, g, sq, ga, b, lr, alpha, one_m_alpha, eps, momentum, centered, wd):
    """(new w, new square average, new gradient average, new momentum buffer) under
    torch's RMSprop: g += wd w; sq = alpha sq + (1 - alpha) g^2; centered:
    ga = ga + (1 - alpha)(g - ga) (torch's lerp) and the average sqrt(sq - ga^2),
    else sqrt(sq); q = g / (average + eps); with momentum b = momentum b + q and
    w - lr b, else w - lr q. ``ga`` and ``b`` come back unchanged when unused."""
    g = g + wd * w
    sq = alpha * sq + one_m_alpha * g * g
    s = sq
    if centered:
        ga = ga + one_m_alpha * (g - ga)
        s = sq - ga * ga
    q = g / (np.sqrt(s) + eps)
    if momentum != 0:
        b = momentum * b + q
        return w - lr * b, sq, ga, b
    return w - lr * q, sq, ga, b


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
               k1, keep):
    dt = params.dtype.type
    step_size, one_m_b1, one_m_b2, bc2_sqrt = adam_constants(lr, beta1, beta2, step)
    c1, c2, c3, c4 = dt(step_size), dt(one_m_b1), dt(one_m_b2), dt(1.0 / bc2_sqrt)
    b2, eps_, wd_ = dt(beta2), dt(adam_eps(eps, bc2_sqrt, eps_mode)), dt(wd)
    inv_n, keep_ = dt(1.0 / count), dt(keep)  # a product, not a division, per element
    p, gr, mm, vv = params[k0:k1], grads[k0:k1], m[k0:k1], v[k0:k1]
    for k in range(p.shape[0]):
        p[k], mm[k], vv[k] = adam_scalar(p[k], gr[k] * inv_n, mm[k], vv[k], c1, c2, b2, c3, c4,
                                         eps_, wd_, keep_)


@jit_serial
def rmsprop_block(params, grads, count, buf1, buf2, lr, alpha, eps, momentum, centered, wd,
                  k0, k1):
    """RMSprop on params[k0:k1] (``rmsprop_scalar``); buf1 the momentum buffer, buf2
    the square average and (centered) the gradient average at buf2[n + k]."""
    dt = params.dtype.type
    lr_, a_, oma_, eps_ = dt(lr), dt(alpha), dt(1.0 - alpha), dt(eps)
    mom_, wd_, inv_n, zero = dt(momentum), dt(wd), dt(1.0 / count), dt(0.0)
    n = params.shape[0]
    p, gr, b, sq = params[k0:k1], grads[k0:k1], buf1[k0:k1], buf2[k0:k1]
    # One loop per variant, the flags constant inside it: with the choice made per
    # element, the float32 loop did not vectorise (non-centered RMSprop ran 1.2x
    # Adam's time on 1M elements, measured; now <= Adam's).
    if centered:
        ga = buf2[n + k0 : n + k1]
        if momentum != 0:
            for k in range(p.shape[0]):
                p[k], sq[k], ga[k], b[k] = rmsprop_scalar(
                    p[k], gr[k] * inv_n, sq[k], ga[k], b[k], lr_, a_, oma_, eps_, mom_,
                    centered, wd_)
        else:
            for k in range(p.shape[0]):
                p[k], sq[k], ga[k], _ = rmsprop_scalar(
                    p[k], gr[k] * inv_n, sq[k], ga[k], zero, lr_, a_, oma_, eps_, zero,
                    centered, wd_)
    elif momentum != 0:
        for k in range(p.shape[0]):
            p[k], sq[k], _, b[k] = rmsprop_scalar(
                p[k], gr[k] * inv_n, sq[k], zero, b[k], lr_, a_, oma_, eps_, mom_, centered,
                wd_)
    else:
        for k in range(p.shape[0]):
            p[k], sq[k], _, _ = rmsprop_scalar(
                p[k], gr[k] * inv_n, sq[k], zero, zero, lr_, a_, oma_, eps_, zero, centered,
                wd_)


@jit_serial
def sgd_update(params, grads, count, buf, lr, momentum, nesterov, wd):
    """params <- SGD step with gradient grads / count; momentum buffer ``buf``.
    Float hyper-parameters come as float64, rounded once to the params' dtype."""
    sgd_block(params, grads, count, buf, lr, momentum, nesterov, wd, 0, params.shape[0])


@jit_serial
def adam_update(params, grads, count, m, v, step, lr, beta1, beta2, eps, wd, eps_mode=0):
    """params <- Adam step ``step`` (1-based) with gradient grads / count."""
    adam_block(params, grads, count, m, v, step, lr, beta1, beta2, eps, wd, eps_mode, 0,
               params.shape[0], 1.0)


@jit_serial
def plain_sgd(hyper):
    """Whether ``hyper`` asks for SGD without momentum: the rule without state,
    which the mini-batch step fuses into the gradient product (tiles.sgd_step_tn)."""
    return int(hyper[H_OPT]) == SGD and hyper[H_MOMENTUM] == 0.0


@jit_serial
def update_range(params, grads, count, buf1, buf2, hyper, step, l2_decay, k0, k1):
    """The optimizer step of ``hyper`` on params[k0:k1] with gradient grads / count,
    the L2 penalty's decay ``l2_decay`` (l2 / count for weights, 0 for biases) and
    hyper's weight decay, Adam step ``step`` (see the module docstring for the
    buffers)."""
    opt, lr, wd = int(hyper[H_OPT]), hyper[H_LR], hyper[H_WD]
    if opt == SGD:
        sgd_block(params, grads, count, buf1, lr, hyper[H_MOMENTUM],
                  hyper[H_NESTEROV] != 0.0, wd + l2_decay, k0, k1)
    elif opt == RMSPROP:
        rmsprop_block(params, grads, count, buf1, buf2, lr, hyper[H_ALPHA], hyper[H_EPS],
                      hyper[H_MOMENTUM], hyper[H_CENTERED] != 0.0, wd + l2_decay, k0, k1)
    elif opt == ADAMW:
        adam_block(params, grads, count, buf1, buf2, step, lr, hyper[H_BETA1], hyper[H_BETA2],
                   hyper[H_EPS], l2_decay, hyper[H_EPS_MODE], k0, k1, 1.0 - lr * wd)
    else:
        adam_block(params, grads, count, buf1, buf2, step, lr, hyper[H_BETA1], hyper[H_BETA2],
                   hyper[H_EPS], wd + l2_decay, hyper[H_EPS_MODE], k0, k1, 1.0)


@jit_serial
def clipping(hyper):
    """Whether ``hyper`` clips the gradient (by norm or by value)."""
    return hyper[H_CLIP_NORM] > 0.0 or hyper[H_CLIP_VALUE] > 0.0


# The CLIP phase's tasks: CLIP_CHUNKS fixed chunks of each W^l (cut the same way at
# any thread count, so the norm's bits never depend on it).
CLIP_CHUNKS = 8


@jit_serial
def clip_slots(layout):
    """How many partial sums of squares the CLIP phase writes (one per task)."""
    return (layout.shape[1] - 1) * CLIP_CHUNKS


@jit_serial
def _squares(grads, k0, k1):
    """sum_k grads[k]^2 over [k0, k1), as a float: the forward tile's dot product of
    the range with itself (tiles.matvec: vector partial sums in the array's dtype,
    a fixed lane tree, so fixed bits for a fixed range). A scalar float64 loop
    took 0.18 ms for 784-256-128-10's 235,146 float32 sums (IEEE order keeps it
    from vectorising; numpy's dot: 0.03 ms), 15% of a batch-32 epoch."""
    out = np.zeros(1, grads.dtype)
    matvec(grads, k0, 1, k1 - k0, grads, k0, out, 0)
    return float(out[0])


@jit_serial
def clip_squares(params, grads, hyper, layout, task):
    """Task ``task`` of the CLIP phase: the sum of squares of the gradient sums of
    chunk task // L of W^l (l = task % L + 1), plus layer l's biases in chunk 0.
    The L2 penalty is part of the loss: its l2 W is first added into the chunk's
    sums (so the step adds no L2 term: ``clip_update``)."""
    n_layers = layout.shape[1] - 1
    l, j = task % n_layers + 1, task // n_layers
    n_w = layout[SIZE, l] * layout[SIZE, l - 1]
    k0 = layout[WOFF, l] + j * n_w // CLIP_CHUNKS
    k1 = layout[WOFF, l] + (j + 1) * n_w // CLIP_CHUNKS
    if hyper[H_L2] != 0.0:
        l2 = grads.dtype.type(hyper[H_L2])
        for k in range(k0, k1):
            grads[k] += l2 * params[k]
    total = _squares(grads, k0, k1)
    if j == 0 and layout[BOFF, l] >= 0:
        total += _squares(grads, layout[BOFF, l], layout[BOFF, l] + layout[SIZE, l])
    return total


@jit_serial
def clip_coef(partials, count, hyper):
    """torch's clip_grad_norm_ factor min(1, clip_norm / (norm + 1e-6)) of the mean
    gradient whose squared sums are ``partials`` (added in order); 1 when clipping
    by value."""
    if hyper[H_CLIP_NORM] <= 0.0:
        return 1.0
    total = 0.0
    for c in range(partials.shape[0]):
        total += partials[c]
    return min(1.0, hyper[H_CLIP_NORM] / (np.sqrt(total) / count + 1e-6))


@jit_serial
def _clamp(params, grads, count, clip_value, k0, k1, l2):
    """grads[k] + l2 params[k] clamped to +-clip_value count, in place."""
    dt = grads.dtype.type
    bound, l2_ = dt(clip_value * count), dt(l2)
    g, p = grads[k0:k1], params[k0:k1]
    for k in range(g.shape[0]):
        g[k] = min(max(g[k] + l2_ * p[k], -bound), bound)


@jit_serial
def clip_update(params, grads, count, buf1, buf2, hyper, step, coef, w0, w1, b0, b1):
    """The optimizer step of weights [w0, w1) and biases [b0, b1) (none: b0 == b1)
    from clipped gradient sums, after the CLIP phase (``coef`` from ``clip_coef``).

    By norm, the sums hold l2 W already (``clip_squares``), and the scale is
    folded into the step instead of written over the gradient: count / coef as
    the count (one pass fewer; with coef 1 and l2 0, the bits of the step
    without clipping). By value, the range's sums (l2 W folded in) are clamped
    in place first.
    """
    if hyper[H_CLIP_VALUE] > 0.0:
        _clamp(params, grads, count, hyper[H_CLIP_VALUE], w0, w1, hyper[H_L2])
        _clamp(params, grads, count, hyper[H_CLIP_VALUE], b0, b1, 0.0)
        update_range(params, grads, count, buf1, buf2, hyper, step, 0.0, w0, w1)
        update_range(params, grads, count, buf1, buf2, hyper, step, 0.0, b0, b1)
        return
    n = count / coef if coef < 1.0 else count
    update_range(params, grads, n, buf1, buf2, hyper, step, 0.0, w0, w1)
    update_range(params, grads, n, buf1, buf2, hyper, step, 0.0, b0, b1)


@jit_serial
def online_constants(hyper, step, params):
    """The constants of one online step of ``hyper``'s rule (Adam step ``step``,
    1-based), rounded to the dtype of ``params``, for ``online_layer``:
    SGD (lr, momentum, g_keep, b_scale, 0, 0, 0); Adam and AdamW (step_size,
    1 - beta1, beta2, 1 - beta2, 1 / bc2_sqrt, eps, keep: 1, or AdamW's
    1 - lr wd); RMSprop (lr, alpha, 1 - alpha, eps, momentum, centered, 0)."""
    dt = params.dtype.type
    opt, lr = int(hyper[H_OPT]), hyper[H_LR]
    if opt == SGD:
        keep, scale = momentum_factors(hyper[H_MOMENTUM], hyper[H_NESTEROV] != 0.0)
        return (dt(lr), dt(hyper[H_MOMENTUM]), dt(keep), dt(scale), dt(0.0), dt(0.0), dt(0.0))
    if opt == RMSPROP:
        return (dt(lr), dt(hyper[H_ALPHA]), dt(1.0 - hyper[H_ALPHA]), dt(hyper[H_EPS]),
                dt(hyper[H_MOMENTUM]), dt(hyper[H_CENTERED]), dt(0.0))
    # two powers per step: not worth paying for SGD
    c1, c2, c3, c4 = adam_constants(lr, hyper[H_BETA1], hyper[H_BETA2], step)
    keep = 1.0 - lr * hyper[H_WD] if opt == ADAMW else 1.0
    return (dt(c1), dt(c2), dt(hyper[H_BETA2]), dt(c3), dt(1.0 / c4),
            dt(adam_eps(hyper[H_EPS], c4, hyper[H_EPS_MODE])), dt(keep))


@jit_serial
def online_decays(hyper, l2_weights, params):
    """(weights' decay, biases' decay) added to the gradient by the online step:
    weight_decay plus the L2 part for the weights, weight_decay for the biases;
    AdamW's decay is not in the gradient (``online_constants``' keep), so the L2
    part and 0."""
    dt = params.dtype.type
    if int(hyper[H_OPT]) == ADAMW:
        return dt(l2_weights), dt(0.0)
    return dt(hyper[H_WD] + l2_weights), dt(hyper[H_WD])


@jit_serial
def online_layer(params, buf1, buf2, hyper, c, woff, boff, n_out, n_in, delta_l, a_prev,
                 delta_prev, back, wd_w, wd):
    """Layer l of the online step (kernels/backward.py): for each weight W^l_ij,
    read once, add W^l_ij delta^l_i to ``delta_prev`` (when ``back``) and replace
    it by its update with gradient delta^l_i a^(l-1)_j under ``hyper``'s rule with
    constants ``c`` (``online_constants``) and decay ``wd_w``; the biases (when
    ``boff`` >= 0) with gradient delta^l and decay ``wd`` (``online_decays``).
    Same rules as ``update_range`` with count 1.

    Lives here, not in backward.py, so that a new optimizer touches this module
    only. A call per layer, not inlined by numba: measured as fast as the loops
    written inside online_step (paired batch-1 runs on 64-32-10 and
    784-256-128-10, SGD, momentum, Adam, within 2%); the first compile of the
    batch-1 path takes ~0.7 s longer (~6 s).
    """
    W = block(params, woff, n_out, n_in)
    opt = int(hyper[H_OPT])
    if opt == RMSPROP:
        n = params.shape[0]
        centered, zero = c[5] != 0, params.dtype.type(0.0)
        B = block(buf1, woff, n_out, n_in)
        SQ = block(buf2, woff, n_out, n_in)
        GA = block(buf2, n + woff if centered else woff, n_out, n_in)  # read when centered
        for i in range(n_out):
            d = delta_l[i]
            for j in range(n_in):
                w_ij = W[i, j]
                if back:
                    delta_prev[j] += w_ij * d
                ga = GA[i, j] if centered else zero
                W[i, j], SQ[i, j], ga, b = rmsprop_scalar(
                    w_ij, d * a_prev[j], SQ[i, j], ga, B[i, j], c[0], c[1], c[2], c[3], c[4],
                    centered, wd_w)
                if centered:
                    GA[i, j] = ga
                B[i, j] = b
        if boff >= 0:
            for k in range(boff, boff + n_out):
                ga = buf2[n + k] if centered else zero
                params[k], buf2[k], ga, b = rmsprop_scalar(
                    params[k], delta_l[k - boff], buf2[k], ga, buf1[k], c[0], c[1], c[2], c[3],
                    c[4], centered, wd)
                if centered:
                    buf2[n + k] = ga
                buf1[k] = b
    elif opt != SGD:
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
                    wd_w, c[6])
        if boff >= 0:
            for k in range(boff, boff + n_out):
                params[k], buf1[k], buf2[k] = adam_scalar(
                    params[k], delta_l[k - boff], buf1[k], buf2[k], c[0], c[1], c[2], c[3],
                    c[4], c[5], wd, c[6])
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
