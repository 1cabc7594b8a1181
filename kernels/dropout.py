"""Inverted dropout (as ``torch.nn.Dropout``) for training calls: unit k of a^l is
kept with probability 1 - p_l and then scaled by 1 / (1 - p_l), or set to 0.

Each keep/drop is a pure function of (the model's key, the epoch, the sample's
row in the data set, the layer, the unit): a counter-based generator, not a
stream. So the masks do not depend on the thread count, on how a batch is cut
into parts, on the batch size, or on which process holds the sample; the NumPy
reference (``fastbp.reference.dropout_keep``) computes the same masks.

The generator: splitmix64's finalizer (``_mix``) applied in turn to the key plus
the epoch, then plus the row, then plus the layer: one 64-bit base per sample and
layer, in uint64 arithmetic (numba turns a mix of uint64 and int64 into float64:
every constant here is an np.uint64). Per unit, in 32-bit lanes
(``intrinsics.unit_kept``), murmur3's fmix32 of ((lo + unit 0x9E3779B9) mod 2^32)
xor hi, lo and hi the base's halves; its top 24 bits, u, are uniform on
0 .. 2^24 - 1, and the unit is kept when u >= round(p 2^24). Why two mixers:
splitmix64 per unit (two 64-bit multiplies, which AVX2 lacks) took 4.3 ns a unit
and made input dropout 0.2 cost 784-256-128-10 float32 ~9% of an epoch; fmix32
vectorises (0.84 ns a unit), and its input still holds all 64 bits of the base,
so two samples' rows of draws are not shifted copies of each other.

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
from fastbp.kernels.intrinsics import unit_kept

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
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
def _call_state(hyper):
    """The generator's state for (key, epoch): the part a call's bases share."""
    return _mix(np.uint64(hyper[H_DROP_KEY]) + np.uint64(hyper[H_EPOCH]) * _GOLDEN)


@jit_serial
def _row_base(state, row, l):
    """The generator's state for (key, epoch, row, layer l), from _call_state's."""
    z = _mix(state + np.uint64(row) * _GOLDEN)
    return _mix(z + np.uint64(l) * _GOLDEN)


@jit_serial
def layer_base(hyper, row, l):
    """The generator's state for (key, epoch, row, layer l)."""
    return _row_base(_call_state(hyper), row, l)


@jit_serial
def threshold(p):
    """Units whose 24-bit draw is below this are dropped: round(p 2^24)."""
    return np.uint64(p * _ONE_24 + 0.5)


@jit_serial
def kept(base, unit, thr):
    """Whether unit ``unit`` of the layer whose state is ``base`` is kept."""
    return unit_kept(base, unit, thr)


# Per call, not per sample: the rate, the call's state, the threshold and the scale
# (a division). Computed per sample they cost more than a 32-unit row's draws: the
# masks of 128 rows of 32 units took 76 ns a row that way and 33 ns so (256 units:
# 257 against 213 ns), measured in cache, float32.


@jit_serial
def _mask_row(a, base, thr, scale, u0):
    """a[k] *= scale if unit u0 + k is kept, else 0."""
    zero = a.dtype.type(0.0)
    for k in range(a.shape[0]):
        # a[k] read whatever the draw: a load only for kept units became a masked
        # load (vmaskmovps), 1.2 against 0.84 ns a unit
        x = a[k] * scale
        a[k] = x if kept(base, u0 + k, thr) else zero


@jit_serial
def drop_forward(a, hyper, l, row, u0):
    """a[k] (unit u0 + k of a^l of the sample in row ``row``) times 1 / (1 - p_l)
    if kept, else 0, in place; nothing when p_l is 0."""
    p = rate(hyper, l)
    if p == 0.0:
        return
    _mask_row(a, layer_base(hyper, row, l), threshold(p), a.dtype.type(1.0 / (1.0 - p)), u0)


@jit_serial
def drop_forward_rows(A, s0, s1, u0, u1, hyper, l, order, first):
    """``drop_forward`` of units u0 .. u1 - 1 of the rows s0 .. s1 - 1 of the batch
    block A (row s: the sample in data row order[first + s])."""
    p = rate(hyper, l)
    if p == 0.0:
        return
    state, thr, scale = _call_state(hyper), threshold(p), A.dtype.type(1.0 / (1.0 - p))
    for s in range(s0, s1):
        _mask_row(A[s, u0:u1], _row_base(state, order[first + s], l), thr, scale, u0)


# The backward loops are written out twice, for one sample's 1-D rows (online) and
# for a batch's 2-D blocks: a call per row with three row views took 134-147 ns a
# 32-unit row (relu, sigmoid), the loops over the blocks 21-36 ns, measured in
# cache, float32. Each unit's value is computed whatever its draw and then selected,
# every load unconditional: loops that vectorise (a load only where kept became a
# masked load). Relu draws nothing: a kept unit with z > 0 has a = z / (1 - p) > 0,
# a dropped one or z <= 0 has a = 0, where relu' o m is 0 either way (the same
# numbers as the draws give).


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
        for k in range(delta.shape[0]):
            d = delta[k] * scale
            delta[k] = d if a[k] > zero else zero
        return
    base, thr = layer_base(hyper, row, l), threshold(p)
    if code == SIGMOID:
        for k in range(delta.shape[0]):
            a_k = a[k] * keep
            d = delta[k] * scale * (a_k * (one - a_k))
            delta[k] = d if kept(base, k, thr) else zero
    elif code == TANH:
        for k in range(delta.shape[0]):
            a_k = a[k] * keep
            d = delta[k] * scale * (one - a_k * a_k)
            delta[k] = d if kept(base, k, thr) else zero
    elif code == LEAKY_RELU:  # from z, as scale_by_derivative
        slope = dt(LEAKY_SLOPE)
        for k in range(delta.shape[0]):
            d = delta[k] * scale
            d = d if z[k] > 0 else d * slope
            delta[k] = d if kept(base, k, thr) else zero
    else:  # LINEAR: s' = 1
        for k in range(delta.shape[0]):
            d = delta[k] * scale
            delta[k] = d if kept(base, k, thr) else zero


@jit_serial
def drop_backward_rows(Z, A, D, s0, s1, code, hyper, l, order, first):
    """``drop_backward`` of the rows s0 .. s1 - 1 of the batch blocks Z, A, D of
    layer l (row s: the sample in data row order[first + s])."""
    p = rate(hyper, l)
    dt = D.dtype.type
    scale, keep, one, zero = dt(1.0 / (1.0 - p)), dt(1.0 - p), dt(1.0), dt(0.0)
    n = D.shape[1]
    if code == RELU:
        for s in range(s0, s1):
            for k in range(n):
                d = D[s, k] * scale
                D[s, k] = d if A[s, k] > zero else zero
        return
    state, thr, slope = _call_state(hyper), threshold(p), dt(LEAKY_SLOPE)
    for s in range(s0, s1):
        base = _row_base(state, order[first + s], l)
        if code == SIGMOID:
            for k in range(n):
                a_k = A[s, k] * keep
                d = D[s, k] * scale * (a_k * (one - a_k))
                D[s, k] = d if kept(base, k, thr) else zero
        elif code == TANH:
            for k in range(n):
                a_k = A[s, k] * keep
                d = D[s, k] * scale * (one - a_k * a_k)
                D[s, k] = d if kept(base, k, thr) else zero
        elif code == LEAKY_RELU:  # from z, as scale_by_derivative
            for k in range(n):
                d = D[s, k] * scale
                d = d if Z[s, k] > 0 else d * slope
                D[s, k] = d if kept(base, k, thr) else zero
        else:  # LINEAR: s' = 1
            for k in range(n):
                d = D[s, k] * scale
                D[s, k] = d if kept(base, k, thr) else zero
