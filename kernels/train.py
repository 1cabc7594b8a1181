"""Epoch drivers: a whole epoch in one compiled call.

``train_epoch_online`` (batch size 1, serial: forward, then the backward pass
fused with the update, per sample), ``train_epoch_gemm`` (mini-batches: the
stages of :mod:`fastbp.kernels.batch`, serially) and ``train_epoch_gemm_par``
(the same in one parallel region; a separate entry point so that each call
compiles only the build it runs), and ``region_probe`` (the library's check
whether other processes hold the cores).

The one-region parallel scheduler (``_epoch_parallel``)
--------------------------------------------------------

Contract: the same parameters, bit for bit, as the serial epoch, however many
threads the region really gets and however the work is cut between them.

Protocol. ``parts`` threads (``me`` = 0 .. parts - 1) run every batch of the
epoch inside one ``prange``. A batch is four phases, each a set of tasks:

    GATHER   parts tasks: part c of the samples' inputs into a^0
    FIRST    parts tasks: part c of the first hidden layer's units (nets with a
             hidden layer only)
    SAMPLES  parts tasks: part c of the samples, forward to the loss and the
             delta recursion
    ROWS     L * parts tasks, part-major (task = c L + l - 1): part c of the rows
             of W^l, gradient and update; then one more task adding the batch's
             losses to the epoch's sum in sample order

``sync`` (int64, ``_sync_slots`` zeros per batch) holds per batch a done count
per phase, a claim flag per task and the cycles each part took. Each task has an
owner (``_owner``: the thread of its part). In each phase a thread first claims
all its own tasks (``claim``: compare-and-swap of the task's flag from 0 to
me + 1), runs those it got, then claims and runs any task still unclaimed -- one
whose owner has not reached the phase; each finished task adds its cycles to its
part's count, then 1 to the phase's done count (``fetch_add``, sequentially
consistent). A thread leaves the phase when the done count reaches the number
of tasks (``load_acquire`` in a ``spin_pause`` loop), so every write of the phase
is visible to it. So no thread waits for a task nobody takes, even when the
region gets fewer threads than parts.

Cuts. The parts are not fixed halves: before each batch every thread computes
the same new ``cuts`` (``_rebalance``) from the cycles each part took in the batch
before (all stored before that batch's last wait ended), each part's share moving
halfway toward its measured speed. Why any cut gives the same bits: each task
owns what it writes (its samples' rows, its rows of W^l and their optimizer
state), and every element of a product comes out of one tile with a fixed order
of operations; the loss sum is one task adding in sample order.

Why. A phase boundary costs a cache line passed between the cores (~0.1-1 us)
where a parallel region per phase cost ~3 us to start and end (measured with the
cycle counter on 784-256-128-10 at batch 32, 2 threads: ~13 us of a ~240 us
batch). Owners keep part c's rows of W^1 in one core's cache from batch to batch
(as prange's static split does). Rebalancing: measured on L, one core 30-50%
busy with another process, +20-25% samples/s.
"""

import numpy as np
from numba import prange

from fastbp.kernels._jit import jit_parallel, jit_serial
from fastbp.kernels.activations import losses_and_deltas
from fastbp.kernels.backward import online_step
from fastbp.kernels.batch import (
    _batch_count,
    _first_layer_part,
    _gather_part,
    _rows_part,
    _samples_part,
    batch_step,
)
from fastbp.kernels.codes import H_L2, H_WD
from fastbp.kernels.forward import forward_sample
from fastbp.kernels.intrinsics import (
    claim,
    cycles,
    fetch_add,
    load_acquire,
    prefetch,
    spin_pause,
)
from fastbp.kernels.layout import SIZE, UNIT


@jit_parallel
def region_probe(out):
    """One trivial parallel region (each thread bumps its own elements of ``out``).

    Measured on the 2-core machine: about 3 us when the cores are free, about
    8 ms when another process holds one of them, because libgomp's spinning
    threads then wait for a time slice at every region (see fastbp.model).
    """
    for i in prange(out.shape[0]):
        out[i] += 1.0


@jit_serial
def train_epoch_online(params, buf1, buf2, layout, codes, hyper, step, X, T, order,
                       weights, A, Z, D, loss):
    """One epoch of online training (batch size 1, serial):
    forward, then ``online_step`` (backward fused with the update) per sample, in
    ``order``; returns the sum of the per-sample losses before each update,
    each times its sample weight.

    ``weights`` holds a weight per row of X, or nothing (every weight 1). The
    weighted mean gradient over one sample is that sample's gradient, so a
    weight only divides the L2 penalty (``hyper[H_L2]``, scikit-learn's alpha: its
    gradient is alpha W / the batch's total weight) and a zero weight skips the
    sample's update; the Adam step count still advances (one step per batch, as
    in the mini-batch kernel).

    Rows of X are copied element-wise into a fixed buffer (A[0]) rather than
    sliced: a slice per sample costs reference counting (~10-20 ns each), which
    matters at ~1 us a sample on small networks; the loss and delta^L read the
    sample's row of T in place (``losses_and_deltas``), its loss into ``loss``
    (one float64).
    """
    a, z, delta = A[0], Z[0], D[0]
    weighted = weights.shape[0] > 0
    wd, l2 = hyper[H_WD], hyper[H_L2]
    n_in = layout[SIZE, 0]
    out_start = layout[UNIT, layout.shape[1] - 1]
    n_out = layout[SIZE, layout.shape[1] - 1]
    total = 0.0
    n_samples = order.shape[0]
    line = 64 // X.itemsize  # elements per cache line
    for k in range(n_samples):
        idx = order[k]
        for j in range(n_in):
            a[j] = X[idx, j]
        # Start loading the NEXT sample's row now (see kernels/intrinsics.py).
        upcoming = order[min(k + 1, n_samples - 1)]
        for j in range(0, n_in, line):
            prefetch(X, upcoming, j)
        prefetch(T, upcoming, 0)
        forward_sample(params, layout, codes, a, z)
        losses_and_deltas(z, a, delta, out_start, n_out, 0, 1, T, order, k, loss, True, codes[1],
                          codes[2])
        weight = 1.0
        if weighted:
            weight = float(weights[idx])
            loss[0] *= weights[idx]
        total += loss[0]
        if weight > 0.0:
            online_step(params, layout, codes, hyper, step + k + 1, a, z, delta, buf1, buf2,
                        wd + l2 / weight)
    return total


@jit_serial
def train_epoch_gemm(params, buf1, buf2, layout, codes, hyper, step, X, T, order,
                     weights, batch_size, parts, acts, zs, deltas, losses, grads):
    """One epoch of mini-batch training over the samples in ``order``; returns the
    sum of the per-sample losses seen (each before its batch's update).

    Batches are order[0:B], order[B:2B], ... with a final partial batch, each one
    serial ``batch_step`` with the update (gradient sum / batch count);
    ``train_epoch_gemm_par`` runs the same batches in one parallel region, with
    the same bits. ``hyper`` is the float64 settings array (slots: see
    kernels/codes.py); ``step`` the Adam steps done before this epoch; ``buf1``
    is the momentum buffer or Adam's first moment, ``buf2`` Adam's second.

    ``weights``, a weight per row of X or empty (all 1), makes each batch's
    gradient the weighted mean sum_s w_s g_s / sum_s w_s and the returned sum
    one of w_s loss_s. A batch whose weights sum to 0 has no gradient: it takes
    no step, though the Adam step count advances (one step per batch).
    """
    n_samples = order.shape[0]
    rows = min(batch_size, n_samples)  # the buffers hold this many samples
    total = 0.0
    for first in range(0, n_samples, batch_size):
        n = min(batch_size, n_samples - first)
        step += 1
        count = _batch_count(weights, order, first, n)
        batch_step(params, layout, codes, X, T, order, weights, first, n, rows, acts, zs,
                   deltas, losses, grads, buf1, buf2, hyper, step, count > 0.0, count, parts)
        for s in range(n):  # in sample order: the same sum at any thread count
            total += losses[s]
    return total


def train_epoch_gemm_par(params, buf1, buf2, layout, codes, hyper, step, X, T, order,
                         weights, batch_size, parts, acts, zs, deltas, losses, grads):
    """``train_epoch_gemm`` with all batches in one parallel region of ``parts``
    threads (``_epoch_parallel``, see the module docstring): its own entry point
    so that a serial epoch never compiles it.

    A Python function, not a kernel: numba re-optimises a caller's whole call
    tree, and a jitted wrapper for these two allocations cost 3 s of a first
    fit's compile (measured on 784-256-128-10, empty cache).
    """
    total = np.zeros(1)
    n_batches = (order.shape[0] + batch_size - 1) // batch_size
    sync = np.zeros(_sync_slots(layout, parts) * n_batches, np.int64)
    _epoch_parallel(params, buf1, buf2, layout, codes, hyper, step, X, T, order, weights,
                    batch_size, parts, acts, zs, deltas, losses, grads, sync, total)
    return total[0]


# -- the one-region parallel scheduler (see the module docstring) ---------------------

GATHER, FIRST, SAMPLES, ROWS = 0, 1, 2, 3  # the phases of a batch


@jit_serial
def _owner(phase, c, parts, n_layers):
    """The thread that should run task c of ``phase``: its part's."""
    if phase == ROWS:
        return min(c // n_layers, parts - 1)  # part-major tasks; the loss sum: the last
    return c


@jit_serial
def _phase(sync, flags, done, spent, n_tasks, me, phase, parts, params, layout, codes, X, T,
           order, weights, first, n, rows, acts, zs, deltas, losses, grads, buf1, buf2, hyper,
           step, count, total, cuts):
    """Thread ``me``'s share of ``phase``: claim (sync[flags + c] = me + 1) and run its
    own tasks, then any unclaimed one; then wait until sync[done] counts n_tasks.
    The cycles each task took are added to its part's count, sync[spent + part],
    before the task counts as done, so every thread sees them after the wait."""
    n_layers = layout.shape[1] - 1
    for mine in (True, False):
        if mine:  # all of its own first, so the other thread cannot take them meanwhile
            for c in range(n_tasks):
                if _owner(phase, c, parts, n_layers) == me:
                    claim(sync, flags + c, me + 1)
        for c in range(n_tasks):
            if (_owner(phase, c, parts, n_layers) == me) != mine:
                continue
            if mine:
                if load_acquire(sync, flags + c) != me + 1:
                    continue  # taken by another thread before this one arrived
            elif claim(sync, flags + c, me + 1) != 0:
                continue
            start = cycles()
            # Task c of the phase, written here rather than as a function of its own:
            # numba re-optimises each caller's whole call tree, and that level cost
            # ~1.3 s of a first fit's compile (784-256-128-10, empty cache).
            if phase == GATHER:
                _gather_part(c, parts, layout, X, T, order, first, n, rows, acts, cuts)
            elif phase == FIRST:
                _first_layer_part(c, parts, params, layout, codes, n, rows, acts, zs, cuts)
            elif phase == SAMPLES:
                _samples_part(c, parts, params, layout, codes, T, order, weights, first, n,
                              rows, acts, zs, deltas, losses, np.bool_(True), np.bool_(True),
                              2 if n_layers > 1 else 1, cuts)
            elif c < n_layers * parts:
                _rows_part(c, parts, params, layout, n, rows, acts, deltas, grads, buf1, buf2,
                           hyper, step, count > 0.0, count, cuts)
            else:  # the last ROWS task: the batch's losses into the epoch's sum, in order
                for s in range(n):
                    total[0] += losses[s]
            part = c // n_layers if phase == ROWS else c
            if part < parts:  # not the loss sum
                fetch_add(sync, spent + part, cycles() - start)
            fetch_add(sync, done, 1)
    while load_acquire(sync, done) < n_tasks:
        spin_pause()


@jit_serial
def _sync_slots(layout, parts):
    """Counters per batch of _epoch_parallel: a done count per phase, a claim flag
    per task, and the cycles each part's tasks took."""
    return 4 + 3 * parts + (layout.shape[1] - 1) * parts + 1 + parts


@jit_serial
def _rebalance(cuts, spent, at, parts):
    """New cuts from the cycles each part took in the last batch (spent[at + c]):
    each part's share moves halfway toward its measured speed, share / cycles,
    relative to the others'; no share below 1 / (4 parts). Every thread computes
    the same cuts from the same numbers, all stored before the last batch ended."""
    total = 0.0
    for c in range(parts):
        if spent[at + c] <= 0:
            return  # no cycle counter, or no work measured: keep the cuts
        total += (cuts[c + 1] - cuts[c]) / spent[at + c]
    floor = 0.25 / parts
    start = 0.0
    for c in range(parts):
        share = (cuts[c + 1] - cuts[c]) / spent[at + c] / total
        share = max(floor, 0.5 * (cuts[c + 1] - cuts[c]) + 0.5 * share)
        cuts[c] = start
        start += share
    for c in range(1, parts):
        cuts[c] /= start
    cuts[parts] = 1.0


@jit_parallel
def _epoch_parallel(params, buf1, buf2, layout, codes, hyper, step, X, T, order, weights,
                    batch_size, parts, acts, zs, deltas, losses, grads, sync, total):
    """train_epoch_gemm's batches in one parallel region (see the module
    docstring): per batch, GATHER (parts tasks), FIRST (parts; nets with a hidden
    layer), SAMPLES (parts) and ROWS (one task per part and layer, then one
    summing the losses into total[0]). ``sync`` holds _sync_slots zeros per
    batch."""
    n_samples = order.shape[0]
    rows = min(batch_size, n_samples)
    n_batches = (n_samples + batch_size - 1) // batch_size
    slots = _sync_slots(layout, parts)
    for me in prange(parts):
        cuts = np.empty(parts + 1)  # this thread's copy; every copy holds the same
        for c in range(parts + 1):
            cuts[c] = c / parts
        for b in range(n_batches):
            first = b * batch_size
            n = min(batch_size, n_samples - first)
            count = _batch_count(weights, order, first, n)
            flags = slots * b + 4
            spent = slots * (b + 1) - parts  # this batch's cycles per part
            if b > 0:  # the last batch's, all stored before its last wait ended
                _rebalance(cuts, sync, spent - slots, parts)
            for phase in range(4):
                n_tasks = (layout.shape[1] - 1) * parts + 1 if phase == ROWS else parts
                if phase != FIRST or layout.shape[1] > 2:  # FIRST: a hidden layer only
                    _phase(sync, flags, slots * b + phase, spent, n_tasks, np.int64(me), phase,
                           parts, params, layout, codes, X, T, order, weights, first, n, rows, acts,
                           zs, deltas, losses, grads, buf1, buf2, hyper, step + b + 1, count,
                           total, cuts)
                flags += n_tasks
