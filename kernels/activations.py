"""Activations, their derivatives, per-sample loss and output delta.

All work on one per-sample row: ``z``/``a``/``t``/``delta`` are 1-D arrays and
``start``/``n`` select a layer inside them (see :mod:`fastbp.kernels.layout`).
Constants are made in the arrays' own dtype so float32 math stays float32.
"""

import numpy as np

from fastbp._codes import (
    CROSS_ENTROPY,
    LEAKY_RELU,
    LEAKY_SLOPE,
    RELU,
    SIGMOID,
    SOFTMAX,
    TANH,
)
from fastbp.kernels._jit import jit_serial


@jit_serial
def activate(z, a, start, n, code):
    """a[start:start+n] = s(z[start:start+n]) for activation ``code``."""
    one = a.dtype.type(1.0)
    if code == SOFTMAX:
        # Subtracting the max keeps exp() finite; softmax is shift-invariant.
        zmax = z[start]
        for k in range(start + 1, start + n):
            zmax = max(zmax, z[k])
        total = a.dtype.type(0.0)
        for k in range(start, start + n):
            e = np.exp(z[k] - zmax)
            a[k] = e
            total += e
        for k in range(start, start + n):
            a[k] = a[k] / total
    elif code == SIGMOID:
        for k in range(start, start + n):
            a[k] = one / (one + np.exp(-z[k]))
    elif code == TANH:
        for k in range(start, start + n):
            a[k] = np.tanh(z[k])
    elif code == RELU:
        for k in range(start, start + n):
            a[k] = max(z[k], a.dtype.type(0.0))
    elif code == LEAKY_RELU:
        slope = a.dtype.type(LEAKY_SLOPE)
        for k in range(start, start + n):
            a[k] = z[k] if z[k] > 0 else slope * z[k]
    else:  # LINEAR
        for k in range(start, start + n):
            a[k] = z[k]


@jit_serial
def scale_by_derivative(z, a, delta, start, n, code):
    """delta[k] *= s'(z[k]) for k in the layer (element-wise activations only).

    The derivative is taken from the stored activation where that is cheaper:
    sigmoid' = a (1 - a), tanh' = 1 - a^2.
    """
    one = delta.dtype.type(1.0)
    if code == SIGMOID:
        for k in range(start, start + n):
            delta[k] *= a[k] * (one - a[k])
    elif code == TANH:
        for k in range(start, start + n):
            delta[k] *= one - a[k] * a[k]
    elif code == RELU:
        for k in range(start, start + n):
            if not z[k] > 0:
                delta[k] = delta.dtype.type(0.0)
    elif code == LEAKY_RELU:
        slope = delta.dtype.type(LEAKY_SLOPE)
        for k in range(start, start + n):
            if not z[k] > 0:
                delta[k] *= slope
    # LINEAR: s' = 1


@jit_serial
def sample_loss(z, a, t, start, n, output, loss):
    """Per-sample loss of the output layer at ``start`` against target row ``t``.

    mse: 1/2 ||a - t||^2. cross_entropy with softmax: -sum t_k log a_k, with
    log a_k = z_k - max(z) - log sum exp(z - max(z)) so that a saturated output
    gives a large finite loss rather than log(0). cross_entropy with sigmoid:
    -sum [t log a + (1 - t) log(1 - a)] with log a = -softplus(-z),
    log(1 - a) = -softplus(z).
    """
    total = 0.0
    if loss == CROSS_ENTROPY and output == SOFTMAX:
        zmax = z[start]
        for k in range(start + 1, start + n):
            zmax = max(zmax, z[k])
        sum_exp = 0.0
        for k in range(start, start + n):
            sum_exp += np.exp(z[k] - zmax)
        log_norm = zmax + np.log(sum_exp)
        for k in range(n):
            total -= t[k] * (z[start + k] - log_norm)
    elif loss == CROSS_ENTROPY:  # sigmoid output
        for k in range(n):
            zk = z[start + k]
            sp_pos = max(zk, 0.0) + np.log1p(np.exp(-abs(zk)))  # softplus(z)
            sp_neg = sp_pos - zk  # softplus(-z) = softplus(z) - z
            total += t[k] * sp_neg + (1.0 - t[k]) * sp_pos
    else:
        for k in range(n):
            diff = a[start + k] - t[k]
            total += 0.5 * diff * diff
    return total


@jit_serial
def output_delta(z, a, t, delta, start, n, output, loss):
    """delta^L of one sample into ``delta[start:start+n]``.

    cross_entropy (softmax or sigmoid output): delta^L = a^L - t.
    mse with softmax: the full Jacobian, delta^L = a o ((a - t) - <a - t, a>).
    mse otherwise: delta^L = (a^L - t) o s'(z^L).
    """
    if loss == CROSS_ENTROPY:
        for k in range(n):
            delta[start + k] = a[start + k] - t[k]
    elif output == SOFTMAX:
        inner = delta.dtype.type(0.0)
        for k in range(n):
            inner += (a[start + k] - t[k]) * a[start + k]
        for k in range(n):
            delta[start + k] = a[start + k] * ((a[start + k] - t[k]) - inner)
    else:
        for k in range(n):
            delta[start + k] = a[start + k] - t[k]
        scale_by_derivative(z, a, delta, start, n, output)
