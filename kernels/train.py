"""Epochs and whole-data-set passes: each one compiled call.

``train_epoch_online`` (batch size 1, serial: forward, then the backward pass
fused with the update, per sample); ``region``, the one kernel of every other
call -- mini-batch epochs (mode TRAIN), gradients over a data set (GRADIENTS),
outputs and loss (PASS: evaluate, loss, predict) -- run serially or on several
threads at once; and ``probe``, timed barriers of a region's threads: the check
whether other processes hold the cores where the kernel cannot tell
(fastbp._threads.held_up).

Regions
-------

Contract: the same bits, serially or on any number of threads, however many of
them really run at once and however the work is cut between them.

A region is ``region`` called with the same arguments on ``parts`` threads
(``me`` = 0 .. parts - 1; fastbp._threads.launch starts them: Python threads
calling a nogil kernel, not numba's prange). A batch is four phases, each a set
of tasks:

    GATHER   parts tasks: part c of the samples' inputs into a^0
    FIRST    parts tasks: part c of the first hidden layer's units (nets with a
             hidden layer only)
    SAMPLES  parts tasks: part c of the samples, forward to the loss and the
             delta recursion (outside TRAIN: their outputs into ``out``)
    ROWS     L * parts tasks, part-major (task = c L + l - 1): part c of the rows
             of W^l, gradient and update (GRADIENTS: added into the sums; PASS:
             none); then one more task adding the batch's losses in sample order
    CLIP     only when TRAIN clips by norm (``update.clipping``; ROWS then leaves
             the update out): L * CLIP_CHUNKS tasks, the squares of fixed chunks
             of the gradient (``update.clip_squares``) into total[1 + task] (cut
             alike at any thread count: the norm's bits never depend on it)
    UPDATE   when clipping: L * parts tasks as in ROWS, the step of those rows
             (``update.clip_update``; each task adds the CLIP partials in order)

``sync`` (int64, ``sync_size`` zeros per batch) holds per batch a done count
per phase, a claim flag per task and the cycles each part took. Each task has an
owner (``_owner``: the thread of its part). In each phase a thread first claims
all its own tasks (``claim``: compare-and-swap of the task's flag from 0 to
me + 1), runs those it got, then claims and runs any task still unclaimed -- one
whose owner has not reached the phase; each finished task adds its cycles to its
part's count, then 1 to the phase's done count (``fetch_add``, sequentially
consistent). A thread leaves the phase when the done count reaches the number
of tasks (``load_acquire`` in a ``spin_pause`` loop), so every write of the phase
is visible to it. So no thread waits for a task nobody takes, even when fewer
threads run than parts (a thread started late finds its work done). A serial
call (``alone``) runs the tasks in order with no counters.

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
batch). Owners keep part c's rows of W^1 in one core's cache from batch to batch.
Rebalancing: measured on L, one core 30-50% busy with another process, +20-25%
samples/s. One kernel for every call, and no prange: what a new user waits for
is compile time, and numba compiles a prange kernel's call tree a second time
(its parallel build) and each entry point's whole call tree again. Measured on
784-256-128-10 float32, empty cache, 2 alternating runs: a first fit at batch 32,
then evaluate and predict, took 14.2-14.8 s in all (evaluate and predict compile
nothing), against 36-38 s with serial and prange builds of separate epoch, pass,
gradient and predict kernels (fit 23-25 s, evaluate 11 s, predict 2.2 s).
"""

import numpy as np

from fastbp.kernels._jit import jit_serial
from fastbp.kernels.activations import losses_and_deltas
from fastbp.kernels.backward import online_step
from fastbp.kernels.batch import (
    _batch_count,
    _bounds,
    _first_layer_part,
    _gather_part,
    _rows_part,
    _samples_part,
    _update_part,
)
from fastbp.kernels.codes import H_CLIP_NORM, H_HUBER, H_L2
from fastbp.kernels.dropout import drop_forward, rate
from fastbp.kernels.forward import forward_sample
from fastbp.kernels.intrinsics import (
    claim,
    cycles,
    fetch_add,
    load_acquire,
    prefetch,
    spin_pause,
)
from fastbp.kernels.layout import BOFF, SIZE, UNIT, WOFF
from fastbp.kernels.update import clip_coef, clip_slots, clip_squares, clipping


@jit_serial
def train_epoch_online(params, buf1, buf2, layout, codes, hyper, step, X, T, order,
                       weights, A, Z, D, loss, start):
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
    # the loss sum goes on from ``start``: an epoch cut into several calls (Model.fit
    # does, so that Ctrl-C lands within ~0.1 s) adds its losses in the same order
    total = start
    l2 = hyper[H_L2]
    n_in = layout[SIZE, 0]
    out_start = layout[UNIT, layout.shape[1] - 1]
    n_out = layout[SIZE, layout.shape[1] - 1]
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
        # Input dropout (kernels/dropout.py), the rate checked before the view is made:
        # a view per sample had cost 64-32-10 without dropout 5% of its online
        # samples/s (398k against 421k, paired processes; the same in forward_sample).
        if rate(hyper, 0) > 0.0:
            drop_forward(a[:n_in], hyper, 0, idx, 0)
        forward_sample(params, layout, codes, a, z, hyper, idx)
        losses_and_deltas(z, a, delta, out_start, n_out, 0, 1, T, order, k, loss, True, codes[1],
                          codes[2], hyper[H_HUBER])
        weight = 1.0
        if weighted:
            weight = float(weights[idx])
            loss[0] *= weights[idx]
        total += loss[0]
        if weight > 0.0:
            online_step(params, layout, codes, hyper, step + k + 1, a, z, delta, buf1, buf2,
                        l2 / weight, idx)
    return total


# -- the one-region parallel scheduler (see the module docstring) ---------------------

GATHER, FIRST, SAMPLES, ROWS, CLIP, UPDATE = 0, 1, 2, 3, 4, 5  # the phases of a batch
N_PHASES = 6
TRAIN, GRADIENTS, PASS = 0, 1, 2  # what a region computes (``mode``)


def sync_size(layout, parts, n_batches):
    """(slots per batch, int64 counters in all) of a region of ``parts`` threads:
    per batch a done count per phase, a claim flag per task and the cycles each
    part took."""
    slots = (N_PHASES + 3 * parts + 2 * (layout.shape[1] - 1) * parts + 1
             + clip_slots(layout) + parts)
    return slots, slots * n_batches


@jit_serial
def _owner(phase, c, parts, n_layers):
    """The thread that should run task c of ``phase``: its part's."""
    if phase == ROWS or phase == UPDATE:
        return min(c // n_layers, parts - 1)  # part-major tasks; the loss sum: the last
    if phase == CLIP:
        return c % parts
    return c


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


@jit_serial
def region(me, alone, parts, mode, want_loss, slots, params, buf1, buf2, layout, codes, hyper,
           step, X, T, order, weights, batch_size, acts, zs, deltas, losses, grads, sums, out,
           sync, total):
    """Thread ``me``'s share of a region (see the module docstring): the batches
    order[0:B], order[B:2B], ... (B = ``batch_size``, a last partial batch), each
    cut into ``parts`` parts, for every mini-batch and whole-data-set call.

    ``mode`` TRAIN: each batch's forward, loss, delta recursion, gradient and
    update (gradient sum / the batch's total weight; Adam step ``step`` + b + 1);
    total[0] += every loss, in sample order. GRADIENTS: no update; each batch's
    gradient sum is added into ``sums`` (batch by batch, in order) and its loss sum
    into total[0]. PASS: forward only, and with ``want_loss`` the loss sums.
    Outside TRAIN, ``out`` (one row per sample) receives the outputs a^L.

    ``alone``: this thread is the region's only one (parts may still be > 1): the
    tasks run in order with no counters, and ``sync`` may be empty. Otherwise
    ``parts`` threads (me = 0 .. parts - 1) each call this with the same
    arguments and ``sync`` holding ``slots`` zeros per batch.
    """
    n_samples = order.shape[0]
    rows = min(batch_size, n_samples)  # the buffers hold this many samples
    n_batches = (n_samples + batch_size - 1) // batch_size
    n_layers = layout.shape[1] - 1
    want_delta = mode != PASS
    clip = mode == TRAIN and clipping(hyper)
    by_norm = clip and hyper[H_CLIP_NORM] > 0.0
    partials = total[1 : 1 + clip_slots(layout)]  # the CLIP phase's sums of squares
    n_out = layout[SIZE, n_layers]
    last = rows * layout[UNIT, n_layers]
    # This thread's copy of the cuts (every copy holds the same); alone: none, equal
    # parts (see batch._bounds).
    cuts = np.empty(0 if alone else parts + 1)
    for c in range(cuts.shape[0]):
        cuts[c] = c / parts
    for b in range(n_batches):
        first = b * batch_size
        n = min(batch_size, n_samples - first)
        count = _batch_count(weights, order, first, n)
        flags = slots * b + N_PHASES
        spent = slots * (b + 1) - parts  # this batch's cycles per part
        if b > 0 and not alone:  # the last batch's, all stored before its last wait ended
            _rebalance(cuts, sync, spent - slots, parts)
        for phase in range(N_PHASES):
            n_tasks = parts
            if phase == ROWS:  # a task per part and layer, then the loss sum
                n_tasks = (n_layers * parts if want_delta else 0) + 1
            elif phase == CLIP:
                n_tasks = clip_slots(layout)
            elif phase == UPDATE:
                n_tasks = n_layers * parts
            # FIRST: nets with a hidden layer only; CLIP: when clipping by norm;
            # UPDATE: when clipping
            if ((phase == FIRST and n_layers == 1) or (phase == CLIP and not by_norm)
                    or (phase == UPDATE and not clip)):
                flags += n_tasks
                continue
            done = slots * b + phase
            if not alone:  # claim all its own first, so no other thread takes them
                for c in range(n_tasks):
                    if _owner(phase, c, parts, n_layers) == me:
                        claim(sync, flags + c, me + 1)
            for sweep in range(1 if alone else 2):  # its own tasks, then any unclaimed
                for c in range(n_tasks):
                    start = np.int64(0)
                    if not alone:
                        own = _owner(phase, c, parts, n_layers) == me
                        if sweep == 0 and (not own or load_acquire(sync, flags + c) != me + 1):
                            continue
                        if sweep == 1 and (own or claim(sync, flags + c, me + 1) != 0):
                            continue
                        start = cycles()
                    # Task c of the phase, written here rather than as a function of
                    # its own: numba re-optimises each caller's whole call tree, and
                    # each level cost seconds of a first fit's compile.
                    part = c
                    if phase == GATHER:
                        _gather_part(c, parts, layout, hyper, X, T, order, first, n, rows, acts,
                                     cuts)
                    elif phase == FIRST:
                        _first_layer_part(c, parts, params, layout, codes, hyper, order, first, n,
                                          rows, acts, zs, cuts)
                    elif phase == SAMPLES:
                        _samples_part(c, parts, params, layout, codes, hyper, T, order, weights,
                                      first, n, rows, acts, zs, deltas, losses, want_loss,
                                      want_delta, 2 if n_layers > 1 else 1, cuts)
                        if mode != TRAIN:  # this part's outputs (samples s0 .. s1)
                            s0, s1 = _bounds(c, n, parts, cuts)
                            for s in range(s0, s1):
                                for k in range(n_out):
                                    out[first + s, k] = acts[last + s * n_out + k]
                    elif phase == CLIP:
                        part = c % parts
                        partials[c] = clip_squares(params, grads, hyper, layout, c)
                    elif phase == UPDATE:
                        part = c // n_layers
                        if count > 0.0:
                            _update_part(c, parts, params, layout, grads, buf1, buf2, hyper,
                                         step + b + 1, count,
                                         clip_coef(partials, count, hyper), cuts)
                    elif c < n_tasks - 1:
                        part = c // n_layers
                        _rows_part(c, parts, params, layout, n, rows, acts, deltas, grads,
                                   buf1, buf2, hyper, step + b + 1,
                                   mode == TRAIN and count > 0.0 and not clip, count, cuts)
                        if mode == GRADIENTS:
                            _add_rows(c, parts, layout, grads, sums, cuts)
                    else:  # the loss sum, in sample order
                        part = parts  # no part's work
                        if mode == TRAIN:
                            for s in range(n):
                                total[0] += losses[s]
                        elif want_loss:
                            batch_sum = 0.0
                            for s in range(n):
                                batch_sum += losses[s]
                            total[0] += batch_sum
                    if not alone:
                        if part < parts:
                            fetch_add(sync, spent + part, cycles() - start)
                        fetch_add(sync, done, 1)
            if not alone:  # leave the phase when every task is done
                while load_acquire(sync, done) < n_tasks:
                    spin_pause()
            flags += n_tasks


@jit_serial
def _add_rows(task, parts, layout, grads, sums, cuts):
    """sums += grads over the weights and biases of ROWS task ``task`` (its part of
    the rows of W^l): the task owns them, so each element's sum over the batches
    is in batch order at any thread count."""
    n_layers = layout.shape[1] - 1
    l = task % n_layers + 1
    n_in = layout[SIZE, l - 1]
    r0, r1 = _bounds(task // n_layers, layout[SIZE, l], parts, cuts)
    w_off, b_off = layout[WOFF, l], layout[BOFF, l]
    for k in range(w_off + r0 * n_in, w_off + r1 * n_in):
        sums[k] += grads[k]
    if b_off >= 0:
        for k in range(b_off + r0, b_off + r1):
            sums[k] += grads[k]


@jit_serial
def probe(me, parts, sync, rounds, arrive, budget):
    """``rounds`` barriers of ``parts`` threads (``sync``: rounds + 2 zeros): whether
    threads that must all run at once are held up (see fastbp._threads.held_up).
    The first barrier waits up to ``arrive`` cycles (a sleeping thread's wake-up),
    every later one up to ``budget``: a thread that waits longer gives up and sets
    sync[rounds], and the others then stop too, so a held-up probe costs about
    ``budget``, not a time slice per round. Thread 0 stores the cycles from the
    first barrier to the last in sync[rounds + 1]."""
    after_first = np.int64(0)
    for r in range(rounds):
        fetch_add(sync, r, 1)
        start = cycles()
        limit = arrive if r == 0 else budget
        while load_acquire(sync, r) < parts:
            if load_acquire(sync, rounds) != 0:
                return
            if cycles() - start > limit:
                fetch_add(sync, rounds, 1)
                return
            spin_pause()
        if r == 0:
            after_first = cycles()
    if me == 0 and rounds > 0:
        sync[rounds + 1] = cycles() - after_first


@jit_serial
def cycle_count():
    """The cycle counter (0 where the CPU has none): to turn seconds into cycles."""
    return cycles()
