"""The three matrix products of mini-batch training, from register-tile kernels.

    forward    Z  = A W^T     Z[s, i]  = sum_j A[s, j] W[i, j]       (``matmul_nt``)
    backward   D' = D W       D'[s, j] = sum_i D[s, i] W[i, j]       (``matmul_nn``)
    gradient   dW = D^T A     dW[i, j] = sum_s D[s, i] A[s, j]       (``matmul_tn``)

plus one sample's z = W x (``matvec``) and the gradient product fused with plain
SGD's step (``sgd_step_tn``). Every operand is a row-major block of a flat
buffer, read where it lies: no packing, no transposed copies. The wrappers here
check once per call that every block lies inside its buffer (``matvec`` trusts
its caller's layout) and loop over the tiles of kernels/_tile_ir.py, which do
the arithmetic with a fixed order of operations per element.

Why not BLAS: measured here (one core, float32) OpenBLAS reached 50-90 GFLOP/s
on these shapes at batch 32 and 86-100 at batch 256; these tiles reach 90-105 on
both, read the operands without the copies and transposes the BLAS route needed,
and every element comes out of one tile with one fixed order of operations. So
the bits of a result do not depend on how the rows are split between threads:
1 and 2 threads give the same parameters by construction.
"""

from fastbp.kernels._jit import jit_serial
from fastbp.kernels._tile_ir import (  # noqa: F401  (the shapes: tiles.VEC_COLS, ...)
    AXPY_ROWS,
    AXPY_VECS,
    DOT_COLS,
    DOT_ROWS,
    NARROW_ROWS,
    VEC_COLS,
    VECTOR_BYTES,
    axpy_narrow,
    axpy_narrow_resume,
    axpy_narrow_sgd,
    axpy_tile,
    axpy_tile_resume,
    axpy_tile_sgd,
    dot_tile,
    vec_tile,
)

# Rows of W per range of D W (see matmul_nn): on 784-1024-1024-10's W^2, 128 gave its
# product 3.6 ms against 3.9 in one range (interleaved runs, one core); 64 and 256
# measured about the same as 128.
NN_CHUNK = 128


@jit_serial
def _lanes(buf):
    """Elements per vector for ``buf``'s dtype."""
    return VECTOR_BYTES // buf.itemsize


@jit_serial
def _check(buf, start, n_rows, n_cols):
    """The (n_rows, n_cols) row-major block at buf[start:] lies inside ``buf``."""
    if start < 0 or n_rows < 0 or n_cols < 0 or start + n_rows * n_cols > buf.shape[0]:
        raise IndexError("matrix block outside its buffer")


@jit_serial
def matmul_nt(A, a_off, W, w_off, n_rows, n_inner, n_cols, Z, z_off, ldz):
    """Z = A W^T for the row-major blocks A (n_rows, n_inner) at A[a_off:],
    W (n_cols, n_inner) at W[w_off:], Z (n_rows, n_cols) at Z[z_off:] with rows
    ``ldz`` >= n_cols apart (Z may be a column block of a wider matrix).

    Loops: column tiles outside, so DOT_COLS rows of W stay in L1 while every
    row tile of A passes (A, a batch of inputs, stays in L2)."""
    _check(A, a_off, n_rows, n_inner)
    _check(W, w_off, n_cols, n_inner)
    if ldz < n_cols:
        raise IndexError("rows of Z overlap")
    if n_rows > 0:
        _check(Z, z_off, 1, (n_rows - 1) * ldz + n_cols)
    for c in range(0, n_cols, DOT_COLS):
        nc = min(DOT_COLS, n_cols - c)
        for r in range(0, n_rows, DOT_ROWS):
            dot_tile(A, a_off + r * n_inner, n_inner, W, w_off + c * n_inner, n_inner,
                     n_inner, Z, z_off + r * ldz + c, ldz, min(DOT_ROWS, n_rows - r), nc)


@jit_serial
def matvec(W, w_off, n_out, n_in, x, x_off, z, z_off):
    """z[z_off + i] = sum_j W[w_off + i n_in + j] x[x_off + j] for i < n_out: one
    sample's z = W x (W row-major (n_out, n_in)), no bounds checks (the caller's
    layout guarantees them: see forward.forward_sample).

    Each dot product is the forward tile's (vector partial sums, a fixed lane
    tree), so a sample's z has the same bits alone or in a batch of one."""
    for c in range(0, n_out, VEC_COLS):
        vec_tile(x, x_off, n_in, W, w_off + c * n_in, n_in, n_in, z, z_off + c, 1, 1,
                 min(VEC_COLS, n_out - c))


@jit_serial
def matmul_nn(D, d_off, W, w_off, n_rows, n_inner, n_cols, out, out_off):
    """out = D W for the row-major blocks D (n_rows, n_inner) at D[d_off:],
    W (n_inner, n_cols) at W[w_off:], out (n_rows, n_cols) at out[out_off:].

    Loops: ranges of NN_CHUNK rows of W outside, then column strips of W (a
    strip's range, NN_CHUNK x AXPY_VECS vectors, stays in L2 while every row tile
    of D passes), the sums continued from range to range (the same bits as one
    range). Why ranges: rows of W a multiple of 4 KiB long (784-1024-1024-10's W^2)
    put a whole strip's lines in a few L2 sets, which held 1/4 of a 1024-row strip:
    each row tile re-read it from L3 (measured: 145 GFLOP/s against 192 for
    1008- or 1040-wide layers)."""
    _check(D, d_off, n_rows, n_inner)
    _check(W, w_off, n_inner, n_cols)
    _check(out, out_off, n_rows, n_cols)
    _nn_range(D, d_off, W, w_off, n_rows, n_inner, n_cols, out, out_off, 0,
              min(NN_CHUNK, n_inner))
    for j0 in range(NN_CHUNK, n_inner, NN_CHUNK):
        _nn_range_resume(D, d_off, W, w_off, n_rows, n_inner, n_cols, out, out_off, j0,
                         min(j0 + NN_CHUNK, n_inner))


@jit_serial
def _nn_range(D, d_off, W, w_off, n_rows, n_inner, n_cols, out, out_off, j0, j1):
    """out = D[:, j0:j1] W[j0:j1] (the first range: sums from 0)."""
    width = AXPY_VECS * _lanes(W)
    for c in range(0, n_cols, width):
        nc = min(width, n_cols - c)
        if nc <= _lanes(W):
            for r in range(0, n_rows, NARROW_ROWS):
                axpy_narrow(D, d_off + r * n_inner + j0, n_inner, 1, W, w_off + j0 * n_cols + c,
                            n_cols, j1 - j0, out, out_off + r * n_cols + c, n_cols,
                            min(NARROW_ROWS, n_rows - r), nc)
        else:
            for r in range(0, n_rows, AXPY_ROWS):
                axpy_tile(D, d_off + r * n_inner + j0, n_inner, 1, W, w_off + j0 * n_cols + c,
                          n_cols, j1 - j0, out, out_off + r * n_cols + c, n_cols,
                          min(AXPY_ROWS, n_rows - r), nc)


@jit_serial
def _nn_range_resume(D, d_off, W, w_off, n_rows, n_inner, n_cols, out, out_off, j0, j1):
    """out += D[:, j0:j1] W[j0:j1], each sum continued from out's value in order."""
    width = AXPY_VECS * _lanes(W)
    for c in range(0, n_cols, width):
        nc = min(width, n_cols - c)
        if nc <= _lanes(W):
            for r in range(0, n_rows, NARROW_ROWS):
                axpy_narrow_resume(D, d_off + r * n_inner + j0, n_inner, 1, W,
                                   w_off + j0 * n_cols + c, n_cols, j1 - j0, out,
                                   out_off + r * n_cols + c, n_cols,
                                   min(NARROW_ROWS, n_rows - r), nc)
        else:
            for r in range(0, n_rows, AXPY_ROWS):
                axpy_tile_resume(D, d_off + r * n_inner + j0, n_inner, 1, W,
                                 w_off + j0 * n_cols + c, n_cols, j1 - j0, out,
                                 out_off + r * n_cols + c, n_cols, min(AXPY_ROWS, n_rows - r),
                                 nc)


@jit_serial
def matmul_tn(D, d_off, n_d, r0, r1, A, a_off, n_samples, n_cols, dW, dw_off):
    """Rows r0:r1 of dW = D^T A, where D (n_samples, n_d) is at D[d_off:],
    A (n_samples, n_cols) at A[a_off:] and dW (n_d, n_cols) at dW[dw_off:]:
    dW[i, j] = sum over samples s in order of D[s, i] A[s, j].

    Loops: column strips of A outside (n_samples x AXPY_VECS vectors, in L2)."""
    _check(D, d_off, n_samples, n_d)
    _check(A, a_off, n_samples, n_cols)
    _check(dW, dw_off, n_d, n_cols)
    if r0 < 0 or r1 > n_d:
        raise IndexError("rows outside dW")
    width = AXPY_VECS * _lanes(A)
    for c in range(0, n_cols, width):
        nc = min(width, n_cols - c)
        if nc <= _lanes(A):
            for r in range(r0, r1, NARROW_ROWS):
                axpy_narrow(D, d_off + r, 1, n_d, A, a_off + c, n_cols, n_samples,
                            dW, dw_off + r * n_cols + c, n_cols, min(NARROW_ROWS, r1 - r), nc)
        else:
            for r in range(r0, r1, AXPY_ROWS):
                axpy_tile(D, d_off + r, 1, n_d, A, a_off + c, n_cols, n_samples,
                          dW, dw_off + r * n_cols + c, n_cols, min(AXPY_ROWS, r1 - r), nc)


@jit_serial
def sgd_step_tn(D, d_off, n_d, r0, r1, A, a_off, n_samples, n_cols, params, w_off, lr, count,
                decay):
    """Rows r0:r1 of W (n_d, n_cols) at params[w_off:] take plain SGD's step with the
    gradient sum D^T A of ``matmul_tn``: w - lr (dW / count + decay w), computed
    tile by tile and never stored. The same operations in the same order as
    ``matmul_tn`` then ``update.sgd_update`` (IEEE arithmetic): the same bits.

    Measured against the two passes, one core: 784-1024-1024-10's layers 1-8%
    faster, 784-256-128-10's first at batch 32 5-8% (the gradient is not written
    and read back; the tile asks for its rows of W before computing the sums)."""
    _check(D, d_off, n_samples, n_d)
    _check(A, a_off, n_samples, n_cols)
    _check(params, w_off, n_d, n_cols)
    if r0 < 0 or r1 > n_d:
        raise IndexError("rows outside W")
    dt = params.dtype.type  # rounded as update.sgd_block rounds them
    _tn_sgd(D, d_off, n_d, r0, r1, A, a_off, n_samples, n_cols, w_off, params, dt(lr),
            dt(1.0 / count), dt(decay))


@jit_serial
def _tn_sgd(D, d_off, n_d, r0, r1, A, a_off, n_samples, n_cols, w_off, params, lr, inv_n,
            decay):
    """The loops of ``sgd_step_tn`` (a function of its own: with the storing tiles in
    the same function, their loops ran 15% slower)."""
    width = AXPY_VECS * _lanes(A)
    for c in range(0, n_cols, width):
        nc = min(width, n_cols - c)
        if nc <= _lanes(A):
            for r in range(r0, r1, NARROW_ROWS):
                axpy_narrow_sgd(D, d_off + r, 1, n_d, A, a_off + c, n_cols, n_samples, params,
                                w_off + r * n_cols + c, n_cols, min(NARROW_ROWS, r1 - r), nc,
                                params, lr, inv_n, decay)
        else:
            for r in range(r0, r1, AXPY_ROWS):
                axpy_tile_sgd(D, d_off + r, 1, n_d, A, a_off + c, n_cols, n_samples, params,
                              w_off + r * n_cols + c, n_cols, min(AXPY_ROWS, r1 - r), nc,
                              params, lr, inv_n, decay)
