"""``fastbp compile``: fill the kernel cache ahead of time (for Docker images and
CI), so that no user call pays the JIT compile.

Each step is a call of the public API on a few samples, so it compiles exactly
the specialisations that call makes: one per dtype, path and build. The mini-batch
and inference paths are run twice, with the serial and (on more than one numba
thread) the parallel build forced, since which one a call uses depends on the
data's size and the machine's load.
"""

import time

import numba
import numpy as np

from fastbp import _threads

DTYPES = ("float32", "float64")
PATHS = ("online", "batch", "inference")


def _steps(dtype, paths):
    from fastbp import Model

    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 4)).astype(dtype)
    Y = np.eye(3, dtype=dtype)[np.arange(8) % 3]
    model = Model([4, 5, 3], dtype=dtype, seed=0)
    if "online" in paths:
        yield "fit, batch size 1", None, lambda: model.fit(X, Y, batch_size=1)
    builds = (False, True) if numba.get_num_threads() > 1 else (False,)
    for parallel in builds:
        build = "parallel" if parallel else "serial"
        if "batch" in paths:
            yield f"fit, mini-batch, {build}", parallel, lambda: model.fit(X, Y, batch_size=4)
        if "inference" in paths:
            yield (f"evaluate+gradients, {build}", parallel,
                   lambda: (model.evaluate(X, Y), model.gradients(X, Y)))
    if "inference" in paths:
        yield "predict", None, lambda: model.predict(X)


def compile_kernels(dtypes=DTYPES, paths=PATHS, out=print):
    """Compile (or load from the cache) every kernel the API calls for ``dtypes``
    and ``paths``, reporting each step to ``out``; returns the seconds in all."""
    from fastbp.kernels import _cache

    out(f"compiling into {_cache.CACHE_DIR or '(no cache folder: nothing is kept)'}")
    start = time.perf_counter()
    for dtype in dtypes:
        for name, parallel, call in _steps(dtype, paths):
            t = time.perf_counter()
            if parallel is None:
                call()
            else:
                with _threads.forced(parallel):
                    call()
            out(f"  {dtype:8s} {name:30s} {time.perf_counter() - t:6.1f} s")
    total = time.perf_counter() - start
    out(f"done in {total:.1f} s")
    return total
