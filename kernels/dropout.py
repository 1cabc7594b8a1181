"""Inverted dropout (as ``torch.nn.Dropout``) for training calls: unit k of a^l is
kept with probability 1 - p_l and then scaled by 1 / (1 - p_l), or set to 0.

Each keep/drop is a pure function of (the model's key, the epoch, the sample's
row in the data set, the layer, the unit): a counter-based generator, not a
stream. So the masks do not depend on the thread count, on how a batch is cut
into parts, on the batch size, or on which process holds the sample; the NumPy
reference (``fastbp.reference.dropout_keep``) computes the same masks.

The generator: splitmix64's finalizer (``_mix``) applied in turn to the key plus
the epoch, then plus the row, then plus the layer (one base per sample and
layer), and per unit to the base plus the unit times the golden-ratio constant;
the top 24 bits of the result, u, are uniform on 0 .. 2^24 - 1, and the unit is
kept when u >= round(p 2^24). All arithmetic is uint64 (numba turns a mix of
uint64 and int64 into float64: every constant here is an np.uint64).

Rates come after the N_HYPER slots of ``hyper`` (hyper[N_HYPER + l] for a^l,
l = 0 the input), the key and epoch in H_DROP_KEY and H_EPOCH (see codes.py); a
``hyper`` of length N_HYPER (every evaluation, predict and gradients call) drops
nothing.

The masked a^l overwrites a^l: the next layer's product and the weight gradient
read the masked values. The backward pass needs s'(z^l): sigmoid and tanh take it
from a^l, so for them the kept a^l is scaled back by (1 - p) first (within an
ulp of the unmasked value; the reference takes s' from z).
"""

import numpy as np

from fastbp.kernels._jit import jit_serial
from fastbp.kernels.codes import (
    H_DROP_KEY,
    H_EPOCH,
    LEAKY_RELU,
    LEAKY_SLOPE,
    N_HYPER,
    RELU,
    SIGMOID,
    TANH,
)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)
_ONE_24 = 16777216.0  # 2^24


@jit_serial
def _mix(z):
    """splitmix64's finalizer: a bijection of uint64 that mixes every bit."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@jit_serial
def rate(hyper, l):
    """The dropout rate of a^l in this call (0.0: none)."""
    if hyper.shape[0] <= N_HYPER + l:
        return 0.0
    return hyper[N_HYPER + l]


@jit_serial
def any_dropout(hyper):
    """Whether this call drops anything at all."""
    return hyper.shape[0] > N_HYPER


@jit_serial
def layer_base(hyper, row, l):
    """The generator's state for (key, epoch, row, layer l)."""
    z = _mix(np.uint64(hyper[H_DROP_KEY]) + np.uint64(hyper[H_EPOCH]) * _GOLDEN)
    z = _mix(z + np.uint64(row) * _GOLDEN)
    return _mix(z + np.uint64(l) * _GOLDEN)


@jit_serial
def threshold(p):
    """Units whose 24-bit draw is below this are dropped: round(p 2^24)."""
    return np.uint64(p * _ONE_24 + 0.5)


@jit_serial
def kept(base, unit, thr):
    """Whether unit ``unit`` of the layer whose state is ``base`` is kept."""
    return (_mix(base + np.uint64(unit) * _GOLDEN) >> _S40) >= thr


@jit_serial
def drop_forward(a, hyper, l, row, u0):
    """a[k] (unit u0 + k of a^l of the sample in row ``row``) times 1 / (1 - p_l)
    if kept, else 0, in place; nothing when p_l is 0."""
    p = rate(hyper, l)
    if p == 0.0:
        return
    base, thr = layer_base(hyper, row, l), threshold(p)
    scale, zero = a.dtype.type(1.0 / (1.0 - p)), a.dtype.type(0.0)
    for k in range(a.shape[0]):
        a[k] = a[k] * scale if kept(base, u0 + k, thr) else zero


@jit_serial
def drop_backward(z, a, delta, code, hyper, l, row):
    """delta^l o m / (1 - p_l) o s'(z^l) for one sample's hidden layer l whose a^l
    was masked by ``drop_forward`` (so a dropped unit's delta is 0), in place;
    the plain derivative (activations.scale_by_derivative) when p_l is 0 is the
    caller's. s' of sigmoid and tanh from the kept a^l scaled back by 1 - p."""
    p = rate(hyper, l)
    dt = delta.dtype.type
    scale, keep, one, zero = dt(1.0 / (1.0 - p)), dt(1.0 - p), dt(1.0), dt(0.0)
    if code == RELU:
        # No draw needed: a kept unit with z > 0 has a = z / (1 - p) > 0, and a
        # dropped one or z <= 0 has a = 0, where relu' o mask is 0 either way (the
        # same numbers as the draw gives; a loop that vectorises: the draws took
        # ~4% of a batch-32 epoch on 784-256-128-10, measured).
        for k in range(delta.shape[0]):
            delta[k] = delta[k] * scale if a[k] > zero else zero
        return
    base, thr = layer_base(hyper, row, l), threshold(p)
    for k in range(delta.shape[0]):
        if not kept(base, k, thr):
            delta[k] = zero
            continue
        d = delta[k] * scale
        if code == SIGMOID:
            a_k = a[k] * keep
            d *= a_k * (one - a_k)
        elif code == TANH:
            a_k = a[k] * keep
            d *= one - a_k * a_k
        elif code == LEAKY_RELU:  # from z, as scale_by_derivative
            if not z[k] > 0:
                d = d * dt(LEAKY_SLOPE)
        delta[k] = d
