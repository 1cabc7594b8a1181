"""Exact resume: save / load / fit the remaining epochs == the run that never stopped.

Model.save holds the whole training state (parameters, optimizer buffers and step,
the shuffling stream, epochs_done, the lr schedule's state, config, version); a
schedule built as before resumes the saved state (fastbp.schedules' rule).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

import fastbp
from fastbp.callbacks import Callback, ModelCheckpoint, TerminateOnNaN
from fastbp.schedules import (
    CosineWithWarmup,
    ExponentialLR,
    LRSchedule,
    ReduceLROnPlateau,
    StepLR,
)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(27, 4))  # 27: the last batch of 5 (or 4) is a partial one
Y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(np.int64) + (X[:, 2] > 0.5)  # 3 classes
EPOCHS = 6

OPTIMIZERS = {
    "sgd-momentum": dict(lr=0.2, momentum=0.9),
    "nesterov": dict(lr=0.2, momentum=0.9, nesterov=True),
    "adam": dict(lr=0.02, optimizer="adam"),
}
SCHEDULES = {  # each changes the rate inside the 6 epochs, after the resume point too
    "none": lambda: None,
    "step": lambda: StepLR(step_size=2, gamma=0.5),
    "exponential": lambda: ExponentialLR(gamma=0.7),
    "cosine": lambda: CosineWithWarmup(total_epochs=5, warmup_epochs=2, min_lr=1e-3),
    "plateau": lambda: ReduceLROnPlateau(patience=0, factor=0.5, threshold=0.05),
}


def model(dtype="float64"):
    return fastbp.Model(
        [4, 7, 3],
        hidden="tanh",
        output="softmax",
        loss="cross_entropy",
        dtype=dtype,
        seed=5,
    )


def fit_args(optimizer, batch_size):
    return dict(
        batch_size=batch_size,
        shuffle=True,
        validation_split=0.25,
        **OPTIMIZERS[optimizer],
    )


@pytest.mark.parametrize("batch_size", [1, 5], ids=["online", "batch5"])
@pytest.mark.parametrize("schedule", list(SCHEDULES), ids=list(SCHEDULES))
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS), ids=list(OPTIMIZERS))
def test_save_load_and_fit_the_rest_equals_the_uninterrupted_run(
    tmp_path, optimizer, schedule, batch_size
):
    make, fit = SCHEDULES[schedule], fit_args(optimizer, batch_size)
    # the uninterrupted run, checkpointed after every epoch
    whole = model()
    ckpt = ModelCheckpoint(tmp_path / "ck-{epochs_done}.npz")
    h_whole = whole.fit(
        X, Y, epochs=EPOCHS, lr_schedule=make(), callbacks=[ckpt], **fit
    )
    assert whole.epochs_done == EPOCHS and len(ckpt.saved) == EPOCHS
    if schedule != "none":
        assert len(set(h_whole.history["lr"][2:])) > 1  # the resumed part changes rate

    # (a) stopped after k epochs by the end of a fit, saved, loaded in a new model
    for k in (2, 3):
        part = model()
        part.fit(X, Y, epochs=k, lr_schedule=make(), **fit)
        part.save(tmp_path / "part.npz")
        resumed = fastbp.Model.load(tmp_path / "part.npz")
        assert resumed.epochs_done == k
        h_rest = resumed.fit(
            X, Y, epochs=EPOCHS - resumed.epochs_done, lr_schedule=make(), **fit
        )
        assert np.array_equal(resumed.params, whole.params), k
        assert np.array_equal(resumed._optimizer.buf1, whole._optimizer.buf1)
        assert np.array_equal(resumed._optimizer.buf2, whole._optimizer.buf2)
        assert resumed.epochs_done == EPOCHS
        for key in ("loss", "val_loss", "val_accuracy", "lr"):
            if key in h_whole.history:
                assert h_rest.history[key] == h_whole.history[key][k:], key

    # (b) a checkpoint written during the fit (state after that epoch's step)
    for k in (1, 4):
        resumed = fastbp.Model.load(tmp_path / f"ck-{k}.npz")
        assert resumed.epochs_done == k
        h_rest = resumed.fit(X, Y, epochs=EPOCHS - k, lr_schedule=make(), **fit)
        assert np.array_equal(resumed.params, whole.params), k
        if schedule != "none":
            assert h_rest.history["lr"] == h_whole.history["lr"][k:]


def test_float32_and_unshuffled_resume_too(tmp_path):
    for dtype, shuffle in (("float32", True), ("float32", False), ("float64", False)):
        fit = dict(batch_size=4, lr=0.1, momentum=0.9, shuffle=shuffle)
        whole = model(dtype)
        whole.fit(X, Y, epochs=4, lr_schedule=StepLR(1, 0.8), **fit)
        part = model(dtype)
        part.fit(X, Y, epochs=1, lr_schedule=StepLR(1, 0.8), **fit)
        part.save(tmp_path / "m.npz")
        resumed = fastbp.Model.load(tmp_path / "m.npz")
        resumed.fit(X, Y, epochs=3, lr_schedule=StepLR(1, 0.8), **fit)
        assert np.array_equal(resumed.params, whole.params), (dtype, shuffle)


def test_without_the_saved_schedule_state_the_resume_would_differ(tmp_path):
    # the control: the saved schedule state is what makes the resume exact
    fit = dict(batch_size=5, lr=0.2, momentum=0.9)
    whole = model()
    whole.fit(X, Y, epochs=EPOCHS, lr_schedule=StepLR(2, 0.5), **fit)
    part = model()
    part.fit(X, Y, epochs=3, lr_schedule=StepLR(2, 0.5), **fit)
    part.save(tmp_path / "m.npz")
    afresh = StepLR(2, 0.5)
    afresh.reset()  # reset(): start afresh even where the model remembers one
    resumed = fastbp.Model.load(tmp_path / "m.npz")
    history = resumed.fit(X, Y, epochs=3, lr_schedule=afresh, **fit)
    assert history.history["lr"] == [0.2, 0.2, 0.1]
    assert not np.array_equal(resumed.params, whole.params)


# -- the schedule resume rule ----------------------------------------------------------


def remembered_after(schedule, epochs=3, lr=0.2):
    m = model()
    m.fit(X, Y, epochs=epochs, batch_size=5, lr=lr, lr_schedule=schedule)
    return m


def test_a_schedule_resumes_only_with_the_same_class_config_and_lr(tmp_path):
    m = remembered_after(StepLR(2, 0.5))  # rates 0.2, 0.2, 0.1; next 0.1
    assert m._schedule_state["last_epoch"] == 3 and m._schedule_state["lr"] == 0.1
    m.save(tmp_path / "m.npz")

    def next_rates(schedule, lr=0.2):
        loaded = fastbp.Model.load(tmp_path / "m.npz")
        return loaded.fit(
            X, Y, epochs=2, batch_size=5, lr=lr, lr_schedule=schedule
        ).history["lr"]

    assert next_rates(StepLR(2, 0.5)) == [0.1, 0.05]  # resumes
    assert next_rates(StepLR(2, 0.25)) == [0.2, 0.2]  # another config: afresh
    assert next_rates(StepLR(3, 0.5)) == [0.2, 0.2]
    assert next_rates(ExponentialLR(0.5)) == [0.2, 0.1]  # another class: afresh
    assert next_rates(StepLR(2, 0.5), lr=0.1) == [0.1, 0.1]  # another lr: afresh

    class MyStep(StepLR):  # a subclass is another class
        pass

    assert next_rates(MyStep(2, 0.5)) == [0.2, 0.2]
    # a schedule used with another model resumes too; reset() opts out
    used = StepLR(2, 0.5)
    remembered_after(used, epochs=1)
    assert next_rates(used) == [0.1, 0.05]
    used.reset()
    assert next_rates(used) == [0.2, 0.2]


def test_in_memory_a_new_schedule_object_continues_as_after_a_round_trip(tmp_path):
    # the model remembers its schedule whether saved or not: load is transparent
    whole = model()
    whole.fit(X, Y, epochs=4, batch_size=5, lr=0.2, lr_schedule=ExponentialLR(0.5))
    parts = model()
    parts.fit(X, Y, epochs=2, batch_size=5, lr=0.2, lr_schedule=ExponentialLR(0.5))
    h = parts.fit(X, Y, epochs=2, batch_size=5, lr=0.2, lr_schedule=ExponentialLR(0.5))
    assert h.history["lr"] == [0.05, 0.025]
    assert np.array_equal(parts.params, whole.params)
    # a fit without a schedule keeps the remembered state (as the object would)
    parts.fit(X, Y, epochs=1, batch_size=5, lr=0.01)
    assert parts._schedule_state["last_epoch"] == 4 and parts.epochs_done == 5


def test_state_dict_round_trips_through_json_and_checks_the_kind():
    plateau = ReduceLROnPlateau(patience=1, factor=0.5, cooldown=1)
    plateau.start(0.3)
    for value in (1.0, 1.0, 1.0, 0.5, 0.6):
        plateau.step({"val_loss": value})
    state = json.loads(json.dumps(plateau.state_dict()))
    assert state["class"] == "fastbp.schedules.ReduceLROnPlateau"
    assert set(state) >= {
        "config",
        "base_lr",
        "last_epoch",
        "lr",
        "best",
        "num_bad_epochs",
        "cooldown_counter",
    }
    copy = ReduceLROnPlateau(patience=1, factor=0.5, cooldown=1)
    copy.load_state_dict(state)
    for value in (0.7, 0.8, 0.9, 0.4, 0.45, 0.5):
        assert copy.step({"val_loss": value}) == plateau.step({"val_loss": value})
        assert (copy.best, copy.num_bad_epochs, copy.cooldown_counter) == (
            plateau.best,
            plateau.num_bad_epochs,
            plateau.cooldown_counter,
        )
    fresh = ReduceLROnPlateau()  # best is inf before any step: json keeps it
    fresh.start(0.1)
    assert json.loads(json.dumps(fresh.state_dict()))["best"] == float("inf")
    with pytest.raises(ValueError, match="class and config must be equal"):
        ReduceLROnPlateau(patience=2).load_state_dict(state)
    with pytest.raises(ValueError, match="class and config must be equal"):
        StepLR(1).load_state_dict(state)
    cosine = CosineWithWarmup(10, warmup_epochs=3)
    cosine.start(0.5)
    for _ in range(4):
        cosine.step()
    other = CosineWithWarmup(10, warmup_epochs=3)
    other.load_state_dict(json.loads(json.dumps(cosine.state_dict())))
    assert (other.last_epoch, other.lr, other.base_lr) == (4, cosine.lr, 0.5)
    assert [other.step() for _ in range(8)] == [cosine.step() for _ in range(8)]


def test_a_custom_schedule_config_is_its_public_scalars():
    class Halving(LRSchedule):
        def __init__(self, every, note="x"):
            self.every, self.note, self.table = every, note, [1, 2]
            super().__init__()

        def _next_lr(self, logs):
            return self.lr / 2 if self.last_epoch % self.every == 0 else self.lr

    a = Halving(np.int64(2))
    assert a.config() == {"every": 2, "note": "x"}
    assert type(a.config()["every"]) is int
    m = remembered_after(a, epochs=3)
    assert m._schedule_state["config"] == {"every": 2, "note": "x"}
    h = m.fit(X, Y, epochs=2, batch_size=5, lr=0.2, lr_schedule=Halving(2))
    assert h.history["lr"] == [0.1, 0.05]
    h = m.fit(X, Y, epochs=1, batch_size=5, lr=0.2, lr_schedule=Halving(3))
    assert h.history["lr"] == [0.2]


# -- epochs_done and ModelCheckpoint naming --------------------------------------------


def test_epochs_done_counts_every_trained_epoch_across_fits():
    m = model()
    assert m.epochs_done == 0
    m.fit(X, Y, epochs=2, batch_size=5)
    m.fit(X, Y, epochs=3, batch_size=5, optimizer="adam", lr=0.01)

    class StopAt2(Callback):
        def on_epoch_end(self, model, epoch, logs):
            model.stop_training = epoch == 2

    m.fit(X, Y, epochs=10, batch_size=5, callbacks=[StopAt2()])
    assert m.epochs_done == 7
    # a diverged epoch is undone and not counted
    big = fastbp.Model([4, 8, 2], hidden="linear", seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        history = big.fit(
            X * 1e3, X[:, :2] * 1e3, epochs=5, lr=1e3, callbacks=[TerminateOnNaN()]
        )
    assert history.diverged_epoch is not None
    assert big.epochs_done == len(history.epochs) == history.diverged_epoch - 1


def test_checkpoint_names_count_epochs_across_a_resume(tmp_path):
    first = model()
    first.fit(
        X,
        Y,
        epochs=2,
        batch_size=5,
        callbacks=[ModelCheckpoint(tmp_path / "e{epochs_done}-f{epoch}.npz")],
    )
    resumed = fastbp.Model.load(tmp_path / "e2-f2.npz")
    ckpt = ModelCheckpoint(tmp_path / "e{epochs_done}-f{epoch}.npz")
    resumed.fit(X, Y, epochs=2, batch_size=5, callbacks=[ckpt])
    assert sorted(os.listdir(tmp_path)) == [
        "e1-f1.npz",
        "e2-f2.npz",
        "e3-f1.npz",
        "e4-f2.npz",
    ]
    assert fastbp.Model.load(tmp_path / "e4-f2.npz").epochs_done == 4


def test_save_best_only_checkpoints_resume_exactly(tmp_path):
    fit = dict(batch_size=5, lr=0.3, momentum=0.9, validation_data=(X, Y))
    ckpt = ModelCheckpoint(tmp_path / "best.npz", save_best_only=True)
    whole = model()
    whole.fit(X, Y, epochs=EPOCHS, lr_schedule=StepLR(2, 0.5), callbacks=[ckpt], **fit)
    best = fastbp.Model.load(tmp_path / "best.npz")
    k = best.epochs_done
    assert 1 <= k <= EPOCHS and len(ckpt.saved) >= 1
    replay = model()
    replay.fit(X, Y, epochs=k, lr_schedule=StepLR(2, 0.5), **fit)
    assert np.array_equal(best.params, replay.params)
    assert best._schedule_state == replay._schedule_state


# -- file format: versions, old files, corruption --------------------------------------


def test_a_file_from_another_fastbp_version_loads_with_a_warning(tmp_path, monkeypatch):
    m = remembered_after(StepLR(2, 0.5))
    path = tmp_path / "m.npz"
    with monkeypatch.context() as patch:
        patch.setattr(fastbp._persist, "__version__", "0.0.7")
        m.save(path)
    with pytest.warns(
        UserWarning,
        match=r"fastbp 0\.0\.7.*this is fastbp "
        + fastbp.__version__.replace(".", r"\."),
    ):
        loaded = fastbp.Model.load(path)
    assert np.array_equal(loaded.params, m.params) and loaded.epochs_done == 3
    m.save(path)  # this version: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastbp.Model.load(path)


def _rewrite_meta(src, dst, change):
    with np.load(src) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(str(arrays["meta"]))
    change(meta)
    arrays["meta"] = np.array(json.dumps(meta))
    with open(dst, "wb") as fh:
        np.savez(fh, **arrays)


def test_files_without_the_new_keys_still_load(tmp_path):
    m = remembered_after(StepLR(2, 0.5))
    m.save(tmp_path / "new.npz")

    def drop(meta):
        del meta["epochs_done"], meta["lr_schedule"], meta["metadata"]

    _rewrite_meta(tmp_path / "new.npz", tmp_path / "old.npz", drop)
    old = fastbp.Model.load(tmp_path / "old.npz")
    assert old.epochs_done == 0 and old._schedule_state is None and old.metadata == {}
    assert np.array_equal(old.params, m.params)
    # the schedule then starts afresh, the optimizer and shuffling go on
    h = old.fit(X, Y, epochs=1, batch_size=5, lr=0.2, lr_schedule=StepLR(2, 0.5))
    assert h.history["lr"] == [0.2]


@pytest.mark.parametrize(
    "change",
    [
        lambda meta: meta.update(rng_state={"bit_generator": "nope"}),
        lambda meta: meta.update(epochs_done=-1),
        lambda meta: meta.update(metadata=[1, 2]),
        lambda meta: meta.update(epochs_done="many"),
        lambda meta: meta.update(lr_schedule=[1, 2]),
        lambda meta: meta.pop("rng_state"),
        lambda meta: meta.update(step="x"),
    ],
    ids=["rng", "negative-epochs", "metadata", "text-epochs", "schedule", "no-rng", "step"],
)
def test_a_corrupt_training_state_raises_value_error(tmp_path, change):
    remembered_after(StepLR(2)).save(tmp_path / "good.npz")
    _rewrite_meta(tmp_path / "good.npz", tmp_path / "bad.npz", change)
    with pytest.raises(ValueError, match="invalid training state"):
        fastbp.Model.load(tmp_path / "bad.npz")


def test_truncated_checkpoints_raise_value_error(tmp_path):
    remembered_after(StepLR(2)).save(tmp_path / "good.npz")
    raw = (tmp_path / "good.npz").read_bytes()
    for cut in (10, len(raw) // 3, len(raw) - 20):
        (tmp_path / "cut.npz").write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="not a fastbp model file"):
            fastbp.Model.load(tmp_path / "cut.npz")


# -- killed mid-run, resumed from the last checkpoint ----------------------------------

# Shared by the child process and the parent: the same data, model and fit.
SETUP = textwrap.dedent(
    """
    import numpy as np
    import fastbp
    from fastbp.schedules import ReduceLROnPlateau

    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 5))
    Y = (X[:, 0] * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)
    EPOCHS = 20  # 4.5 s of sleeps after epoch 2: the kill comes long before
    FIT = dict(batch_size=4, lr=0.1, momentum=0.9, nesterov=True,
               validation_split=0.2)

    def make_model():
        return fastbp.Model([5, 16, 3], hidden="relu", output="softmax",
                            loss="cross_entropy", dtype="float64", seed=11)

    def make_schedule():
        return ReduceLROnPlateau(patience=0, factor=0.7, threshold=0.02)
    """
)

CHILD = SETUP + textwrap.dedent(
    """
    import sys, time
    from fastbp.callbacks import Callback, ModelCheckpoint

    class Slow(Callback):  # long epochs, so that the parent kills one mid-run
        def on_epoch_end(self, model, epoch, logs):
            time.sleep(0.25)

    model = make_model()
    model.fit(X, Y, epochs=EPOCHS, lr_schedule=make_schedule(),
              callbacks=[ModelCheckpoint(sys.argv[1]), Slow()], **FIT)
    print("finished all epochs", flush=True)
    """
)


@pytest.mark.slow
def test_killed_training_resumes_bit_identically_from_its_checkpoint(tmp_path):
    ns = {}
    exec(SETUP, ns)
    path = tmp_path / "ckpt.npz"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        done = 0
        deadline = time.monotonic() + 120  # the child's imports, a cold JIT cache
        while done < 2 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.02)
            if path.exists():
                done = fastbp.Model.load(path).epochs_done
        assert done >= 2, child.communicate(timeout=30)
        child.kill()  # SIGKILL on POSIX: no cleanup, no last save
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if os.name == "posix":
        assert child.returncode == -signal.SIGKILL, (out, err)
    assert "finished" not in out
    # a kill during a save leaves at most its temporary file, never a half checkpoint
    assert all(
        p.name == "ckpt.npz" or p.name.startswith(".fastbp-")
        for p in tmp_path.iterdir()
    )

    resumed = fastbp.Model.load(path)
    k = resumed.epochs_done
    assert 2 <= k < ns["EPOCHS"]
    h_rest = resumed.fit(
        ns["X"],
        ns["Y"],
        epochs=ns["EPOCHS"] - k,
        lr_schedule=ns["make_schedule"](),
        **ns["FIT"],
    )
    whole = ns["make_model"]()
    h_whole = whole.fit(
        ns["X"],
        ns["Y"],
        epochs=ns["EPOCHS"],
        lr_schedule=ns["make_schedule"](),
        **ns["FIT"],
    )
    assert len(set(h_whole.history["lr"])) > 1  # the plateau rule cut the rate
    assert h_rest.history["lr"] == h_whole.history["lr"][k:]
    assert h_rest.history["val_loss"] == h_whole.history["val_loss"][k:]
    assert np.array_equal(resumed.params, whole.params)
    assert np.array_equal(resumed._optimizer.buf1, whole._optimizer.buf1)
