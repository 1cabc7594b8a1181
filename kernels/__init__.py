"""Numba kernels of fastbp, installed as ``fastbp.kernels``.

Kernels assume valid input: C-contiguous arrays of one float dtype, shapes that
match ``layout`` (see :mod:`fastbp.kernels.layout`). They never validate and never
allocate inside loops; ``fastbp.Model`` is the boundary that makes this true.
"""
