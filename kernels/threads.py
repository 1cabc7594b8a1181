"""A probe of numba's thread pool (is a parallel region cheap right now?) and the
atomic counters that let the threads of one region wait for each other."""

import llvmlite.binding as llvm
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from fastbp.kernels._jit import jit_parallel, jit_serial
from fastbp.kernels.tiles import matmul_nt


@jit_parallel
def region_probe(out):
    """One trivial parallel region (each thread bumps its own elements of ``out``).

    Measured on the 2-core machine: about 3 us when the cores are free, about
    8 ms when another process holds one of them, because libgomp's spinning
    threads then wait for a time slice at every region (see fastbp.model).
    """
    for i in prange(out.shape[0]):
        out[i] += 1.0


# -- how many cores the host gives the threads right now (fastbp bench) -------------
#
# On these shared virtual machines the two vCPUs are not always two cores: for
# seconds to minutes at a time, every 2-thread epoch of every framework ran at about
# the 1-thread speed while 1-thread epochs kept theirs, and both threads of a fastbp
# epoch then took twice the cycles for the same tasks (TSC; no steal time in
# /proc/stat): the vCPUs shared one core. The probe below times the same in-cache
# product on one thread and then on each thread at once.

PROBE_ROWS, PROBE_INNER = 64, 256  # a 64 x 256 times 256 x 64 product: 64 KiB each


@jit_serial
def products_alone(A, W, Z, reps):
    """``reps`` products of thread 0's block, on the calling thread."""
    for _ in range(reps):
        matmul_nt(A[0], 0, W[0], 0, PROBE_ROWS, PROBE_INNER, PROBE_ROWS, Z[0], 0, PROBE_ROWS)


@jit_parallel
def products_on_each(A, W, Z, reps):
    """``reps`` products of block t on each thread t at once (A.shape[0] threads)."""
    for t in prange(A.shape[0]):
        for _ in range(reps):
            matmul_nt(A[t], 0, W[t], 0, PROBE_ROWS, PROBE_INNER, PROBE_ROWS, Z[t], 0,
                      PROBE_ROWS)


# -- counters shared by the threads of one parallel region (see gemm._epoch_parallel) --


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

