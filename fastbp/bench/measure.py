"""One framework at one thread count: a measurement in steps (probe and warm-up,
timed epochs, the record), so that the epochs of several frameworks can take
turns (:mod:`fastbp.bench.workers`); and every grid point of one framework in a
row (:func:`run_framework`, the worker's or the --in-process run's work)."""

import contextlib
import os
import statistics
import sys
import time

from fastbp._threads import numba_threads
from fastbp.bench import peers
from fastbp.bench.grid import LR, _grid
from fastbp.bench.machine import gemm_gflops

__all__ = ["measure", "run_framework"]


@contextlib.contextmanager
def _threads_in_process(threads):
    """--in-process: thread counts set at run time (numba, BLAS and OpenMP pools
    through threadpoolctl; torch in Torch.setup), restored afterwards. JAX's pool
    cannot be resized once started."""
    torch = sys.modules.get("torch")
    old = torch.get_num_threads() if torch else None
    try:
        with numba_threads(threads):
            try:
                import threadpoolctl

                limits = threadpoolctl.threadpool_limits(threads)
            except ImportError:
                limits = contextlib.nullcontext()
            with limits:
                yield
    finally:
        if old is not None:
            torch.set_num_threads(old)


def _time_epochs(peer, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        peer.run_epoch()
        times.append(time.perf_counter() - start)
    return times


class _Measurement:
    """One record -- ``cls`` on ``case`` at ``batch`` and ``threads`` -- in steps:
    ``prepare`` (the probe that sizes the epoch, the untimed warm-up epoch),
    ``epoch`` (one timed epoch) and ``finish`` (the record of the timed epochs), so
    that the epochs of several frameworks can take turns (see ``_run_interleaved``)."""

    def __init__(self, cls, case, batch, threads, settings):
        self.cls, self.case, self.batch, self.threads = cls, case, batch, threads
        self.settings = settings
        self.rec = _record(case.name, batch, threads, cls.name, shuffles=cls.shuffles)
        self.peer, self.n, self.times = None, 0, []

    def prepare(self):
        """Probe and warm up; returns None when ready, else the finished record
        (skipped: the peer cannot run this case)."""
        cls, batch, threads, settings, c = (self.cls, self.batch, self.threads,
                                            self.settings, self.case)  # fmt: skip
        peer = cls()
        cap = c.max_samples if settings["samples"] is None else settings["samples"]
        cap = max(batch, cap // batch * batch)
        problem = peers.make_problem(c.sizes, c.hidden, c.output, c.loss, cap, LR,
                                     shuffle=settings.get("shuffle", True),
                                     dtype=settings.get("dtype", "float32"))
        reason = peer.unsupported(problem, batch)
        if reason:
            return {**self.rec, "status": "skipped", "reason": reason}
        self.peer = peer
        n, ready = cap, False
        if settings["samples"] is None:  # a probe epoch picks n for ~epoch_seconds
            n0 = min(cap, max(4 * batch, -(-256 // batch) * batch))
            peer.setup(problem.head(n0), batch, threads)
            peer.run_epoch()  # warm-up, compiles
            (t0,) = _time_epochs(peer, 1)
            n = int(min(cap, max(n0, n0 / t0 * settings["epoch_seconds"])))
            n = n // batch * batch
            if n > 1.5 * n0:
                peer.close()
                self.peer = peer = cls()
            else:
                n, ready = n0, True
        if not ready:
            peer.setup(problem.head(n), batch, threads)
            peer.run_epoch()  # warm-up, compiles
        if hasattr(peer, "fit_rates"):  # fastbp: fit's own samples/s, kernel only
            peer.fit_rates.clear()
            peer.held_up_epochs = 0
        self.n = n
        return None

    def epoch(self):
        """One timed epoch; returns its seconds."""
        (seconds,) = _time_epochs(self.peer, 1)
        self.times.append(seconds)
        return seconds

    def finish(self):
        """The record of the timed epochs (their median); closes the peer."""
        peer, times, batch, threads = self.peer, self.times, self.batch, self.threads
        median = statistics.median(times)
        rec = {**self.rec, "status": "ok", "samples": self.n, "epoch_seconds": times,
               "seconds_per_epoch": median, "samples_per_second": self.n / median,
               "exact": peer.exact}  # fmt: skip
        notes = [peer.notes] if peer.notes else []
        if getattr(peer, "held_up_epochs", 0):
            rec["held_up_epochs"] = peer.held_up_epochs
            notes.append(f"batch {batch}, {threads} threads: {peer.held_up_epochs} of "
                         f"{len(times)} timed epochs ran on one thread (other "
                         "processes held the CPUs; History.held_up_epochs)")
        if notes:
            rec["notes"] = "; ".join(notes)
        if getattr(peer, "fit_rates", None):
            rec["fit_reported_samples_per_second"] = statistics.median(peer.fit_rates)
        self.close()
        return rec

    def close(self):
        if self.peer is not None:
            self.peer.close()
            self.peer = None


def measure(cls, case, batch, threads, settings):
    """One record: samples/s of ``cls`` on ``case`` at ``batch`` and ``threads``
    (its epochs one after another)."""
    m = _Measurement(cls, case, batch, threads, settings)
    try:
        done = m.prepare()
        if done:
            return done
        for _ in range(settings["repeats"]):
            m.epoch()
        return m.finish()
    finally:
        m.close()


def _record(case, batch, threads, framework, **more):
    return dict(
        case=case, batch_size=batch, threads=threads, framework=framework, **more
    )


def run_framework(name, threads, settings):
    """Every (case, batch) of the grid for one framework: the worker's result."""
    cls = peers.PEERS[name]
    out = {"framework": name, "threads": threads, "records": []}
    try:
        out["version"] = cls.available()
    except (peers.Unavailable, ImportError, OSError) as exc:
        return {**out, "status": "skipped", "reason": str(exc)}
    for case, batch in _grid(settings):
        progress = f"  {name}, {threads} thread(s): {case.name} batch {batch}"
        print(progress, file=sys.stderr, flush=True)
        try:
            rec = measure(cls, case, batch, threads, settings)
        except Exception as exc:  # a peer failing must not lose the others' numbers
            why = f"{type(exc).__name__}: {exc}"
            rec = _record(case.name, batch, threads, name, status="error", reason=why)
        out["records"].append(rec)
    # after the timings: OpenBLAS threads spin for a while after a GEMM
    out["gemm_gflops"] = gemm_gflops(settings["gemm_size"],
                                      dtype=settings.get("dtype", "float32"))
    out["status"] = "ok"
    if hasattr(os, "sched_getaffinity"):
        out["cpus"] = sorted(os.sched_getaffinity(0))
    return out

