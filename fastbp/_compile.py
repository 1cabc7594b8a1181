"""``fastbp compile``: fill the kernel cache ahead of time (for Docker images and
CI), so that no user call pays the JIT compile.

Each step is a call of the public API on a few samples, so it compiles exactly
the specialisations that call makes: one kernel per dtype and path. Every
mini-batch fit, evaluate, loss, gradients and predict runs the same kernel
(kernels.train.region), serially or on several threads (a predict of a few rows:
forward_rows). Where /proc/loadavg is missing, the check before a parallel epoch
runs a probe kernel (fastbp._threads.held_up), compiled here on one thread too.
"""

import time

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
        yield "fit, batch size 1", lambda: model.fit(X, Y, batch_size=1)
    if "batch" in paths:
        yield "fit, mini-batch", lambda: model.fit(X, Y, batch_size=4)
    if "inference" in paths:
        yield "evaluate, gradients, predict", lambda: (
            model.evaluate(X, Y), model.gradients(X, Y), model.predict(X),
            model.predict(X[:1]))  # a few rows: forward_rows


def compile_kernels(dtypes=DTYPES, paths=PATHS, out=print):
    """Compile (or load from the cache) every kernel the API calls for ``dtypes``
    and ``paths``, reporting each step to ``out``; returns the seconds in all."""
    from fastbp.kernels import _cache

    out(f"compiling into {_cache.CACHE_DIR or '(no cache folder: nothing is kept)'}")
    start = time.perf_counter()
    for dtype in dtypes:
        for name, call in _steps(dtype, paths):
            t = time.perf_counter()
            call()
            out(f"  {dtype:8s} {name:30s} {time.perf_counter() - t:6.1f} s")
    if "batch" in paths or "inference" in paths:
        t = time.perf_counter()
        _threads.probe_seconds(1)
        out(f"  {'':8s} {'thread probe':30s} {time.perf_counter() - t:6.1f} s")
    total = time.perf_counter() - start
    out(f"done in {total:.1f} s")
    return total
