"""Where every layer lives in the flat parameter vector and in a per-sample row.

``layout`` is an int64 array of shape (4, L + 1), built once per model by
:func:`make_layout` and passed to every kernel:

    layout[SIZE, l]  n_l, the width of layer l (l = 0 is the input)
    layout[UNIT, l]  offset of layer l inside one activation row (a, z, delta)
    layout[WOFF, l]  offset of W^l (n_l x n_(l-1), row-major) in ``params``, l >= 1
    layout[BOFF, l]  offset of b^l in ``params``, or -1 without biases, l >= 1

Parameters are stored layer by layer, W^l followed by b^l. A per-sample row holds
all layers side by side (width U = sum n_l), so one sample's forward and backward
pass touch one contiguous row, and the rows of a batch are independent work.
"""

import numpy as np

from fastbp.kernels._jit import jit_serial

SIZE, UNIT, WOFF, BOFF = 0, 1, 2, 3


def make_layout(sizes, bias):
    """Return ``(layout, n_params)`` for layer widths ``sizes`` (see module doc)."""
    n_layers = len(sizes) - 1
    layout = np.zeros((4, n_layers + 1), dtype=np.int64)
    layout[SIZE] = sizes
    layout[UNIT, 1:] = np.cumsum(sizes[:-1])
    layout[BOFF, 0] = -1
    offset = 0
    for l in range(1, n_layers + 1):
        layout[WOFF, l] = offset
        offset += sizes[l] * sizes[l - 1]
        if bias:
            layout[BOFF, l] = offset
            offset += sizes[l]
        else:
            layout[BOFF, l] = -1
    return layout, offset


def row_width(layout):
    """Width U of one per-sample row: all layers side by side."""
    return sum(layout[SIZE].tolist())


@jit_serial
def block(buf, start, rows, cols):
    """The (rows, cols) C-contiguous matrix stored at ``buf[start:]``."""
    return buf[start : start + rows * cols].reshape((rows, cols))
