"""fastbp.distributed under real MPI (mpi4py with the mpich wheel, HYDRA_LAUNCHER=fork
for one host): the same bits at P = 1, 2, 4 in deterministic mode, equal to
Model.fit to rounding, "fast" equal to "deterministic" to rounding, and mismatched
ranks refused on every rank."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastbp

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable))
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec beside this Python")]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from mpi4py import MPI
    import fastbp
    from fastbp import distributed

    args = json.loads(sys.argv[1])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args["n"], 6)).astype(args["dtype"])
    y = rng.integers(0, 3, args["n"])
    if args.get("mismatch") == "features" and MPI.COMM_WORLD.Get_rank() == 1:
        X = X[:, :5].copy()
    if args.get("mismatch") == "samples" and MPI.COMM_WORLD.Get_rank() == 1:
        X, y = X[:-1], y[:-1]
    model = fastbp.Model([6, 9, 3], output="softmax", loss="cross_entropy",
                         dtype=args["dtype"], seed=1)
    if args.get("resume"):
        model = fastbp.Model.load(args["resume"])
    try:
        history = distributed.fit(model, X, y, sync=args["sync"], epochs=args["epochs"],
                                  batch_size=args["batch"], lr=0.05,
                                  optimizer=args["optimizer"], momentum=args["momentum"])
    except ValueError as exc:
        sys.stdout.write(f"rank {MPI.COMM_WORLD.Get_rank()} ValueError: {exc}\\n")
        sys.stdout.flush()
        MPI.COMM_WORLD.Barrier()  # every rank raised: none is left in a collective
        sys.exit(3)
    if MPI.COMM_WORLD.Get_rank() == 0:
        model.save(args["out"])
        print(json.dumps(history.history["loss"]))
    """
)


def run(tmp_path, P, **kw):
    args = dict(n=203, dtype="float64", sync="deterministic", batch=32, optimizer="sgd",
                epochs=3,
                momentum=0.9, out=str(tmp_path / f"m{P}-{len(os.listdir(tmp_path))}.npz"))
    args.update(kw)
    env = dict(os.environ, HYDRA_LAUNCHER="fork")
    done = subprocess.run([MPIEXEC, "-n", str(P), sys.executable, "-m", "mpi4py", "-c",
                           SCRIPT, json.dumps(args)], capture_output=True, text=True,
                          timeout=600, env=env)
    return done, args["out"]


def trained(tmp_path, P, **kw):
    done, out = run(tmp_path, P, **kw)
    assert done.returncode == 0, done.stdout + done.stderr
    return fastbp.Model.load(out), json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("optimizer,momentum", [("sgd", 0.9), ("adam", 0.0)])
def test_deterministic_mode_gives_the_same_bits_at_any_rank_count(tmp_path, optimizer,
                                                                  momentum):
    # 203 samples in batches of 32: a partial last batch, and groups of uneven sizes
    runs = [trained(tmp_path, P, optimizer=optimizer, momentum=momentum) for P in (1, 2, 4)]
    for model, losses in runs[1:]:
        assert np.array_equal(model.params, runs[0][0].params)
        assert np.array_equal(model._optimizer.buf1, runs[0][0]._optimizer.buf1)
        assert model._optimizer.step == runs[0][0]._optimizer.step == 3 * 7
        assert losses == runs[0][1]
    # ... and equals the ordinary fit to rounding
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(203, 6)), rng.integers(0, 3, 203)
    plain = fastbp.Model([6, 9, 3], output="softmax", loss="cross_entropy",
                         dtype="float64", seed=1)
    history = plain.fit(X, y, epochs=3, batch_size=32, lr=0.05, optimizer=optimizer,
                        momentum=momentum)
    np.testing.assert_allclose(runs[0][0].params, plain.params, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(runs[0][1], history.history["loss"], rtol=1e-12)
    assert runs[0][0].epochs_done == 3


def test_fast_mode_equals_deterministic_to_rounding(tmp_path):
    det, _ = trained(tmp_path, 2)
    fast, _ = trained(tmp_path, 2, sync="fast")
    np.testing.assert_allclose(fast.params, det.params, rtol=1e-12, atol=1e-14)


def test_float32_is_deterministic_too(tmp_path):
    one, _ = trained(tmp_path, 1, dtype="float32")
    two, _ = trained(tmp_path, 2, dtype="float32")
    assert np.array_equal(one.params, two.params)


@pytest.mark.parametrize("mismatch,message", [
    ("features", "bad input on rank 1: ValueError: X has 5 features"),
    ("samples", "the data (samples, features, dtype) differs between ranks")])
def test_mismatched_ranks_are_refused_on_every_rank(tmp_path, mismatch, message):
    done, _ = run(tmp_path, 2, mismatch=mismatch)
    assert done.returncode != 0
    for rank in (0, 1):
        assert f"rank {rank} ValueError: fastbp.distributed.fit: {message}" in done.stdout, (
            done.stdout + done.stderr)


def test_a_checkpoint_written_at_one_rank_count_resumes_at_another(tmp_path):
    straight, _ = trained(tmp_path, 1, optimizer="adam", momentum=0.0)
    done, first = run(tmp_path, 2, optimizer="adam", momentum=0.0, epochs=2)
    assert done.returncode == 0, done.stdout + done.stderr
    resumed, _ = trained(tmp_path, 4, optimizer="adam", momentum=0.0, epochs=1, resume=first)
    assert resumed.epochs_done == 3 and resumed._optimizer.step == straight._optimizer.step
    assert np.array_equal(resumed.params, straight.params)
    assert np.array_equal(resumed._optimizer.buf2, straight._optimizer.buf2)
