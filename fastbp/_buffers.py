"""Where the parameters and the kernels' scratch live in memory.

Every buffer starts at a cache line, and the activations of a batch start where
they do not share L1 cache sets with the weights they are multiplied with.
"""

import functools

import numpy as np

from fastbp.kernels.layout import UNIT, WOFF, row_width

PAGE = 4096  # bytes; see activations
LINE = 64  # bytes in a cache line


def line_aligned_zeros(n, dtype):
    """n zeros starting at a cache line (64 bytes), for the parameters and every
    kernel buffer.

    Why: with AVX-512 a vector is a line, so rows whose length is a multiple of 16
    float32 load whole lines where numpy's 16-byte alignment split every load over
    two, and parallel parts split at such multiples never write one line from two
    threads. Measured against the same buffers 16 bytes off a line (alternating
    epochs): 784-1024-1024-10 at batch 256 5.7% faster on 1 thread, 784-256-128-10 at
    batch 32 7% on 2 threads, 64-32-10 at batch 64 on 2 threads 2.3x."""
    item = np.dtype(dtype).itemsize
    buf = np.zeros(n + LINE // item, dtype=dtype)
    start = (-_address(buf) % LINE) // item
    return buf[start : start + n]


def _address(arr):
    """Where ``arr``'s data starts (``arr.ctypes.data`` took ~1 us a call)."""
    return arr.__array_interface__["data"][0]


def line_aligned_copy(arr):
    """A line-aligned copy of the 1-D ``arr`` (pickled buffers come back unaligned)."""
    out = line_aligned_zeros(arr.size, arr.dtype)
    out[...] = arr
    return out


@functools.lru_cache(maxsize=256)
def _best_shift(gaps):
    """The offset within a page (a multiple of LINE) that keeps every input block
    farthest from its W^l, given each block's byte distance from it (``gaps``).
    Remembered: the search took ~0.15 ms, most of a one-row predict."""

    def nearest(shift):  # the closest any input block comes to its W^l in a page
        return min(min((shift + g) % PAGE, -(shift + g) % PAGE) for g in gaps)

    return max(range(0, PAGE, LINE), key=nearest)


def activations(params, layout, rows, dtype):
    """The activations buffer for ``rows`` samples, placed apart from the weights.

    Contract: a 1-D array of ``rows * row_width(layout)`` zeros of ``dtype`` whose
    start is a cache line, offset within a 4 KiB page from ``params`` so that every
    layer's input block lies as far as possible, in the worst layer, from its W^l.

    Why: the forward tiles read rows of A^(l-1) and of W^l side by side, both
    n_(l-1) elements apart. When the two blocks start at the same offset within a
    page and their rows are 4 KiB long (1024 float32), all the rows a tile reads
    fall in the same L1 sets and evict each other: measured on 784-1024-1024-10 at
    batch 256, the second layer's product ran at 60 instead of 90 GFLOP/s, and
    epochs differed by 25% from run to run as malloc placed the buffers.
    """
    item, width = np.dtype(dtype).itemsize, row_width(layout)
    buf = np.zeros(rows * width + PAGE // item, dtype=dtype)
    units, woffs = layout[UNIT].tolist(), layout[WOFF].tolist()
    shift = _best_shift(tuple(item * (rows * units[l - 1] - woffs[l])
                              for l in range(1, len(units))))
    start = (_address(params) + shift - _address(buf)) % PAGE // item
    return buf[start : start + rows * width]


def batch_scratch(params, layout, rows, dtype):
    """(acts, zs, deltas, losses): layer-major scratch for ``rows`` samples (see
    fastbp.kernels.batch)."""
    width = row_width(layout)
    zs, deltas = (line_aligned_zeros(rows * width, dtype) for _ in range(2))
    return activations(params, layout, rows, dtype), zs, deltas, np.zeros(rows, np.float64)


def online_scratch(layout, dtype):
    """(A, Z, D, loss): one sample's rows (1, U) and its loss, for online epochs."""
    width = row_width(layout)
    A, Z, D = (line_aligned_zeros(width, dtype).reshape(1, width) for _ in range(3))
    return A, Z, D, np.zeros(1)
