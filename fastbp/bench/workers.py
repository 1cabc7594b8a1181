"""Worker processes and their turns: each (framework, thread count) runs in a
process of its own (``python -m fastbp.bench --worker ...``, commands and answers
as JSON lines, see :func:`serve`), started with the thread-count environment
variables set and pinned to that many CPUs; :func:`_run_interleaved` makes their
timed epochs take turns, round by round, with the host-core probes around every
multi-thread epoch."""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from fastbp.bench import peers
from fastbp.bench.grid import CASES, _grid
from fastbp.bench.machine import gemm_gflops
from fastbp.bench.measure import _Measurement, _record
from fastbp.bench.probes import host_cores

__all__ = ["WorkerFailed", "serve"]

MARK = "FASTBP-BENCH-JSON "  # prefix of the worker's result line on stdout
# fmt: off
THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "MKL_NUM_THREADS")
# fmt: on
WORKER_TIMEOUT = 1800


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
                reply = {"gemm_gflops": gemm_gflops(settings["gemm_size"],
                                                   dtype=settings.get("dtype", "float32"))}
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
        if not settings.get("shuffle", True):
            cmd += ["--no-shuffle"]
        cmd += ["--dtype", settings.get("dtype", "float32")]
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
