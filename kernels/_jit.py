"""The only place numba options are written.

fastmath: ``reassoc`` lets LLVM vectorise the dot-product loops (a sum may be
reordered), ``contract`` allows fused multiply-add. Never ``nnan``/``ninf``: the
API checks losses with ``np.isfinite`` and a NaN must stay a NaN.
"""

import numba

_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
_OPTS = dict(cache=True, nogil=True, error_model="numpy", fastmath=_FASTMATH)

jit_serial = numba.njit(**_OPTS)
jit_parallel = numba.njit(parallel=True, **_OPTS)
