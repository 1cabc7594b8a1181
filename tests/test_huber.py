"""The huber loss's delta: every kernel path against the reference, the checks of
the argument, and the model file. (The huber head at delta 1 runs through every
head-parametrized test: conftest.HEADS.)"""

import json
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
from conftest import TOL, make_problem

import fastbp
from fastbp import reference

SIZES = [3, 6, 2]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("path", ["online", "partial", "full", "parts-parallel"])
def test_huber_delta_trains_like_the_reference_on_every_path(path, dtype, monkeypatch):
    from fastbp import _threads as policy

    batch_size = {"online": 1, "partial": 3, "full": 10, "parts-parallel": 4}[path]
    if path == "parts-parallel":
        monkeypatch.setattr(policy, "SERIAL_PARTS", 3)
        monkeypatch.setattr(policy, "PARALLEL_MIN_FLOPS", 0)
        monkeypatch.setattr(policy, "held_up", lambda: False)
    X, T = make_problem(SIZES, "linear", "huber", 10, seed=6)
    T = 3.0 * T  # residuals well beyond delta and within it
    model = fastbp.Model(SIZES, hidden="tanh", loss="huber", huber_delta=0.3, dtype=dtype,
                         seed=6, init="uniform")
    residual = np.abs(model.predict(X) - T)
    assert 0.05 < np.mean(residual < 0.3) < 0.95
    p0 = model.params.astype(np.float64)
    Ws, bs = reference.unflatten(p0, SIZES, True)
    np.testing.assert_allclose(
        model.loss(X, T), reference.mean_loss(Ws, bs, X, T, "tanh", "linear", "huber",
                                              huber_delta=0.3), **TOL[dtype])
    model.fit(X.astype(dtype), T, epochs=2, batch_size=batch_size, shuffle=False, lr=0.05,
              momentum=0.9)
    expected = reference.train(p0, SIZES, True, X, T, [np.arange(10)] * 2, batch_size, "tanh",
                               "linear", "huber", lr=0.05, momentum=0.9, huber_delta=0.3)
    tol = TOL["float64"] if dtype == "float64" else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.params, expected, **tol)
    other = reference.train(p0, SIZES, True, X, T, [np.arange(10)] * 2, batch_size, "tanh",
                            "linear", "huber", lr=0.05, momentum=0.9)
    assert np.abs(other - expected).max() > 1e-3  # the delta reached the kernels


def test_reference_huber_gradient_is_the_finite_difference():
    X, T = make_problem(SIZES, "linear", "huber", 6, seed=2)
    T = 3.0 * T
    Ws, bs = reference.unflatten(np.random.default_rng(2).normal(size=38), SIZES, True)
    dWs, _ = reference.gradients(Ws, bs, X, T, "tanh", "linear", "huber", huber_delta=0.4)
    eps = 1e-6
    for (i, j) in [(0, 0), (1, 2), (0, 5)]:
        Wp = [W.copy() for W in Ws]
        Wm = [W.copy() for W in Ws]
        Wp[1][i, j] += eps
        Wm[1][i, j] -= eps
        numeric = (reference.mean_loss(Wp, bs, X, T, "tanh", "linear", "huber",
                                       huber_delta=0.4)
                   - reference.mean_loss(Wm, bs, X, T, "tanh", "linear", "huber",
                                         huber_delta=0.4)) / (2 * eps)
        np.testing.assert_allclose(dWs[1][i, j], numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        (dict(loss="huber", output="sigmoid"), ValueError, "output='linear'"),
        (dict(loss="huber", output="softmax"), ValueError, "output='linear'"),
        (dict(loss="huber", huber_delta=0.0), ValueError, "huber_delta"),
        (dict(loss="huber", huber_delta=-1.0), ValueError, "huber_delta"),
        (dict(loss="huber", huber_delta=float("inf")), ValueError, "huber_delta"),
        (dict(loss="huber", huber_delta=float("nan")), ValueError, "huber_delta"),
        (dict(loss="huber", huber_delta=None), TypeError, "huber_delta"),
        (dict(loss="huber", huber_delta=[0.5]), TypeError, "huber_delta"),
        (dict(loss="huber", huber_delta="1"), TypeError, "huber_delta"),
        (dict(loss="huber", huber_delta=True), TypeError, "huber_delta"),
        (dict(loss="mse", huber_delta=2.0), ValueError, "huber_delta applies to"),
        (dict(loss="poisson", output="exp", huber_delta=0.5), ValueError, "huber_delta"),
    ],
)
def test_bad_huber_arguments_name_themselves(kwargs, exc, words):
    sizes = list(SIZES)
    with pytest.raises(exc, match=words):
        fastbp.Model(sizes, **kwargs)
    assert sizes == SIZES  # nothing the user passed is modified


def test_any_real_delta_is_taken_as_a_float():
    for value in (np.float32(0.5), np.float64(0.5), 2, np.int64(2)):
        model = fastbp.Model(SIZES, loss="huber", huber_delta=value)
        assert type(model.huber_delta) is float and model.huber_delta == float(value)


def test_huber_delta_is_saved_loaded_and_pickled(tmp_path):
    model = fastbp.Model(SIZES, loss="huber", huber_delta=0.25, seed=1)
    assert "huber_delta=0.25" in repr(model)
    model.save(tmp_path / "m.npz")
    loaded = fastbp.Model.load(tmp_path / "m.npz")
    assert loaded.huber_delta == 0.25 and loaded.loss_name == "huber"
    X, T = make_problem(SIZES, "linear", "huber", 8, seed=1)
    assert loaded.loss(X, T) == model.loss(X, T)
    assert pickle.loads(pickle.dumps(model)).huber_delta == 0.25
    plain = fastbp.Model(SIZES, seed=1)
    assert "huber" not in repr(plain) and "huber_delta" not in plain._config()
    state = plain.__getstate__()
    del state["huber_delta"]  # a model pickled before the huber loss existed
    old = fastbp.Model.__new__(fastbp.Model)
    old.__setstate__(state)
    assert old.huber_delta == 1.0 and old.loss(X, T) == plain.loss(X, T)


def test_files_from_before_the_huber_loss_load_and_a_bad_delta_in_a_file_is_refused(tmp_path):
    old = fastbp.Model.load(pathlib.Path(__file__).parent / "data" / "model_ec08e64.npz")
    assert old.huber_delta == 1.0 and "huber" not in repr(old)  # written before huber
    fastbp.Model(SIZES, loss="huber", huber_delta=0.5, seed=1).save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(str(arrays["meta"]))
    assert meta["config"]["huber_delta"] == 0.5
    for value, expected in ((None, 1.0), (0.0, None), (-0.5, None), ("0.5", None)):
        if value is None:
            del meta["config"]["huber_delta"]
        else:
            meta["config"]["huber_delta"] = value
        arrays["meta"] = np.array(json.dumps(meta))
        with open(tmp_path / "edited.npz", "wb") as fh:
            np.savez(fh, **arrays)
        if expected is None:  # a zero, negative or non-number delta never reaches a kernel
            with pytest.raises((ValueError, TypeError), match="huber_delta"):
                fastbp.Model.load(tmp_path / "edited.npz")
        else:
            assert fastbp.Model.load(tmp_path / "edited.npz").huber_delta == expected


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_huber_passes_and_training_give_the_same_bits_at_1_and_2_threads(
        dtype, monkeypatch, restore_threads):
    """Data-set passes (loss, gradients: chunks of rows in a parallel region) equal
    the reference with delta 0.3, and they and a fit whose batches are split into
    parts give the same bits on 1 and 2 threads."""
    from fastbp import _threads as policy

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.fail("this test needs numba to allow 2 threads")
    monkeypatch.setattr(policy, "SERIAL_PARTS", 3)
    monkeypatch.setattr(policy, "PARALLEL_MIN_FLOPS", 0)
    monkeypatch.setattr(policy, "held_up", lambda: False)
    X, T = make_problem(SIZES, "linear", "huber", 600, seed=3)
    T = 3.0 * T
    X, T = X.astype(dtype), T.astype(dtype)
    found = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        model = fastbp.Model(SIZES, hidden="tanh", loss="huber", huber_delta=0.3, dtype=dtype,
                             seed=3)
        if threads == 1:
            residual = np.abs(model.predict(X) - T)
            assert 0.05 < np.mean(residual < 0.3) < 0.95
            Ws, bs = reference.unflatten(model.params.astype(np.float64), SIZES, True)
            Xr, Tr = X.astype(np.float64), T.astype(np.float64)
            np.testing.assert_allclose(
                model.loss(X, T), reference.mean_loss(Ws, bs, Xr, Tr, "tanh", "linear", "huber",
                                                      huber_delta=0.3), **TOL[dtype])
            rWs, _ = reference.gradients(Ws, bs, Xr, Tr, "tanh", "linear", "huber",
                                         huber_delta=0.3)
            for dW, rW in zip(model.gradients(X, T)[0], rWs, strict=True):
                np.testing.assert_allclose(dW, rW, **TOL[dtype])
        before = (model.loss(X, T), model.gradients(X, T))
        history = model.fit(X, T, epochs=2, batch_size=64, lr=0.05, optimizer="adam",
                            n_threads=threads)
        found.append((before, history.history["loss"], model.params.copy()))
    (before1, loss1, p1), (before2, loss2, p2) = found
    assert before1[0] == before2[0] and loss1 == loss2 and np.array_equal(p1, p2)
    assert all(np.array_equal(a, b) for a, b in zip(before1[1][0], before2[1][0], strict=True))


DISTRIBUTED = textwrap.dedent(
    """
    import sys
    import numpy as np
    from mpi4py import MPI
    import fastbp
    from fastbp import distributed

    folder = sys.argv[1]
    rank = MPI.COMM_WORLD.Get_rank()
    data = np.load(folder + "/data.npz")
    model = fastbp.Model.load(folder + "/init.npz")
    distributed.fit(model, data["X"], data["T"], epochs=2, batch_size=8, lr=0.05,
                    momentum=0.9, shuffle=False)
    model.save(folder + f"/rank{rank}.npz")
    """
)


@pytest.mark.slow
def test_distributed_fit_trains_with_the_models_delta(tmp_path):
    """fastbp.distributed on 2 ranks (real MPI, as tests/test_distributed.py) with
    delta 0.3: every rank holds Model.fit's result to rounding."""
    pytest.importorskip("mpi4py")
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable))
    if mpiexec is None:
        pytest.skip("no mpiexec beside this Python")
    X, T = make_problem(SIZES, "linear", "huber", 37, seed=4)
    T = 3.0 * T
    np.savez(tmp_path / "data.npz", X=X, T=T)
    model = fastbp.Model(SIZES, hidden="tanh", loss="huber", huber_delta=0.3,
                         dtype="float64", seed=4)
    model.save(tmp_path / "init.npz")
    done = subprocess.run([mpiexec, "-n", "2", sys.executable, "-c", DISTRIBUTED,
                           str(tmp_path)], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, HYDRA_LAUNCHER="fork"))
    assert done.returncode == 0, done.stdout + done.stderr
    model.fit(X, T, epochs=2, batch_size=8, lr=0.05, momentum=0.9, shuffle=False)
    default = fastbp.Model.load(tmp_path / "init.npz")
    default.huber_delta = 1.0
    default.fit(X, T, epochs=2, batch_size=8, lr=0.05, momentum=0.9, shuffle=False)
    assert np.abs(default.params - model.params).max() > 1e-3  # the delta matters here
    for rank in (0, 1):
        ranked = fastbp.Model.load(tmp_path / f"rank{rank}.npz")
        assert ranked.huber_delta == 0.3
        np.testing.assert_allclose(ranked.params, model.params, rtol=1e-12, atol=1e-14)
