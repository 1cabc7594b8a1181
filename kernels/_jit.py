"""The only place numba options are written.

Every kernel is cached on disk in fastbp's own folder, keyed by a digest of
all kernel sources (kernels/_cache.py; numba's ``cache=True`` would write beside
the source, inside site-packages, and check only each function's own file), and
compiled with IEEE arithmetic: no fastmath flag anywhere. The sums that LLVM would only vectorise
under ``reassoc`` (the per-sample forward's dot products) are the explicit
vector tiles of kernels/tiles.py instead.

fastmath was dropped because it made numba's freshly compiled code and the code
it caches disagree: a process that compiled the kernels got other bits than
every later process that loaded them from the cache (measured on numba 0.68
with fastmath on every kernel: SGD and Nesterov updates, batch 1 and
mini-batch, differed in the last bits between a first run and all later runs;
the culprit is how callees in other modules get optimised together with their
callers). tests/test_determinism.py trains in a fresh process with an empty cache
and again with the cache filled, and requires the same bits. If fastmath ever
comes back: never ``nnan``/``ninf`` (the API checks losses with ``np.isfinite``
and a NaN must stay a NaN), never ``arcp``.
"""

import numba

from fastbp.kernels import _cache

_OPTS = dict(nogil=True, error_model="numpy", fastmath=False)


def _cached(jit):
    def decorate(py_func):
        return _cache.enable(jit(py_func))

    return decorate


jit_serial = _cached(numba.njit(**_OPTS))
