"""The benchmark lab: ``fastbp bench`` (``python -m fastbp.bench``), training
samples/s of fastbp and its peers on a fixed grid, and the digits comparison with
scikit-learn (``python -m fastbp.bench.digits``). No library module imports it.

    peers     the frameworks timed, behind one interface (public: the asv suite's)
    grid      the cases, the defaults and the options
    measure   one framework at one thread count
    workers   the worker processes and their turns
    probes    how many cores the host gives the threads right now
    machine   machine facts and the GEMM peak
    report    derived figures and the tables
    driver    the whole run and ``main``
    digits    held-out accuracy and fit time on the digits against scikit-learn

Importing this package loads none of them; the names the lab exported as one
module (``main``, ``run``, ``CASES``, ``flops_per_sample``, ``gemm_gflops``) load
theirs on first use.
"""

import importlib

__all__ = ["CASES", "flops_per_sample", "gemm_gflops", "main", "run"]

_HOMES = {
    "CASES": "fastbp.bench.grid",
    "flops_per_sample": "fastbp._threads",
    "gemm_gflops": "fastbp.bench.machine",
    "main": "fastbp.bench.driver",
    "run": "fastbp.bench.driver",
}


def __getattr__(name):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
