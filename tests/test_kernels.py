"""Kernels (through Model) against the NumPy reference, every activation x
output/loss x dtype, batch sizes 1 and several, with and without bias, and the
same bits at any thread count."""

import os
import warnings

import numba
import numpy as np
import pytest
from conftest import HEAD_IDS, HEADS, HIDDEN, TOL, make_model, make_problem, reference_net

from fastbp import _buffers, reference
from fastbp.kernels.layout import make_layout

SIZES = [4, 5, 3, 3]
DTYPES = ["float64", "float32"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize("hidden", HIDDEN)
def test_forward_loss_gradients_match_reference(hidden, head, bias, dtype):
    output, loss = head
    model = make_model(SIZES, hidden, output, loss, dtype, bias)
    Ws, bs = reference_net(model)
    tol = TOL[dtype]
    for n in (1, 7):  # one sample, and several (a batch mean)
        X, T = make_problem(SIZES, output, loss, n, seed=n)
        X = X.astype(dtype).astype(np.float64)  # the model sees X rounded to its dtype
        T = T.astype(dtype).astype(np.float64)
        expected_out = np.array([reference.forward(Ws, bs, x, hidden, output)[1][-1] for x in X])
        np.testing.assert_allclose(model.predict(X), expected_out, **tol)
        # a few rows run forward_rows, more a region: the same bits, row by row
        assert np.array_equal(model.predict(X[:1]), model.predict(np.repeat(X, 2, 0))[:1])
        np.testing.assert_allclose(
            model.loss(X, T), reference.mean_loss(Ws, bs, X, T, hidden, output, loss), **tol
        )
        dWs, dbs = model.gradients(X, T)
        rWs, rbs = reference.gradients(Ws, bs, X, T, hidden, output, loss)
        for l in range(len(Ws)):
            assert dWs[l].dtype == np.dtype(dtype)
            np.testing.assert_allclose(dWs[l], rWs[l], **tol)
        if bias:
            for l in range(len(Ws)):
                np.testing.assert_allclose(dbs[l], rbs[l], **tol)
        else:
            assert dbs == []


TRAIN_CASES = [
    dict(optimizer="sgd", lr=0.1),
    dict(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=0.01),
    dict(optimizer="sgd", lr=0.05, momentum=0.8, nesterov=True),
    dict(optimizer="adam", lr=0.01),
    dict(optimizer="adam", lr=0.01, weight_decay=0.05),
]
TRAIN_IDS = ["sgd", "momentum-wd", "nesterov", "adam", "adam-wd"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size", [1, 3, 10], ids=["online", "partial", "full"])
@pytest.mark.parametrize("case", TRAIN_CASES, ids=TRAIN_IDS)
def test_training_trajectory_matches_reference(case, batch_size, dtype):
    """fit == reference.train: same batches (shuffle=False, then the model's own
    permutations), the fused online step and the batch path alike."""
    sizes, hidden, output, loss = [3, 6, 4], "tanh", "softmax", "cross_entropy"
    X, T = make_problem(sizes, output, loss, 10, seed=3)
    X = X.astype(dtype)
    model = make_model(sizes, hidden, output, loss, dtype)
    p0 = model.params.astype(np.float64)
    model.fit(X, T, epochs=2, batch_size=batch_size, shuffle=False, **case)
    orders = [np.arange(10)] * 2
    expected = reference.train(p0, sizes, True, X.astype(np.float64), T, orders, batch_size,
                               hidden, output, loss, **case)
    # float32 drifts over 10+ steps; each step alone is within TOL (test above)
    tol = TOL["float64"] if dtype == "float64" else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.params, expected, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", ["online", "partial", "full", "parts-parallel"])
@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
def test_every_head_trains_like_the_reference_on_every_path(head, path, dtype, monkeypatch):
    """Every output/loss pair through the fused online step (batch 1), mini-batches
    serial (a partial last batch, one full batch) and batches split into parts on
    threads: fit == reference.train."""
    from fastbp import _threads as policy

    batch_size = {"online": 1, "partial": 3, "full": 10, "parts-parallel": 4}[path]
    if path == "parts-parallel":  # 3 parts, in a parallel region even on a busy machine
        monkeypatch.setattr(policy, "SERIAL_PARTS", 3)
        monkeypatch.setattr(policy, "PARALLEL_MIN_FLOPS", 0)
        monkeypatch.setattr(policy, "held_up", lambda: False)
    output, loss = head
    sizes = [3, 6, 4] if output != "sigmoid" or loss != "cross_entropy" else [3, 6, 1]
    X, T = make_problem(sizes, output, loss, 10, seed=4)
    X = X.astype(dtype)
    model = make_model(sizes, "tanh", output, loss, dtype)
    p0 = model.params.astype(np.float64)
    case = dict(optimizer="sgd", lr=0.05, momentum=0.9)
    model.fit(X, T, epochs=2, batch_size=batch_size, shuffle=False, **case)
    expected = reference.train(p0, sizes, True, X.astype(np.float64), T, [np.arange(10)] * 2,
                               batch_size, "tanh", output, loss, **case)
    tol = TOL["float64"] if dtype == "float64" else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.params, expected, **tol)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_batches_split_into_parts_train_like_the_reference(optimizer, bias, monkeypatch):
    """Batches split into parts (as big batches are) update every parameter exactly
    once: weights and biases of each part's rows, and no bias slot without biases."""
    from fastbp import _threads as model_module

    monkeypatch.setattr(model_module, "SERIAL_PARTS", 3)  # parts even at 1 thread
    monkeypatch.setattr(model_module, "PARALLEL_MIN_FLOPS", 0)  # and in parallel
    sizes, hidden, output, loss = [5, 9, 7, 3], "tanh", "softmax", "cross_entropy"
    X, T = make_problem(sizes, output, loss, 11, seed=8)
    model = make_model(sizes, hidden, output, loss, "float64", bias)
    p0 = model.params.copy()
    case = dict(optimizer=optimizer, lr=0.05, weight_decay=0.01)
    model.fit(X, T, epochs=2, batch_size=4, shuffle=False, **case)
    expected = reference.train(p0, sizes, bias, X, T, [np.arange(11)] * 2, 4, hidden, output,
                               loss, **case)
    np.testing.assert_allclose(model.params, expected, **TOL["float64"])


def test_shuffled_training_uses_the_models_permutations():
    sizes = [3, 5, 2]
    X, T = make_problem(sizes, "linear", "mse", 9, seed=1)
    model = make_model(sizes, "sigmoid", "linear", "mse", seed=7)
    p0 = model.params.copy()
    rng = np.random.default_rng(np.random.SeedSequence(7).spawn(2)[1])
    orders = [rng.permutation(9) for _ in range(3)]
    model.fit(X, T, epochs=3, batch_size=2, lr=0.2, momentum=0.5)
    expected = reference.train(p0, sizes, True, X, T, orders, 2, "sigmoid", "linear", "mse",
                               lr=0.2, momentum=0.5)
    np.testing.assert_allclose(model.params, expected, **TOL["float64"])


def test_online_step_equals_batch_path_at_batch_one():
    """The fused online step (update inside the delta recursion) computes the same
    update as forward + backward + flat update with a batch of one."""
    sizes = [5, 7, 6, 3]
    X, T = make_problem(sizes, "sigmoid", "mse", 12, seed=2)
    online = make_model(sizes, "relu", "sigmoid", "mse", seed=4)
    batched = make_model(sizes, "relu", "sigmoid", "mse", seed=4)
    online.fit(X, T, epochs=2, batch_size=1, shuffle=False, lr=0.3, momentum=0.9)
    for _ in range(2):
        for i in range(12):  # batch_size 2 with a duplicated sample = mean of one sample
            batched.fit(X[[i, i]], T[[i, i]], batch_size=2, shuffle=False, lr=0.3,
                        momentum=0.9)
    np.testing.assert_allclose(online.params, batched.params, **TOL["float64"])


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size", [1, 5, 40, 64], ids=["online", "rows", "gemm", "whole"])
def test_bit_identical_at_any_thread_count(batch_size, dtype, restore_threads, monkeypatch):
    """Serial kernels at 1 thread and parallel chunks at 2 give the same bits
    (batch 40 spans 3 sample chunks, 80 and 70 rows 2 row chunks each)."""
    from fastbp import _threads as model_module

    monkeypatch.setattr(model_module, "PARALLEL_MIN_FLOPS", 0)  # parallel at 2 threads
    sizes = [6, 80, 70, 4]
    X, T = make_problem(sizes, "softmax", "cross_entropy", 64, seed=5)
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        model = make_model(sizes, "relu", "softmax", "cross_entropy", dtype, seed=11)
        model.fit(X, T, epochs=3, batch_size=batch_size, lr=0.05, momentum=0.9)
        grads = model.gradients(X, T)[0]
        results.append((model.params.copy(), model.predict(X), grads, model.loss(X, T)))
    (p1, y1, g1, l1), (p2, y2, g2, l2) = results
    assert np.array_equal(p1, p2)
    assert np.array_equal(y1, y2)
    assert all(np.array_equal(a, b) for a, b in zip(g1, g2))
    assert l1 == l2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", [[6, 80, 70, 4], [5, 40, 33, 21, 3]], ids=["3", "4"])
def test_bit_identical_for_any_number_of_parts(dtype, sizes, monkeypatch):
    """The parts a batch is split into (one per thread in parallel) change no bit:
    1, 2 and 7 parts of 40 samples and of 80 and 70 rows (and a net with three
    hidden layers), split off the tiles' edges, train to the same parameters."""
    from fastbp import _threads as model_module

    X, T = make_problem(sizes, "softmax", "cross_entropy", 64, seed=5)
    results = []
    for parts in (1, 2, 7):
        monkeypatch.setattr(model_module, "SERIAL_PARTS", parts)
        model = make_model(sizes, "relu", "softmax", "cross_entropy", dtype, seed=11)
        model.fit(X, T, epochs=2, batch_size=40, lr=0.05, momentum=0.9, n_threads=1)
        results.append(model.params.copy())
    assert np.array_equal(results[0], results[1])
    assert np.array_equal(results[0], results[2])


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
@pytest.mark.parametrize("sizes", [[6, 80, 70, 4], [5, 40, 33, 21, 3], [7, 4]],
                         ids=["3", "4", "no-hidden"])
def test_parallel_epoch_any_parts_on_two_threads(sizes, restore_threads, monkeypatch):
    """The parallel epoch (one region, tasks claimed by owner, then by whoever is
    free) gives the serial bits when its parts outnumber its threads (3 and 5
    parts on 2 threads: a thread runs two owners' tasks, and takes tasks their
    owner has not claimed yet), with sample weights, Adam and a last partial batch;
    and it never hangs waiting for a task nobody runs."""
    from fastbp import _threads as model_module

    monkeypatch.setattr(model_module, "PARALLEL_MIN_FLOPS", 0)  # parallel at 2 threads
    X, T = make_problem(sizes, "softmax", "cross_entropy", 70, seed=3)
    weights = np.linspace(0.0, 2.0, 70)
    results = []
    for threads, parts in ((1, 1), (2, 2), (2, 3), (2, 5)):
        numba.set_num_threads(threads)
        monkeypatch.setattr(model_module, "parts",
                            lambda parallel, parts=parts: parts if parallel else 1)
        model = make_model(sizes, "tanh", "softmax", "cross_entropy", "float64", seed=2)
        history = model.fit(X, T, epochs=2, batch_size=16, lr=0.01, optimizer="adam",
                            sample_weight=weights)
        results.append((model.params.copy(), history.history["loss"]))
    for params, losses in results[1:]:
        assert np.array_equal(params, results[0][0])
        assert losses == results[0][1]


def test_region_kernel_pass_directly_matches_reference():
    """train.region in PASS mode on hand-made contiguous arrays: the outputs of
    every sample (two chunks, the last partial) and the loss sum."""
    from fastbp import _buffers
    from fastbp.kernels.codes import N_HYPER
    from fastbp.kernels.train import PASS, region

    sizes = (3, 4, 2)
    layout, n_params = make_layout(sizes, True)
    rng = np.random.default_rng(0)
    params = rng.normal(size=n_params)
    codes = np.array([0, 5, 1], dtype=np.int64)  # sigmoid hidden, softmax, cross-entropy
    X = rng.normal(size=(10, 3))
    T = np.eye(2)[np.arange(10) % 2]
    out = np.empty((10, 2))
    total = np.zeros(1)
    empty = params[:0]
    rows = 6
    region(np.int64(0), np.bool_(True), np.int64(2), np.int64(PASS), np.bool_(True),
           np.int64(0), params, empty, empty, layout, codes, np.zeros(N_HYPER), np.int64(0),
           X, T, np.arange(10), empty, np.int64(rows),
           *_buffers.batch_scratch(params, layout, rows, np.float64), empty, empty, out,
           np.zeros(0, np.int64), total)
    Ws, bs = reference.unflatten(params, sizes, True)
    expected = np.array([reference.forward(Ws, bs, x, "sigmoid", "softmax")[1][-1] for x in X])
    np.testing.assert_allclose(out, expected, **TOL["float64"])
    np.testing.assert_allclose(total[0], -np.sum(T * np.log(expected)), **TOL["float64"])


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_into_is_accurate_and_keeps_nan(dtype):
    """The vectorised float32 exp (Cephes expf) stays within 3 ulp of exp over the
    whole finite range, clamps beyond it, and lets NaN through."""
    from fastbp.kernels.activations import exp_into

    x = np.linspace(-87.0, 88.0, 200_001).astype(dtype)
    out = np.empty_like(x)
    exp_into(x, out, x.dtype.type(1.0))
    expected = np.exp(x.astype(np.float64))
    rel = np.abs(out - expected) / expected
    assert rel.max() < (4e-7 if dtype == "float32" else 1e-15)
    x = x[x <= 87.0]  # exp(-x) above float32's smallest normal number
    out = np.empty_like(x)
    exp_into(x, out, x.dtype.type(-1.0))
    np.testing.assert_allclose(out, np.exp(-x.astype(np.float64)), rtol=4e-7)
    extreme = np.array([-1e4, 1e4, np.nan], dtype=dtype)
    out = np.empty_like(extreme)
    exp_into(extreme, out, extreme.dtype.type(1.0))
    assert 0 <= out[0] < 1e-37 and np.isfinite(out[1]) or dtype == "float64"
    assert np.isnan(out[2])


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
def test_held_up_threads_run_epochs_serially_with_the_same_bits(restore_threads,
                                                                monkeypatch):
    """When other processes hold the cores (probed before each epoch), fit runs
    the epoch's serial kernels: a warning, History.held_up_epochs, same bits."""
    from fastbp import _threads as model_module
    from fastbp.kernels.train import probe

    never = np.int64(2**62)
    sync = np.zeros(9, np.int64)
    model_module.launch(probe, 2, (np.int64(2), sync, np.int64(7), never, never))
    assert np.array_equal(sync[:8], [2] * 7 + [0])  # both threads passed every barrier
    assert sync[8] > 0  # thread 0's cycles after the first barrier
    sync = np.zeros(9, np.int64)
    model_module.launch(probe, 1, (np.int64(2), sync, np.int64(7), np.int64(1000), never))
    assert sync[0] == 1 and sync[7] == 1  # nobody came: gave up at the first barrier

    monkeypatch.setattr(model_module, "PARALLEL_MIN_FLOPS", 0)  # parallel at 2 threads
    numba.set_num_threads(2)
    sizes = [6, 80, 70, 4]
    X, T = make_problem(sizes, "softmax", "cross_entropy", 64, seed=5)
    free = make_model(sizes, "relu", "softmax", "cross_entropy", seed=11)
    monkeypatch.setattr(model_module, "held_up", lambda: False)
    h_free = free.fit(X, T, epochs=3, batch_size=40, lr=0.05, momentum=0.9)
    assert h_free.held_up_epochs == 0
    held = make_model(sizes, "relu", "softmax", "cross_entropy", seed=11)
    monkeypatch.setattr(model_module, "held_up", lambda: True)
    with pytest.warns(RuntimeWarning, match="3 of 3 epochs ran on one thread"):
        h_held = held.fit(X, T, epochs=3, batch_size=40, lr=0.05, momentum=0.9)
    assert h_held.held_up_epochs == 3
    assert np.array_equal(held.params, free.params)

    def never():
        raise AssertionError("probed for a serial fit")

    monkeypatch.setattr(model_module, "held_up", never)
    numba.set_num_threads(1)  # no parallel kernels: no probe
    make_model(sizes, "relu", "softmax", "cross_entropy").fit(X, T, batch_size=40)


@pytest.mark.skipif(not os.path.exists("/proc/loadavg"), reason="Linux only")
def test_held_up_sees_a_spinning_process(restore_threads, monkeypatch):
    """With enough other processes spinning to leave a region's threads fewer cores
    than threads, held_up() says so (the quiet side: the test below)."""
    import subprocess
    import sys
    import time

    from fastbp import _threads

    n = numba.get_num_threads()
    monkeypatch.setattr(_threads, "PROBE_VALID_SECONDS", 0.0)
    monkeypatch.setattr(_threads, "_last_probe", [-1.0, False])  # no answer left behind
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(_threads.usable_cores() - n + 1)]
    try:
        time.sleep(0.5)
        busy = [_threads.held_up() for _ in range(3)]
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert busy == [True] * 3


def test_held_up_reads_the_running_count(tmp_path, monkeypatch):
    """The count of tasks running or ready to run (4th field of /proc/loadavg, this
    thread included) against the cores left beside the region's threads."""
    from fastbp import _threads

    loadavg = tmp_path / "loadavg"
    monkeypatch.setattr(_threads, "LOADAVG", str(loadavg))
    loadavg.write_text("0.50 0.40 0.30 1/180 4242\n")  # only this thread
    assert _threads._others_running(0) is False
    loadavg.write_text("1.50 0.40 0.30 2/180 4242\n")  # one other
    assert _threads._others_running(0) is True
    assert _threads._others_running(1) is False  # a core left for it
    loadavg.write_text("garbled\n")
    assert _threads._others_running(0) is None
    monkeypatch.setattr(_threads, "_last_probe", [-1.0, False])
    monkeypatch.setattr(_threads, "_others_running", lambda limit: None)
    monkeypatch.setattr(_threads, "probe_seconds", lambda n: float("inf"))
    assert _threads.held_up() is True  # unknown here: the probe region decides


def _fit_on_two_threads(_):
    """A fit whose epochs run as regions on 2 threads: its parameters' bytes."""
    from fastbp import _threads

    _threads.PARALLEL_MIN_FLOPS = 0
    _threads.held_up = lambda: False
    numba.set_num_threads(2)
    sizes = [6, 9, 3]
    X, T = make_problem(sizes, "linear", "mse", 32)
    model = make_model(sizes, "tanh", "linear", "mse")
    model.fit(X, T, batch_size=8)
    return model.params.tobytes()


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_regions_run_in_a_forked_child(restore_threads, monkeypatch):
    """A child forked after the parent ran regions (multiprocessing's default on
    Linux) gets threads of its own: the parent's executor has none there, and a
    region submitted to it waited forever. Same bits in both."""
    import multiprocessing

    from fastbp import _threads

    monkeypatch.setattr(_threads, "PARALLEL_MIN_FLOPS", 0)
    monkeypatch.setattr(_threads, "held_up", lambda: False)
    parent = _fit_on_two_threads(0)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply_async(_fit_on_two_threads, (0,)).get(timeout=120)
    assert child == parent


def test_activation_blocks_start_apart_from_their_weights_within_a_page():
    """Model._activations places the buffer so that no layer's input block starts
    at the same offset within a 4 KiB page as its W^l (rows 4 KiB long alias in
    the L1 cache otherwise): here every layer is at least 1 KiB away."""
    from fastbp.kernels.layout import UNIT, WOFF

    model = make_model([16, 1024, 1024, 10], "relu", "softmax", "cross_entropy", "float32")
    rows = 8
    width = sum(model.sizes)
    acts = _buffers.activations(model.params, model._layout, rows, model.dtype)
    assert acts.shape == (rows * width,) and acts.flags.c_contiguous and not acts.any()
    for l in range(1, len(model.sizes)):
        gap = (acts.ctypes.data + 4 * rows * int(model._layout[UNIT, l - 1])
               - model.params.ctypes.data - 4 * int(model._layout[WOFF, l])) % 4096
        assert min(gap, 4096 - gap) >= 1024, (l, gap)


def test_rebalance_moves_shares_toward_measured_speed():
    """The parallel epoch's cuts move halfway toward each thread's measured speed
    (share / cycles), keep a floor of 1 / (4 parts), and stay put without cycle
    counts (a target with no counter reads 0)."""
    from fastbp.kernels.train import _rebalance

    cuts = np.array([0.0, 0.5, 1.0])
    _rebalance(cuts, np.array([7, 100, 300]), 1, 2)  # thread 1 took 3x as long
    # speeds 0.5/100 and 0.5/300 -> target shares 0.75, 0.25; halfway from 0.5: 0.625
    np.testing.assert_allclose(cuts, [0.0, 0.625, 1.0])
    _rebalance(cuts, np.array([100, 0]), 0, 2)  # no counts: unchanged
    np.testing.assert_allclose(cuts, [0.0, 0.625, 1.0])
    cuts = np.array([0.0, 0.8, 1.0])
    _rebalance(cuts, np.array([1, 10**9]), 0, 2)  # thread 1 nearly stopped
    # shares 0.5 (0.8 + 1.0) = 0.9 and max(1/8, 0.5 (0.2 + 0.0)) = 0.125, renormalised
    np.testing.assert_allclose(cuts, [0.0, 0.9 / 1.025, 1.0], rtol=1e-6)


def test_threads_beyond_the_usable_cores_are_capped_once(restore_threads, monkeypatch):
    """More numba threads than the process's cores: the first call caps them with
    one warning naming the cores; a count the caller chose is left alone."""
    from fastbp import _threads

    monkeypatch.setattr(_threads, "_capped", [False])
    monkeypatch.setattr(_threads, "usable_cores", lambda: 1)
    sizes = [4, 5, 2]
    X, T = make_problem(sizes, "linear", "mse", 16)
    model = make_model(sizes, "tanh", "linear", "mse")
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    if numba.get_num_threads() < 2:
        pytest.skip("needs 2 numba threads")
    model.fit(X, T, n_threads=2)  # chosen by the caller: not capped
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
    with pytest.warns(RuntimeWarning, match="this process may use 1 core"):
        model.fit(X, T)
    assert numba.get_num_threads() == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        numba.set_num_threads(2)
        model.fit(X, T)  # once per process
        model.predict(X)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
def test_later_fits_run_no_extra_parallel_regions(restore_threads, monkeypatch):
    """The warm-up region and empty epoch run once per process and kind of kernel;
    with the held-up probe's answer still valid, a later fit runs only its epochs:
    on a busy machine every region costs a time slice, and the drop-in fits once
    per epoch."""
    from fastbp import _threads, _training
    monkeypatch.setattr(_threads, "PARALLEL_MIN_FLOPS", 0)
    monkeypatch.setattr(_threads, "PROBE_VALID_SECONDS", 60.0)
    numba.set_num_threads(2)
    sizes = [6, 9, 3]
    X, T = make_problem(sizes, "linear", "mse", 32)
    model = make_model(sizes, "tanh", "linear", "mse")
    model.fit(X, T, batch_size=8)
    regions, empty_epochs = [], []
    real_probe, real_run = _threads.probe_seconds, _threads.run_region
    monkeypatch.setattr(_threads, "probe_seconds", lambda n: regions.append(real_probe(n)))

    def run(*args):
        empty_epochs.append(args[12].shape[0] == 0)  # order
        return real_run(*args)

    monkeypatch.setattr(_threads, "run_region", run)
    for _ in range(3):
        model.fit(X, T, batch_size=8)
    assert regions == [] and empty_epochs == [False] * 3
    assert (False, True, model.dtype) in _training._WARM
