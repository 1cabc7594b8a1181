"""The register-tile kernels of kernels/tiles.py, emitted as LLVM IR.

Each tile is a numba ``@intrinsic`` over 1-d float buffers (one dtype) with
explicit vector fused multiply-adds (``llvm.fma``) and no bounds checks (the
checked wrappers of kernels/tiles.py check every block once per call):

- ``dot_tile`` (forward, Z = A W^T): a DOT_ROWS x DOT_COLS tile of Z, each
  element a dot product along rows that are contiguous in both A and W: vector
  partial sums over j (lane k sums j = k, k + V, ...), then a fixed tree over the
  lanes; ``vec_tile`` is its 1 x VEC_COLS form for one sample (matvec);
- ``axpy_tile`` (backward D W, gradient D^T A): AXPY_ROWS rows of AXPY_VECS
  vectors of the output, each element one running sum over the contraction
  index in order (a scalar of D times a contiguous row of W or A, added per
  step); ``axpy_narrow`` the NARROW_ROWS x 1-vector form for a last strip;
  ``*_resume`` continue sums stored in C, ``*_sgd`` take plain SGD's step on W
  instead of storing the sum.

Every element comes out of one tile with one fixed order of operations, which is
why the split of rows between threads changes no bit. Rows or columns past the
edge of a tile are never read (rows: the last valid row is read again and its
result dropped; columns: masked loads and stores).

The vector width follows the host: 64 bytes with AVX-512, else 32 (numba's cache
is keyed by the CPU, so a cached kernel never meets the other width). Results
are deterministic on a machine; two machines with other widths may differ in the
last bits.
"""

import os

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# FASTBP_VECTOR_BYTES=32 forces the AVX2 build (tests run it, with NUMBA_CPU_NAME=haswell
# and a fresh NUMBA_CACHE_DIR, on AVX-512 machines): kernels already in numba's cache
# keep the width they were compiled with.
VECTOR_BYTES = int(os.environ.get("FASTBP_VECTOR_BYTES", "0")) or (
    64 if llvm.get_host_cpu_features().get("avx512f", False) else 32)
# Tile shapes: accumulators plus the vectors loaded per step must fit the 32
# (AVX-512) or 16 (AVX2) vector registers. Measured on AVX-512 (float32, one core,
# GFLOP/s): dot 4x6 88-100 (5x5 and 6x4 alike, 4x7 spills: 59); axpy 6x4 100-106
# (12x2 83-101, 8x3 60-103).
if VECTOR_BYTES == 64:
    DOT_ROWS, DOT_COLS, AXPY_ROWS, AXPY_VECS, NARROW_ROWS = 4, 6, 6, 4, 8
else:
    DOT_ROWS, DOT_COLS, AXPY_ROWS, AXPY_VECS, NARROW_ROWS = 2, 4, 4, 2, 8
# One sample (online training, prediction): a tile of 1 x VEC_COLS outputs, so the
# VEC_COLS dot products share one transposed lane reduction.
VEC_COLS = 8 if VECTOR_BYTES == 64 else 6


def _bytes(flt):
    return 8 if isinstance(flt, ir.DoubleType) else 4


def _vector(context, dtype):
    flt = context.get_value_type(dtype)
    return ir.VectorType(flt, VECTOR_BYTES // _bytes(flt))


def _suffix(vec):
    return f"v{vec.count}f{8 * _bytes(vec.element)}"


def _call(builder, name, ret, args):
    fnty = ir.FunctionType(ret, [a.type for a in args])
    return builder.call(cgutils.get_or_insert_function(builder.module, fnty, name), args)


def _fma(builder, a, b, c):
    return _call(builder, f"llvm.fma.{_suffix(a.type)}", a.type, [a, b, c])


def _align(vec):
    return ir.IntType(32)(_bytes(vec.element))


def _masked_load(builder, ptr, vec, mask):
    return _call(builder, f"llvm.masked.load.{_suffix(vec)}.p0", vec,
                 [builder.bitcast(ptr, vec.as_pointer()), _align(vec), mask,
                  ir.Constant(vec, None)])


def _masked_store(builder, value, ptr, mask):
    vec = value.type
    _call(builder, f"llvm.masked.store.{_suffix(vec)}.p0", ir.VoidType(),
          [value, builder.bitcast(ptr, vec.as_pointer()), _align(vec), mask])


def _splat(builder, value, vec):
    """A vector with every lane ``value``."""
    one = builder.insert_element(ir.Constant(vec, None), value, ir.IntType(32)(0))
    return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(ir.IntType(32),
                                                                      vec.count), None))


def _lanes_below(builder, count, n_lanes):
    """Mask of the lanes k < count (count may be <= 0 or >= n_lanes)."""
    i64 = ir.IntType(64)
    lanes = ir.Constant(ir.VectorType(i64, n_lanes), list(range(n_lanes)))
    return builder.icmp_signed("<", lanes, _splat(builder, count, lanes.type))


def _merge(builder, a, b, width):
    """Two vectors of items that each span ``width`` lanes -> one vector of those
    items (a's, then b's), each now spanning width / 2 lanes: lower half plus
    upper half of every item. With b = a, the result's first half holds a's items."""
    V = a.type.count
    half = width // 2
    idx = ir.VectorType(ir.IntType(32), V)
    first = [i + t for i in range(0, V, width) for t in range(half)]
    lo = first + [V + k for k in first]
    hi = [k + half for k in lo]
    return builder.fadd(builder.shuffle_vector(a, b, ir.Constant(idx, lo)),
                        builder.shuffle_vector(a, b, ir.Constant(idx, hi)))


def _lane_sums(builder, vectors):
    """The lane sums of each vector, by a fixed tree, as scalars in order.

    Vectors are reduced in groups of up to V (a power of two each: 24 = 16 + 8)
    by pairwise merges that add lower and upper halves of every item at once
    (a transposed reduction: ~3 instructions a sum instead of ~12 when each
    vector is halved on its own; a 4 x 6 tile's forward spends ~10% less time)."""
    V = vectors[0].type.count
    sums = []
    at = 0
    while at < len(vectors):
        size = V
        while size > len(vectors) - at:
            size //= 2
        group, width = list(vectors[at : at + size]), V
        while len(group) > 1:
            group = [_merge(builder, group[k], group[k + 1], width)
                     for k in range(0, len(group), 2)]
            width //= 2
        v = group[0]
        while width > 1:  # fewer items than lanes: merge with itself
            v = _merge(builder, v, v, width)
            width //= 2
        sums += [builder.extract_element(v, ir.IntType(32)(k)) for k in range(size)]
        at += size
    return sums


def _row_pointers(builder, base, offset, stride, count, n_rows):
    """Pointers to rows offset + r stride, r < n_rows; rows r >= count point at row
    count - 1 (read again, results dropped)."""
    i64 = ir.IntType(64)
    rows = []
    for r in range(n_rows):
        rr = builder.select(builder.icmp_signed("<", i64(r), count), i64(r),
                            builder.sub(count, i64(1)))
        rows.append(builder.gep(base, [builder.add(offset, builder.mul(rr, stride))]))
    return rows


def _loop(builder, n_values, init, trip, body):
    """for k in range(0, trip, step): values = body(k, values); returns (k, values)
    at exit. ``body`` returns (next k, new values); ``init`` is every value's start,
    or a list of them."""
    i64 = ir.IntType(64)
    pre = builder.block
    head = builder.append_basic_block("tile.head")
    work = builder.append_basic_block("tile.body")
    done = builder.append_basic_block("tile.done")
    builder.branch(head)
    builder.position_at_end(head)
    k = builder.phi(i64)
    k.add_incoming(i64(0), pre)
    inits = init if isinstance(init, list) else [init] * n_values
    values = []
    for start in inits:
        p = builder.phi(start.type)
        p.add_incoming(start, pre)
        values.append(p)
    builder.cbranch(builder.icmp_signed("<", k, trip), work, done)
    builder.position_at_end(work)
    k_next, new = body(k, values)
    end = builder.block
    k.add_incoming(k_next, end)
    for p, n in zip(values, new):
        p.add_incoming(n, end)
    builder.branch(head)
    builder.position_at_end(done)
    return k, values


def _operands(context, builder, sig, args):
    """The arguments as LLVM values: data pointers for arrays, int64 for integers."""
    return [context.make_array(t)(context, builder, a).data if isinstance(t, types.Array)
            else context.cast(builder, a, t, types.int64) for a, t in zip(args, sig.args)]


def _dot_tile(n_rows, n_cols):
    """The dot tile kernel (an intrinsic) of n_rows x n_cols outputs."""

    def dot_tile(typingctx, A, a_off, lda, W, w_off, ldw, K, C, c_off, ldc, rows, cols):
        return _dot_codegen(n_rows, n_cols, A, a_off, lda, W, w_off, ldw, K, C, c_off, ldc,
                            rows, cols)

    return intrinsic(dot_tile)


def _dot_codegen(n_rows, n_cols, A, a_off, lda, W, w_off, ldw, K, C, c_off, ldc, rows, cols):
    """C[c_off + r ldc + c] = sum_k A[a_off + r lda + k] W[w_off + c ldw + k] for
    r < rows <= n_rows, c < cols <= n_cols (A, W, C: 1-d, one float dtype)."""
    ints = (a_off, lda, w_off, ldw, K, c_off, ldc, rows, cols)
    if not all(isinstance(t, types.Integer) for t in ints):
        return None
    sig = types.void(A, a_off, lda, W, w_off, ldw, K, C, c_off, ldc, rows, cols)

    def codegen(context, builder, signature, args):
        (ap, a_off_, lda_, wp, w_off_, ldw_, K_, cp, c_off_, ldc_, rows_,
         cols_) = _operands(context, builder, signature, args)
        i64 = ir.IntType(64)
        vec = _vector(context, signature.args[0].dtype)
        V = vec.count
        a_rows = _row_pointers(builder, ap, a_off_, lda_, rows_, n_rows)
        w_rows = _row_pointers(builder, wp, w_off_, ldw_, cols_, n_cols)
        whole = builder.mul(builder.sdiv(K_, i64(V)), i64(V))  # K rounded down to V

        def step(k, accs):
            av = [builder.load(builder.bitcast(builder.gep(p, [k]), vec.as_pointer()),
                               align=_align(vec).constant) for p in a_rows]
            wv = [builder.load(builder.bitcast(builder.gep(p, [k]), vec.as_pointer()),
                               align=_align(vec).constant) for p in w_rows]
            new = [_fma(builder, av[r], wv[c], accs[r * n_cols + c])
                   for r in range(n_rows) for c in range(n_cols)]
            return builder.add(k, i64(V)), new

        _, accs = _loop(builder, n_rows * n_cols, ir.Constant(vec, None), whole, step)
        # K % V trailing elements, if any: masked loads, zeros elsewhere (adding
        # 0 * 0 = +0 to a partial sum changes nothing, except -0 + 0 = +0 on an
        # all-zero sum). Skipped when V divides K, as every width of the grid's
        # layers does: an all-masked step was a fifth of the work of a 64-long row
        # (measured, paired runs against the unconditional step: 64-32-10 at batch
        # 128 fit +12%; 784-wide and 1024-wide rows within noise).
        rem = builder.sub(K_, whole)
        before = builder.block
        with builder.if_then(builder.icmp_signed(">", rem, i64(0)), likely=False):
            mask = _lanes_below(builder, rem, V)
            av = [_masked_load(builder, builder.gep(p, [whole]), vec, mask) for p in a_rows]
            wv = [_masked_load(builder, builder.gep(p, [whole]), vec, mask) for p in w_rows]
            tail = [_fma(builder, av[r], wv[c], accs[r * n_cols + c])
                    for r in range(n_rows) for c in range(n_cols)]
            after_tail = builder.block
        merged = []
        for acc, last in zip(accs, tail):
            p = builder.phi(vec)
            p.add_incoming(acc, before)
            p.add_incoming(last, after_tail)
            merged.append(p)
        totals = _lane_sums(builder, merged)
        for r in range(n_rows):
            for c in range(n_cols):
                total = totals[r * n_cols + c]
                inside = builder.and_(builder.icmp_signed("<", i64(r), rows_),
                                      builder.icmp_signed("<", i64(c), cols_))
                with builder.if_then(inside):
                    at_rc = builder.add(c_off_, builder.add(builder.mul(i64(r), ldc_), i64(c)))
                    builder.store(total, builder.gep(cp, [at_rc]))
        return context.get_dummy_value()

    return sig, codegen


def _axpy_tile(n_rows, n_vecs, sgd=False, resume=False):
    """The axpy tile kernel (an intrinsic) of n_rows rows and n_vecs vectors; with
    ``sgd`` the variant that takes an SGD step instead of storing, with ``resume``
    the one whose sums start from C's values (a sum continued over a further range
    of the contraction index). Each its own code: a runtime switch in one kernel
    slowed its loop by 15%."""
    if resume:
        def axpy_tile(typingctx, P, p_off, p_rs, p_cs, Q, q_off, ldq, J, C, c_off, ldc, rows,
                      cols):
            return _axpy_codegen(n_rows, n_vecs, P, p_off, p_rs, p_cs, Q, q_off, ldq, J, C,
                                 c_off, ldc, rows, cols, resume=True)
    elif sgd:
        def axpy_tile(typingctx, P, p_off, p_rs, p_cs, Q, q_off, ldq, J, C, c_off, ldc, rows,
                      cols, W, lr, inv_n, decay):
            return _axpy_codegen(n_rows, n_vecs, P, p_off, p_rs, p_cs, Q, q_off, ldq, J, C,
                                 c_off, ldc, rows, cols, W, lr, inv_n, decay)
    else:
        def axpy_tile(typingctx, P, p_off, p_rs, p_cs, Q, q_off, ldq, J, C, c_off, ldc, rows,
                      cols):
            return _axpy_codegen(n_rows, n_vecs, P, p_off, p_rs, p_cs, Q, q_off, ldq, J, C,
                                 c_off, ldc, rows, cols)

    return intrinsic(axpy_tile)


def _axpy_codegen(n_rows, n_vecs, P, p_off, p_rs, p_cs, Q, q_off, ldq, J, C, c_off,
                  ldc, rows, cols, W=None, lr=None, inv_n=None, decay=None, resume=False):
    """C[c_off + r ldc + c] = sum_j P[p_off + r p_rs + j p_cs] Q[q_off + j ldq + c],
    summed over j = 0, 1, ... in order, for r < rows <= n_rows and
    c < cols <= n_vecs vectors (P, Q, C: 1-d, one float dtype). With ``resume``
    each sum starts from C's value instead of 0 (rows past ``rows`` read C's last
    valid row), so a sum over j split into consecutive ranges, each range one call,
    has the bits of one call over all of them.

    With W (and scalars lr, inv_n, decay of its dtype) the sum S is not stored: W,
    laid out as C, takes plain SGD's step w - lr (S inv_n + decay w), the
    operations of ``update.sgd_block`` in its order; the tile's lines of W are
    prefetched before the sums (without that the loads stalled the epilogue and the
    step saved nothing)."""
    ints = (p_off, p_rs, p_cs, q_off, ldq, J, c_off, ldc, rows, cols)
    if not all(isinstance(t, types.Integer) for t in ints):
        return None
    takes_step = W is not None
    extra = (W, lr, inv_n, decay) if takes_step else ()
    sig = types.void(P, p_off, p_rs, p_cs, Q, q_off, ldq, J, C, c_off, ldc, rows, cols,
                     *extra)

    def codegen(context, builder, signature, args):
        (pp, p_off_, p_rs_, p_cs_, qp, q_off_, ldq_, J_, cp, c_off_, ldc_, rows_,
         cols_) = _operands(context, builder, signature, args[:13])
        if takes_step:
            wp = _operands(context, builder, signature, args[:14])[13]
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            for r in range(n_rows):  # the tile's W lines, asked for before the sums
                w_row = builder.gep(wp, [builder.add(c_off_, builder.mul(ir.IntType(64)(r),
                                                                         ldc_))])
                for k in range(0, n_vecs * 64, 64):
                    at = builder.bitcast(builder.gep(w_row, [ir.IntType(64)(k // 4)]), i8p)
                    _call(builder, "llvm.prefetch.p0", ir.VoidType(),
                          [at, i32(1), i32(3), i32(1)])
        i64 = ir.IntType(64)
        vec = _vector(context, signature.args[0].dtype)
        V = vec.count
        p_rows = _row_pointers(builder, pp, p_off_, p_rs_, rows_, n_rows)
        # Columns past ``cols`` are masked off (loads give 0, stores skip them), but
        # only in a tile at the edge: a tile whose every column is in range loads and
        # stores whole vectors. AVX2's masked loads (vmaskmov) in the inner loop cost
        # 2.4-2.9x on AMD znver1 (784-128-16 float32, measured: the data-set pass 19.9
        # -> 56.7 GFLOP/s, fit at batch 256 58k -> 137k samples/s); the same values
        # are loaded, so the bits do not change.
        masks = [_lanes_below(builder, builder.sub(cols_, i64(v * V)), V)
                 for v in range(n_vecs)]
        full = builder.icmp_signed(">=", cols_, i64(n_vecs * V))
        with builder.if_else(full) as (whole, edge):
            with whole:
                _axpy_body(builder, vec, n_rows, n_vecs, p_rows, p_cs_, qp, q_off_, ldq_, J_,
                           cp, c_off_, ldc_, rows_, args, None, resume, takes_step,
                           wp if takes_step else None)
            with edge:
                _axpy_body(builder, vec, n_rows, n_vecs, p_rows, p_cs_, qp, q_off_, ldq_, J_,
                           cp, c_off_, ldc_, rows_, args, masks, resume, takes_step,
                           wp if takes_step else None)
        return context.get_dummy_value()

    return sig, codegen


def _axpy_body(builder, vec, n_rows, n_vecs, p_rows, p_cs_, qp, q_off_, ldq_, J_, cp,
               c_off_, ldc_, rows_, args, masks, resume, takes_step, wp):
    """The sums and the epilogue of an axpy tile (see ``_axpy_codegen``): with
    ``masks`` (the edge) masked loads and stores, without them whole vectors."""
    i64 = ir.IntType(64)
    V = vec.count

    def load(ptr, v):
        if masks is None:
            return builder.load(builder.bitcast(ptr, vec.as_pointer()), align=_bytes(vec.element))
        return _masked_load(builder, ptr, vec, masks[v])

    def store(value, ptr, v):
        if masks is None:
            builder.store(value, builder.bitcast(ptr, vec.as_pointer()), align=_bytes(vec.element))
        else:
            _masked_store(builder, value, ptr, masks[v])

    def step(j, accs):
        q_row = builder.gep(qp, [builder.add(q_off_, builder.mul(j, ldq_))])
        qv = [load(builder.gep(q_row, [i64(v * V)]), v) for v in range(n_vecs)]
        at_j = builder.mul(j, p_cs_)
        new = []
        for r in range(n_rows):
            p = _splat(builder, builder.load(builder.gep(p_rows[r], [at_j])), vec)
            new += [_fma(builder, p, qv[v], accs[r * n_vecs + v]) for v in range(n_vecs)]
        return builder.add(j, i64(1)), new

    init = ir.Constant(vec, None)
    if resume:  # the partial sums so far, stored in C by the previous range's call
        c_rows = _row_pointers(builder, cp, c_off_, ldc_, rows_, n_rows)
        init = [load(builder.gep(c_rows[r], [i64(v * V)]), v)
                for r in range(n_rows) for v in range(n_vecs)]
    _, accs = _loop(builder, n_rows * n_vecs, init, J_, step)
    if takes_step:
        lr_v, inv_n_v, decay_v = (_splat(builder, x, vec) for x in args[14:17])
    for r in range(n_rows):
        with builder.if_then(builder.icmp_signed("<", i64(r), rows_)):
            at_row = builder.add(c_off_, builder.mul(i64(r), ldc_))
            for v in range(n_vecs):
                g = accs[r * n_vecs + v]
                if takes_step:
                    w_at = builder.gep(wp, [builder.add(at_row, i64(v * V))])
                    w = load(w_at, v)
                    change = builder.fadd(builder.fmul(g, inv_n_v), builder.fmul(decay_v, w))
                    store(builder.fsub(w, builder.fmul(lr_v, change)), w_at, v)
                else:
                    store(g, builder.gep(cp, [builder.add(at_row, i64(v * V))]), v)


# The main tile, and for a last strip of columns one vector wide (784 = 12 x 64 +
# 16 columns: the main tile would compute 64 there), a taller one-vector tile
# (8 rows; 4 and 12 measured the same within this machine's noise).
dot_tile = _dot_tile(DOT_ROWS, DOT_COLS)
vec_tile = _dot_tile(1, VEC_COLS)
axpy_tile = _axpy_tile(AXPY_ROWS, AXPY_VECS)
axpy_narrow = _axpy_tile(NARROW_ROWS, 1)
axpy_tile_resume = _axpy_tile(AXPY_ROWS, AXPY_VECS, resume=True)
axpy_narrow_resume = _axpy_tile(NARROW_ROWS, 1, resume=True)
axpy_tile_sgd = _axpy_tile(AXPY_ROWS, AXPY_VECS, True)
axpy_narrow_sgd = _axpy_tile(NARROW_ROWS, 1, True)
