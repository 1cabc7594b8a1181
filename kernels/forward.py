"""Forward pass of one sample (``forward_sample``: online training) and of a few
rows (``forward_rows``: small predicts); many samples go through train.region."""

import numpy as np

from fastbp.kernels._jit import jit_serial
from fastbp.kernels.activations import activate
from fastbp.kernels.codes import N_HYPER
from fastbp.kernels.dropout import drop_forward, rate
from fastbp.kernels.layout import BOFF, SIZE, UNIT, WOFF
from fastbp.kernels.tiles import matvec


@jit_serial
def forward_sample(params, layout, codes, a, z, hyper, row):
    """z^l = W^l a^(l-1) + b^l, a^l = s_l(z^l) for l = 1..L, one sample.

    ``a`` and ``z`` are one per-sample row (width U, see ``layout``); the input
    a^0 must already be in ``a[:n_0]``. ``codes`` is ``[hidden, output, loss]``.
    ``hyper`` with dropout rates (a training call, see kernels/dropout.py) masks
    the hidden a^l of the sample in row ``row`` of the data set.
    W^l a^(l-1) comes from ``tiles.matvec``: VEC_COLS dot products a tile sharing
    one lane reduction. The loop per dot product it replaces (vectorised by LLVM
    under fastmath) reduced each sum on its own: measured on 64-32-10, one
    sample's products took 185 ns that way and 105 ns with the tiles, and online
    epochs ran 3-10% faster (interleaved runs, one core).
    """
    n_layers = layout.shape[1] - 1
    for l in range(1, n_layers + 1):
        n_in = layout[SIZE, l - 1]
        n_out = layout[SIZE, l]
        start = layout[UNIT, l]
        matvec(params, layout[WOFF, l], n_out, n_in, a, layout[UNIT, l - 1], z, start)
        z_l = z[start : start + n_out]
        b_off = layout[BOFF, l]
        if b_off >= 0:
            for i in range(n_out):
                z_l[i] += params[b_off + i]
        activate(z_l, a[start : start + n_out], codes[0] if l < n_layers else codes[1])
        if l < n_layers and rate(hyper, l) > 0.0:  # before the view: train_epoch_online
            drop_forward(a[start : start + n_out], hyper, l, row, 0)


@jit_serial
def forward_rows(params, layout, codes, X, out, a, z):
    """out[s] = a^L(X[s]) for every row of X, one row at a time (``forward_sample``
    on the scratch rows ``a``, ``z`` of width U): for a few rows, where a region's
    set-up and its 4-sample tiles cost more than the work. The same bits as a
    region's outputs (each element one dot product in the same order)."""
    n_layers = layout.shape[1] - 1
    start = layout[UNIT, n_layers]
    n_out = layout[SIZE, n_layers]
    no_dropout = np.zeros(N_HYPER)
    for s in range(X.shape[0]):
        for j in range(X.shape[1]):
            a[j] = X[s, j]
        forward_sample(params, layout, codes, a, z, no_dropout, s)
        for k in range(n_out):
            out[s, k] = a[start + k]
