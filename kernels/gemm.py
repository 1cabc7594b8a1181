"""Mini-batch training with layer-wise matrix products (BLAS ``sgemm``/``dgemm``
through ``np.dot``, which numba routes to SciPy's BLAS).

Batch matrices are stored layer-major: the activations of layer l for the
batch are one C-contiguous (B, n_l) block at ``B * layout[UNIT, l]`` of a flat
buffer, so each product reads and writes whole contiguous blocks.

Parallel work is split into FIXED chunks (rows of samples for the forward pass
and the delta recursion, rows of W^l for the weight gradient), each a
single-threaded BLAS call (the caller limits BLAS to one thread), so every
number is computed by the same sequence of operations at any thread count:
the parameters come out bit-identical with 1 or 2 threads. (OpenBLAS's own
threading is not bit-reproducible across thread counts: measured here.)
"""

import numpy as np
from numba import prange

from fastbp.kernels._jit import jit_parallel, jit_serial
from fastbp.kernels.activations import activate, output_delta, sample_loss, scale_by_derivative
from fastbp.kernels.layout import BOFF, SIZE, UNIT, WOFF, block
from fastbp.kernels.update import adam_update, sgd_update

SAMPLE_CHUNK = 16  # rows of samples per forward/backward product
ROW_CHUNK = 64  # rows of W^l per weight-gradient product


@jit_serial
def _weights(params, layout, l):
    return block(params, layout[WOFF, l], layout[SIZE, l], layout[SIZE, l - 1])


@jit_parallel
def _gather(X, order, first, A0):
    """A0[s] = X[order[first + s]] for the rows of A0."""
    for s in prange(A0.shape[0]):
        A0[s] = X[order[first + s]]


@jit_parallel
def _forward_layer(params, layout, l, code, A_prev, Z, A):
    """Z = A_prev (W^l)^T + b^l, A = s(Z), in fixed chunks of samples."""
    W = _weights(params, layout, l)
    b_off = layout[BOFF, l]
    n = A_prev.shape[0]
    n_out = layout[SIZE, l]
    for c in prange((n + SAMPLE_CHUNK - 1) // SAMPLE_CHUNK):
        s0 = c * SAMPLE_CHUNK
        s1 = min(n, s0 + SAMPLE_CHUNK)
        np.dot(A_prev[s0:s1], W.T, Z[s0:s1])
        for s in range(s0, s1):
            z = Z[s]
            if b_off >= 0:
                b = params[b_off : b_off + n_out]
                for i in range(n_out):
                    z[i] += b[i]
            activate(z, A[s], code)


@jit_parallel
def _output_rows(Z, A, T, order, first, D, losses, output, loss):
    """Per-sample loss and delta^L for the batch rows."""
    for s in prange(Z.shape[0]):
        t = T[order[first + s]]
        losses[s] = sample_loss(Z[s], A[s], t, output, loss)
        output_delta(Z[s], A[s], t, D[s], output, loss)


@jit_parallel
def _weight_gradient(D, A_prev, DT, dW, db):
    """dW = D^T A_prev and db = column sums of D (sums over the batch), in
    fixed chunks of rows of dW; DT is scratch for D transposed."""
    n, n_out = D.shape
    for i in prange(n_out):  # transpose so each chunk's rows of D^T are contiguous
        for s in range(n):
            DT[i, s] = D[s, i]
    for c in prange((n_out + ROW_CHUNK - 1) // ROW_CHUNK):
        r0 = c * ROW_CHUNK
        r1 = min(n_out, r0 + ROW_CHUNK)
        np.dot(DT[r0:r1], A_prev, dW[r0:r1])
        if db.shape[0] > 0:
            for i in range(r0, r1):
                acc = DT.dtype.type(0.0)
                for s in range(n):
                    acc += DT[i, s]
                db[i] = acc


@jit_parallel
def _backward_layer(W, D, Z_prev, A_prev, D_prev, code):
    """delta^(l-1) = (delta^l W^l) o s'(z^(l-1)), in fixed chunks of samples."""
    n = D.shape[0]
    for c in prange((n + SAMPLE_CHUNK - 1) // SAMPLE_CHUNK):
        s0 = c * SAMPLE_CHUNK
        s1 = min(n, s0 + SAMPLE_CHUNK)
        np.dot(D[s0:s1], W, D_prev[s0:s1])
        for s in range(s0, s1):
            scale_by_derivative(Z_prev[s], A_prev[s], D_prev[s], code)


@jit_serial
def gemm_batch_gradients(params, layout, codes, X, T, order, first, n, rows, acts, zs,
                         deltas, deltas_t, losses, grads):
    """Forward, delta recursion and gradient SUMS for samples order[first:first+n].

    ``acts``, ``zs``, ``deltas`` are layer-major buffers of ``rows * U`` entries
    (rows >= n), ``deltas_t`` holds ``rows * max(n_l)``; ``losses[:n]`` gets the
    per-sample losses, ``grads`` the sums over the batch (layout of ``params``).
    """
    n_layers = layout.shape[1] - 1
    _gather(X, order, first, block(acts, 0, n, layout[SIZE, 0]))
    for l in range(1, n_layers + 1):
        start, n_in = rows * layout[UNIT, l], layout[SIZE, l - 1]
        n_out = layout[SIZE, l]
        _forward_layer(params, layout, l, codes[0] if l < n_layers else codes[1],
                       block(acts, rows * layout[UNIT, l - 1], n, n_in),
                       block(zs, start, n, n_out), block(acts, start, n, n_out))
    start, n_out = rows * layout[UNIT, n_layers], layout[SIZE, n_layers]
    _output_rows(block(zs, start, n, n_out), block(acts, start, n, n_out), T, order,
                 first, block(deltas, start, n, n_out), losses, codes[1], codes[2])
    for l in range(n_layers, 0, -1):
        n_in, n_out = layout[SIZE, l - 1], layout[SIZE, l]
        start, prev = rows * layout[UNIT, l], rows * layout[UNIT, l - 1]
        D = block(deltas, start, n, n_out)
        A_prev = block(acts, prev, n, n_in)
        b_off = layout[BOFF, l]
        db = grads[b_off : b_off + n_out] if b_off >= 0 else grads[0:0]
        _weight_gradient(D, A_prev, block(deltas_t, 0, n_out, n),
                         block(grads, layout[WOFF, l], n_out, n_in), db)
        if l > 1:
            _backward_layer(_weights(params, layout, l), D, block(zs, prev, n, n_in),
                            A_prev, block(deltas, prev, n, n_in), codes[0])


@jit_serial
def train_epoch_gemm(params, buf1, buf2, layout, codes, hyper, step, X, T, order,
                     batch_size, acts, zs, deltas, deltas_t, losses, grads):
    """One epoch like :func:`fastbp.kernels.train.train_epoch`, each batch through
    layer-wise matrix products (see module doc); returns the loss sum."""
    n_samples = order.shape[0]
    rows = min(batch_size, n_samples)  # the buffers hold this many samples
    opt = int(hyper[0])
    total = 0.0
    for first in range(0, n_samples, batch_size):
        n = min(batch_size, n_samples - first)
        step += 1
        gemm_batch_gradients(params, layout, codes, X, T, order, first, n, rows,
                             acts, zs, deltas, deltas_t, losses, grads)
        for s in range(n):  # in sample order: the same sum at any thread count
            total += losses[s]
        if opt == 0:
            sgd_update(params, grads, n, buf1, hyper[1], hyper[2], hyper[3] != 0.0,
                       hyper[4])
        else:
            adam_update(params, grads, n, buf1, buf2, step, hyper[1], hyper[5],
                        hyper[6], hyper[7], hyper[4])
    return total
