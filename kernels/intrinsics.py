"""The LLVM intrinsics kernels use, each a numba ``@intrinsic``.

``prefetch(X, i, j)``
    Ask the CPU to start loading X[i, j]'s cache line (X 2-D; no effect on
    results, never faults). Shuffled epochs read the rows of X in random order,
    so each sample's row misses the caches. A plain load of the next row would
    stall the pipeline until it arrives; LLVM's prefetch hint does not, and lets
    the next row arrive while this sample computes (measured: +15-25% samples/s
    on 64-32-10 at batch 1).

``unit_kept(base, unit, thr)``
    Dropout's per-unit draw (see kernels/dropout.py) in 32-bit lanes: numba
    computes uint32 arithmetic in 64 bits, and 64-bit lane multiplies have no AVX2
    instruction (emulated by three vpmuludq each). Written as i32 operations here
    it vectorises with vpmulld: a 784-unit row took 0.84 ns a unit, against 4.3 ns
    with splitmix64 per unit (measured in cache, float32).

``fetch_add``, ``load_acquire``, ``claim``, ``spin_pause``, ``cycles``
    The counters shared by the threads of one parallel region, on 1-d int64
    arrays, with no bounds check (the callers index arrays they sized), and the
    CPU's spin hint and cycle counter: how the one-region scheduler's threads
    wait for each other and time their tasks (see kernels/train.py).
"""

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def prefetch(typingctx, arr, i, j):
    """Hint: X[i, j] will be read soon (no effect on results; never faults)."""
    if not (isinstance(arr, types.Array) and arr.ndim == 2):
        return None
    sig = types.void(arr, i, j)

    def codegen(context, builder, signature, args):
        arrty = signature.args[0]
        ary = context.make_array(arrty)(context, builder, args[0])
        idx = [context.cast(builder, args[1], signature.args[1], types.intp),
               context.cast(builder, args[2], signature.args[2], types.intp)]
        ptr = cgutils.get_item_pointer(context, builder, arrty, ary, idx)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # read (0), keep in all cache levels (3), data cache (1)
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def unit_kept(typingctx, base, unit, thr):
    """Whether dropout keeps unit ``unit`` of the layer whose draw state is the
    uint64 ``base``: with lo, hi its low and high 32 bits, u = fmix32(((lo + unit
    0x9E3779B9) mod 2^32) xor hi) >> 8 (murmur3's finalizer, 24 bits), kept when
    u >= thr (thr <= 2^24). All in i32: see the module docstring."""
    if not all(isinstance(t, types.Integer) for t in (base, unit, thr)):
        return None

    def codegen(context, builder, signature, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        state = context.cast(builder, args[0], signature.args[0], types.uint64)
        lo, hi = builder.trunc(state, i32), builder.trunc(builder.lshr(state, i64(32)), i32)
        k = builder.trunc(context.cast(builder, args[1], signature.args[1], types.int64), i32)
        t = builder.trunc(context.cast(builder, args[2], signature.args[2], types.uint64), i32)
        h = builder.xor(builder.add(lo, builder.mul(k, i32(0x9E3779B9))), hi)
        h = builder.xor(h, builder.lshr(h, i32(16)))
        h = builder.mul(h, i32(0x85EBCA6B))
        h = builder.xor(h, builder.lshr(h, i32(13)))
        h = builder.mul(h, i32(0xC2B2AE35))
        h = builder.xor(h, builder.lshr(h, i32(16)))
        return builder.icmp_unsigned(">=", builder.lshr(h, i32(8)), t)

    return types.boolean(base, unit, thr), codegen


# -- counters shared by the threads of one parallel region (see train._epoch_parallel) --


def _slot(context, builder, signature, args):
    """Pointer to element args[1] of the 1-d int64 array args[0] (no bounds check:
    the callers index arrays they sized)."""
    arrty = signature.args[0]
    ary = context.make_array(arrty)(context, builder, args[0])
    idx = context.cast(builder, args[1], signature.args[1], types.intp)
    return cgutils.get_item_pointer(context, builder, arrty, ary, [idx])


def _is_int64_vector(arr):
    return isinstance(arr, types.Array) and arr.ndim == 1 and arr.dtype == types.int64


@intrinsic
def fetch_add(typingctx, arr, i, value):
    """arr[i] += value atomically (sequentially consistent: the stores before it are
    seen by a thread that sees the new value); returns the old value."""
    if not (_is_int64_vector(arr) and isinstance(i, types.Integer)
            and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ptr = _slot(context, builder, signature, args)
        val = context.cast(builder, args[2], signature.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, val, "seq_cst")

    return types.int64(arr, i, value), codegen


@intrinsic
def load_acquire(typingctx, arr, i):
    """arr[i], read atomically with acquire order: the stores a thread made before
    its fetch_add of arr[i] are visible after this load sees that add."""
    if not (_is_int64_vector(arr) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        return builder.load_atomic(_slot(context, builder, signature, args), "acquire", 8)

    return types.int64(arr, i), codegen


_X86 = llvm.get_process_triple().startswith(("x86_64", "i686", "i386"))


@intrinsic
def spin_pause(typingctx):
    """The CPU's spin-wait hint (x86 ``pause``; nothing elsewhere)."""

    def codegen(context, builder, signature, args):
        if _X86:
            fnty = ir.FunctionType(ir.VoidType(), [])
            builder.call(cgutils.get_or_insert_function(builder.module, fnty,
                                                        "llvm.x86.sse2.pause"), [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def claim(typingctx, arr, i, who):
    """Set arr[i] to ``who`` (> 0) if it is 0, atomically; returns the value it held
    (0: the claim succeeded)."""
    if not (_is_int64_vector(arr) and isinstance(i, types.Integer)
            and isinstance(who, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ptr = _slot(context, builder, signature, args)
        new = context.cast(builder, args[2], signature.args[2], types.int64)
        pair = builder.cmpxchg(ptr, ir.IntType(64)(0), new, "seq_cst", "seq_cst")
        return builder.extract_value(pair, 0)

    return types.int64(arr, i, who), codegen


@intrinsic
def cycles(typingctx):
    """The CPU's cycle counter (x86: the constant-rate TSC), for timing a thread's
    own work; 0 where the target has none."""

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.readcyclecounter")
        return builder.call(fn, [])

    return types.int64(), codegen

