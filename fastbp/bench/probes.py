"""How many cores the host gives the threads right now (:func:`host_cores`), timed
with an in-cache product on one thread and then on each thread at once: numba
kernels that only ``fastbp bench`` uses, so they live here, not in
``fastbp.kernels``.

On these shared virtual machines the two vCPUs are not always two cores: for
seconds to minutes at a time, every 2-thread epoch of every framework ran at about
the 1-thread speed while 1-thread epochs kept theirs, and both threads of a fastbp
epoch then took twice the cycles for the same tasks (TSC; no steal time in
/proc/stat): the vCPUs shared one core.
"""

import statistics
import time

import numpy as np

from fastbp import _threads
from fastbp.kernels._jit import jit_serial
from fastbp.kernels.intrinsics import cycles, fetch_add, load_acquire, spin_pause
from fastbp.kernels.tiles import matmul_nt

__all__ = [
    "PROBE_INNER",
    "PROBE_ROWS",
    "host_cores",
    "products_alone",
    "products_on_each",
]

PROBE_ROWS, PROBE_INNER = 64, 256  # a 64 x 256 times 256 x 64 product: 64 KiB each


@jit_serial
def products_of(t, parts, A, W, Z, reps, spent):
    """``reps`` products of thread t's block (A[t] W[t]^T into Z[t]), started when all
    ``parts`` threads have arrived (spent[parts]: the arrivals); the cycles they
    took into spent[t]."""
    fetch_add(spent, parts, 1)
    while load_acquire(spent, parts) < parts:
        spin_pause()
    start = cycles()
    for _ in range(reps):
        matmul_nt(A[t], 0, W[t], 0, PROBE_ROWS, PROBE_INNER, PROBE_ROWS, Z[t], 0, PROBE_ROWS)
    spent[t] = cycles() - start


def _products(threads, A, W, Z, reps):
    """The cycles of the slowest of ``threads`` threads running products_of at once
    (fastbp._threads.launch starts them as fastbp's regions start theirs; a thread's
    wake-up is not counted: all start together)."""
    spent = np.zeros(threads + 1, np.int64)
    start = time.perf_counter()
    _threads.launch(products_of, threads, (np.int64(threads), A, W, Z, np.int64(reps), spent))
    seconds = time.perf_counter() - start
    return spent[:threads].max() or seconds  # no cycle counter: the wall time


def products_alone(A, W, Z, reps):
    """``reps`` products of thread 0's block, on the calling thread: their cycles."""
    return _products(1, A, W, Z, reps)


def products_on_each(A, W, Z, reps):
    """``reps`` products of block t on each thread t at once (A.shape[0] threads): the
    cycles of the slowest."""
    return _products(A.shape[0], A, W, Z, reps)


PROBE_REPS = 150  # products per thread and timing: ~3 ms at the 1-thread GEMM peak


def host_cores(threads, repeats=3):
    """How many cores the host gives ``threads`` threads right now: ``threads`` times
    the cycles of an in-cache product loop on one thread over those of the slowest
    thread when every thread runs one at once (see above); the median of
    ``repeats``."""
    shape = (threads, PROBE_ROWS * PROBE_INNER)
    A = np.random.default_rng(0).random(shape, dtype=np.float32)
    W, Z = A[::-1].copy(), np.zeros((threads, PROBE_ROWS**2), np.float32)
    products_alone(A, W, Z, 1)  # loaded (or compiled) outside the timing
    products_on_each(A, W, Z, 1)
    found = []
    for _ in range(repeats):
        alone = products_alone(A, W, Z, PROBE_REPS)
        found.append(threads * alone / max(1, products_on_each(A, W, Z, PROBE_REPS)))
    return statistics.median(found)
