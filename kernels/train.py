"""Online training (batch size 1): a whole epoch in one compiled call."""

from fastbp.kernels._jit import jit_serial
from fastbp.kernels.activations import losses_and_deltas
from fastbp.kernels.backward import online_step
from fastbp.kernels.forward import forward_sample
from fastbp.kernels.layout import SIZE, UNIT
from fastbp.kernels.prefetch import prefetch


@jit_serial
def train_epoch_online(params, buf1, buf2, layout, codes, hyper, step, X, T, order,
                       weights, batch_size, parallel, parts, A, Z, D, loss):
    """One epoch of online training (batch size 1; ``batch_size``, ``parallel`` and
    ``parts`` are ignored: it is serial):
    forward, then ``online_step`` (backward fused with the update) per sample, in
    ``order``; returns the sum of the per-sample losses before each update,
    each times its sample weight.

    ``weights`` holds a weight per row of X, or nothing (every weight 1). The
    weighted mean gradient over one sample is that sample's gradient, so a
    weight only divides the L2 penalty (``hyper[8]``, scikit-learn's alpha: its
    gradient is alpha W / the batch's total weight) and a zero weight skips the
    sample's update; the Adam step count still advances (one step per batch, as
    in the mini-batch kernel).

    Rows of X are copied element-wise into a fixed buffer (A[0]) rather than
    sliced: a slice per sample costs reference counting (~10-20 ns each), which
    matters at ~1 us a sample on small networks; the loss and delta^L read the
    sample's row of T in place (``losses_and_deltas``), its loss into ``loss``
    (one float64).
    """
    a, z, delta = A[0], Z[0], D[0]
    weighted = weights.shape[0] > 0
    wd, l2 = hyper[4], hyper[8]
    n_in = layout[SIZE, 0]
    out_start = layout[UNIT, layout.shape[1] - 1]
    n_out = layout[SIZE, layout.shape[1] - 1]
    total = 0.0
    n_samples = order.shape[0]
    line = 64 // X.itemsize  # elements per cache line
    for k in range(n_samples):
        idx = order[k]
        for j in range(n_in):
            a[j] = X[idx, j]
        # Start loading the NEXT sample's row now (see kernels/prefetch.py).
        upcoming = order[min(k + 1, n_samples - 1)]
        for j in range(0, n_in, line):
            prefetch(X, upcoming, j)
        prefetch(T, upcoming, 0)
        forward_sample(params, layout, codes, a, z)
        losses_and_deltas(z, a, delta, out_start, n_out, 0, 1, T, order, k, loss, True, codes[1],
                          codes[2])
        weight = 1.0
        if weighted:
            weight = float(weights[idx])
            loss[0] *= weights[idx]
        total += loss[0]
        if weight > 0.0:
            online_step(params, layout, codes, hyper, step + k + 1, a, z, delta, buf1, buf2,
                        wd + l2 / weight)
    return total
