"""fastbp bench: FLOP counting, the JSON it writes, skipped peers, the peers' math."""

import json
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

import fastbp
from fastbp import bench, cli
from fastbp.bench import driver, grid, machine, measure, peers, report
from fastbp.bench import workers as bench_workers

RECORD_FIELDS = {
    "case",
    "sizes",
    "batch_size",
    "threads",
    "framework",
    "status",
    "samples",
    "samples_per_second",
    "seconds_per_epoch",
    "epoch_seconds",
    "flops_per_sample",
    "gflops",
    "percent_of_peak",
    "gemm_peak_gflops",
    "ratio_to_best_peer",
    "best_peer",
    "shuffles",
    "exact",
}
MACHINE_FIELDS = {
    "cpu_model",
    "cores",
    "python",
    "numpy",
    "numba",
    "fastbp",
    "torch",
    "jax",
    "date",
}


def run(capsys, *argv):
    status = cli.main(["bench", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def keep_threads():
    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


# -------------------------------------------------------------------------- FLOPs


def test_flops_per_sample_by_hand():
    # S = 64-32-10: forward 2 per weight, weight gradient the same, and delta is
    # propagated only into the hidden layer (through the 32x10 weights).
    forward = 2 * (64 * 32 + 32 * 10)
    assert bench.flops_per_sample((64, 32, 10)) == forward + forward + 2 * (32 * 10)
    assert bench.flops_per_sample((64, 32, 10)) == 10_112
    m = [784 * 256, 256 * 128, 128 * 10]
    assert bench.flops_per_sample((784, 256, 128, 10)) == 4 * sum(m) + 2 * (m[1] + m[2])
    assert bench.flops_per_sample((3, 2)) == 4 * 6  # one layer: no delta propagation


def test_grid_is_the_issues():
    S, M, L = bench.CASES["S"], bench.CASES["M"], bench.CASES["L"]
    assert (S.sizes, S.hidden, S.output, S.loss, S.batch_sizes) == (
        (64, 32, 10),
        "sigmoid",
        "linear",
        "mse",
        (1, 16, 128),
    )
    assert (M.sizes, M.hidden, M.output, M.loss, M.batch_sizes) == (
        (784, 256, 128, 10),
        "relu",
        "softmax",
        "cross_entropy",
        (1, 32, 256),
    )
    assert (L.sizes, L.hidden, L.output, L.loss, L.batch_sizes) == (
        (784, 1024, 1024, 10),
        "relu",
        "softmax",
        "cross_entropy",
        (256,),
    )


def test_gemm_gflops_is_positive():
    assert bench.gemm_gflops(64, repeats=1) > 0


# -------------------------------------------------------------------------- the CLI


def test_help_explains_every_option(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0
    actions = grid.build_parser(prog="fastbp bench")._actions
    for action in actions:
        if action.option_strings and "--help" not in action.option_strings:
            assert action.option_strings[0] in out
            assert "default" in action.help, action.option_strings
    assert {
        "--cases",
        "--batch-sizes",
        "--threads",
        "--samples",
        "--repeats",
        "--peers",
        "--json",
        "--quick",
    } <= {s for a in actions for s in a.option_strings}


def check_result(result, frameworks):
    assert MACHINE_FIELDS <= set(result["machine"])
    assert result["machine"]["fastbp"] == fastbp.__version__
    peak = result["gemm_peak_gflops"]["1"]
    assert peak > 0
    ok = [r for r in result["results"] if r["status"] == "ok"]
    assert {r["framework"] for r in ok} == set(frameworks)
    for r in ok:
        assert RECORD_FIELDS <= set(r), RECORD_FIELDS - set(r)
        assert r["case"] == "S" and r["batch_size"] in (1, 16) and r["threads"] == 1
        assert r["samples_per_second"] == pytest.approx(
            r["samples"] / r["seconds_per_epoch"]
        )
        assert r["seconds_per_epoch"] == pytest.approx(np.median(r["epoch_seconds"]))
        assert r["flops_per_sample"] == 10_112
        if r["framework"] == "fastbp":  # fit's own clock, kernel only
            assert r["fit_reported_samples_per_second"] > 0
        assert r["gflops"] == pytest.approx(10_112 * r["samples_per_second"] / 1e9)
        assert r["percent_of_peak"] == pytest.approx(100 * r["gflops"] / peak)
        # the ratio is to the fastest peer at the same case, batch and threads
        others = [
            o
            for o in ok
            if o["framework"] != "fastbp"
            and (o["case"], o["batch_size"]) == (r["case"], r["batch_size"])
        ]
        if others:
            best = max(others, key=lambda o: o["samples_per_second"])
            assert r["best_peer"] == best["framework"]
            assert r["ratio_to_best_peer"] == pytest.approx(
                r["samples_per_second"] / best["samples_per_second"]
            )
        else:
            assert r["ratio_to_best_peer"] is None
    return ok


def test_quick_json_in_process(capsys, keep_threads):
    status, out, _ = run(
        capsys, "--quick", "--json", "--in-process", "--peers", "numpy"
    )
    assert status == 0
    result = json.loads(out)
    assert result["settings"]["in_process"] is True
    ok = check_result(result, ["fastbp", "numpy"])
    assert len(ok) == 4  # 2 frameworks x batch 1, 16
    assert {r["samples"] for r in ok} == {512}


def test_quick_json_worker_processes(capsys, tmp_path):
    saved = tmp_path / "bench.json"
    status, out, err = run(
        capsys, "--quick", "--json", "--peers", "numpy,fann", "--save", saved
    )
    assert status == 0, err
    result = json.loads(out)
    assert json.loads(saved.read_text()) == result
    check_result(result, ["fastbp", "numpy"] + (["fann"] if has_fann() else []))
    # FANN trains online only: batch 16 is reported as not run, not as a failure
    if has_fann():
        fann16 = next(
            r
            for r in result["results"]
            if r["framework"] == "fann" and r["batch_size"] == 16
        )
        assert fann16["status"] == "skipped" and "online" in fann16["reason"]
    assert "fastbp, 1 thread(s): S batch 1" in err  # the workers' progress
    for worker in result["workers"]:
        assert worker["status"] == "ok" and worker["seconds"] > 0
        if hasattr(os, "sched_getaffinity"):
            assert len(worker["cpus"]) == 1  # pinned to --threads CPUs


def test_table(capsys, keep_threads):
    status, out, _ = run(
        capsys, "--quick", "--in-process", "--peers", "numpy", "--batch-sizes", "16"
    )
    assert status == 0
    assert "GEMM peak (float32 np.dot, 256x256): 1 thread(s)" in out
    assert "FLOPs per sample: S 10,112" in out
    row = next(line for line in out.splitlines() if line.startswith("S     64-32-10"))
    assert row.split()[2:4] == ["16", "1"] and "numpy" in row and row.split()[-1] != "-"
    assert "wall time:" in out


def test_missing_peers_are_skipped_not_failures(capsys, monkeypatch, keep_threads):
    real = driver._installed
    # torch counts as missing; jax counts as found, but its setup says it is not
    # usable (whether or not jax is really installed here, as in CI)
    monkeypatch.setattr(
        driver, "_installed", lambda name: name == "jax" or (name != "torch" and real(name))
    )

    def unavailable():
        raise peers.Unavailable("jax is not installed (test)")

    monkeypatch.setattr(peers.Jax, "available", staticmethod(unavailable))
    status, out, _ = run(
        capsys,
        "--quick",
        "--json",
        "--in-process",
        "--peers",
        "torch,jax,numpy",
        "--batch-sizes",
        "16",
    )
    assert status == 0
    result = json.loads(out)
    assert result["frameworks"]["torch"] == {
        "status": "skipped",
        "reason": "not installed",
    }
    assert result["frameworks"]["jax"]["status"] == "skipped"
    assert "jax is not installed" in result["frameworks"]["jax"]["reason"]
    assert {r["framework"] for r in result["results"]} == {"fastbp", "numpy"}
    assert all(r["status"] == "ok" for r in result["results"])


def test_worker_reports_a_missing_framework(monkeypatch):
    def unavailable():
        raise peers.Unavailable("no such library")

    monkeypatch.setattr(peers.Fann, "available", staticmethod(unavailable))
    settings = grid._settings(grid.build_parser().parse_args(["--quick"]))
    out = measure.run_framework("fann", 1, settings)
    assert out["status"] == "skipped" and out["reason"] == "no such library"


def test_threads_capped_and_worker_environment(capsys):
    args = grid.build_parser().parse_args(["--threads", "1", "4096"])
    settings = grid._settings(args)
    assert settings["thread_counts"] == sorted({1, min(4096, os.cpu_count())})
    env = bench_workers._worker_env(2)
    for var in (
        "NUMBA_NUM_THREADS",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
    ):
        assert env[var] == "2"
    assert "intra_op_parallelism_threads=2" in env["XLA_FLAGS"]
    assert "multi_thread_eigen=false" in bench_workers._worker_env(1)["XLA_FLAGS"]


def test_bad_arguments(capsys):
    for argv in (
        ["--cases", "X"],
        ["--peers", "caffe"],
        ["--threads", "0"],
        ["--cases", "L", "--batch-sizes", "1"],
    ):
        status, _, err = run(capsys, *argv)
        assert status == 2 and "fastbp: error:" in err, argv


# -------------------------------------------------------------------------- peers


def has_fann():
    try:
        peers.Fann.available()
    except peers.Unavailable:
        return False
    return True


class _NoShuffle:
    def permutation(self, n):
        return np.arange(n)


@pytest.mark.parametrize(
    ("sizes", "hidden", "output", "loss"),
    [
        ((12, 8, 3), "sigmoid", "linear", "mse"),
        ((12, 9, 7, 4), "relu", "softmax", "cross_entropy"),
    ],
    ids=["S-like", "M-like"],
)
@pytest.mark.parametrize("batch", [1, 5], ids=["batch1", "batch5"])
def test_numpy_peer_trains_like_fastbp(sizes, hidden, output, loss, batch):
    problem = peers.make_problem(sizes, hidden, output, loss, 20, lr=0.1)
    numpy_peer = peers.Numpy()
    numpy_peer.setup(problem, batch, None)
    numpy_peer.rng = _NoShuffle()
    numpy_peer.run_epoch()
    model = fastbp.Model(sizes, hidden=hidden, output=output, loss=loss, seed=0)
    for W, b, W0, b0 in zip(
        model.weights, model.biases, problem.Ws, problem.bs, strict=True
    ):
        W[...], b[...] = W0, b0
    model.fit(problem.X, problem.T, batch_size=batch, lr=0.1, shuffle=False)
    for W, b, Wn, bn in zip(
        model.weights, model.biases, numpy_peer.Ws, numpy_peer.bs, strict=True
    ):
        np.testing.assert_allclose(Wn, W, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bn, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["fastbp", "numpy", "torch"])
def test_no_shuffle_peers_train_in_sample_order(name):
    """``--no-shuffle`` (Problem.shuffle False): one epoch of each peer equals
    fastbp.Model.fit(shuffle=False) from the same weights; with shuffling it does not."""
    if name == "torch":
        pytest.importorskip("torch")
    sizes, batch = (12, 8, 3), 5
    results = {}
    for shuffle in (False, True):
        problem = peers.make_problem(sizes, "sigmoid", "linear", "mse", 20, lr=0.5,
                                     shuffle=shuffle)
        peer = peers.PEERS[name]()
        peer.setup(problem, batch, None)
        peer.run_epoch()
        if name == "fastbp":
            results[shuffle] = [*peer.model.weights, *peer.model.biases]
        elif name == "numpy":
            results[shuffle] = [*peer.Ws, *peer.bs]
        else:
            results[shuffle] = [p.detach().numpy() for p in peer.net.parameters()]
    model = fastbp.Model(sizes, hidden="sigmoid", output="linear", loss="mse", seed=0)
    for W, b, W0, b0 in zip(model.weights, model.biases, problem.Ws, problem.bs, strict=True):
        W[...], b[...] = W0, b0
    model.fit(problem.X, problem.T, batch_size=batch, lr=0.5, shuffle=False)
    expected = [*model.weights, *model.biases]
    if name == "torch":  # nn.Sequential: W1, b1, W2, b2
        expected = [model.weights[0], model.biases[0], model.weights[1], model.biases[1]]
    for got, want in zip(results[False], expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert not all(np.allclose(g, w, rtol=1e-4, atol=1e-5)
                   for g, w in zip(results[True], expected, strict=True))


def test_no_shuffle_option_reaches_the_run(capsys, keep_threads):
    status, out, _ = run(capsys, "--quick", "--in-process", "--peers", "numpy",
                         "--batch-sizes", "16", "--no-shuffle")
    assert status == 0
    assert "no framework shuffles (every epoch in sample order)" in out


@pytest.mark.parametrize("name", ["fastbp", "numpy", "torch", "jax"])
def test_float64_peers_train_in_float64_like_fastbp(name):
    """``--dtype float64``: the same values as the float32 problem, every peer's
    arrays in float64, and one epoch in sample order equals Model.fit in float64 to
    rounding (float32 arithmetic would miss 1e-10)."""
    if name in ("torch", "jax"):
        pytest.importorskip(name)
    sizes, batch = (12, 8, 3), 5
    single = peers.make_problem(sizes, "sigmoid", "linear", "mse", 20, lr=0.5, shuffle=False)
    problem = peers.make_problem(sizes, "sigmoid", "linear", "mse", 20, lr=0.5, shuffle=False,
                                 dtype="float64")
    assert problem.X.dtype == problem.Ws[0].dtype == np.float64
    np.testing.assert_array_equal(problem.X, single.X.astype(np.float64))
    peer = peers.PEERS[name]()
    peer.setup(problem, batch, None)
    peer.run_epoch()
    if name == "fastbp":
        got = [*peer.model.weights, *peer.model.biases]
    elif name == "numpy":
        got = [*peer.Ws, *peer.bs]
    elif name == "torch":
        got = [p.detach().numpy() for p in peer.net.parameters()]
        got = [got[0], got[2], got[1], got[3]]
    else:
        got = [np.asarray(w) for w, _ in peer.params] + [np.asarray(b) for _, b in peer.params]
    assert all(g.dtype == np.float64 for g in got)
    model = fastbp.Model(sizes, hidden="sigmoid", output="linear", loss="mse", seed=0,
                         dtype="float64")
    for W, b, W0, b0 in zip(model.weights, model.biases, problem.Ws, problem.bs, strict=True):
        W[...], b[...] = W0, b0
    model.fit(problem.X, problem.T, batch_size=batch, lr=0.5, shuffle=False)
    for g, want in zip(got, [*model.weights, *model.biases], strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-12)


def test_dtype_option_reaches_the_run(capsys, keep_threads):
    status, out, _ = run(capsys, "--quick", "--in-process", "--peers", "numpy",
                         "--batch-sizes", "16", "--dtype", "float64")
    assert status == 0
    assert "float64, plain SGD" in out and "GEMM peak (float64 np.dot" in out


def test_dropout_option_times_fastbp_with_dropout_beside_fastbp(capsys, keep_threads):
    """--dropout adds a fastbp-dropout column and its ratio to fastbp; it is never
    the best peer, and the model it trains drops (its masks change the epoch)."""
    status, out, _ = run(capsys, "--quick", "--in-process", "--peers", "numpy",
                         "--batch-sizes", "16", "--dropout")
    assert status == 0
    assert "fastbp with dropout 0.2 on every hidden layer / without" in out
    table = out.split("samples/s of every framework")[1]
    assert "fastbp-dropout" in table.splitlines()[1]
    assert "fastbp-dropout" not in out.split("samples/s of every framework")[0]
    assert "fastbp-dropout" not in grid.PEER_NAMES
    problem = peers.make_problem((6, 5, 3), "sigmoid", "linear", "mse", 8)
    plain, dropped = peers.PEERS["fastbp"](), peers.PEERS["fastbp-dropout"]()
    plain.setup(problem, 4, None)
    dropped.setup(problem, 4, None)
    assert dropped.model.dropout == (0.2,) and plain.model.dropout == (0.0,)
    plain.run_epoch()
    dropped.run_epoch()
    assert not np.array_equal(plain.model.params, dropped.model.params)


def test_peers_copy_the_shared_initial_weights():
    problem = peers.make_problem((6, 5, 3), "sigmoid", "linear", "mse", 8)
    peer = peers.Fastbp()
    peer.setup(problem, 4, None)
    for W, W0 in zip(peer.model.weights, problem.Ws, strict=True):
        assert np.array_equal(W, W0)
    assert problem.X.dtype == problem.T.dtype == np.float32
    # same seed, same problem
    again = peers.make_problem((6, 5, 3), "sigmoid", "linear", "mse", 8)
    assert np.array_equal(again.X, problem.X) and np.array_equal(
        again.Ws[1], problem.Ws[1]
    )


@pytest.mark.skipif(not has_fann(), reason="FANN (libfann) is not installed")
@pytest.mark.parametrize(
    ("sizes", "hidden"),
    [((7, 5, 3), "sigmoid"), ((7, 5, 4, 3), "tanh")],
    ids=["sigmoid", "tanh"],
)
def test_fann_gets_the_same_weights(sizes, hidden):
    problem = peers.make_problem(sizes, hidden, "linear", "mse", 4)
    peer = peers.Fann()
    peer.setup(problem, 1, 1)
    a = problem.X[1].astype(np.float64)
    s = {"sigmoid": lambda z: 1 / (1 + np.exp(-z)), "tanh": np.tanh}[hidden]
    for l, (W, b) in enumerate(zip(problem.Ws, problem.bs, strict=True)):
        z = W @ a + b
        a = s(z) if l < len(problem.Ws) - 1 else z
    np.testing.assert_allclose(peer.predict_one(problem.X[1]), a, rtol=1e-5, atol=1e-5)
    peer.run_epoch()
    peer.close()


@pytest.mark.slow
def test_python_m_bench_every_installed_peer():
    proc = subprocess.run(
        [sys.executable, "-m", "fastbp.bench", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    # fastbp-dropout runs with --dropout only
    assert set(result["frameworks"]) == set(grid.FRAMEWORKS) - {"fastbp-dropout"}
    for info in result["frameworks"].values():
        assert info["status"] in ("ok", "skipped")
    assert not [r for r in result["results"] if r["status"] == "error"]


def test_held_up_epochs_are_counted_and_noted(capsys, monkeypatch, keep_threads):
    """Epochs fit ran serially because the CPUs were busy are named in the report,
    not hidden in a slow median (here every epoch is made to look held up)."""
    from fastbp import _threads as model_module

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 numba threads")
    monkeypatch.setattr(model_module, "held_up", lambda: True)
    monkeypatch.setattr(model_module, "PARALLEL_MIN_FLOPS", 0)  # S runs in parallel
    status, out, _ = run(capsys, "--quick", "--json", "--in-process", "--peers", "none",
                         "--threads", "2", "--repeats", "2")
    assert status == 0
    fastbp = [r for r in json.loads(out)["results"] if r["framework"] == "fastbp"]
    assert fastbp and all(r["held_up_epochs"] == 2 for r in fastbp)
    assert all("2 of 2 timed epochs ran on one thread" in r["notes"] for r in fastbp)


class _FakeWorker:
    """Stands in for a worker process: logs the commands, answers at once."""

    log = []

    def __init__(self, name, threads, settings):
        self.name, self.threads, self.busy, self.grid = name, threads, 0.0, None
        self.epochs = 0

    def ask(self, **cmd):
        op = cmd["op"]
        _FakeWorker.log.append((self.name, self.threads, op))
        if op == "cores":
            assert (self.name, self.threads) == ("fastbp", 2)  # the probe worker
            return {"cores": 1.9}
        if op == "start":
            if self.name == "torch":
                return {"status": "skipped", "reason": "not here"}
            return {"status": "ok", "version": "0"}
        if op == "setup":
            self.grid, self.epochs = (cmd["case"], cmd["batch"]), 0
            return {"record": None}
        if op == "epoch":
            if self.name == "jax" and self.threads == 2:
                raise bench_workers.WorkerFailed("died")
            self.epochs += 1
            return {"seconds": 0.5}
        if op == "finish":
            rec = measure._record(*self.grid, self.threads, self.name, status="ok", samples=8,
                                samples_per_second=16.0, epoch_seconds=[0.5] * self.epochs,
                                seconds_per_epoch=0.5, exact=True, shuffles=True)
            return {"record": rec}
        return {"gemm_gflops": 1.0, "cpus": [0]}

    def close(self):
        pass


def test_timed_epochs_take_turns_across_frameworks_and_threads(monkeypatch):
    """Every worker (framework x thread count) prepares before any timed epoch of a
    grid point; then each round times one epoch of every worker, the order rotated
    round by round; a skipped framework gets no epochs, a failing worker an error
    record while the others go on."""
    _FakeWorker.log = []
    monkeypatch.setattr(bench_workers, "_Worker", _FakeWorker)
    monkeypatch.setattr(bench_workers, "TURN_PAUSE", 0.0)
    monkeypatch.setattr(bench_workers, "PROBE_PAUSE", 0.0)
    settings = grid._settings(grid.build_parser().parse_args(
        ["--cases", "S", "--batch-sizes", "1", "16", "--repeats", "3"]))
    out = bench_workers._run_interleaved(["fastbp", "torch", "jax"], settings)
    workers = [("fastbp", 1), ("jax", 1), ("fastbp", 2), ("jax", 2)]
    for batch_index in range(2):
        ops = [entry for entry in _FakeWorker.log if entry[2] in ("setup", "epoch", "finish")]
        # per grid point: 4 setups, 4 + 3 + 3 epochs, 3 finishes
        block = ops[batch_index * 17 : (batch_index + 1) * 17]
        setups = [(n, t) for n, t, op in block[:4]]
        assert setups == workers and all(op == "setup" for *_, op in block[:4])
        epochs = [(n, t) for n, t, op in block[4:] if op == "epoch"]
        # round 1: all four (jax at 2 threads fails); rounds 2-3 without it, rotated
        assert epochs[:4] == workers
        assert epochs[4:7] == [("jax", 1), ("fastbp", 2), ("fastbp", 1)]
        assert epochs[7:] == [("fastbp", 2), ("fastbp", 1), ("jax", 1)]
    # fastbp's 2-thread worker probes the host's cores before every 2-thread epoch
    # and, at the next turn, after it (not after the failed one of jax): per grid
    # point 4 before, 3 after
    log = _FakeWorker.log
    for i, (_name, threads, op) in enumerate(log):
        if op == "epoch" and threads == 2:
            assert log[i - 1] == ("fastbp", 2, "cores")
    assert sum(op == "cores" for *_, op in log) == 2 * (4 + 3)
    by = {(w["framework"], w["threads"]): w for w in out}
    assert [r["host_cores"] for r in by[("fastbp", 2)]["records"]] == [[[1.9, 1.9]] * 3] * 2
    assert all("host_cores" not in r for r in by[("fastbp", 1)]["records"])
    assert by[("torch", 1)]["status"] == "skipped"
    assert [r["status"] for r in by[("jax", 2)]["records"]] == ["error", "error"]
    assert [r["batch_size"] for r in by[("fastbp", 1)]["records"]] == [1, 16]
    assert by[("fastbp", 2)]["status"] == "ok" and by[("fastbp", 2)]["gemm_gflops"] == 1.0


def _report(records, case, flops, repeats):
    """format_report of fastbp's and jax's ``records`` of one case, 1 and 2 threads."""
    return report.format_report({
        "machine": machine.machine_info(), "results": records, "wall_seconds": 1.0,
        "settings": {"lr": 0.01, "repeats": repeats, "gemm_size": 256, "in_process": False},
        "gemm_peak_gflops": {"1": 10.0, "2": 20.0},
        "cases": {case: {"flops_per_sample": flops}},
        "frameworks": {"fastbp": {"status": "ok"}, "jax": {"status": "ok"}}})


def _timed_record(case, batch, framework, threads, seconds):
    """A worker's record of 100-sample epochs that took ``seconds``, one a round."""
    median = float(np.median(seconds))
    return measure._record(case, batch, threads, framework, status="ok", samples=100,
                         epoch_seconds=seconds, seconds_per_epoch=median,
                         samples_per_second=100 / median, exact=True, shuffles=True)


def test_paired_ratios_compare_epochs_of_the_same_round():
    """Paired ratios divide each round's two epochs and take the median, so a slow
    round that hits both sides cancels out; the plain ratio divides the medians.
    Here fastbp's middle epoch and the peer's first are slow."""

    def rec(framework, threads, seconds):
        return _timed_record("S", 16, framework, threads, seconds)

    records = [rec("fastbp", 1, [1.0, 4.0, 1.0]), rec("jax", 1, [4.0, 2.0, 2.0]),
               rec("fastbp", 2, [0.5, 2.0, 0.8]), rec("jax", 2, [2.0, 1.0, 1.0])]
    report._derive(records, {1: 10.0, 2: 20.0}, paired=True)
    fast1, _, fast2, jax2 = records
    assert fast1["ratio_to_best_peer"] == pytest.approx(2.0)  # medians 1 s and 2 s
    # per-round samples/s ratios 4, 0.5, 2 -> median 2; fastbp faster in 2 rounds of 3
    assert fast1["paired_ratio_to_best_peer"] == pytest.approx(2.0)
    assert fast1["rounds_ahead_of_best_peer"] == 2
    assert fast2["speedup_vs_1_thread"] == pytest.approx(1.0 / 0.8)
    assert fast2["paired_speedup_vs_1_thread"] == pytest.approx(2.0)  # 2, 2, 1.25
    assert jax2["paired_speedup_vs_1_thread"] == pytest.approx(2.0)  # 2, 2, 2
    assert "speedup_vs_1_thread" not in fast1
    assert "core_probes" not in fast2  # no core probes: no such fields
    unpaired = [rec("fastbp", 1, [1.0, 4.0, 1.0]), rec("jax", 1, [4.0, 2.0, 2.0])]
    report._derive(unpaired, {1: 10.0}, paired=False)  # in-process runs: no rounds
    assert "paired_ratio_to_best_peer" not in unpaired[0]
    text = _report(records, "S", 10_112, 3)
    row = next(line for line in text.splitlines() if line.startswith("S     64-32-10"))
    assert row.split()[7:10] == ["2.00x", "2.00x", "2/3"]  # ratio, paired, ahead
    speedups = text.split("2 threads vs 1")[1].splitlines()[2]
    assert speedups.split() == ["S", "16", "2", "-", "1.25x", "(2.00x)", "2.00x", "(2.00x)"]
    assert "host cores: the median" not in text  # no probes, no footnote


def test_core_probes_are_summed_up_beside_the_scaling():
    """The probes around each 2-thread epoch (host_cores, [before, after] a round) give
    the record host_cores_median and the probes short of cores (under FULL_CORES of the
    threads'); the 2-threads-vs-1 table shows the grid point's median and count."""

    def rec(framework, threads, seconds, cores=None):
        r = _timed_record("M", 32, framework, threads, seconds)
        if cores is not None:
            r["host_cores"] = cores
        return r

    probes = [[1.9, 1.95], [1.0, 1.9], [1.8, 1.75], [None, 1.1]]
    records = [rec("fastbp", 1, [1.0] * 4), rec("jax", 1, [2.0] * 4),
               rec("fastbp", 2, [0.5, 1.0, 0.6, 0.55], probes),
               rec("jax", 2, [1.0, 2.0, 1.25, 1.0], [[2.0, 2.0]] * 4)]
    report._derive(records, {1: 10.0, 2: 20.0}, paired=True)
    fast2, jax2 = records[2:]
    assert fast2["host_cores_median"] == pytest.approx(1.8)  # of 7 probes, None left out
    assert (fast2["probes_short_of_cores"], fast2["core_probes"]) == (2, 7)  # 1.0, 1.1
    assert (jax2["host_cores_median"], jax2["probes_short_of_cores"]) == (2.0, 0)
    text = _report(records, "M", 1_007_104, 4)
    table = text.split("2 threads vs 1")[1].splitlines()
    # the grid point: the median of the records' medians (1.8, 2.0), 2 of 15 short
    assert table[2].split()[:6] == ["M", "32", "2", "1.90", "(2/15", "short)"]
    assert "host cores: the median of the core probes" in text


def test_core_probe_products_are_right():
    """The core probe times real products: each thread's Z[t] = A[t] W[t]^T (64 x 256
    by 256 x 64), the lone thread's Z[0] the same; and host_cores is a finite count."""
    from fastbp.bench import probes as core_probes

    rows, inner = core_probes.PROBE_ROWS, core_probes.PROBE_INNER
    rng = np.random.default_rng(3)
    A = rng.random((2, rows * inner), dtype=np.float32)
    W = rng.random((2, rows * inner), dtype=np.float32)
    want = [A[t].reshape(rows, inner) @ W[t].reshape(rows, inner).T for t in range(2)]
    Z = np.zeros((2, rows * rows), np.float32)
    core_probes.products_on_each(A, W, Z, 2)
    for t in range(2):
        np.testing.assert_allclose(Z[t].reshape(rows, rows), want[t], rtol=1e-5)
    Z[:] = 0
    core_probes.products_alone(A, W, Z, 1)
    np.testing.assert_allclose(Z[0].reshape(rows, rows), want[0], rtol=1e-5)
    assert not Z[1].any()
    cores = core_probes.host_cores(1, repeats=1)
    assert np.isfinite(cores) and cores > 0


def test_last_multi_thread_epoch_gets_a_probe_after_it(monkeypatch):
    """A grid point whose last epoch ran on 2 threads probes once more after a pause,
    so that every 2-thread epoch has a probe on both sides."""
    _FakeWorker.log = []
    monkeypatch.setattr(bench_workers, "_Worker", _FakeWorker)
    monkeypatch.setattr(bench_workers, "TURN_PAUSE", 0.0)
    monkeypatch.setattr(bench_workers, "PROBE_PAUSE", 0.0)
    settings = grid._settings(grid.build_parser().parse_args(
        ["--cases", "S", "--batch-sizes", "16", "--repeats", "1"]))
    out = bench_workers._run_interleaved(["fastbp"], settings)
    ops = [(n, t, op) for n, t, op in _FakeWorker.log if op in ("cores", "epoch")]
    assert ops == [("fastbp", 1, "epoch"), ("fastbp", 2, "cores"), ("fastbp", 2, "epoch"),
                   ("fastbp", 2, "cores")]
    two = next(w for w in out if w["threads"] == 2)
    assert two["records"][0]["host_cores"] == [[1.9, 1.9]]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_busy_keeps_a_process_spinning_for_the_run(capsys, keep_threads, monkeypatch):
    """--busy N: N spinning processes exist while the grid runs, none after."""
    from fastbp.bench import driver

    seen = []
    real = driver._run

    def spy(settings, in_process):
        seen.append([p for p in _children() if "while True: pass" in p])
        return real(settings, in_process)

    monkeypatch.setattr(driver, "_run", spy)
    status, out, _ = run(capsys, "--quick", "--in-process", "--peers", "none", "--busy", "1")
    assert status == 0
    assert len(seen[0]) == 1
    assert "1 other process(es) spinning on the CPUs throughout" in out
    assert not [p for p in _children() if "while True: pass" in p]


def _children():
    """Command lines of this process's children (Linux /proc)."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid():
                with open(f"/proc/{pid}/cmdline") as f:
                    found.append(f.read().replace("\0", " "))
        except (OSError, ValueError, IndexError):
            continue
    return found
