"""Activations, their derivatives, per-sample loss and output delta.

All take the 1-D slices of one layer of one sample (``z``, ``a``, ``delta`` of
length n_l, ``t`` the target row). Loops index these views from 0: LLVM then
knows no index is negative, drops numba's wrap-around branch and vectorises
(measured: about 10x on a 256x784 matrix-vector product versus indexing the
whole row at an offset). Constants are made in the arrays' own dtype so float32
math stays float32.
"""

import numpy as np

from fastbp.kernels._jit import jit_serial
from fastbp.kernels.codes import (
    CROSS_ENTROPY,
    EXP,
    HUBER,
    LEAKY_RELU,
    LEAKY_SLOPE,
    POISSON,
    RELU,
    SIGMOID,
    SOFTMAX,
    TANH,
)


@jit_serial
def exp_into(src, dst, sign):
    """dst[k] = exp(sign * src[k]); src may be dst.

    float32 uses Cephes' expf (range reduction by ln 2, a degree-6 polynomial,
    the power of two added to the exponent bits), which LLVM vectorises: 14 ns
    for 32 values against 92 ns through libm's scalar expf (measured), at a max
    relative error of 3e-7 (2.5 ulp; tested). Inputs are clamped to expf's
    finite range; NaN stays NaN. float64 keeps np.exp.
    """
    if dst.itemsize != 4:
        for k in range(src.shape[0]):
            dst[k] = np.exp(sign * src[k])
        return
    f32 = np.float32
    bits = dst.view(np.int32)
    for k in range(src.shape[0]):
        x = np.minimum(np.maximum(sign * src[k], f32(-87.33654)), f32(88.72283))
        n = np.floor(x * f32(1.44269504088896341) + f32(0.5))
        x = x - n * f32(0.693359375) - n * f32(-2.12194440e-4)
        y = ((((f32(1.9875691500e-4) * x + f32(1.3981999507e-3)) * x
               + f32(8.3334519073e-3)) * x + f32(4.1665795894e-2)) * x
             + f32(1.6666665459e-1)) * x + f32(5.0000001201e-1)
        dst[k] = y * (x * x) + x + f32(1.0)
        bits[k] += np.int32(n) << 23  # times 2^n


@jit_serial
def activate(z, a, code):
    """a = s(z) for activation ``code``."""
    one = a.dtype.type(1.0)
    if code == SOFTMAX:
        # Subtracting the max keeps exp() finite; softmax is shift-invariant.
        zmax = z[0]
        for k in range(1, z.shape[0]):
            zmax = max(zmax, z[k])
        for k in range(z.shape[0]):
            a[k] = z[k] - zmax
        exp_into(a, a, a.dtype.type(1.0))
        total = a.dtype.type(0.0)
        for k in range(z.shape[0]):
            total += a[k]
        for k in range(z.shape[0]):
            a[k] = a[k] / total
    elif code == SIGMOID:
        exp_into(z, a, -one)
        for k in range(z.shape[0]):
            a[k] = one / (one + a[k])
    elif code == TANH:
        for k in range(z.shape[0]):
            a[k] = np.tanh(z[k])
    elif code == RELU:
        for k in range(z.shape[0]):
            a[k] = max(z[k], a.dtype.type(0.0))
    elif code == LEAKY_RELU:
        slope = a.dtype.type(LEAKY_SLOPE)
        for k in range(z.shape[0]):
            a[k] = z[k] if z[k] > 0 else slope * z[k]
    elif code == EXP:  # the output of a Poisson regression (the log link)
        exp_into(z, a, one)
    else:  # LINEAR
        for k in range(z.shape[0]):
            a[k] = z[k]


@jit_serial
def scale_by_derivative(z, a, delta, code):
    """delta *= s'(z), element-wise (not for softmax).

    The derivative is taken from the stored activation where that is cheaper:
    sigmoid' = a (1 - a), tanh' = 1 - a^2.
    """
    one = delta.dtype.type(1.0)
    if code == SIGMOID:
        for k in range(z.shape[0]):
            delta[k] *= a[k] * (one - a[k])
    elif code == TANH:
        for k in range(z.shape[0]):
            delta[k] *= one - a[k] * a[k]
    elif code == RELU:
        for k in range(z.shape[0]):
            if not z[k] > 0:
                delta[k] = delta.dtype.type(0.0)
    elif code == LEAKY_RELU:
        slope = delta.dtype.type(LEAKY_SLOPE)
        for k in range(z.shape[0]):
            if not z[k] > 0:
                delta[k] *= slope
    # LINEAR: s' = 1


@jit_serial
def losses_and_deltas(zs, acts, deltas, start, n, s0, s1, T, order, first, losses, want_delta,
                      output, loss, huber):
    """Per-sample losses (into losses[s]) and, with ``want_delta``, delta^L of the
    samples s0 <= s < s1 whose outputs are zs/acts[start + s n : start + (s + 1) n]
    (delta^L likewise in ``deltas``); sample s's target is the row order[first + s]
    of T.

    One call for a block of samples, the choice of loss hoisted out of the loop
    over them, offsets instead of views: per-sample calls and views cost more than
    the loss of a 10-wide output (measured on 64-32-10 at batch 128: the batch's
    losses and deltas took 20 us through a call per sample, 13 us so).

    mse: 1/2 ||a - t||^2, delta^L = (a - t) o s'(z) (softmax: the full Jacobian,
    delta^L = a o ((a - t) - <a - t, a>)). cross_entropy with softmax:
    -sum t_k log a_k with log a_k = z_k - max(z) - log sum exp(z - max(z)), so
    that a saturated output gives a large finite loss rather than log(0); with
    sigmoid: -sum [t log a + (1 - t) log(1 - a)] with log a = -softplus(-z),
    log(1 - a) = -softplus(z). Both cross-entropies: delta^L = a - t. poisson (exp
    output, the half Poisson deviance): sum [t log(t / a) - t + a] with
    log a = z and 0 log 0 = 0, delta^L = a - t. huber (linear output, torch's
    HuberLoss with delta ``huber``, summed over the outputs): 1/2 x^2 where
    |x| < huber, else huber (|x| - huber / 2), for x = a - t; delta^L = x
    clamped to +-huber.
    """
    one = deltas.dtype.type(1.0)
    if loss == CROSS_ENTROPY and output == SOFTMAX:
        for s in range(s0, s1):
            o, i = start + s * n, order[first + s]
            zmax = zs[o]
            for k in range(1, n):
                zmax = max(zmax, zs[o + k])
            sum_exp = 0.0
            for k in range(n):
                sum_exp += np.exp(zs[o + k] - zmax)
            log_norm = zmax + np.log(sum_exp)
            total = 0.0
            for k in range(n):
                total -= T[i, k] * (zs[o + k] - log_norm)
            losses[s] = total
            if want_delta:
                for k in range(n):
                    deltas[o + k] = acts[o + k] - T[i, k]
    elif loss == CROSS_ENTROPY:  # sigmoid output
        for s in range(s0, s1):
            o, i = start + s * n, order[first + s]
            total = 0.0
            for k in range(n):
                zk = zs[o + k]
                sp_pos = max(zk, 0.0) + np.log1p(np.exp(-abs(zk)))  # softplus(z)
                sp_neg = sp_pos - zk  # softplus(-z) = softplus(z) - z
                total += T[i, k] * sp_neg + (1.0 - T[i, k]) * sp_pos
            losses[s] = total
            if want_delta:
                for k in range(n):
                    deltas[o + k] = acts[o + k] - T[i, k]
    elif loss == POISSON:  # exp output
        for s in range(s0, s1):
            o, i = start + s * n, order[first + s]
            total = 0.0
            for k in range(n):
                t = T[i, k]
                total += acts[o + k] - t - t * zs[o + k]
                if t > 0:
                    total += t * np.log(t)
            losses[s] = total
            if want_delta:
                for k in range(n):
                    deltas[o + k] = acts[o + k] - T[i, k]
    elif loss == HUBER:  # linear output
        bound = deltas.dtype.type(huber)
        for s in range(s0, s1):
            o, i = start + s * n, order[first + s]
            total = 0.0
            for k in range(n):
                diff = acts[o + k] - T[i, k]
                if abs(diff) < huber:
                    total += 0.5 * diff * diff
                else:
                    total += huber * (abs(diff) - 0.5 * huber)
            losses[s] = total
            if want_delta:
                for k in range(n):
                    deltas[o + k] = min(max(acts[o + k] - T[i, k], -bound), bound)
    else:  # mse
        for s in range(s0, s1):
            o, i = start + s * n, order[first + s]
            total = 0.0
            for k in range(n):
                diff = acts[o + k] - T[i, k]
                total += 0.5 * diff * diff
            losses[s] = total
            if not want_delta:
                continue
            if output == SOFTMAX:
                inner = deltas.dtype.type(0.0)
                for k in range(n):
                    inner += (acts[o + k] - T[i, k]) * acts[o + k]
                for k in range(n):
                    deltas[o + k] = acts[o + k] * ((acts[o + k] - T[i, k]) - inner)
            elif output == SIGMOID:  # scale_by_derivative's arithmetic
                for k in range(n):
                    deltas[o + k] = (acts[o + k] - T[i, k]) * (acts[o + k] * (one - acts[o + k]))
            elif output == TANH:
                for k in range(n):
                    deltas[o + k] = (acts[o + k] - T[i, k]) * (one - acts[o + k] * acts[o + k])
            else:
                for k in range(n):
                    deltas[o + k] = acts[o + k] - T[i, k]
