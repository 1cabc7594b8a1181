"""Whole-epoch training and whole-data-set passes, each one compiled call."""

import numpy as np
from numba import prange

from fastbp.kernels._jit import jit_parallel, jit_serial
from fastbp.kernels.activations import sample_loss
from fastbp.kernels.backward import accumulate_gradients, backward_sample, online_step
from fastbp.kernels.forward import forward_sample, load_input
from fastbp.kernels.layout import SIZE, UNIT
from fastbp.kernels.update import apply_update


@jit_parallel
def _forward_backward_rows(params, layout, codes, X, T, order, first, n, A, Z, D,
                           losses, want_delta):
    """Rows s < n of A, Z (and D) for samples order[first + s]; losses[s] their loss.

    Parallel over samples: each iteration owns row s of every buffer.
    """
    start = layout[UNIT, layout.shape[1] - 1]  # the output layer ends each row
    for s in prange(n):
        idx = order[first + s]
        load_input(X[idx], A[s])
        forward_sample(params, layout, codes, A[s], Z[s])
        losses[s] = sample_loss(Z[s, start:], A[s, start:], T[idx], codes[1], codes[2])
        if want_delta:
            backward_sample(params, layout, codes, A[s], Z[s], T[idx], D[s])


@jit_serial
def train_epoch(params, buf1, buf2, layout, codes, hyper, step, X, T, order,
                batch_size, parallel, A, Z, D, losses, grads):
    """One epoch of mini-batch training over the samples in ``order``; returns the
    sum of the per-sample losses seen (each before its batch's update).

    Batches are order[0:B], order[B:2B], ... with a final partial batch. Each
    batch: forward and delta recursion per sample (parallel over samples),
    gradient sums per weight row (parallel over rows), one fused update with
    gradient sum / batch count. (Batch size 1 has ``train_epoch_online``.)
    ``hyper`` is float64 [optimizer, lr, momentum, nesterov, weight_decay,
    beta1, beta2, eps]; ``step`` the Adam steps done before this epoch; ``buf1``
    is the momentum buffer or Adam's first moment, ``buf2`` Adam's second.
    ``A``, ``Z``, ``D`` have at least min(batch_size, n) rows of width U,
    ``losses`` as many entries, ``grads`` the length of ``params``.
    """
    n_samples = order.shape[0]
    total = 0.0
    for first in range(0, n_samples, batch_size):
        n = min(batch_size, n_samples - first)
        step += 1
        _forward_backward_rows(params, layout, codes, X, T, order, first, n, A, Z, D,
                               losses, True)
        for s in range(n):  # in sample order: the same sum at any thread count
            total += losses[s]
        accumulate_gradients(layout, A, D, n, True, grads)
        apply_update(params, grads, n, buf1, buf2, hyper, step, parallel)
    return total


@jit_serial
def train_epoch_online(params, buf1, buf2, layout, codes, hyper, step, X, T, order,
                       batch_size, parallel, A, Z, D, t_row):
    """One epoch of online training (batch size 1; ``batch_size`` and ``parallel``
    are ignored, it is serial):
    forward, then ``online_step`` (backward fused with the update) per sample, in
    ``order``; returns the sum of the per-sample losses before each update.

    Rows of X and T are copied element-wise into fixed buffers (A[0], ``t_row``)
    rather than sliced: a slice per sample costs reference counting (~10-20 ns
    each), which matters at ~1 us a sample on small networks.
    """
    a, z, delta = A[0], Z[0], D[0]
    n_in = layout[SIZE, 0]
    out_start = layout[UNIT, layout.shape[1] - 1]
    a_out, z_out = a[out_start:], z[out_start:]
    total = 0.0
    for k in range(order.shape[0]):
        idx = order[k]
        for j in range(n_in):
            a[j] = X[idx, j]
        for j in range(t_row.shape[0]):
            t_row[j] = T[idx, j]
        forward_sample(params, layout, codes, a, z)
        total += sample_loss(z_out, a_out, t_row, codes[1], codes[2])
        online_step(params, layout, codes, hyper, step + k + 1, a, z, t_row, delta, buf1,
                    buf2)
    return total


@jit_serial
def dataset_pass(params, layout, codes, X, T, A, Z, D, losses, out, want_grads,
                 grads):
    """Loss sum over all samples of X; outputs a^L into ``out`` (n, n_out); with
    ``want_grads`` the gradient SUM over all samples into ``grads``.

    Works through the data in chunks of A.shape[0] rows (a fixed size, not the
    thread count), adding chunk sums in order: deterministic at any thread count.
    """
    n_samples = X.shape[0]
    chunk = A.shape[0]
    n_layers = layout.shape[1] - 1
    start = layout[UNIT, n_layers]
    n_out = layout[SIZE, n_layers]
    total = 0.0
    order = np.arange(n_samples)
    for first in range(0, n_samples, chunk):
        n = min(chunk, n_samples - first)
        _forward_backward_rows(params, layout, codes, X, T, order, first, n, A, Z, D,
                               losses, want_grads)
        for s in range(n):
            total += losses[s]
            out[first + s] = A[s, start : start + n_out]
        if want_grads:
            accumulate_gradients(layout, A, D, n, first == 0, grads)
    return total
