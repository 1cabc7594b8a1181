"""The only place numba options are written.

Every kernel is cached on disk (``cache=True``) and compiled with IEEE
arithmetic, except ``jit_reduce``: the per-sample forward pass, whose
dot products only vectorise when LLVM may reorder the sum (``reassoc``) and use
fused multiply-adds (``contract``); without them online training ran 2-6x slower
(measured: S 64-32-10 and M 784-256-128-10 at batch 1).

fastmath is kept to that one function because it made numba's freshly compiled
code and the code it caches disagree: a process that compiled the kernels got
other bits than every later process that loaded them from the cache (measured on
numba 0.68 with fastmath on every kernel: SGD and Nesterov updates, batch 1 and
mini-batch, differed in the last bits between a first run and all later runs;
the culprit is how callees in other modules get optimised together with their
callers). tests/test_determinism.py trains in a fresh process with an empty cache
and again with the cache filled, and requires the same bits.

Never ``nnan``/``ninf``: the API checks losses with ``np.isfinite`` and a NaN must
stay a NaN; never ``arcp`` (x / y as x * (1 / y) made the same disagreement even
within one function's callees).
"""

import numba

_FASTMATH = {"reassoc", "contract", "nsz"}
_OPTS = dict(cache=True, nogil=True, error_model="numpy", fastmath=False)

jit_serial = numba.njit(**_OPTS)
jit_parallel = numba.njit(parallel=True, **_OPTS)
jit_reduce = numba.njit(**{**_OPTS, "fastmath": _FASTMATH})
