"""``fastbp bench``: training throughput of fastbp and its peers on a fixed grid.

    fastbp bench                     # the grid, every installed peer, 1 and 2 threads
    fastbp bench --cases S --threads 1 --peers torch,numpy
    fastbp bench --json > b.json     # a record per case x batch x threads x framework

The grid (float32, plain SGD, lr 0.01; every framework shuffles once per epoch):

    S  64-32-10           sigmoid / linear  / mse            batch 1, 16, 128
    M  784-256-128-10     relu    / softmax / cross_entropy  batch 1, 32, 256
    L  784-1024-1024-10   relu    / softmax / cross_entropy  batch 256

Throughput is training samples per second over an epoch: the median over
``--repeats`` epochs, after one untimed warm-up epoch (the JIT compile). FLOPs per
sample count 2 per weight for the forward pass, 2 for the weight gradient and 2
for propagating delta, which the first layer skips; biases and activations are
not counted. GFLOP/s is compared with the float32 GEMM peak (np.dot of two
square matrices on the BLAS NumPy uses, best of 5) measured at the end of every
worker; the peak of a thread count is the best of its workers. Unless --samples
is given, a short probe epoch sizes each framework's epoch to --epoch-seconds.

Thread pools are sized when a library initialises, so each (framework, threads)
pair runs in its own worker process (``python -m fastbp.bench --worker ...``,
commands and answers as JSON lines) started with NUMBA_NUM_THREADS,
OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS and XLA_FLAGS set and
pinned to that many CPUs (JAX ignores the flags); the workers also call
numba.set_num_threads / torch.set_num_threads. All workers start together and
their timed epochs take turns -- one epoch of each framework and thread count a
round, ``--repeats`` rounds per grid point, TURN_PAUSE seconds before each -- so
that the host's slow spells (these shared virtual machines have them: cache lines
between the two vCPUs took 5x longer for seconds at a time, measured) fall on
every framework alike and the ratios compare epochs run in the same minute. Each
ratio also comes paired: the median over rounds of the ratio of that round's two
epochs (``paired``), with the rounds fastbp won (``ahead``); likewise 2 threads
against 1. Around every multi-thread epoch fastbp's worker probes how many cores
the host gives its threads right then (``host_cores``: an in-cache product on one
thread, then on every thread at once): at times these vCPUs share one core, for
seconds to minutes, and every framework's 2-thread epochs then run at about their
1-thread speed. The 2-threads-vs-1 table gives the probes' median and how many
found too few cores. The peers live in ``fastbp._bench_peers``.
"""

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

import numpy as np

from fastbp import _bench_peers as peers
from fastbp._version import __version__

__all__ = ["CASES", "flops_per_sample", "gemm_gflops", "main", "run"]


@dataclass(frozen=True)
class Case:
    name: str
    sizes: tuple
    hidden: str
    output: str
    loss: str
    batch_sizes: tuple
    max_samples: int  # cap of the samples per epoch (the data generated)


# fmt: off
_REG, _CLS = ("sigmoid", "linear", "mse"), ("relu", "softmax", "cross_entropy")
CASES = {
    "S": Case("S", (64, 32, 10), *_REG, (1, 16, 128), 200_000),
    "M": Case("M", (784, 256, 128, 10), *_CLS, (1, 32, 256), 20_000),
    "L": Case("L", (784, 1024, 1024, 10), *_CLS, (256,), 4096),
}
FRAMEWORKS = list(peers.PEERS)  # fastbp first, then the peers
PEER_NAMES = FRAMEWORKS[1:]
LR = 0.01
MARK = "FASTBP-BENCH-JSON "  # prefix of the worker's result line on stdout
QUICK = dict(cases=["S"], batch_sizes=[1, 16], thread_counts=[1], samples=512,
             repeats=1, gemm_size=256)
DEFAULTS = dict(cases=list(CASES), batch_sizes=None, thread_counts=[1, 2],
                samples=None, repeats=3, gemm_size=2048)
THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "MKL_NUM_THREADS")
# fmt: on
WORKER_TIMEOUT = 1800


def flops_per_sample(sizes):
    """Training FLOPs of one sample: 2 per weight forward, 2 for the weight gradient,
    2 for propagating delta back (not into the input layer)."""
    weights = [n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)]
    return 4 * sum(weights) + 2 * sum(weights[1:])


def gemm_gflops(n=2048, repeats=5):
    """Best float32 GEMM rate of np.dot on (n, n) matrices, in GFLOP/s."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, n), dtype=np.float32)
    B = rng.standard_normal((n, n), dtype=np.float32)
    C = np.empty_like(A)
    np.dot(A, B, out=C)  # warm-up: BLAS threads start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.dot(A, B, out=C)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


# A core probe found the threads short of cores below this share of them (quiet host,
# 2 threads: 1.85-2.0 cores; vCPUs sharing a core: about 1.1).
FULL_CORES = 0.85
PROBE_REPS = 150  # products per thread and timing: ~3 ms at the 1-thread GEMM peak


def host_cores(threads, repeats=3):
    """How many cores the host gives ``threads`` numba threads right now: ``threads``
    times the time of an in-cache product loop on one thread over its time when every
    thread runs one at once (see fastbp.kernels.threads); the median of ``repeats``."""
    from fastbp.kernels import threads as kthreads

    shape = (threads, kthreads.PROBE_ROWS * kthreads.PROBE_INNER)
    A = np.random.default_rng(0).random(shape, dtype=np.float32)
    W, Z = A[::-1].copy(), np.zeros((threads, kthreads.PROBE_ROWS**2), np.float32)
    kthreads.products_alone(A, W, Z, 1)  # loaded (or compiled) outside the timing
    kthreads.products_on_each(A, W, Z, 1)
    found = []
    for _ in range(repeats):
        start = time.perf_counter()
        kthreads.products_alone(A, W, Z, PROBE_REPS)
        alone = time.perf_counter() - start
        start = time.perf_counter()
        kthreads.products_on_each(A, W, Z, PROBE_REPS)
        found.append(threads * alone / (time.perf_counter() - start))
    return statistics.median(found)


# -- arguments ---------------------------------------------------------------------


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _names(choices, extra=()):
    def convert(text):
        names = [s.strip() for s in text.split(",") if s.strip()]
        bad = [s for s in names if s not in choices and s not in extra]
        if not names or bad:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join([*choices, *extra])}, "
                f"got {text!r}"
            )
        return names

    return convert


# fmt: off
def add_arguments(p, worker=False):
    """The options of ``fastbp bench`` (the CLI's and ``python -m fastbp.bench``'s)."""
    p.add_argument("--cases", type=_names(list(CASES)), metavar="S,M,L",
                   help="comma-separated cases of the grid (default: S,M,L)")
    p.add_argument("--batch-sizes", type=_positive_int, nargs="+", metavar="B",
                   help="only these batch sizes of each case's grid (default: the "
                   "grid's, S 1 16 128, M 1 32 256, L 256)")
    p.add_argument("--threads", type=_positive_int, nargs="+", metavar="N",
                   dest="thread_counts",
                   help="thread counts, each measured in fresh worker processes; "
                   "capped at the number of CPUs (default: 1 2)")
    p.add_argument("--samples", type=_positive_int, metavar="N",
                   help="samples per epoch for every framework, rounded down to a "
                   "multiple of the batch size; samples/s is reported either way "
                   "(default: sized per framework by a short probe epoch so that an "
                   "epoch takes about --epoch-seconds, at most S 200000, M 20000, "
                   "L 4096)")
    p.add_argument("--epoch-seconds", type=_positive_float, default=0.4, metavar="SEC",
                   help="target length of an epoch when --samples is not given "
                   "(default: %(default)s)")
    p.add_argument("--repeats", type=_positive_int, metavar="R",
                   help="timed epochs per measurement, the median is reported; one "
                   "untimed warm-up epoch (JIT compile) comes first; with worker "
                   "processes the timed epochs of all frameworks and thread counts "
                   "take turns, one each a round (default: 3)")
    p.add_argument("--peers", type=_names(PEER_NAMES, ("all", "none")), metavar="LIST",
                   help="comma-separated peers to compare with: "
                   f"{', '.join(PEER_NAMES)}, 'all' or 'none'; missing ones are "
                   "reported as skipped (default: all)")
    p.add_argument("--gemm-size", type=_positive_int, metavar="N",
                   help="size of the square float32 matrices of the GEMM peak "
                   "(default: 2048)")
    p.add_argument("--json", action="store_true",
                   help="print the results as JSON instead of tables (default: tables)")
    p.add_argument("--save", metavar="PATH",
                   help="also write the JSON results to PATH (default: not written)")
    p.add_argument("--quick", action="store_true",
                   help="a tiny run for tests: case S, batch 1 and 16, 1 thread, 512 "
                   "samples, 1 repeat, 256x256 GEMM; explicit options still apply "
                   "(default: off)")
    p.add_argument("--in-process", action="store_true",
                   help="run every framework in this process instead of worker "
                   "processes: thread counts are then set at run time only (numba, "
                   "torch, BLAS through threadpoolctl), not for JAX (default: off)")
    if worker:
        p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
        p.add_argument("--framework", choices=FRAMEWORKS, help=argparse.SUPPRESS)
# fmt: on


def _settings(args):
    """Options with the --quick or the normal defaults filled in."""
    base = QUICK if args.quick else DEFAULTS
    s = {k: v if getattr(args, k, None) is None else getattr(args, k)
         for k, v in base.items()}  # fmt: skip
    s["epoch_seconds"] = args.epoch_seconds
    cpus = os.cpu_count() or 1
    counts = sorted({min(n, cpus) for n in s["thread_counts"]})
    if counts != sorted(set(s["thread_counts"])) and not getattr(args, "worker", False):
        print(f"note: thread counts capped at the {cpus} CPUs", file=sys.stderr)
    s["thread_counts"] = counts
    wanted = args.peers or ["all"]
    s["peers"] = [p for p in PEER_NAMES if "all" in wanted or p in wanted]
    if "none" in wanted:
        s["peers"] = []
    if not _grid(s):
        raise ValueError(
            f"--batch-sizes {' '.join(map(str, s['batch_sizes']))}: no batch size of "
            f"the cases {','.join(s['cases'])} (S 1 16 128, M 1 32 256, L 256)"
        )
    return s


def _grid(settings):
    """[(case, batch)] of the grid after the --cases and --batch-sizes filters."""
    pairs = []
    for name in settings["cases"]:
        case = CASES[name]
        for batch in case.batch_sizes:
            if settings["batch_sizes"] is None or batch in settings["batch_sizes"]:
                pairs.append((case, batch))
    return pairs


# -- one framework at one thread count ------------------------------------------------


@contextlib.contextmanager
def _threads_in_process(threads):
    """--in-process: thread counts set at run time (numba, BLAS and OpenMP pools
    through threadpoolctl; torch in Torch.setup), restored afterwards. JAX's pool
    cannot be resized once started."""
    import numba

    torch = sys.modules.get("torch")
    old = numba.get_num_threads(), torch.get_num_threads() if torch else None
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        import threadpoolctl

        limits = threadpoolctl.threadpool_limits(threads)
    except ImportError:
        limits = contextlib.nullcontext()
    try:
        with limits:
            yield
    finally:
        numba.set_num_threads(old[0])
        if old[1] is not None:
            torch.set_num_threads(old[1])


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
        problem = peers.make_problem(c.sizes, c.hidden, c.output, c.loss, cap, LR)
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
    out["gemm_gflops"] = gemm_gflops(settings["gemm_size"])
    out["status"] = "ok"
    if hasattr(os, "sched_getaffinity"):
        out["cpus"] = sorted(os.sched_getaffinity(0))
    return out


def _worker_env(threads):
    env = dict(os.environ)
    env.update({var: str(threads) for var in THREAD_VARS})
    flags = f"--xla_cpu_multi_thread_eigen={'false' if threads == 1 else 'true'} "
    env["XLA_FLAGS"] = flags + f"intra_op_parallelism_threads={threads}"
    return env


def _pin(threads):
    """A preexec_fn keeping the worker on ``threads`` CPUs: XLA's CPU backend sizes
    its pool from the CPUs it may use, whatever XLA_FLAGS say (measured: jax 0.10
    used ~1.9 cores at "1 thread" on L), and so does any library we cannot tell."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    return lambda: os.sched_setaffinity(0, cpus)


def serve(name, threads, settings, stdin=None, stdout=None):
    """The worker's side of ``_Worker``: JSON commands, one a line, on ``stdin``;
    each answered by one line ``MARK + JSON`` on ``stdout`` (other output of the
    libraries may come between). Commands: start (version, or skipped), setup of a
    case and batch (probe and warm-up), epoch (one timed epoch: its seconds),
    finish (the record), gemm (the GEMM peak and the CPUs), quit."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    cls = peers.PEERS[name]
    current = None
    for line in stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "quit":
            break
        try:
            if op == "start":
                try:
                    reply = {"status": "ok", "version": cls.available()}
                except (peers.Unavailable, ImportError, OSError) as exc:
                    reply = {"status": "skipped", "reason": str(exc)}
            elif op == "setup":
                current = _Measurement(cls, CASES[cmd["case"]], cmd["batch"], threads,
                                       settings)
                reply = {"record": current.prepare()}
            elif op == "epoch":
                reply = {"seconds": current.epoch()}
            elif op == "finish":
                reply = {"record": current.finish()}
                current = None
            elif op == "cores":  # the host's cores for this worker's threads, now
                reply = {"cores": host_cores(threads)}
            elif op == "gemm":
                # after the timings: OpenBLAS threads spin for a while after a GEMM
                reply = {"gemm_gflops": gemm_gflops(settings["gemm_size"])}
                if hasattr(os, "sched_getaffinity"):
                    reply["cpus"] = sorted(os.sched_getaffinity(0))
            else:
                reply = {"error": f"unknown command {op!r}"}
        except Exception as exc:  # reported; the driver records the error
            reply = {"error": f"{type(exc).__name__}: {exc}"}
            if current is not None:
                current.close()
                current = None
        print(MARK + json.dumps(reply), file=stdout, flush=True)
    return 0


class WorkerFailed(Exception):
    """A worker process died, hung or answered with an error."""


class _Worker:
    """One (framework, thread count) in a worker process of its own: thread pools are
    sized when a library initialises, so each pair gets fresh ones, pinned to that
    many CPUs. The driver sends it one command at a time (see ``serve``)."""

    def __init__(self, name, threads, settings):
        self.name, self.threads, self.busy = name, threads, 0.0
        # fmt: off
        cmd = [sys.executable, "-m", "fastbp.bench", "--worker", "--framework", name,
               "--threads", str(threads), "--gemm-size", str(settings["gemm_size"]),
               "--epoch-seconds", str(settings["epoch_seconds"])]
        # fmt: on
        if settings["samples"]:
            cmd += ["--samples", str(settings["samples"])]
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            cmd, env=_worker_env(threads), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.stderr, text=True, preexec_fn=_pin(threads))  # fmt: skip

    def ask(self, **cmd):
        """Send one command, return its answer (raises WorkerFailed)."""
        began = time.perf_counter()
        timer = threading.Timer(WORKER_TIMEOUT, self.proc.kill)
        timer.start()
        try:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
            for line in self.proc.stdout:
                if line.startswith(MARK):
                    reply = json.loads(line[len(MARK) :])
                    break
            else:
                raise WorkerFailed(f"worker failed: {self._tail()}")
        except (BrokenPipeError, OSError) as exc:
            raise WorkerFailed(f"worker failed: {self._tail() or exc}") from exc
        finally:
            timer.cancel()
            self.busy += time.perf_counter() - began
        if "error" in reply:
            raise WorkerFailed(reply["error"])
        return reply

    def _tail(self):
        self.proc.poll()
        self.stderr.seek(0)
        lines = self.stderr.read().strip().splitlines()
        return "\n".join(lines[-5:]) or f"exit status {self.proc.returncode}"

    def close(self):
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


# Pause before every timed epoch of the interleaved run: the worker that ran before
# may still have threads spinning after its work (libgomp, XLA's pool, OpenBLAS:
# its threads poll for new work for ~0.1 s), which would take CPU time from this one.
TURN_PAUSE = 0.2
# Pause between a core probe and the epoch it precedes: the probe's own threads spin
# for a while too (libgomp: up to a few ms). After an idle pause, though, the host may
# take milliseconds to give the idle vCPU back (measured: a parallel region after
# 0.2 s idle ~8 ms on a busy host, ~0.1 ms after 0.05 s): a probe shortly before an
# epoch keeps that out of the epochs of every multi-thread framework alike.
PROBE_PAUSE = 0.05


def _run_interleaved(frameworks, settings):
    """Every (framework, thread count) in a worker process, all started at once;
    for each (case, batch) of the grid, each worker prepares in turn, then the timed
    epochs take turns: one epoch of each worker per round, ``repeats`` rounds, the
    order rotated each round. A slow spell of the host (these shared virtual
    machines have them, for seconds) then falls on every framework alike instead of
    on whichever ran then. Returns the workers' results as ``run_framework``'s."""
    workers, out = [], []
    for threads in settings["thread_counts"]:
        for name in frameworks:
            w = _Worker(name, threads, settings)
            result = {"framework": name, "threads": threads, "records": []}
            try:
                info = w.ask(op="start")
            except WorkerFailed as exc:
                info = {"status": "error", "reason": str(exc)}
            if info["status"] == "ok":
                result["version"] = info["version"]
                workers.append((w, result))
            else:
                result.update(status=info["status"], reason=info["reason"])
                w.close()
            out.append(result)
    live = list(workers)
    # fastbp's worker of each thread count probes the host's cores for that many
    # threads (see host_cores) before and after every epoch of that many threads:
    # which rounds had the cores they asked for. Each probe follows a pause: right
    # after an epoch its library's threads may still spin (measured: probes then found
    # ~1 core after NumPy's and PyTorch's), and so do the probe's (PROBE_PAUSE).
    probes = {w.threads: w for w, _ in live if w.name == "fastbp" and w.threads > 1}
    try:
        for case, batch in _grid(settings):
            ready = []
            for w, result in live:
                print(f"  {w.name}, {w.threads} thread(s): {case.name} batch {batch}",
                      file=sys.stderr, flush=True)
                try:
                    done = w.ask(op="setup", case=case.name, batch=batch)["record"]
                except WorkerFailed as exc:
                    done = _record(case.name, batch, w.threads, w.name, status="error",
                                   reason=str(exc))
                if done:
                    result["records"].append(done)
                else:
                    ready.append((w, result))
            failed, cores, after = set(), {}, None  # after: (probe, [before]) still due
            for r in range(settings["repeats"]):
                k = r % len(ready) if ready else 0
                for w, result in ready[k:] + ready[:k]:
                    if id(w) in failed:
                        continue
                    time.sleep(TURN_PAUSE)
                    if after is not None:  # the probe after the last epoch
                        after[1].append(_cores_now(after[0]))
                        after = None
                    probe = probes.get(w.threads)
                    if probe is not None:
                        before = _cores_now(probe)
                        time.sleep(PROBE_PAUSE)
                    try:
                        w.ask(op="epoch")
                    except WorkerFailed as exc:
                        failed.add(id(w))
                        result["records"].append(_record(
                            case.name, batch, w.threads, w.name, status="error",
                            reason=str(exc)))  # fmt: skip
                        continue
                    if probe is not None:
                        after = (probe, [before])
                        cores.setdefault(id(w), []).append(after[1])
            if after is not None:
                time.sleep(TURN_PAUSE)
                after[1].append(_cores_now(after[0]))
            for w, result in ready:
                if id(w) not in failed:
                    try:
                        done = w.ask(op="finish")["record"]
                        if len(cores.get(id(w), ())) == len(done.get("epoch_seconds", ())):
                            done["host_cores"] = cores[id(w)]  # [before, after] a round
                        result["records"].append(done)
                    except WorkerFailed as exc:
                        result["records"].append(_record(
                            case.name, batch, w.threads, w.name, status="error",
                            reason=str(exc)))  # fmt: skip
        for w, result in live:
            try:
                result.update(w.ask(op="gemm"), status="ok")
            except WorkerFailed as exc:
                result.update(status="error", reason=str(exc))
    finally:
        for w, result in live:
            w.close()
            result["seconds"] = w.busy
            print(f"  {w.name}, {w.threads} thread(s): done, busy {w.busy:.1f} s",
                  file=sys.stderr, flush=True)
    return out


def _cores_now(probe):
    """The probe worker's host_cores, or None if it failed (its own turns say why)."""
    try:
        return probe.ask(op="cores")["cores"]
    except WorkerFailed:
        return None


# -- the whole run ----------------------------------------------------------------


def _installed(name):
    """A cheap check (no import of torch or jax in the parent process)."""
    modules = {"torch": "torch", "jax": "jax", "sklearn": "sklearn"}
    if name in modules:
        return importlib.util.find_spec(modules[name]) is not None
    if name == "fann":
        try:
            peers.Fann.available()
        except peers.Unavailable:
            return False
    return True


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info():
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    blas = None
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{cfg.get('name')} {cfg.get('version')}"
    except Exception:  # older NumPy: no dict mode
        pass
    now = datetime.datetime.now(datetime.timezone.utc)
    # fmt: off
    return {
        "cpu_model": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "numpy": np.__version__, "blas": blas,
        "numba": _version("numba"), "fastbp": __version__, "torch": _version("torch"),
        "jax": _version("jax"), "jaxlib": _version("jaxlib"),
        "scikit-learn": _version("scikit-learn"), "date": now.isoformat("T", "seconds"),
    }
    # fmt: on


def run(settings, in_process=False):
    """Measure the grid; returns the JSON-able result (see ``fastbp bench --help``)."""
    start = time.perf_counter()
    frameworks = ["fastbp", *settings["peers"]]
    skipped = {n: "not installed" for n in frameworks if not _installed(n)}
    present = [n for n in frameworks if n not in skipped]
    if in_process:
        workers = []
        for threads in settings["thread_counts"]:
            for name in present:
                began = time.perf_counter()
                with _threads_in_process(threads):
                    workers.append(run_framework(name, threads, settings))
                workers[-1]["seconds"] = seconds = time.perf_counter() - began
                done = f"  {name}, {threads} thread(s): done in {seconds:.1f} s"
                print(done, file=sys.stderr, flush=True)
    else:
        workers = _run_interleaved(present, settings)
    peer_info = {n: {"status": "skipped", "reason": r} for n, r in skipped.items()}
    records, peak = [], {}
    for w in workers:
        info = peer_info.setdefault(w["framework"], {"status": w["status"]})
        if w["status"] != "ok":
            info.update(status=w["status"], reason=w["reason"])
            continue
        shuffles = peers.PEERS[w["framework"]].shuffles
        info.update(status="ok", version=w["version"], shuffles=shuffles)
        peak[w["threads"]] = max(peak.get(w["threads"], 0.0), w["gemm_gflops"])
        for rec in w["records"]:
            rec["gemm_gflops_worker"] = w["gemm_gflops"]
            records.append(rec)
    _derive(records, peak, paired=not in_process)
    # fmt: off
    return {
        "machine": machine_info(),
        "settings": {**settings, "lr": LR, "dtype": "float32", "optimizer": "sgd",
                     "in_process": in_process,
                     "timing": "median of repeats after one untimed warm-up epoch" + (
                         "" if in_process else "; the timed epochs of every framework "
                         "and thread count take turns, one each a round")},
        "cases": {c.name: {"sizes": list(c.sizes), "hidden": c.hidden,
                           "output": c.output, "loss": c.loss,
                           "batch_sizes": list(c.batch_sizes),
                           "flops_per_sample": flops_per_sample(c.sizes)}
                  for c in CASES.values() if c.name in settings["cases"]},
        "gemm_peak_gflops": {str(t): g for t, g in sorted(peak.items())},
        "frameworks": peer_info,
        "workers": [{k: w.get(k) for k in ("framework", "threads", "status", "seconds",
                                           "gemm_gflops", "cpus")} for w in workers],
        "results": records,
        "wall_seconds": time.perf_counter() - start,
    }
    # fmt: on


def _per_round(r):
    """A record's samples/s in each timed epoch (round), in order."""
    return [r["samples"] / t for t in r["epoch_seconds"]]


def _paired(a, b):
    """Median over rounds of a's samples/s / b's, and the rounds a was faster in;
    (None, None) unless both timed the same number of rounds."""
    fa, fb = _per_round(a), _per_round(b)
    if not fa or len(fa) != len(fb):
        return None, None
    return statistics.median(x / y for x, y in zip(fa, fb)), sum(x > y for x, y in zip(fa, fb))


def _derive(records, peak, paired=False):
    """gflops, percent_of_peak, ratio_to_best_peer and speedup_vs_1_thread, in place;
    with ``paired`` (the epochs took turns, round by round) also the per-round
    comparisons: paired_ratio_to_best_peer (median over rounds of the two epochs'
    ratio), rounds_ahead_of_best_peer, paired_speedup_vs_1_thread. A round's epochs
    ran within seconds of each other, so a slow spell of the host that lasts a few
    seconds falls on both sides of its ratio."""
    best = {}
    for r in records:
        if r["status"] == "ok" and r["framework"] != "fastbp":
            key = (r["case"], r["batch_size"], r["threads"])
            if r["samples_per_second"] > best.get(key, {}).get("samples_per_second", 0):
                best[key] = r
    ones = {(r["framework"], r["case"], r["batch_size"]): r for r in records
            if r["status"] == "ok" and r["threads"] == 1}
    for r in records:
        case = CASES[r["case"]]
        r.update(sizes=list(case.sizes), hidden=case.hidden, output=case.output,
                 loss=case.loss)  # fmt: skip
        if r["status"] != "ok":
            continue
        r["flops_per_sample"] = flops_per_sample(case.sizes)
        r["gflops"] = r["flops_per_sample"] * r["samples_per_second"] / 1e9
        r["gemm_peak_gflops"] = peak.get(r["threads"])
        r["percent_of_peak"] = 100.0 * r["gflops"] / peak[r["threads"]]
        b = best.get((r["case"], r["batch_size"], r["threads"]))
        r["best_peer"] = b["framework"] if b else None
        ratio = r["samples_per_second"] / b["samples_per_second"] if b else None
        r["ratio_to_best_peer"] = ratio
        if paired and b:
            r["paired_ratio_to_best_peer"], r["rounds_ahead_of_best_peer"] = _paired(r, b)
        one = ones.get((r["framework"], r["case"], r["batch_size"]))
        if r["threads"] > 1 and one:
            r["speedup_vs_1_thread"] = r["samples_per_second"] / one["samples_per_second"]
            if paired:
                r["paired_speedup_vs_1_thread"] = _paired(r, one)[0]
        if r.get("host_cores"):
            _core_probes(r)


def _core_probes(r):
    """From the core probes before and after each of a multi-thread record's epochs
    (host_cores, [before, after] a round): host_cores_median and probes_short_of_cores,
    the probes that found under FULL_CORES of the threads' cores. A probe tells the
    state of the host in its ~20 ms, not over the epoch: spells of one shared core
    begin and end within a second (measured: an epoch at 1-thread speed between two
    probes that found 1.8 and 1.9 cores), so the epochs are not sorted by them."""
    found = [x for pair in r["host_cores"] for x in pair if x is not None]
    r["host_cores_median"] = statistics.median(found) if found else None
    r["probes_short_of_cores"] = sum(x < FULL_CORES * r["threads"] for x in found)
    r["core_probes"] = len(found)


# -- output ------------------------------------------------------------------------


def _fmt(x, spec=",.0f"):
    return "-" if x is None else format(x, spec)


# fmt: off
def format_report(result):
    """The human-readable tables of a :func:`run` result."""
    m, s, results = result["machine"], result["settings"], result["results"]
    peaks = ", ".join(f"{t} thread(s) {g:,.1f} GFLOP/s"
                      for t, g in result["gemm_peak_gflops"].items())
    flops = ", ".join(f"{n} {c['flops_per_sample']:,}"
                      for n, c in result["cases"].items())
    lines = [
        f"fastbp bench: {m['cpu_model']}, {m['cores']} CPUs; python {m['python']}, "
        f"numpy {m['numpy']} ({m['blas']}), numba {m['numba']}, fastbp {m['fastbp']}; "
        f"{m['date']}",
        f"float32, plain SGD lr {s['lr']}, median of {s['repeats']} epoch(s) after a "
        "warm-up epoch; every framework shuffles each epoch"
        + ("" if s.get("in_process") else "; the frameworks' epochs take turns"),
        f"GEMM peak (float32 np.dot, {s['gemm_size']}x{s['gemm_size']}): {peaks}",
        f"FLOPs per sample: {flops}",
        "",
    ]
    table = {}
    for r in results:
        key = (r["case"], r["batch_size"], r["threads"])
        table.setdefault(key, {})[r["framework"]] = r
    rows = [("case", "sizes", "batch", "threads", "fastbp/s", "best peer", "peer/s",
             "ratio", "paired", "ahead", "GFLOP/s", "% peak")]
    for (case, batch, threads), by in table.items():
        f = by.get("fastbp", {})
        ok, best = f.get("status") == "ok", f.get("best_peer")
        peer = by.get(best, {}) if best else {}
        mark = "~" if peer and not peer.get("exact", True) else ""
        ratio = _fmt(f.get("ratio_to_best_peer"), ".2f") + ("x" if ok and best else "")
        rows.append((case, "-".join(map(str, CASES[case].sizes)), str(batch),
                     str(threads),
                     _fmt(f.get("samples_per_second")) if ok else f.get("status", "-"),
                     (best or "-") + mark, _fmt(peer.get("samples_per_second")), ratio,
                     _times(f.get("paired_ratio_to_best_peer")), _ahead(f),
                     _fmt(f.get("gflops"), ".2f"),
                     _fmt(f.get("percent_of_peak"), ".1f")))
    lines += _columns(rows, left=2)
    status = {f: i["status"] for f, i in result["frameworks"].items()}
    ran = [f for f in FRAMEWORKS if status.get(f) == "ok"]
    if len(ran) > 1:
        lines += ["", "samples/s of every framework (~: not the same model, see notes)"]
        rows = [("case", "batch", "threads", *ran)]
        for (case, batch, threads), by in table.items():
            cells = [_cell(by.get(name)) for name in ran]
            rows.append((case, str(batch), str(threads), *cells))
        lines += _columns(rows, left=1)
    multi = [k for k in table if k[2] > 1]
    if multi and ran:
        lines += ["", "2 threads vs 1: ratio of the medians (paired: median of the rounds' "
                  "ratios)" if not s.get("in_process") else "2 threads vs 1: ratio of the medians"]
        rows = [("case", "batch", "threads", "host cores", *ran)]
        for case, batch, threads in multi:
            by = table[case, batch, threads]
            rows.append((case, str(batch), str(threads), _host_cores(by),
                         *(_speedup(by.get(name)) for name in ran)))
        lines += _columns(rows, left=1)
        if any(row[3] != "-" for row in rows[1:]):
            lines.append(f"host cores: the median of the core probes before and after each "
                         f"2-thread epoch (short: under {FULL_CORES:.0%} of the threads' "
                         "cores; these vCPUs at times share one core)")
    notes = sorted({(r["framework"], r["case"], r["notes"]) for r in results
                    if r.get("notes")})
    not_run = sorted({(r["framework"], r["reason"]) for r in results
                      if r["status"] == "skipped"})
    lines.append("")
    lines += [f"note: {f} on {c}: {n}" for f, c, n in notes]
    lines += [f"not run: {f}: {why}" for f, why in not_run]
    lines += [f"skipped: {n}: {i['reason']}" for n, i in result["frameworks"].items()
              if i["status"] != "ok"]
    lines += [f"error: {r['framework']} {r['case']} batch {r['batch_size']} "
              f"{r['threads']} thread(s): {r['reason']}"
              for r in results if r["status"] == "error"]
    lines.append(f"wall time: {result['wall_seconds']:.1f} s")
    return "\n".join(lines)
# fmt: on


def _host_cores(by):
    """The 2-threads-vs-1 table's cell for the core probes of a grid point's records
    ``by``: the median probe, and how many of them found too few cores."""
    probed = [r for r in by.values() if r.get("core_probes")]
    if not probed:
        return "-"
    cores = statistics.median(r["host_cores_median"] for r in probed)
    short = sum(r["probes_short_of_cores"] for r in probed)
    return f"{cores:.2f} ({short}/{sum(r['core_probes'] for r in probed)} short)"


def _times(x):
    return "-" if x is None else f"{x:.2f}x"


def _ahead(r):
    """Rounds in which fastbp's epoch beat the best peer's, of all rounds."""
    won = r.get("rounds_ahead_of_best_peer")
    return "-" if won is None else f"{won}/{len(r['epoch_seconds'])}"


def _speedup(r):
    if r is None or r.get("speedup_vs_1_thread") is None:
        return "n/a"
    text = f"{r['speedup_vs_1_thread']:.2f}x"
    paired = r.get("paired_speedup_vs_1_thread")
    return text if paired is None else f"{text} ({paired:.2f}x)"


def _cell(r):
    if r is None or r["status"] == "skipped":
        return "n/a"
    if r["status"] != "ok":
        return "error"
    return _fmt(r["samples_per_second"]) + ("" if r["exact"] else "~")


def _columns(rows, left):
    """Rows of strings as aligned text, the first ``left`` columns left-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


# -- entry points ------------------------------------------------------------------


DESCRIPTION = (
    "Measure training throughput (samples/s over an epoch, float32, plain SGD) of "
    "fastbp and its installed peers (PyTorch eager, JAX with the epoch jitted through "
    "lax.scan, NumPy on its BLAS, scikit-learn's MLP, the C library FANN) on the grid "
    "S = 64-32-10 sigmoid/linear/mse at batch 1, 16, 128; M = 784-256-128-10 "
    "relu/softmax/cross-entropy at batch 1, 32, 256; L = 784-1024-1024-10 relu/softmax/"
    "cross-entropy at batch 256; at 1 and 2 threads. Reports GFLOP/s (2 FLOPs per "
    "weight forward, 2 for its gradient, 2 for propagating delta, except into the "
    "input layer) and the percentage of the float32 GEMM peak (np.dot) measured in "
    "the same run at the same thread count, and the ratio of each framework's "
    "samples/s to the fastest peer's (fastbp excluded). Each (framework, thread "
    "count) runs in a fresh worker process pinned to that many CPUs, so that its "
    "thread pools start with the right size; the timed epochs of all of them take "
    "turns (one epoch each a round), so that the ratios compare epochs of the same "
    "minutes. Around every multi-thread epoch a probe times how many cores the host "
    "gives the threads right then (shared virtual machines at times run both vCPUs on "
    "one core), shown beside the 2-threads-vs-1 ratios."
)


def build_parser(worker=False):
    parser = argparse.ArgumentParser(
        prog="python -m fastbp.bench", description=DESCRIPTION
    )
    add_arguments(parser, worker=worker)
    return parser


def main(args=None):
    """Run ``fastbp bench``: ``args`` is an argparse Namespace from
    :func:`add_arguments`, a list of strings, or None (``sys.argv[1:]``). Returns 0,
    or 1 if fastbp itself failed to run."""
    if not isinstance(args, argparse.Namespace):
        args = build_parser(worker=True).parse_args(args)
    settings = _settings(args)
    if getattr(args, "worker", False):
        return serve(args.framework, settings["thread_counts"][0], settings)
    result = run(settings, in_process=args.in_process)
    text = json.dumps(result, indent=1)
    if args.save:
        with open(args.save, "w") as fh:
            fh.write(text + "\n")
    print(text if args.json else format_report(result))
    failed = [
        r
        for r in result["results"]
        if r["framework"] == "fastbp" and r["status"] == "error"
    ]
    return 1 if failed or result["frameworks"]["fastbp"]["status"] != "ok" else 0


if __name__ == "__main__":
    sys.exit(main())
