"""fastbp.distributed under real MPI (mpi4py with the mpich wheel, HYDRA_LAUNCHER=fork
for one host): the same bits at P = 1, 2, 4 in deterministic mode for every
optimizer, with sample weights, L2, batch size 1 and uneven shares; equal to
Model.fit to rounding (callbacks, schedules, validation included); "fast" equal to
"deterministic" to rounding; "average" equal to Model.fit at P = 1 and reproducible
at P = 2; mismatched ranks refused on every rank; an exception on one rank ends the
job; a run killed by SIGKILL resumes from rank 0's checkpoint at another P on the
same bits.

Each launch runs several fits (``JOBS``) to pay mpiexec's start-up once."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastbp

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable))
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec beside this Python")]

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    from mpi4py import MPI
    import fastbp
    from fastbp import callbacks, distributed, schedules

    rank = MPI.COMM_WORLD.Get_rank()
    with open(os.path.join(sys.argv[1], f"pid{rank}"), "w") as f:
        f.write(str(os.getpid()))

    class Pause(callbacks.Callback):  # holds every rank (rank 0 runs callbacks)
        def __init__(self, seconds):
            self.seconds = seconds
        def on_epoch_end(self, model, epoch, logs):
            time.sleep(self.seconds)

    class NudgeAt(callbacks.Callback):  # changes rank 0's replica only
        def __init__(self, epoch):
            self.epoch = epoch
        def on_epoch_end(self, model, epoch, logs):
            if epoch == self.epoch:
                model.params[0] += 1e-3

    class RaiseAt(callbacks.Callback):
        def __init__(self, epoch):
            self.epoch = epoch
        def on_epoch_end(self, model, epoch, logs):
            if epoch == self.epoch:
                raise RuntimeError(f"callback failed in epoch {epoch}")

    for job in json.loads(sys.argv[2]):
        rng = np.random.default_rng(0)
        n = job.pop("n", 203)
        dtype = job.pop("dtype", "float64")
        X = rng.normal(size=(n, 6)).astype(dtype)
        y = rng.integers(0, 3, n)
        mismatch = job.pop("mismatch", None)
        if rank == 1 and mismatch == "features":
            X = X[:, :5].copy()
        if rank == 1 and mismatch == "samples":
            X, y = X[:-1], y[:-1]
        if rank == 1 and mismatch == "dtype":
            X = X.astype(np.float32)
        if rank == 1 and mismatch == "values":
            X = X.copy(); X[7, 2] += 1.0
        if job.pop("weighted", False):
            job["sample_weight"] = rng.uniform(0.0, 2.0, n)
        model = fastbp.Model([6, 9, 3], output="softmax", loss="cross_entropy",
                             dtype=dtype, seed=job.pop("seed", 1),
                             dropout=job.pop("dropout", 0.0))
        resume = job.pop("resume", None)
        if resume:
            model = fastbp.Model.load(resume)
        save_init = job.pop("save_init", None)
        if save_init and rank == 0:  # rank 0's state before the fit
            model.save(save_init)
        if job.pop("step_lr", False):
            job["lr_schedule"] = schedules.StepLR(2, gamma=0.5)
        cbs = []
        if "checkpoint" in job:
            cbs.append(callbacks.ModelCheckpoint(job.pop("checkpoint")))
        if "log" in job:
            cbs.append(callbacks.HistoryLogger(job.pop("log")))
        if job.pop("early", False):
            cbs.append(callbacks.EarlyStopping(patience=1))
        if "nudge_at" in job:
            cbs.append(NudgeAt(job.pop("nudge_at")))
        if "raise_at" in job:
            cbs.append(RaiseAt(job.pop("raise_at")))
        if "pause" in job:
            cbs.append(Pause(job.pop("pause")))
        out = job.pop("out")
        try:
            history = distributed.fit(model, X, y, lr=0.05, callbacks=cbs, **job)
        except ValueError as exc:
            sys.stdout.write(f"rank {rank} ValueError: {exc}\\n")
            sys.stdout.flush()
            MPI.COMM_WORLD.Barrier()  # every rank raised: none is left in a collective
            sys.exit(3)
        model.save(out.replace(".npz", f".rank{rank}.npz"))
        from fastbp.kernels import train, update
        compiled = {name: (sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values()))
                    for name, f in (("region", train.region),
                                    ("update_range", update.update_range))}
        with open(out + f".cache{rank}.json", "w") as f:
            json.dump(compiled, f)
        if rank == 0:
            model.save(out)
            with open(out + ".json", "w") as f:
                json.dump({"history": history.history, "epochs": history.epochs}, f)
    """
)


def launch(tmp_path, P, jobs, timeout=600, wait=True):
    env = dict(os.environ, HYDRA_LAUNCHER="fork")
    command = [MPIEXEC, "-n", str(P), sys.executable, "-m", "mpi4py", "-c", SCRIPT,
               str(tmp_path), json.dumps(jobs)]
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def results(tmp_path, P, jobs):
    """Run ``jobs`` (fit keyword arguments) at P ranks: [(model, history dict)] from
    rank 0, after checking every rank holds the same parameters."""
    for k, job in enumerate(jobs):
        job.setdefault("out", str(tmp_path / f"P{P}-job{k}.npz"))
    done = launch(tmp_path, P, [dict(job) for job in jobs])
    assert done.returncode == 0, done.stdout + done.stderr
    found = []
    for job in jobs:
        model = fastbp.Model.load(job["out"])
        for r in range(1, P):
            other = fastbp.Model.load(job["out"].replace(".npz", f".rank{r}.npz"))
            assert np.array_equal(other.params, model.params)
        with open(job["out"] + ".json") as f:
            found.append((model, json.load(f)))
    return found


def plain(job, n=203):
    """Model.fit with a job's arguments, on the data SCRIPT makes."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(n, 6)), rng.integers(0, 3, n)
    kw = {k: v for k, v in job.items() if k not in ("sync", "out", "weighted", "dropout")}
    if job.get("weighted"):
        kw["sample_weight"] = rng.uniform(0.0, 2.0, n)
    model = fastbp.Model([6, 9, 3], output="softmax", loss="cross_entropy",
                         dtype="float64", seed=1, dropout=job.get("dropout", 0.0))
    return model, model.fit(X, y, lr=0.05, **kw)


# 203 samples in batches of 32: a partial last batch and groups of uneven sizes
EVERY_OPTIMIZER = [
    dict(epochs=3, batch_size=32, optimizer="sgd", momentum=0.9),
    dict(epochs=3, batch_size=32, optimizer="sgd", momentum=0.9, nesterov=True,
         weight_decay=1e-3),
    dict(epochs=3, batch_size=32, optimizer="adam"),
    dict(epochs=3, batch_size=20, optimizer="sgd", weighted=True, l2=0.3),
    dict(epochs=3, batch_size=20, optimizer="adam", weighted=True, l2=0.3),
    dict(epochs=1, batch_size=1, optimizer="sgd", momentum=0.5),
    dict(epochs=3, batch_size=20, optimizer="adamw", weighted=True, l2=0.3, clip_norm=0.05),
    dict(epochs=3, batch_size=32, optimizer="rmsprop", centered=True, momentum=0.5,
         clip_value=0.01),
    dict(epochs=1, batch_size=1, optimizer="rmsprop", clip_norm=0.1),
    dict(epochs=3, batch_size=20, optimizer="adam", weighted=True, dropout=0.3),
    dict(epochs=2, batch_size=1, optimizer="sgd", momentum=0.5, dropout=0.5),
]


@pytest.fixture(scope="module")
def every_optimizer(tmp_path_factory):
    return {P: results(tmp_path_factory.mktemp(f"P{P}"), P,
                       [dict(job) for job in EVERY_OPTIMIZER]) for P in (1, 2, 4)}


@pytest.mark.parametrize("k", range(len(EVERY_OPTIMIZER)))
def test_deterministic_mode_gives_the_same_bits_at_any_rank_count(every_optimizer, k):
    one, one_history = every_optimizer[1][k]
    for P in (2, 4):
        model, history = every_optimizer[P][k]
        assert np.array_equal(model.params, one.params)
        assert np.array_equal(model._optimizer.buf1, one._optimizer.buf1)
        assert np.array_equal(model._optimizer.buf2, one._optimizer.buf2)
        assert model._optimizer.step == one._optimizer.step
        assert history["history"]["loss"] == one_history["history"]["loss"]


def test_a_model_without_a_seed_drops_with_rank_0s_key(tmp_path):
    """seed=None: each rank's model draws its own dropout key; rank 0's goes to every
    rank with its parameters, so 2 ranks take the masks 1 takes from the same state
    (each rank keeping its own key failed this)."""
    init = str(tmp_path / "init.npz")
    job = dict(epochs=2, batch_size=16, optimizer="adam", dropout=0.5)
    (two, _), = results(tmp_path, 2, [dict(job, seed=None, save_init=init)])
    (one, _), = results(tmp_path, 1, [dict(job, resume=init)])
    assert np.array_equal(one.params, two.params)


@pytest.mark.parametrize("k", range(len(EVERY_OPTIMIZER)))
def test_deterministic_mode_equals_model_fit_to_rounding(every_optimizer, k):
    model, history = every_optimizer[1][k]
    reference, ref_history = plain(EVERY_OPTIMIZER[k])
    np.testing.assert_allclose(model.params, reference.params, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(history["history"]["loss"], ref_history.history["loss"],
                               rtol=1e-12)
    assert model.epochs_done == reference.epochs_done
    assert model._optimizer.step == reference._optimizer.step


def test_callbacks_schedules_and_validation_behave_as_in_model_fit(tmp_path):
    job = dict(epochs=6, batch_size=16, optimizer="sgd", momentum=0.9, lr_schedule=None,
               validation_split=0.25)
    ranks = results(tmp_path, 2, [dict(job, step_lr=True, early=True,
                                       checkpoint=str(tmp_path / "ck{epoch}.npz"),
                                       log=str(tmp_path / "log.csv"))])
    model, history = ranks[0]
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(203, 6)), rng.integers(0, 3, 203)
    reference = fastbp.Model([6, 9, 3], output="softmax", loss="cross_entropy",
                             dtype="float64", seed=1)
    ref = reference.fit(X, y, epochs=6, batch_size=16, lr=0.05, momentum=0.9,
                        validation_split=0.25, lr_schedule=fastbp.schedules.StepLR(2, 0.5),
                        callbacks=[fastbp.callbacks.EarlyStopping(patience=1)])
    assert history["epochs"] == ref.epochs
    assert set(history["history"]) == set(ref.history)
    for key in ("loss", "val_loss", "val_accuracy", "lr"):
        np.testing.assert_allclose(history["history"][key], ref.history[key], rtol=1e-12)
    np.testing.assert_allclose(model.params, reference.params, rtol=1e-12, atol=1e-14)
    # rank 0 alone wrote one checkpoint per epoch and one log
    assert sorted(p.name for p in tmp_path.glob("ck*.npz")) == [
        f"ck{e}.npz" for e in ref.epochs]
    assert len((tmp_path / "log.csv").read_text().splitlines()) == len(ref.epochs) + 1


def test_fast_mode_equals_deterministic_to_rounding(tmp_path):
    (det, _), (fast, _) = results(tmp_path, 2, [
        dict(epochs=3, batch_size=32, momentum=0.9),
        dict(epochs=3, batch_size=32, momentum=0.9, sync="fast")])
    np.testing.assert_allclose(fast.params, det.params, rtol=1e-12, atol=1e-14)


def test_rank_0_compiles_and_the_others_load_its_cache(tmp_path):
    # an empty kernel cache: were both ranks to compile at once, they would write the
    # same cache files together; rank 0 compiles, the other rank loads what it wrote
    env = dict(os.environ, HYDRA_LAUNCHER="fork", FASTBP_CACHE_DIR=str(tmp_path / "cache"))
    out = str(tmp_path / "m.npz")
    done = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "mpi4py", "-c", SCRIPT,
                           str(tmp_path), json.dumps([dict(epochs=1, out=out)])],
                          capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    counts = [json.loads(open(out + f".cache{r}.json").read()) for r in (0, 1)]
    for name in ("region", "update_range"):
        assert counts[0][name] == [0, 1], counts  # compiled (a cache miss), once
        assert counts[1][name] == [1, 0], counts  # loaded from the cache, not compiled


def test_float32_is_deterministic_too(tmp_path):
    job = dict(epochs=2, batch_size=32, optimizer="adam", dtype="float32")
    (one, _), = results(tmp_path, 1, [dict(job)])
    (two, _), = results(tmp_path, 2, [dict(job)])
    assert np.array_equal(one.params, two.params)


AVERAGING = [dict(epochs=2, batch_size=1, sync="average", average_every=16),
             dict(epochs=3, batch_size=8, sync="average", optimizer="adam",
                  average_every=4, average_state=True, weighted=True),
             dict(epochs=3, batch_size=8, sync="average", momentum=0.9, warmup_epochs=1)]


def test_averaging_mode_is_model_fit_at_one_rank_and_reproducible_at_two(tmp_path):
    (tmp_path / "1").mkdir()
    at_one = results(tmp_path / "1", 1, [dict(job) for job in AVERAGING[:2]])
    for (model, history), job in zip(at_one, AVERAGING[:2]):
        reference, ref = plain({k: v for k, v in job.items()
                                if k not in ("average_every", "average_state")})
        assert np.array_equal(model.params, reference.params)
        assert history["history"]["loss"] == ref.history["loss"]
    runs = []
    for turn in range(2):
        (tmp_path / f"2-{turn}").mkdir()
        runs.append(results(tmp_path / f"2-{turn}", 2, [dict(job) for job in AVERAGING]))
    for (first, h1), (second, h2) in zip(*runs):
        assert np.array_equal(first.params, second.params)
        assert h1["history"]["loss"] == h2["history"]["loss"]
    for (model, history), (alone, _) in zip(runs[0], at_one):
        # two local replicas averaged: not one run's bits, but the same training
        assert not np.array_equal(model.params, alone.params)
        assert history["history"]["loss"][-1] < history["history"]["loss"][0]
    # a synchronous warm-up epoch equals the deterministic mode's first epoch
    (warm, warm_history), = results(tmp_path / "1", 1, [dict(AVERAGING[2], epochs=1,
                                                             out=str(tmp_path / "w.npz"))])
    reference, ref = plain(dict(epochs=1, batch_size=8, momentum=0.9))
    np.testing.assert_allclose(warm.params, reference.params, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mismatch,message", [
    ("features", "bad input on rank 1: ValueError: X has 5 features"),
    ("samples", "the data (samples, features, targets) differs between ranks"),
    ("dtype", "X's dtype differs between ranks: rank 0: float64, rank 1: float32"),
    ("values", "the data's contents (a digest of X and Y) differs between ranks")])
def test_mismatched_ranks_are_refused_on_every_rank(tmp_path, mismatch, message):
    done = launch(tmp_path, 2, [dict(epochs=1, mismatch=mismatch,
                                     out=str(tmp_path / "m.npz"))])
    assert done.returncode != 0
    for rank in (0, 1):
        assert f"rank {rank} ValueError: fastbp.distributed.fit: {message}" in done.stdout, (
            done.stdout + done.stderr)
    assert not list(tmp_path.glob("*.npz"))


def test_replicas_that_drift_apart_are_caught_at_the_end_of_the_epoch(tmp_path):
    done = launch(tmp_path, 2, [dict(epochs=3, nudge_at=1, out=str(tmp_path / "m.npz"))])
    assert done.returncode != 0
    for rank in (0, 1):
        assert (f"rank {rank} ValueError: fastbp.distributed.fit: the parameters after epoch 2 "
                "(replicas diverged) differs between ranks") in done.stdout, done.stdout


def test_any_rank_count_for_fast_and_average_powers_of_two_for_deterministic(tmp_path):
    (fast, _), (average, _) = results(tmp_path, 3, [
        dict(epochs=2, batch_size=32, momentum=0.9, sync="fast"),
        dict(epochs=2, batch_size=8, sync="average")])
    reference, _ = plain(dict(epochs=2, batch_size=32, momentum=0.9))
    np.testing.assert_allclose(fast.params, reference.params, rtol=1e-12, atol=1e-14)
    done = launch(tmp_path, 3, [dict(epochs=1, out=str(tmp_path / "d.npz"))])
    assert done.returncode != 0
    assert "sync='deterministic' needs groups a power of two that the 3 ranks divide" in (
        done.stdout)


def test_a_world_size_other_than_asked_is_refused(tmp_path):
    done = launch(tmp_path, 2, [dict(epochs=1, ranks=4, out=str(tmp_path / "m.npz"))])
    assert done.returncode != 0
    for rank in (0, 1):
        assert (f"rank {rank} ValueError: fastbp.distributed.fit: bad input on rank 0: "
                "ValueError: ranks=4, but the communicator has 2 ranks") in done.stdout


def test_an_exception_on_one_rank_ends_every_rank(tmp_path):
    # rank 0's callback raises after epoch 2; rank 1 is already in epoch 3's first
    # collective: python -m mpi4py aborts the job instead of leaving it waiting
    start = time.perf_counter()
    done = launch(tmp_path, 2, [dict(epochs=50, raise_at=2, out=str(tmp_path / "m.npz"))],
                  timeout=120)
    assert done.returncode != 0
    assert "RuntimeError: callback failed in epoch 2" in done.stderr
    assert time.perf_counter() - start < 120


def test_a_run_killed_mid_way_resumes_at_another_rank_count_on_the_same_bits(tmp_path):
    job = dict(epochs=12, n=1000, batch_size=50, optimizer="adam")
    (straight, _), = results(tmp_path, 1, [dict(job, out=str(tmp_path / "straight.npz"))])
    killed = tmp_path / "killed"
    killed.mkdir()
    checkpoint = killed / "last.npz"
    # rank 0 pauses 0.5 s after each epoch, holding both ranks: the kill lands mid-run
    running = launch(killed, 2, [dict(job, checkpoint=str(checkpoint), pause=0.5,
                                      out=str(killed / "never.npz"))], wait=False)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and running.poll() is None:
            if checkpoint.exists() and fastbp.Model.load(checkpoint).epochs_done >= 3:
                break
            time.sleep(0.02)
        assert running.poll() is None, "the run ended before it could be killed"
        os.kill(int((killed / "pid1").read_text()), signal.SIGKILL)
        running.wait(timeout=120)
    finally:
        if running.poll() is None:
            running.kill()
    assert running.returncode != 0 and not (killed / "never.npz").exists()
    saved = fastbp.Model.load(checkpoint)
    assert 3 <= saved.epochs_done < 12
    (resumed, _), = results(tmp_path, 4, [dict(job, epochs=12 - saved.epochs_done,
                                               resume=str(checkpoint),
                                               out=str(tmp_path / "resumed.npz"))])
    assert resumed.epochs_done == 12 and resumed._optimizer.step == straight._optimizer.step
    assert np.array_equal(resumed.params, straight.params)
    assert np.array_equal(resumed._optimizer.buf2, straight._optimizer.buf2)


def fastbp_command(tmp_path, P, *argv, timeout=600):
    env = dict(os.environ, HYDRA_LAUNCHER="fork")
    command = [MPIEXEC, "-n", str(P), os.path.join(os.path.dirname(sys.executable),
                                                   "fastbp"), "train", "--distributed",
               "--no-progress", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=tmp_path)


@pytest.mark.parametrize("sync", ["deterministic", "average"])
def test_the_command_trains_the_digits_on_two_ranks(tmp_path, sync):
    done = fastbp_command(tmp_path, 2, "--sync", sync, "--epochs", "4",
                          "--output-model", "m.npz")
    assert done.returncode == 0, done.stdout + done.stderr
    # rank 0 alone reports and saves
    assert done.stdout.count("saved model:") == 1 and done.stdout.count("epoch 4/4") == 1
    assert f"2 MPI ranks ({sync} sync)" in done.stdout
    held_out = done.stdout.split("held-out (359 samples):")[1].splitlines()[0]
    accuracy = float(held_out.split("accuracy")[1])
    assert accuracy > 0.9
    assert fastbp.Model.load(tmp_path / "m.npz").metadata["data"] == "digits"


def test_the_command_reads_a_memory_mapped_npy_on_every_rank(tmp_path):
    rng = np.random.default_rng(3)
    centers = rng.normal(scale=4.0, size=(3, 5))
    y = rng.integers(0, 3, 600)
    X = (centers[y] + rng.normal(size=(600, 5))).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    done = fastbp_command(tmp_path, 2, "--data", "X.npy", "--labels", "y.npy",
                          "--scale", "none", "--dtype", "float32", "--hidden-sizes", "8",
                          "--epochs", "3", "--sync", "fast", "--output-model", "m.npz")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "accuracy 1.0000" in done.stdout or "accuracy 0.99" in done.stdout


def test_the_command_refuses_a_job_of_another_size(tmp_path):
    done = fastbp_command(tmp_path, 2, "--ranks", "4", "--epochs", "1", timeout=120)
    assert done.returncode != 0
    assert "ranks=4, but the communicator has 2 ranks" in done.stderr
    assert not (tmp_path / "fastbp-model.npz").exists()


def test_a_failing_command_ends_every_rank(tmp_path):
    done = fastbp_command(tmp_path, 2, "--data", "missing.npy", "--labels", "y.npy",
                          timeout=120)
    assert done.returncode != 0
    assert "fastbp: error: missing.npy" in done.stderr
