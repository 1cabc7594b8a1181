"""Mini-batch training with layer-wise matrix products (BLAS ``sgemm``/``dgemm``
through ``np.dot``, which numba routes to SciPy's BLAS).

Batch matrices are stored layer-major: the activations of layer l for the
batch are one C-contiguous (B, n_l) block at ``B * layout[UNIT, l]`` of a flat
buffer, so each product reads and writes whole contiguous blocks.

Work is split into FIXED chunks (rows of samples for the forward pass and the
delta recursion, rows of W^l for the weight gradient), each a single-threaded
BLAS call (the caller limits BLAS to one thread). The chunk functions hold the
work; a serial stage runs the chunks in a loop and a ``_par`` stage in
``prange``, so every number comes from the same operations whatever the thread
count and the parameters are bit-identical with 1 or 2 threads. (OpenBLAS's own
threading is not: measured here, A @ W.T differed in the last bits between 1
and 2 BLAS threads.) Small batches use the serial stages: a parallel region
costs ~10 us, more than a 64-32-10 batch of 16 computes.
"""

import numpy as np
from numba import prange

from fastbp.kernels._jit import jit_parallel, jit_serial
from fastbp.kernels.activations import activate, output_delta, sample_loss, scale_by_derivative
from fastbp.kernels.layout import BOFF, SIZE, UNIT, WOFF, block
from fastbp.kernels.update import apply_update

SAMPLE_CHUNK = 16  # rows of samples per forward/backward product
ROW_CHUNK = 64  # rows of W^l per weight-gradient product


@jit_serial
def _n_chunks(n, chunk):
    return (n + chunk - 1) // chunk


# -- chunk functions: the work, one fixed chunk each -------------------------------


@jit_serial
def _forward_chunk(c, W, b, code, A_prev, Z, A, X, order, first, gather):
    """Rows s0:s1 of chunk c: (gather the input rows,) Z = A_prev W^T + b, A = s(Z)."""
    s0 = c * SAMPLE_CHUNK
    s1 = min(A_prev.shape[0], s0 + SAMPLE_CHUNK)
    if gather:
        for s in range(s0, s1):
            A_prev[s] = X[order[first + s]]
    np.dot(A_prev[s0:s1], W.T, Z[s0:s1])
    for s in range(s0, s1):
        z = Z[s]
        for i in range(b.shape[0]):
            z[i] += b[i]
        activate(z, A[s], code)


@jit_serial
def _output_chunk(c, Z, A, T, order, first, D, losses, output, loss):
    """Per-sample loss and delta^L for the rows of chunk c."""
    s0 = c * SAMPLE_CHUNK
    for s in range(s0, min(Z.shape[0], s0 + SAMPLE_CHUNK)):
        t = T[order[first + s]]
        losses[s] = sample_loss(Z[s], A[s], t, output, loss)
        output_delta(Z[s], A[s], t, D[s], output, loss)


@jit_serial
def _weight_gradient_chunk(c, D, A_prev, DT, dW, db):
    """Rows r0:r1 of dW = D^T A_prev and db = column sums of D (batch sums).

    D's columns r0:r1 are first transposed into DT's rows so the product reads
    contiguous rows; the bias sum runs over samples in order.
    """
    n, n_out = D.shape
    r0 = c * ROW_CHUNK
    r1 = min(n_out, r0 + ROW_CHUNK)
    for s in range(n):
        for i in range(r0, r1):
            DT[i, s] = D[s, i]
    np.dot(DT[r0:r1], A_prev, dW[r0:r1])
    if db.shape[0] > 0:
        for i in range(r0, r1):
            acc = DT.dtype.type(0.0)
            for s in range(n):
                acc += DT[i, s]
            db[i] = acc


@jit_serial
def _backward_chunk(c, W, D, Z_prev, A_prev, D_prev, code):
    """Rows of chunk c: delta^(l-1) = (delta^l W^l) o s'(z^(l-1))."""
    s0 = c * SAMPLE_CHUNK
    s1 = min(D.shape[0], s0 + SAMPLE_CHUNK)
    np.dot(D[s0:s1], W, D_prev[s0:s1])
    for s in range(s0, s1):
        scale_by_derivative(Z_prev[s], A_prev[s], D_prev[s], code)


# -- stages: all chunks of one step, serially or in parallel ----------------------


@jit_serial
def _forward_stage(W, b, code, A_prev, Z, A, X, order, first, gather):
    for c in range(_n_chunks(A_prev.shape[0], SAMPLE_CHUNK)):
        _forward_chunk(c, W, b, code, A_prev, Z, A, X, order, first, gather)


@jit_parallel
def _forward_stage_par(W, b, code, A_prev, Z, A, X, order, first, gather):
    for c in prange(_n_chunks(A_prev.shape[0], SAMPLE_CHUNK)):
        _forward_chunk(c, W, b, code, A_prev, Z, A, X, order, first, gather)


@jit_serial
def _output_stage(Z, A, T, order, first, D, losses, output, loss):
    for c in range(_n_chunks(Z.shape[0], SAMPLE_CHUNK)):
        _output_chunk(c, Z, A, T, order, first, D, losses, output, loss)


@jit_parallel
def _output_stage_par(Z, A, T, order, first, D, losses, output, loss):
    for c in prange(_n_chunks(Z.shape[0], SAMPLE_CHUNK)):
        _output_chunk(c, Z, A, T, order, first, D, losses, output, loss)


@jit_serial
def _weight_gradient_stage(D, A_prev, DT, dW, db):
    for c in range(_n_chunks(D.shape[1], ROW_CHUNK)):
        _weight_gradient_chunk(c, D, A_prev, DT, dW, db)


@jit_parallel
def _weight_gradient_stage_par(D, A_prev, DT, dW, db):
    for c in prange(_n_chunks(D.shape[1], ROW_CHUNK)):
        _weight_gradient_chunk(c, D, A_prev, DT, dW, db)


@jit_serial
def _backward_stage(W, D, Z_prev, A_prev, D_prev, code):
    for c in range(_n_chunks(D.shape[0], SAMPLE_CHUNK)):
        _backward_chunk(c, W, D, Z_prev, A_prev, D_prev, code)


@jit_parallel
def _backward_stage_par(W, D, Z_prev, A_prev, D_prev, code):
    for c in prange(_n_chunks(D.shape[0], SAMPLE_CHUNK)):
        _backward_chunk(c, W, D, Z_prev, A_prev, D_prev, code)


# -- a batch, an epoch ----------------------------------------------------------------


@jit_serial
def forward_batch(params, layout, codes, X, order, first, n, rows, acts, zs, parallel):
    """z^l, a^l of every layer for samples order[first:first+n] (layer-major
    buffers of ``rows * U`` entries, rows >= n; the input rows are gathered)."""
    n_layers = layout.shape[1] - 1
    for l in range(1, n_layers + 1):
        n_in, n_out = layout[SIZE, l - 1], layout[SIZE, l]
        start = rows * layout[UNIT, l]
        W = block(params, layout[WOFF, l], n_out, n_in)
        b_off = layout[BOFF, l]
        b = params[b_off : b_off + n_out] if b_off >= 0 else params[0:0]
        args = (W, b, codes[0] if l < n_layers else codes[1],
                block(acts, rows * layout[UNIT, l - 1], n, n_in),
                block(zs, start, n, n_out), block(acts, start, n, n_out), X, order, first,
                l == 1)
        if parallel:
            _forward_stage_par(*args)
        else:
            _forward_stage(*args)


@jit_serial
def gemm_batch_gradients(params, layout, codes, X, T, order, first, n, rows, acts, zs,
                         deltas, deltas_t, losses, grads, parallel):
    """Forward, delta recursion and gradient SUMS for samples order[first:first+n].

    ``acts``, ``zs``, ``deltas`` are layer-major buffers of ``rows * U`` entries
    (rows >= n), ``deltas_t`` holds ``rows * max(n_l)``; ``losses[:n]`` gets the
    per-sample losses, ``grads`` the sums over the batch (layout of ``params``).
    """
    n_layers = layout.shape[1] - 1
    forward_batch(params, layout, codes, X, order, first, n, rows, acts, zs, parallel)
    start, n_out = rows * layout[UNIT, n_layers], layout[SIZE, n_layers]
    out_args = (block(zs, start, n, n_out), block(acts, start, n, n_out), T, order, first,
                block(deltas, start, n, n_out), losses, codes[1], codes[2])
    if parallel:
        _output_stage_par(*out_args)
    else:
        _output_stage(*out_args)
    for l in range(n_layers, 0, -1):
        n_in, n_out = layout[SIZE, l - 1], layout[SIZE, l]
        start, prev = rows * layout[UNIT, l], rows * layout[UNIT, l - 1]
        D = block(deltas, start, n, n_out)
        A_prev = block(acts, prev, n, n_in)
        b_off = layout[BOFF, l]
        db = grads[b_off : b_off + n_out] if b_off >= 0 else grads[0:0]
        dW = block(grads, layout[WOFF, l], n_out, n_in)
        DT = block(deltas_t, 0, n_out, n)
        if parallel:
            _weight_gradient_stage_par(D, A_prev, DT, dW, db)
        else:
            _weight_gradient_stage(D, A_prev, DT, dW, db)
        if l > 1:
            W = block(params, layout[WOFF, l], n_out, n_in)
            back_args = (W, D, block(zs, prev, n, n_in), A_prev, block(deltas, prev, n, n_in),
                         codes[0])
            if parallel:
                _backward_stage_par(*back_args)
            else:
                _backward_stage(*back_args)


@jit_serial
def train_epoch_gemm(params, buf1, buf2, layout, codes, hyper, step, X, T, order,
                     batch_size, parallel, acts, zs, deltas, deltas_t, losses, grads):
    """One epoch of mini-batch training over the samples in ``order``; returns the
    sum of the per-sample losses seen (each before its batch's update).

    Batches are order[0:B], order[B:2B], ... with a final partial batch. Each
    batch: ``gemm_batch_gradients``, then one fused update with gradient
    sum / batch count (``apply_update``). ``hyper`` is float64 [optimizer, lr,
    momentum, nesterov, weight_decay, beta1, beta2, eps]; ``step`` the Adam
    steps done before this epoch; ``buf1`` is the momentum buffer or Adam's
    first moment, ``buf2`` Adam's second.
    """
    n_samples = order.shape[0]
    rows = min(batch_size, n_samples)  # the buffers hold this many samples
    total = 0.0
    for first in range(0, n_samples, batch_size):
        n = min(batch_size, n_samples - first)
        step += 1
        gemm_batch_gradients(params, layout, codes, X, T, order, first, n, rows, acts, zs,
                             deltas, deltas_t, losses, grads, parallel)
        for s in range(n):  # in sample order: the same sum at any thread count
            total += losses[s]
        apply_update(params, grads, n, buf1, buf2, hyper, step, parallel)
    return total


@jit_serial
def dataset_pass(params, layout, codes, X, T, want_loss, want_grads, parallel, acts, zs,
                 deltas, deltas_t, losses, chunk_grads, out, grads):
    """Outputs a^L of every sample of X into ``out``; with ``want_loss`` returns
    the loss sum against T, with ``want_grads`` also the gradient SUM into
    ``grads``. Works through X in chunks of ``losses.shape[0]`` samples (a fixed
    size), adding chunk sums in order: the same bits at any thread count.
    """
    n_samples = X.shape[0]
    rows = losses.shape[0]
    n_layers = layout.shape[1] - 1
    out_start, n_out = rows * layout[UNIT, n_layers], layout[SIZE, n_layers]
    order = np.arange(n_samples)
    total = 0.0
    for first in range(0, n_samples, rows):
        n = min(rows, n_samples - first)
        if want_grads:
            gemm_batch_gradients(params, layout, codes, X, T, order, first, n, rows, acts,
                                 zs, deltas, deltas_t, losses, chunk_grads, parallel)
            for k in range(grads.shape[0]):
                grads[k] += chunk_grads[k]
        else:
            forward_batch(params, layout, codes, X, order, first, n, rows, acts, zs,
                          parallel)
            if want_loss:
                A_out = block(acts, out_start, n, n_out)
                Z_out = block(zs, out_start, n, n_out)
                for s in range(n):
                    losses[s] = sample_loss(Z_out[s], A_out[s], T[first + s], codes[1],
                                            codes[2])
        if want_loss:
            for s in range(n):
                total += losses[s]
        out[first : first + n] = block(acts, out_start, n, n_out)
    return total
