"""An interrupted fit leaves the model exactly as before the interrupted epoch:
parameters, optimizer state and step, shuffling stream, schedule and epochs_done,
so fitting again continues as if that epoch had never started. Ctrl-C lands
within about 0.1 s (an epoch runs as kernel calls of ~0.1 s), not when the
epoch ends."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastbp
from fastbp.schedules import ReduceLROnPlateau

# 64-512-512-10 (~300,000 parameters): each epoch below takes ~1.5 s here (Adam at
# batch 32: ~25 us a sample; SGD with momentum at batch 1: ~100 us)
CHILD = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    import numpy as np
    import fastbp

    batch, n, optimizer, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 64)).astype(np.float32)
    y = rng.integers(0, 10, n)
    model = fastbp.Model([64, 512, 512, 10], hidden="relu", output="softmax",
                         loss="cross_entropy", seed=0)
    kw = dict(batch_size=batch, lr=0.001, optimizer=optimizer)
    if optimizer == "sgd":
        kw["momentum"] = 0.9
    model.fit(X[:200], y[:200], epochs=1, **kw)  # compiles; step and stream move on
    model.save(os.path.join(folder, "before.npz"))
    sent = []

    def interrupt():
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Timer(0.3, interrupt).start()
    start = time.perf_counter()
    try:
        model.fit(X, y, epochs=1, **kw)
        print("finished", time.perf_counter() - start)
    except KeyboardInterrupt:
        print("interrupted", time.perf_counter() - sent[0])
    model.save(os.path.join(folder, "after.npz"))
    model.fit(X, y, epochs=1, **kw)
    model.save(os.path.join(folder, "resumed.npz"))
    # the run that was never interrupted
    model = fastbp.Model.load(os.path.join(folder, "before.npz"))
    model.fit(X, y, epochs=1, **kw)
    model.save(os.path.join(folder, "straight.npz"))
    """
)


def same_state(a, b):
    """Two model files hold the same training state, bit for bit."""
    with np.load(a) as fa, np.load(b) as fb:
        if sorted(fa.files) != sorted(fb.files):
            return False
        if json.loads(str(fa["meta"])) != json.loads(str(fb["meta"])):
            return False
        return all(np.array_equal(fa[k], fb[k]) for k in fa.files if k != "meta")


@pytest.mark.slow
@pytest.mark.parametrize("batch,n,optimizer", [(1, 12000, "sgd"), (32, 60000, "adam")],
                         ids=["online-momentum", "mini-batch-adam"])
def test_ctrl_c_mid_epoch_lands_fast_and_undoes_the_epoch(tmp_path, batch, n, optimizer):
    done = subprocess.run([sys.executable, "-c", CHILD, str(batch), str(n), optimizer,
                           str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    what, seconds = done.stdout.split()
    assert what == "interrupted", f"the epoch ended first ({seconds} s): make it longer"
    assert float(seconds) < 0.5, f"Ctrl-C took {seconds} s to land"
    assert same_state(tmp_path / "before.npz", tmp_path / "after.npz")
    assert same_state(tmp_path / "resumed.npz", tmp_path / "straight.npz")
    assert not same_state(tmp_path / "before.npz", tmp_path / "straight.npz")


class RaiseAt:
    """A callback that raises in the middle of epoch ``epoch`` (its second report of
    batches done), or in on_epoch_end."""

    def __init__(self, epoch, where="on_batches_end"):
        self.epoch, self.where, self.reports = epoch, where, 0

    def on_batches_end(self, model, epoch, logs):
        if self.where == "on_batches_end" and epoch == self.epoch:
            self.reports += 1
            if self.reports == 2:
                raise RuntimeError("stop here")


def state(model, schedule):
    return (model.params.copy(), model._optimizer.buf1.copy(), model._optimizer.buf2.copy(),
            model._optimizer.step, model._rng.bit_generator.state, model.epochs_done,
            json.dumps(model._schedule_state), json.dumps(schedule.state_dict()))


def equal(s1, s2):
    return all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
               for a, b in zip(s1, s2))


@pytest.mark.parametrize("batch", [1, 8])
def test_an_error_mid_epoch_undoes_that_epoch_only(batch, monkeypatch):
    # small chunks, so the epoch reports several times
    monkeypatch.setattr(fastbp._training, "CHUNK_SECONDS", 1e-9)
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(64, 5)), rng.integers(0, 3, 64)
    kw = dict(batch_size=batch, lr=0.05, optimizer="adam", validation_split=0.25)

    def model_and_schedule():
        return (fastbp.Model([5, 7, 3], output="softmax", loss="cross_entropy", seed=3),
                ReduceLROnPlateau(patience=1))

    model, schedule = model_and_schedule()
    model.fit(X, y, epochs=2, lr_schedule=schedule, **kw)
    before = state(model, schedule)
    with pytest.raises(RuntimeError, match="stop here"):
        model.fit(X, y, epochs=3, lr_schedule=schedule, callbacks=[RaiseAt(2)], **kw)
    # epoch 1 of that call stands; its epoch 2 is undone
    model.fit(X, y, epochs=2, lr_schedule=schedule, **kw)
    straight, straight_schedule = model_and_schedule()
    straight.fit(X, y, epochs=2, lr_schedule=straight_schedule, **kw)
    straight.fit(X, y, epochs=3, lr_schedule=straight_schedule, **kw)
    assert equal(state(model, schedule), state(straight, straight_schedule))
    assert not equal(before, state(model, schedule))


def test_cut_epochs_give_the_bits_of_one_call(monkeypatch):
    # the loss sum goes on from call to call: History's loss too, not only the weights
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(300, 6)).astype(np.float32), rng.integers(0, 4, 300)
    results = []
    for seconds in (1e9, 1e-9):  # one call per epoch, one batch per call
        monkeypatch.setattr(fastbp._training, "CHUNK_SECONDS", seconds)
        for batch in (1, 16):
            model = fastbp.Model([6, 9, 4], output="softmax", loss="cross_entropy", seed=0)
            history = model.fit(X, y, epochs=2, batch_size=batch, lr=0.05)
            results.append((model.params.tobytes(), history.history["loss"]))
    assert results[:2] == results[2:]
