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
def products_of(t, A, W, Z, reps):
    """``reps`` products of thread t's block (A[t] W[t]^T into Z[t])."""
    for _ in range(reps):
        matmul_nt(A[t], 0, W[t], 0, PROBE_ROWS, PROBE_INNER, PROBE_ROWS, Z[t], 0, PROBE_ROWS)


def products_alone(A, W, Z, reps):
    """``reps`` products of thread 0's block, on the calling thread."""
    products_of(np.int64(0), A, W, Z, np.int64(reps))


def products_on_each(A, W, Z, reps):
    """``reps`` products of block t on each thread t at once (A.shape[0] threads, started
    as fastbp's own parallel regions start theirs: fastbp._threads.launch)."""
    _threads.launch(products_of, A.shape[0], (A, W, Z, np.int64(reps)))


PROBE_REPS = 150  # products per thread and timing: ~3 ms at the 1-thread GEMM peak


def host_cores(threads, repeats=3):
    """How many cores the host gives ``threads`` numba threads right now: ``threads``
    times the time of an in-cache product loop on one thread over its time when every
    thread runs one at once (see above); the median of ``repeats``."""
    shape = (threads, PROBE_ROWS * PROBE_INNER)
    A = np.random.default_rng(0).random(shape, dtype=np.float32)
    W, Z = A[::-1].copy(), np.zeros((threads, PROBE_ROWS**2), np.float32)
    products_alone(A, W, Z, 1)  # loaded (or compiled) outside the timing
    products_on_each(A, W, Z, 1)
    found = []
    for _ in range(repeats):
        start = time.perf_counter()
        products_alone(A, W, Z, PROBE_REPS)
        alone = time.perf_counter() - start
        start = time.perf_counter()
        products_on_each(A, W, Z, PROBE_REPS)
        found.append(threads * alone / (time.perf_counter() - start))
    return statistics.median(found)
