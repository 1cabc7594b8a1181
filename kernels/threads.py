"""A probe of numba's thread pool: is a parallel region cheap right now?"""

from numba import prange

from fastbp.kernels._jit import jit_parallel


@jit_parallel
def region_probe(out):
    """One trivial parallel region (each thread bumps its own elements of ``out``).

    Measured on the 2-core machine: about 3 us when the cores are free, about
    8 ms when another process holds one of them, because libgomp's spinning
    threads then wait for a time slice at every region (see fastbp.model).
    """
    for i in prange(out.shape[0]):
        out[i] += 1.0
