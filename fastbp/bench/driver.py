"""``fastbp bench``: training throughput of fastbp and its peers on a fixed grid.

    fastbp bench                     # the grid, every installed peer, 1 and 2 threads
    fastbp bench --cases S --threads 1 --peers torch,numpy
    fastbp bench --json > b.json     # a record per case x batch x threads x framework

The grid (float32, or float64 with --dtype; plain SGD, lr 0.01; every framework
shuffles once per epoch, or none with --no-shuffle):

    S  64-32-10           sigmoid / linear  / mse            batch 1, 16, 128
    M  784-256-128-10     relu    / softmax / cross_entropy  batch 1, 32, 256
    L  784-1024-1024-10   relu    / softmax / cross_entropy  batch 256

Throughput is training samples per second over an epoch: the median over
``--repeats`` epochs, after one untimed warm-up epoch (the JIT compile). FLOPs per
sample count 2 per weight for the forward pass, 2 for the weight gradient and 2
for propagating delta, which the first layer skips; biases and activations are
not counted. GFLOP/s is compared with the GEMM peak in the same dtype (np.dot of two
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
found too few cores. The peers live in ``fastbp.bench.peers``.
"""

import argparse
import contextlib
import importlib.util
import json
import subprocess
import sys
import time

from fastbp._threads import flops_per_sample
from fastbp.bench import peers
from fastbp.bench.grid import CASES, LR, _settings, build_parser
from fastbp.bench.machine import machine_info
from fastbp.bench.measure import _threads_in_process, run_framework
from fastbp.bench.report import _derive, format_report
from fastbp.bench.workers import _run_interleaved, serve

__all__ = ["main", "run"]


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



@contextlib.contextmanager
def _spinning(n):
    """``n`` processes that keep a CPU busy each while the block runs (``--busy``)."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(n)]
    try:
        yield
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def run(settings, in_process=False):
    """Measure the grid; returns the JSON-able result (see ``fastbp bench --help``)."""
    with _spinning(settings.get("busy", 0)):
        return _run(settings, in_process)


def _run(settings, in_process):
    start = time.perf_counter()
    frameworks = ["fastbp", *(["fastbp-dropout"] if settings.get("dropout") else []),
                  *settings["peers"]]
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
        "settings": {**settings, "lr": LR, "dtype": settings.get("dtype", "float32"),
                     "optimizer": "sgd",
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


def main(args=None):
    """Run ``fastbp bench``: ``args`` is an argparse Namespace from
    :func:`fastbp.bench.grid.add_arguments`, a list of strings, or None
    (``sys.argv[1:]``). Returns 0, or 1 if fastbp itself failed to run."""
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

