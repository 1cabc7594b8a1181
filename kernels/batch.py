"""Mini-batch stages: one batch's forward, loss, delta recursion, gradient and
update, from the register-tile products of :mod:`fastbp.kernels.tiles`
(Z = A W^T, D' = D W, dW = D^T A), each split into parts. The kernel that runs
them, for epochs and whole-data-set passes alike: ``region`` in
:mod:`fastbp.kernels.train`.

Batch matrices are stored layer-major: the activations of layer l for the
batch are one C-contiguous (B, n_l) block at ``B * layout[UNIT, l]`` of a flat
buffer (likewise z and delta), so each product reads and writes whole
contiguous blocks. ``rows`` is the number of samples the buffers hold.

A batch is two steps, each split into ``parts`` parts:

1. per part of the samples: gather the inputs, forward through every layer,
   loss and delta^L, and the whole delta recursion down to layer 1 -- all of
   it per sample, so the parts are independent (the first hidden layer's
   product is split by units instead: see _first_layer_part);
2. per part of the rows of every W^l: the weight gradient of those rows
   (D^T A_prev), the bias gradient, and the optimizer update of exactly those
   parameters -- each part owns what it writes.

Every element of a product comes out of one tile with a fixed order of
operations (see kernels/tiles.py), so how the rows are split into parts does
not change a bit: the parameters are bit-identical serially and on any number
of threads. ``cuts`` (empty: equal parts) places the part boundaries (see
_bounds).

Compile time is what a new user waits for, so each function has one type
signature: constants passed to a kernel are ``np.bool_``/``np.int64`` values
(numba compiles a callee again for each literal ``True``/``0`` and for uint64
against int64).
"""

from numba import uint64

from fastbp.kernels._jit import jit_serial
from fastbp.kernels.activations import activate, losses_and_deltas, scale_by_derivative
from fastbp.kernels.codes import H_HUBER, H_L2, H_LR, H_WD, SOFTMAX
from fastbp.kernels.dropout import drop_backward_rows, drop_forward_rows, rate
from fastbp.kernels.intrinsics import prefetch
from fastbp.kernels.layout import BOFF, SIZE, UNIT, WOFF, block
from fastbp.kernels.tiles import matmul_nn, matmul_nt, matmul_tn, sgd_step_tn
from fastbp.kernels.update import clip_update, plain_sgd, update_range

# How far ahead the gather asks for rows of X: at least PREFETCH_ROWS rows and
# PREFETCH_BYTES of them, so that short rows (64 float32: ~20 ns to copy) still
# cover a DRAM miss and its page walk (~100-300 ns). Rows of T are asked for as
# their X rows are copied: on S 64-32-10 at batch 128, shuffled over 200,000 rows,
# the loss's misses on T had left epochs 1.9M samples/s against 2.8M in order;
# with T prefetched 2.3M.
PREFETCH_ROWS = 4
PREFETCH_BYTES = 8192

# _UNSIGNED: element loops over a bias or a part of a row index with a loop variable
# that is 0-based or unsigned. numba wraps every signed index (i < 0 -> i + len);
# with an offset added (params[b_off + i], D[s, r0 + i]) LLVM cannot prove it
# non-negative, keeps the select and leaves the loop scalar. Measured on a
# 256 x 1024 block: the bias add 0.12 -> 0.02 ms, the bias gradient 0.14 -> 0.02 ms
# (784-1024-1024-10 at batch 256 has two of each a batch: ~0.45 ms of ~27). Same
# operations in the same order: the same bits.


@jit_serial
def _bounds(c, n, parts, cuts):
    """Rows [start, stop) of part c when n rows are split into ``parts`` parts: equal
    parts, or with ``cuts`` (parts + 1 fractions from 0 to 1, see _epoch_parallel)
    the rows between n cuts[c] and n cuts[c + 1], rounded."""
    if cuts.shape[0] == 0:
        return (c * n) // parts, ((c + 1) * n) // parts
    return int(n * cuts[c] + 0.5), int(n * cuts[c + 1] + 0.5)


@jit_serial
def _layer(buf, layout, rows, l, n):
    """Layer l's (n, n_l) block of a layer-major buffer holding ``rows`` samples."""
    return block(buf, rows * layout[UNIT, l], n, layout[SIZE, l])


# -- step 1: everything per sample, for one part of the samples --------------------


@jit_serial
def _gather_part(c, parts, layout, hyper, X, T, order, first, n, rows, acts, cuts):
    """Rows order[first + s] of X into a^0 for the samples s of part c; their rows
    of T are asked for too (read later, by the loss)."""
    s0, s1 = _bounds(c, n, parts, cuts)
    A0 = _layer(acts, layout, rows, 0, n)
    line = 64 // X.itemsize  # elements per cache line
    distance = max(PREFETCH_ROWS, PREFETCH_BYTES // (A0.shape[1] * X.itemsize))
    for s in range(s0, min(s1, s0 + distance)):  # the first rows: asked for at once
        for j in range(0, A0.shape[1], line):
            prefetch(X, order[first + s], j)
    for s in range(s0, s1):  # element loops, no row views: misses overlap better
        # Shuffled rows miss the caches: ask for the row ``distance`` samples ahead
        # while this one is copied (see kernels/intrinsics.py).
        if s + distance < s1:
            for j in range(0, A0.shape[1], line):
                prefetch(X, order[first + s + distance], j)
        idx = order[first + s]
        prefetch(T, idx, 0)  # first and last element: a row may span two lines
        prefetch(T, idx, T.shape[1] - 1)
        for j in range(A0.shape[1]):
            A0[s, j] = X[idx, j]
    # input dropout (kernels/dropout.py), one call for the part's rows (its settings
    # once, not per sample), over rows just copied (still cached)
    drop_forward_rows(A0, s0, s1, 0, A0.shape[1], hyper, 0, order, first)


@jit_serial
def _first_layer_part(c, parts, params, layout, codes, hyper, order, first, n, rows, acts, zs,
                      cuts):
    """z^1 and a^1 = s(z^1) of the hidden units of part c, for every sample.

    Split by units, not samples: part c reads only its rows of W^1, the rows it
    also updates in the second step, so W^1 (usually most of the weights) stays in
    one core's cache from batch to batch instead of crossing to the other core
    (measured on 784-256-128-10 at batch 32, 2 threads: each batch's two steps took
    ~25% longer than either step alone, W^1 moving between the cores)."""
    n_in, n_out = layout[SIZE, 0], layout[SIZE, 1]
    u0, u1 = _bounds(c, n_out, parts, cuts)
    if u1 == u0:
        return
    matmul_nt(acts, 0, params, layout[WOFF, 1] + u0 * n_in, n, n_in, u1 - u0, zs,
              rows * layout[UNIT, 1] + u0, n_out)
    Z = _layer(zs, layout, rows, 1, n)
    A = _layer(acts, layout, rows, 1, n)
    b_off = layout[BOFF, 1]
    if b_off >= 0:
        b = params[b_off + u0 : b_off + u1]
        for s in range(n):
            for i in range(uint64(u0), uint64(u1)):  # unsigned: see _UNSIGNED
                Z[s, i] += b[i - uint64(u0)]
    if u1 - u0 == n_out:  # all the units (one part): the rows as one flat run, one call
        start = rows * layout[UNIT, 1]
        activate(zs[start : start + n * n_out], acts[start : start + n * n_out], codes[0])
    else:  # element-wise, the part's units of each row (a view and a call per row)
        for s in range(n):
            activate(Z[s, u0:u1], A[s, u0:u1], codes[0])
    # the mask of each unit depends on its sample and unit only, not on the part
    drop_forward_rows(A, 0, n, u0, u1, hyper, 1, order, first)


@jit_serial
def _samples_part(c, parts, params, layout, codes, hyper, T, order, weights, first, n, rows,
                  acts, zs, deltas, losses, want_loss, want_delta, from_layer, cuts):
    """Layers ``from_layer``..L forward, the loss, delta^L and the delta recursion
    down to layer 1, for the samples of part c (a^(from_layer - 1) is ready)."""
    s0, s1 = _bounds(c, n, parts, cuts)
    if s1 == s0:
        return
    n_layers = layout.shape[1] - 1
    for l in range(from_layer, n_layers + 1):
        n_in, n_out = layout[SIZE, l - 1], layout[SIZE, l]
        Z = _layer(zs, layout, rows, l, n)
        A = _layer(acts, layout, rows, l, n)
        matmul_nt(acts, rows * layout[UNIT, l - 1] + s0 * n_in, params, layout[WOFF, l],
                  s1 - s0, n_in, n_out, zs, rows * layout[UNIT, l] + s0 * n_out, n_out)
        b_off = layout[BOFF, l]
        code = codes[0] if l < n_layers else codes[1]
        if b_off >= 0:
            b = params[b_off : b_off + n_out]  # indexed from 0: see _UNSIGNED
            for s in range(s0, s1):
                for i in range(n_out):
                    Z[s, i] += b[i]
        if code == SOFTMAX:  # couples the outputs of a sample
            for s in range(s0, s1):
                activate(Z[s], A[s], code)
        else:  # element-wise: the part's rows as one flat run, one call, no row views
            start = rows * layout[UNIT, l]
            activate(zs[start + s0 * n_out : start + s1 * n_out],
                     acts[start + s0 * n_out : start + s1 * n_out], code)
        if l < n_layers:
            drop_forward_rows(A, s0, s1, 0, n_out, hyper, l, order, first)
    if not want_loss:
        return
    n_out = layout[SIZE, n_layers]
    start = rows * layout[UNIT, n_layers]
    losses_and_deltas(zs, acts, deltas, start, n_out, s0, s1, T, order, first, losses,
                      want_delta, codes[1], codes[2], hyper[H_HUBER])
    if weights.shape[0] > 0:  # each sample's share of the weighted sums: w loss, w delta
        for s in range(s0, s1):
            w = weights[order[first + s]]
            losses[s] *= w
            if want_delta:
                for i in range(start + s * n_out, start + (s + 1) * n_out):
                    deltas[i] *= w
    if not want_delta:
        return
    for l in range(n_layers, 1, -1):  # delta^(l-1) = (delta^l W^l) o s'(z^(l-1))
        n_hi, n_lo = layout[SIZE, l], layout[SIZE, l - 1]
        matmul_nn(deltas, rows * layout[UNIT, l] + s0 * n_hi, params, layout[WOFF, l], s1 - s0,
                  n_hi, n_lo, deltas, rows * layout[UNIT, l - 1] + s0 * n_lo)
        if rate(hyper, l - 1) > 0.0:  # the masks again, the derivative with them
            Z = _layer(zs, layout, rows, l - 1, n)
            A = _layer(acts, layout, rows, l - 1, n)
            D = _layer(deltas, layout, rows, l - 1, n)
            drop_backward_rows(Z, A, D, s0, s1, codes[0], hyper, l - 1, order, first)
            continue
        lo = rows * layout[UNIT, l - 1] + s0 * layout[SIZE, l - 1]
        hi = rows * layout[UNIT, l - 1] + s1 * layout[SIZE, l - 1]
        scale_by_derivative(zs[lo:hi], acts[lo:hi], deltas[lo:hi], codes[0])  # flat run


# -- step 2: gradient (and update) for one part of the rows of one W^l --------------


@jit_serial
def _rows_part(task, parts, params, layout, n, rows, acts, deltas, grads, buf1,
               buf2, hyper, step, update, count, cuts):
    """Part c of the rows of W^l, task = c * L + (l - 1): dW = D^T A_prev and db =
    column sums of D (sums over the batch), then, with ``update``, the optimizer
    step of those weights and biases with gradient sum / count (``count``: the
    batch's total sample weight). The L2 penalty (hyper[H_L2]) adds l2 W / count
    to the weights' gradient, folded into their decay; biases get weight_decay
    (hyper[H_WD]) only.

    Tasks run part-major so that each thread owns the same part of every
    layer: layer-major put all of the big first layer on
    one thread (measured: 2 threads 1.4x instead of 1.8x on 784-256-128-10)."""
    n_layers = layout.shape[1] - 1
    l = task % n_layers + 1
    n_in, n_out = layout[SIZE, l - 1], layout[SIZE, l]
    r0, r1 = _bounds(task // n_layers, n_out, parts, cuts)
    D = _layer(deltas, layout, rows, l, n)
    w_off, b_off = layout[WOFF, l], layout[BOFF, l]
    decay = hyper[H_WD] + hyper[H_L2] / count
    # Plain SGD steps the weights inside the gradient product (the same bits, the
    # gradient never stored); other optimizers keep state per weight and step below.
    fused = update and plain_sgd(hyper)
    if fused:
        sgd_step_tn(deltas, rows * layout[UNIT, l], n_out, r0, r1, acts,
                    rows * layout[UNIT, l - 1], n, n_in, params, w_off, hyper[H_LR], count, decay)
    else:
        matmul_tn(deltas, rows * layout[UNIT, l], n_out, r0, r1, acts,
                  rows * layout[UNIT, l - 1], n, n_in, grads, w_off)
    if b_off >= 0:
        # Column sums of D over samples in order, each row's sum its own lane: the
        # loop over i vectorises with IEEE arithmetic, where one running sum per
        # row (a reduction) would not.
        db = grads[b_off + r0 : b_off + r1]
        db[:] = 0
        for s in range(n):
            for i in range(uint64(r0), uint64(r1)):  # unsigned: see _UNSIGNED
                db[i - uint64(r0)] += D[s, i]
    if not update:
        return
    if not fused:
        update_range(params, grads, count, buf1, buf2, hyper, step, hyper[H_L2] / count,
                     w_off + r0 * n_in, w_off + r1 * n_in)
    if b_off >= 0:
        update_range(params, grads, count, buf1, buf2, hyper, step, 0.0, b_off + r0,
                     b_off + r1)


@jit_serial
def _update_part(task, parts, params, layout, grads, buf1, buf2, hyper, step, count, coef,
                 cuts):
    """With clipping: the optimizer step of part c of the rows of W^l and their
    biases (task as in ``_rows_part``), from the gradient sums and the clip factor
    ``coef`` (update.clip_update)."""
    n_layers = layout.shape[1] - 1
    l = task % n_layers + 1
    n_in, n_out = layout[SIZE, l - 1], layout[SIZE, l]
    r0, r1 = _bounds(task // n_layers, n_out, parts, cuts)
    w_off, b_off = layout[WOFF, l], layout[BOFF, l]
    b0 = b_off + r0 if b_off >= 0 else 0
    b1 = b_off + r1 if b_off >= 0 else 0
    clip_update(params, grads, count, buf1, buf2, hyper, step, coef, w_off + r0 * n_in,
                w_off + r1 * n_in, b0, b1)


@jit_serial
def _batch_count(weights, order, first, n):
    """The batch's total sample weight (its sample count without weights)."""
    if weights.shape[0] == 0:
        return float(n)
    count = 0.0
    for s in range(n):  # in sample order
        count += weights[order[first + s]]
    return count
