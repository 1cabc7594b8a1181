"""Thread policy: how many numba threads a call runs on, and when a batch is big
enough for a parallel region. Results never depend on any of it."""

import contextlib

import numba


@contextlib.contextmanager
def numba_threads(n):
    """Run a block with ``n`` numba threads (None: leave the count as it is), capped
    at ``numba.config.NUMBA_NUM_THREADS``; the previous count comes back afterwards,
    also on error."""
    if n is None:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def flops_per_sample(sizes):
    """Training FLOPs of one sample: 2 per weight forward, 2 for its gradient, 2 for
    propagating delta back through it (which the first layer skips)."""
    n_weights = [n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)]
    return 6 * sum(n_weights) - 2 * n_weights[0]
