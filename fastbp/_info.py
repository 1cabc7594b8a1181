"""``fastbp.show_config()`` and ``fastbp info``: what this fastbp runs on."""

import os
import platform
import sys


def config():
    """A dict of what fastbp runs on: versions, the thread count and the cores this
    process may use, the BLAS libraries (as threadpoolctl sees them) and the JIT
    cache folder. (Parallel calls run one kernel on Python threads, fastbp._threads:
    numba's threading layer and OMP_WAIT_POLICY play no part.)"""
    import numba
    import numpy as np
    from threadpoolctl import threadpool_info

    try:  # SciPy is optional (scikit-learn brings it): load its BLAS to report it
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError:
        pass

    from fastbp._threads import usable_cores
    from fastbp._version import __version__
    from fastbp.kernels import _cache

    return {
        "fastbp": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "numba_max_threads": numba.config.NUMBA_NUM_THREADS,
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "blas": [
            f"{lib.get('internal_api')} {lib.get('version')} ({os.path.basename(lib['filepath'])}, "
            f"{lib.get('num_threads')} threads)"
            for lib in threadpool_info() if lib.get("user_api") == "blas"
        ],
        "jit_cache": _cache.CACHE_DIR or "(off: no writable folder)",
        "jit_cache_bytes": sum(size for _, size, current in _cache.folders() if current),
    }


def show_config(file=None):
    """Print :func:`config` as ``key: value`` lines.

    Parameters
    ----------
    file : writable text stream, optional
        Where to print (default: ``sys.stdout``).
    """
    for key, value in config().items():
        if isinstance(value, list):
            value = "; ".join(value) if value else "(none found)"
        print(f"{key}: {value}", file=file or sys.stdout)
