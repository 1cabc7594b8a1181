"""Machine facts a run reports: :func:`machine_info` and the float32 GEMM peak
(:func:`gemm_gflops`) that GFLOP/s are compared with."""

import datetime
import importlib.metadata
import os
import platform
import time

import numpy as np

from fastbp._version import __version__

__all__ = ["gemm_gflops", "machine_info"]


def gemm_gflops(n=2048, repeats=5, dtype="float32"):
    """Best GEMM rate of np.dot on (n, n) ``dtype`` matrices, in GFLOP/s."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, n)).astype(dtype)
    B = rng.standard_normal((n, n)).astype(dtype)
    C = np.empty_like(A)
    np.dot(A, B, out=C)  # warm-up: BLAS threads start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.dot(A, B, out=C)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9



def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info():
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    blas = None
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{cfg.get('name')} {cfg.get('version')}"
    except Exception:  # older NumPy: no dict mode
        pass
    now = datetime.datetime.now(datetime.timezone.utc)
    # fmt: off
    return {
        "cpu_model": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "numpy": np.__version__, "blas": blas,
        "numba": _version("numba"), "fastbp": __version__, "torch": _version("torch"),
        "jax": _version("jax"), "jaxlib": _version("jaxlib"),
        "scikit-learn": _version("scikit-learn"), "date": now.isoformat("T", "seconds"),
    }
    # fmt: on

