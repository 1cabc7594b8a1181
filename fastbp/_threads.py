"""Thread policy: how many threads a call runs on, when a batch is big enough for
a parallel region, and the regions themselves (``run_region``). Results never
depend on any of it."""

import concurrent.futures
import contextlib
import os
import time
import warnings

import numba
import numpy as np

from fastbp.kernels import train as ktrain
from fastbp.kernels import update as kupdate


@contextlib.contextmanager
def numba_threads(n):
    """Run a block with ``n`` numba threads (None: leave the count as it is), capped
    at ``numba.config.NUMBA_NUM_THREADS``; the previous count comes back afterwards,
    also on error."""
    if n is None:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    _explicit[0] += 1
    try:
        yield
    finally:
        _explicit[0] -= 1
        numba.set_num_threads(before)


_explicit = [0]  # numba_threads(n) blocks with an explicit count now running
_capped = [False]


def usable_cores():
    """The CPUs this process may run on (its affinity mask; os.cpu_count elsewhere)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cap_to_cores():
    """Once per process, unless the caller chose a thread count: run at most as many
    numba threads as usable cores, with one warning naming them. numba's default
    (and a NUMBA_NUM_THREADS set too high) counts every CPU of the machine, not
    those this process may use, and threads beyond the cores spin against each
    other at every region (measured: 4 threads on 2 cores, 4.5x slower)."""
    if _capped[0] or _explicit[0]:
        return
    _capped[0] = True
    cores, threads = usable_cores(), numba.get_num_threads()
    if threads > cores:
        numba.set_num_threads(cores)
        warnings.warn(
            f"numba was set to run {threads} threads, but this process may use {cores} "
            f"core(s): fastbp runs {cores} (pass n_threads to choose, or set "
            f"NUMBA_NUM_THREADS={cores})", RuntimeWarning, stacklevel=4)


def flops_per_sample(sizes):
    """Training FLOPs of one sample: 2 per weight forward, 2 for its gradient, 2 for
    propagating delta back through it (which the first layer skips)."""
    n_weights = [n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)]
    return 6 * sum(n_weights) - 2 * n_weights[0]


# Below this many FLOPs per batch a parallel region costs more than it saves
# (thread wake-up and barriers, ~10 us, far worse when another process holds a
# core), so such batches run the serial kernels. Same bits either way.
PARALLEL_MIN_FLOPS = 4e6
# Parts a batch is split into (of its samples, and of the rows of each W^l) when an
# epoch runs serially; in parallel, one part per thread. The parts change no bit
# (each element of a product comes out of one tile in a fixed order, see
# kernels/tiles.py), only speed: measured on 784-1024-1024-10 at batch 256, one
# thread ran 2.5% faster with 1 part than with 2 (each part reads all of W), and
# 2 threads gave the same with 2, 4 or 8 parts. Tests raise it to exercise splits.
SERIAL_PARTS = 1
# A region's threads wait for each other between a batch's phases; when another
# process holds one of the cores, a waiting thread spins until the other gets a
# time slice (with numba's prange regions, M batch 32 on 2 threads fell from
# ~85,000 to ~2,000 samples/s). held_up() asks the kernel: another task running or
# ready to run (/proc/loadavg) that the region's threads would share a core with.
# Measured with one process spinning: counted in 30 of 30 checks (~1 ms each: five
# reads 0.1 ms apart), never on a quiet machine (0 of 30, ~0.2 ms each).
# Timing barriers of the region's own threads instead (the probe region, kept
# where /proc/loadavg is missing) misread these virtual machines: in `fastbp
# bench` runs on a quiet host, with the epochs' pauses, 50-75% of probes saw a
# thread stall over 1 ms (4 ms: still 25-75%), while the same workers' core
# probes found 2 cores and the epochs that did run in parallel got 1.6x.
HELD_UP_SECONDS = 1e-3
PROBES = 2
WAKE_SECONDS = 20e-3  # a probe's threads may take this long to arrive (idle vCPUs)
PROBE_ROUNDS = 50  # barriers per probe region
# An answer of held_up() stands for this long: the drop-in calls fit once per
# epoch (a few ms each on the digits), and a check costs ~0.2 ms (~1 ms on a busy
# machine). Checking every 0.25 s bounds that to well under 1% and still notices
# load that comes or goes within a second.
PROBE_VALID_SECONDS = 0.25
_last_probe = [-1.0, False]  # (when, answer)


def parts(parallel):
    """How many parts the batch kernels split a batch into: one per thread for a
    parallel run, else SERIAL_PARTS. Results do not depend on it."""
    return numba.get_num_threads() if parallel else SERIAL_PARTS


def parallel(rows, sizes):
    """Whether work on ``rows`` samples at a time is worth a parallel region."""
    cap_to_cores()
    return numba.get_num_threads() > 1 and rows * flops_per_sample(sizes) >= PARALLEL_MIN_FLOPS


def held_up():
    """Whether a region's threads would be held up by other processes right now:
    more tasks running or ready to run than the cores left beside the region's
    threads (elsewhere than Linux: any of PROBES probe regions over
    HELD_UP_SECONDS). The answer is reused for PROBE_VALID_SECONDS. Then an epoch
    runs serially, with the same bits."""
    now = time.perf_counter()
    if now - _last_probe[0] < PROBE_VALID_SECONDS:
        return _last_probe[1]
    n = numba.get_num_threads()
    answer = _others_running(usable_cores() - n)
    if answer is None:  # not known here: time barriers of the threads
        answer = any(probe_seconds(n) > HELD_UP_SECONDS for _ in range(PROBES))
    _last_probe[:] = time.perf_counter(), answer
    return answer


LOADAVG = "/proc/loadavg"  # its fourth field: tasks running or ready to run / all


def _others_running(limit):
    """Whether more than ``limit`` tasks other than this thread are running or ready
    to run on this machine (Linux: the fourth field of /proc/loadavg, ~10 us a
    read): in five reads 0.1 ms apart, so that a task that is only finishing --
    this process's region threads after the last call -- does not count; None
    where that is not known."""
    try:
        for _ in range(5):
            with open(LOADAVG) as f:
                if int(f.read().split()[3].split("/")[0]) - 1 <= limit:
                    return False
            time.sleep(1e-4)
        return True
    except (OSError, ValueError, IndexError):
        return None


def probe_seconds(n):
    """Seconds that the barriers of one probe region of ``n`` threads took after all
    had arrived (PROBE_ROUNDS - 1 of them; arriving may take up to WAKE_SECONDS);
    infinity when a thread gave up waiting (HELD_UP_SECONDS a barrier)."""
    rate = _cycles_per_second()
    arrive, budget = (np.int64(min(seconds * rate, 2.0**62))
                      for seconds in (WAKE_SECONDS, HELD_UP_SECONDS))
    if n not in _probed:  # load (or compile) the kernel and start the threads untimed
        launch(ktrain.probe, n, (np.int64(n), np.zeros(2, np.int64), np.int64(0), arrive,
                                 budget))
        _probed.add(n)
    sync = np.zeros(PROBE_ROUNDS + 2, np.int64)
    launch(ktrain.probe, n, (np.int64(n), sync, np.int64(PROBE_ROUNDS), arrive, budget))
    if sync[PROBE_ROUNDS]:
        return float("inf")
    return sync[PROBE_ROUNDS + 1] / rate  # 0 without a cycle counter


_probed = set()  # thread counts whose probe ran once, untimed
_rate = []  # cycles per second of the CPU's counter, measured once


def _cycles_per_second():
    """The cycle counter's rate, timed over 1 ms (once per process); 0: no counter
    (then the probe's threads never give up early)."""
    if not _rate:
        c0, t0 = ktrain.cycle_count(), time.perf_counter()
        while time.perf_counter() - t0 < 1e-3:
            pass
        c1, t1 = ktrain.cycle_count(), time.perf_counter()
        _rate.append(max(0.0, (c1 - c0) / (t1 - t0)))
    return _rate[0] or float("inf")


# -- regions: numba's own threads run nothing of fastbp's -------------------------------
#
# A region is one serial nogil kernel called on ``parts`` threads at once (thread 0
# is the caller's), which wait for each other inside the kernel (see
# fastbp.kernels.train). prange would do the same, but numba's parallel build of
# a kernel costs a second compile of its whole call tree: measured on
# 784-256-128-10 float32 with an empty cache, a first fit + evaluate + predict
# took 14.5 s against 37 s with prange kernels (see kernels/train.py).

_pool = []  # (process id, executor), made on first use in each process


def launch(kernel, parts, args):
    """kernel(me, *args) for me = 0 .. parts - 1 at once, me = 0 on this thread;
    returns when all have returned (also on KeyboardInterrupt: the other threads
    write the caller's arrays), then re-raises any thread's exception."""
    if parts == 1:
        kernel(np.int64(0), *args)
        return
    if not _pool or _pool[0][0] != os.getpid():
        # A new one after a fork: a forked child has the parent's executor but none
        # of its threads, and work submitted to it would wait forever.
        _pool[:] = [(os.getpid(), concurrent.futures.ThreadPoolExecutor(
            max(1, numba.config.NUMBA_NUM_THREADS - 1), thread_name_prefix="fastbp"))]
    others = [_pool[0][1].submit(kernel, np.int64(me), *args) for me in range(1, parts)]
    interrupted = None
    try:
        kernel(np.int64(0), *args)
    finally:
        while True:
            try:
                concurrent.futures.wait(others)
                break
            except KeyboardInterrupt as exc:  # wait on: they still write the arrays
                interrupted = exc
    for future in others:
        future.result()
    if interrupted is not None:
        raise interrupted


def run_region(parallel, mode, want_loss, params, buf1, buf2, layout, codes, hyper, step, X,
               T, order, weights, batch_size, acts, zs, deltas, losses, grads, sums, out,
               start=0.0):
    """One ``kernels.train.region`` call over the batches of ``order`` (mode TRAIN,
    GRADIENTS or PASS), in parts(parallel) parts on as many threads (at most the
    numba thread count; a part without a thread of its own goes to whichever thread
    claims it first) or serially: the loss sum, added on to ``start`` in sample
    order (so a run cut into calls gives the bits of one call)."""
    n_parts = parts(parallel)
    slots = size = 0
    if parallel:
        n_batches = -(-order.shape[0] // batch_size)
        slots, size = ktrain.sync_size(layout, n_parts, n_batches)
    # total[0]: the loss sum; then the CLIP phase's partial sums (kernels/update.py)
    total = np.zeros(1 + (layout.shape[1] - 1) * kupdate.CLIP_CHUNKS, dtype=np.float64)
    total[0] = start
    args = (np.bool_(not parallel), np.int64(n_parts), np.int64(mode), np.bool_(want_loss),
            np.int64(slots), params, buf1, buf2, layout, codes, hyper, np.int64(step), X, T,
            order, weights, np.int64(batch_size), acts, zs, deltas, losses, grads, sums, out,
            np.zeros(size, np.int64), total)
    launch(ktrain.region, min(n_parts, numba.get_num_threads()) if parallel else 1, args)
    return total[0]
