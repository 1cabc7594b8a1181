"""Data for the benchmarks (no time_* here: asv would collect it)."""

import numpy as np


def make_data(n, sizes, dtype, seed=0):
    """Random inputs and one-hot targets for a classifier of layer widths ``sizes``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], size=n)
    return X, np.eye(sizes[-1], dtype=dtype)[y]
