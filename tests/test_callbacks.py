"""fit's callbacks, validation_split and n_threads: fastbp.callbacks and fit's hooks."""

import csv
import io
import json
import os
import re

import numba
import numpy as np
import pytest

import fastbp
from fastbp import _training
from fastbp._training import validation_split
from fastbp.callbacks import (
    Callback,
    EarlyStopping,
    HistoryLogger,
    ModelCheckpoint,
    ProgressBar,
    TerminateOnNaN,
)
from fastbp.schedules import StepLR

RNG = np.random.default_rng(0)
X = RNG.normal(size=(24, 3))
Y = X[:, :1] + 0.3 * RNG.normal(size=(24, 1))
XV = RNG.normal(size=(24, 3))
YV = XV[:, :1] + 0.3 * RNG.normal(size=(24, 1))
# val_loss of this recipe is noisy (it goes up and down), so EarlyStopping stops
# part-way and its best epoch is neither the first nor the last.
FIT = dict(batch_size=4, lr=0.05, momentum=0.5)

XC = RNG.normal(size=(40, 4))
YC = np.repeat([0, 1, 2], [20, 12, 8])  # classes in proportion 5:3:2


def regressor():
    return fastbp.Model([3, 16, 1], hidden="tanh", dtype="float64", seed=0)


def classifier():
    return fastbp.Model(
        [4, 6, 3],
        hidden="tanh",
        output="softmax",
        loss="cross_entropy",
        dtype="float64",
        seed=3,
    )


def trained(epochs, **kwargs):
    """A regressor after ``epochs`` plain epochs of FIT."""
    model = regressor()
    model.fit(X, Y, epochs=epochs, **FIT, **kwargs)
    return model


class Recorder(Callback):
    """Records every hook call; stops after ``stop_at`` epochs."""

    def __init__(self, stop_at=None):
        self.calls, self.stop_at = [], stop_at

    def on_fit_begin(self, model, logs):
        self.calls.append(("begin", dict(logs)))

    def on_epoch_end(self, model, epoch, logs):
        self.calls.append(("epoch", epoch, dict(logs), numba.get_num_threads()))
        if epoch == self.stop_at:
            model.stop_training = True

    def on_fit_end(self, model, logs):
        self.calls.append(("end", dict(logs)))

    def on_exception(self, model, exc):
        self.calls.append(("exception", exc))


# -- the hooks -------------------------------------------------------------------------


def test_callback_stopping_at_epoch_3_gives_3_epochs_and_hooks_in_order():
    model, rec = regressor(), Recorder(stop_at=3)
    history = model.fit(
        X, Y, epochs=10, **FIT, validation_data=(XV, YV), callbacks=[rec]
    )
    assert history.epochs == [1, 2, 3]
    assert all(len(values) == 3 for values in history.history.values())
    assert [c[0] for c in rec.calls] == ["begin", "epoch", "epoch", "epoch", "end"]
    begin = rec.calls[0][1]
    assert (
        begin["epochs"] == 10
        and begin["n_samples"] == 24
        and begin["n_validation"] == 24
    )
    assert begin["metrics"] == ["loss", "samples_per_second", "lr", "val_loss"]
    for epoch in (1, 2, 3):
        logs = rec.calls[epoch][2]
        assert set(logs) == set(begin["metrics"]) and logs["lr"] == FIT["lr"]
        assert logs["loss"] == history.history["loss"][epoch - 1]
        assert logs["val_loss"] == history.history["val_loss"][epoch - 1]
    assert rec.calls[-1][1] == rec.calls[3][2]  # fit end gets the last epoch's logs
    np.testing.assert_array_equal(model.params, trained(3).params)
    # stop_training is reset when fit starts: the next fit runs all its epochs
    assert model.stop_training
    assert len(model.fit(X, Y, epochs=2, **FIT, callbacks=Callback()).epochs) == 2
    assert not model.stop_training


def test_callbacks_leave_training_unchanged():
    plain = trained(4)
    model = regressor()
    model.fit(
        X, Y, epochs=4, **FIT, callbacks=[Recorder(), Callback(), TerminateOnNaN()]
    )
    np.testing.assert_array_equal(model.params, plain.params)


def test_an_error_in_a_callback_reaches_on_exception_and_closes_the_bar():
    class Boom(Callback):
        def on_epoch_end(self, model, epoch, logs):
            if epoch == 2:
                raise RuntimeError("boom")

    rec, bar = Recorder(), ProgressBar()
    with pytest.raises(RuntimeError, match="boom"):
        regressor().fit(X, Y, epochs=5, **FIT, callbacks=[rec, Boom(), bar])
    assert [c[0] for c in rec.calls] == ["begin", "epoch", "epoch", "exception"]
    assert str(rec.calls[-1][1]) == "boom"
    assert bar.bar is None  # closed


# -- EarlyStopping ---------------------------------------------------------------------


def test_early_stopping_restores_the_params_of_the_best_epoch_when_it_stops():
    model, stop = regressor(), EarlyStopping(patience=2)
    history = model.fit(
        X, Y, epochs=30, **FIT, validation_data=(XV, YV), callbacks=[stop]
    )
    val = history.history["val_loss"]
    n = len(history.epochs)
    assert stop.stopped_epoch == n < 30
    assert 1 <= stop.best_epoch == int(np.argmin(val)) + 1 == n - 2
    assert stop.best == min(val)
    expected = trained(stop.best_epoch)
    np.testing.assert_array_equal(model.params, expected.params)
    assert not np.array_equal(model.params, trained(n).params)
    # in place: the weight views still show the restored parameters
    np.testing.assert_array_equal(model.weights[0], expected.weights[0])


def test_early_stopping_restores_the_best_params_when_training_ends_without_stopping():
    model, stop = regressor(), EarlyStopping(patience=100)
    history = model.fit(
        X, Y, epochs=8, **FIT, validation_data=(XV, YV), callbacks=[stop]
    )
    assert len(history.epochs) == 8 and stop.stopped_epoch is None
    best = int(np.argmin(history.history["val_loss"])) + 1
    assert stop.best_epoch == best < 8
    np.testing.assert_array_equal(model.params, trained(best).params)
    # restore_best_weights=False keeps the last epoch's parameters
    model = regressor()
    model.fit(
        X,
        Y,
        epochs=8,
        **FIT,
        validation_data=(XV, YV),
        callbacks=[EarlyStopping(patience=100, restore_best_weights=False)],
    )
    np.testing.assert_array_equal(model.params, trained(8).params)


def test_early_stopping_min_delta_and_mode_for_accuracy():
    # No improvement can exceed a min_delta of 1e9: stops after patience + 1 epochs.
    history = regressor().fit(
        X,
        Y,
        epochs=10,
        **FIT,
        validation_data=(XV, YV),
        callbacks=[EarlyStopping(patience=3, min_delta=1e9)],
    )
    assert len(history.epochs) == 4
    assert EarlyStopping(monitor="val_accuracy").mode == "max"
    assert EarlyStopping(monitor="loss").mode == "min"
    model, stop = classifier(), EarlyStopping(monitor="val_accuracy", patience=1)
    history = model.fit(
        XC, YC, epochs=20, batch_size=4, lr=0.5, validation_split=0.25, callbacks=[stop]
    )
    acc = history.history["val_accuracy"]
    assert stop.best == max(acc[: stop.best_epoch]) == acc[stop.best_epoch - 1]


# -- TerminateOnNaN --------------------------------------------------------------------

XD = RNG.normal(size=(16, 3)) * 10
YD = RNG.normal(size=(16, 2)) * 10


def diverging():
    return fastbp.Model([3, 4, 2], hidden="linear", dtype="float64", seed=0)


def test_terminate_on_nan_stops_gracefully_where_fit_would_raise():
    with pytest.raises(fastbp.TrainingDivergedError, match=r"in epoch (\d+)") as info:
        diverging().fit(XD, YD, epochs=30, batch_size=4, lr=0.007)
    epoch = int(re.search(r"in epoch (\d+)", str(info.value)).group(1))
    model, rec = diverging(), Recorder()
    with pytest.warns(
        RuntimeWarning, match=f"TerminateOnNaN: the loss became .* epoch {epoch}"
    ):
        history = model.fit(
            XD, YD, epochs=30, batch_size=4, lr=0.007, callbacks=[TerminateOnNaN(), rec]
        )
    assert history.diverged_epoch == epoch
    assert history.epochs == list(range(1, epoch))
    assert [c[0] for c in rec.calls] == ["begin"] + ["epoch"] * (epoch - 1) + ["end"]
    replay = diverging()
    if epoch > 1:
        replay.fit(XD, YD, epochs=epoch - 1, batch_size=4, lr=0.007)
    np.testing.assert_array_equal(model.params, replay.params)
    assert model._rng.bit_generator.state == replay._rng.bit_generator.state


def test_terminate_on_nan_stops_on_a_non_finite_validation_loss():
    class NaNVal(Callback):  # stands in for an epoch whose val_loss overflowed
        def on_epoch_end(self, model, epoch, logs):
            if epoch == 2:
                logs["val_loss"] = float("nan")

    with pytest.warns(RuntimeWarning, match="val_loss became nan in epoch 2"):
        history = regressor().fit(
            X,
            Y,
            epochs=5,
            **FIT,
            validation_data=(XV, YV),
            callbacks=[NaNVal(), TerminateOnNaN()],
        )
    assert history.epochs == [1, 2] and history.diverged_epoch is None


# -- ModelCheckpoint -------------------------------------------------------------------


def test_model_checkpoint_files_load_and_equal_the_model_at_that_epoch(tmp_path):
    ckpt = ModelCheckpoint(tmp_path / "m-{epoch:02d}.npz", every=2)
    regressor().fit(X, Y, epochs=5, **FIT, callbacks=[ckpt])
    assert sorted(os.listdir(tmp_path)) == ["m-02.npz", "m-04.npz"]
    assert ckpt.saved == [str(tmp_path / "m-02.npz"), str(tmp_path / "m-04.npz")]
    for epoch in (2, 4):
        loaded = fastbp.Model.load(tmp_path / f"m-{epoch:02d}.npz")
        expected = trained(epoch)
        np.testing.assert_array_equal(loaded.params, expected.params)
        np.testing.assert_array_equal(loaded._optimizer.buf1, expected._optimizer.buf1)
        # the checkpoint resumes exactly: one more epoch equals epoch + 1 epochs
        loaded.fit(X, Y, epochs=1, **FIT)
        np.testing.assert_array_equal(loaded.params, trained(epoch + 1).params)


def test_model_checkpoint_save_best_only(tmp_path):
    path = tmp_path / "best.npz"
    ckpt = ModelCheckpoint(path, save_best_only=True, monitor="val_loss")
    history = regressor().fit(
        X, Y, epochs=10, **FIT, validation_data=(XV, YV), callbacks=[ckpt]
    )
    val = history.history["val_loss"]
    improved = [
        e for e in range(1, 11) if val[e - 1] < min(val[: e - 1], default=np.inf)
    ]
    assert len(ckpt.saved) == len(improved) < 10
    best = int(np.argmin(val)) + 1
    np.testing.assert_array_equal(fastbp.Model.load(path).params, trained(best).params)
    assert os.listdir(tmp_path) == ["best.npz"]
    # a field of the path names a logged value
    ckpt = ModelCheckpoint(tmp_path / "e{epoch}-{loss:.3f}.npz", every=3)
    regressor().fit(X, Y, epochs=3, **FIT, callbacks=[ckpt])
    assert re.fullmatch(r"e3-\d\.\d{3}\.npz", os.path.basename(ckpt.saved[0]))


# -- HistoryLogger and ProgressBar -----------------------------------------------------


@pytest.mark.parametrize("suffix", ["csv", "json"])
def test_history_logger_writes_every_epoch(tmp_path, suffix):
    path = tmp_path / f"log.{suffix}"

    class Check(Callback):  # the file is complete after every epoch
        def on_epoch_end(self, model, epoch, logs):
            assert len(read()["epoch"]) == epoch

    def read():
        if suffix == "json":
            return json.loads(path.read_text())
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        return {k: [float(r[k]) for r in rows] for k in rows[0]}

    history = regressor().fit(
        X,
        Y,
        epochs=3,
        **FIT,
        validation_data=(XV, YV),
        lr_schedule=StepLR(1, 0.5),
        callbacks=[HistoryLogger(path), Check()],
    )
    table = read()
    assert table["epoch"] == [1, 2, 3]
    for key, values in history.history.items():
        assert table[key] == values  # exact: repr of floats round-trips
    assert table["lr"] == [0.05, 0.025, 0.0125]
    assert os.listdir(tmp_path) == [f"log.{suffix}"]  # no temporary files left


def test_progress_bar_quiet_off_a_terminal_unless_forced(capsys):
    model = regressor()
    model.fit(X, Y, epochs=3, **FIT, callbacks=[ProgressBar()])
    assert capsys.readouterr().err == ""
    model.fit(
        X,
        Y,
        epochs=3,
        **FIT,
        validation_data=(XV, YV),
        callbacks=[ProgressBar(force=True)],
    )
    err = capsys.readouterr().err
    assert "epoch 3/3" in err and "val_loss=" in err and "samples/s=" in err
    assert "\r" not in err  # off a terminal: lines, no redraws
    model.fit(X, Y, epochs=2, **FIT, progress=True)  # as before: progress=True shows it
    assert "epoch 2/2" in capsys.readouterr().err
    model.fit(X, Y, epochs=2, **FIT, progress=True, callbacks=[ProgressBar()])
    assert capsys.readouterr().err == ""  # the user's bar replaces progress=True's


class BatchRecorder:
    """A plain object (no Callback base) with the batch hook only."""

    def __init__(self):
        self.calls = []

    def on_batches_end(self, model, epoch, logs):
        self.calls.append((epoch, dict(logs)))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("batch_size", [1, 3, 5], ids=["online", "bs3", "bs5-partial"])
def test_batch_progress_changes_no_bits(batch_size, optimizer, monkeypatch):
    """An epoch cut into several kernel calls (CHUNK_SECONDS; reported to
    on_batches_end after each): the same batches and Adam step numbers, and the loss
    sum carried from call to call, so the same parameters and losses bit for bit."""
    rng = np.random.default_rng(5)
    Xb, Yb = rng.normal(size=(2000, 3)), rng.normal(size=(2000, 1))
    kwargs = dict(epochs=2, batch_size=batch_size, lr=0.01, optimizer=optimizer)
    if optimizer == "sgd":
        kwargs["momentum"] = 0.9
    plain, chunked = regressor(), regressor()
    monkeypatch.setattr(_training, "CHUNK_SECONDS", 1e9)  # one call per epoch
    h1 = plain.fit(Xb, Yb, **kwargs)
    rec = BatchRecorder()
    monkeypatch.setattr(_training, "CHUNK_SECONDS", 2e-5)  # a few batches per call
    h2 = chunked.fit(Xb, Yb, callbacks=[rec], **kwargs)
    np.testing.assert_array_equal(plain.params, chunked.params)
    np.testing.assert_array_equal(plain._optimizer.buf1, chunked._optimizer.buf1)
    assert plain._optimizer.step == chunked._optimizer.step
    assert h1.history["loss"] == h2.history["loss"]
    n_batches = -(-2000 // batch_size)
    for epoch in (1, 2):
        logs = [lg for e, lg in rec.calls if e == epoch]
        assert len(logs) >= 2  # really in several calls
        batches = [lg["batches"] for lg in logs]
        assert batches == sorted(set(batches)) and batches[-1] == n_batches
        assert logs[-1]["samples"] == 2000 and logs[0]["n_batches"] == n_batches
        assert all(lg["samples"] == min(lg["batches"] * batch_size, 2000) for lg in logs)


def test_batch_progress_only_when_wanted(monkeypatch):
    """No batch reports for Callback's no-op, wants_batch_progress=False, or a quiet
    bar; and a short epoch stays one kernel call whatever the callbacks."""
    calls = []
    run = _training._Loop.run

    def counting(self, *args):
        calls.append(args[1].shape[0])
        return run(self, *args)

    monkeypatch.setattr(_training._Loop, "run", counting)
    rec = BatchRecorder()
    rec.wants_batch_progress = False
    regressor().fit(X, Y, **FIT, callbacks=[Recorder(), rec, ProgressBar()])
    assert rec.calls == []
    assert [n for n in calls if n] == [X.shape[0]]  # besides a warm-up's empty call


def test_progress_bar_moves_within_an_epoch():

    class EagerBar(ProgressBar):  # redraw at every update, not every 0.1 s
        def on_fit_begin(self, model, logs):
            super().on_fit_begin(model, logs)
            self.bar.mininterval = 0

    out = Terminal()
    rng = np.random.default_rng(5)
    regressor().fit(rng.normal(size=(3000, 3)), rng.normal(size=(3000, 1)), epochs=2,
                    batch_size=2, lr=0.01, callbacks=[EagerBar(file=out)])
    text = out.getvalue()
    assert re.search(r"epoch 1/2, batch \d+/1500", text)
    assert "epoch 2/2" in text and "loss=" in text
    # whole epochs in the text, never the bar's fraction ("5.333333333333333/30")
    assert not re.search(r"\d\.\d+/\d", text.replace("samples/s", ""))


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self):
        return True


def test_progress_off_a_terminal_is_one_plain_line_per_epoch_as_it_ends():
    out = io.StringIO()
    seen = []

    class Watch:  # after the bar's on_epoch_end: its line is already written
        def on_epoch_end(self, model, epoch, logs):
            seen.append(out.getvalue().count("\n"))

    regressor().fit(X, Y, epochs=3, **FIT, validation_data=(XV, YV),
                    callbacks=[ProgressBar(file=out, force=True), Watch()])
    text = out.getvalue()
    assert "\r" not in text and seen == [1, 2, 3]
    lines = text.splitlines()
    assert [line.split("  ")[0] for line in lines] == [f"fit: epoch {k}/3" for k in (1, 2, 3)]
    assert all("val_loss=" in line and "samples/s=" in line for line in lines)


# -- validation_split ------------------------------------------------------------------


def test_validation_split_is_stratified_for_softmax_classifiers():
    model = classifier()
    train, held = validation_split(model, np.eye(3)[YC], 0.25)
    assert np.bincount(YC[held]).tolist() == [5, 3, 2]  # a quarter of each class
    assert sorted(np.concatenate([train, held]).tolist()) == list(range(40))
    # deterministic: the same on every call and for every model with this seed
    again = validation_split(classifier(), np.eye(3)[YC], 0.25)
    np.testing.assert_array_equal(again[1], held)
    model.fit(XC, YC, epochs=1, batch_size=4)
    np.testing.assert_array_equal(validation_split(model, np.eye(3)[YC], 0.25)[1], held)
    other = fastbp.Model([4, 6, 3], output="softmax", loss="cross_entropy", seed=4)
    assert not np.array_equal(validation_split(other, np.eye(3)[YC], 0.25)[1], held)


def test_validation_split_stratifies_binary_and_shuffles_regression():
    binary = fastbp.Model([4, 1], output="sigmoid", loss="cross_entropy", seed=0)
    yb = (np.arange(40) < 10).astype(float)
    _, held = validation_split(binary, yb[:, None], 0.2)
    assert sorted(yb[held].tolist()) == [0.0] * 6 + [1.0] * 2
    _, held = validation_split(regressor(), Y, 0.25)
    assert len(held) == 6 and not np.array_equal(held, np.arange(18, 24))


def test_fit_with_validation_split_trains_on_the_rest_and_validates_on_the_split():
    model = classifier()
    train, held = validation_split(model, np.eye(3)[YC], 0.25)
    history = model.fit(XC, YC, epochs=3, batch_size=4, validation_split=0.25)
    expected = classifier()
    expected.fit(XC[train], YC[train], epochs=3, batch_size=4)
    np.testing.assert_array_equal(model.params, expected.params)
    result = model.evaluate(XC[held], YC[held])
    assert history.history["val_loss"][-1] == result["loss"]
    assert history.history["val_accuracy"][-1] == result["accuracy"]
    # same seed, same bits; and fit(epochs=1) twice equals fit(epochs=2) once
    once, twice = classifier(), classifier()
    h_once = once.fit(XC, YC, epochs=2, batch_size=4, validation_split=0.25)
    h_twice = [
        twice.fit(XC, YC, epochs=1, batch_size=4, validation_split=0.25)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(once.params, twice.params)
    assert h_once.history["val_loss"] == [h.history["val_loss"][0] for h in h_twice]


# -- n_threads -------------------------------------------------------------------------


def test_n_threads_is_set_for_the_call_and_restored_after_it_and_after_an_error():
    before = numba.get_num_threads()
    cap = numba.config.NUMBA_NUM_THREADS
    rec = Recorder()
    one = regressor()
    one.fit(X, Y, epochs=2, **FIT, n_threads=1, callbacks=[rec])
    assert [c[3] for c in rec.calls if c[0] == "epoch"] == [1, 1]
    assert rec.calls[0][1]["n_threads"] == 1
    assert numba.get_num_threads() == before
    rec = Recorder()
    many = regressor()
    many.fit(X, Y, epochs=2, **FIT, n_threads=10_000, callbacks=[rec])
    assert rec.calls[0][1]["n_threads"] == cap  # capped
    np.testing.assert_array_equal(one.params, many.params)
    assert numba.get_num_threads() == before

    class Boom(Callback):
        def on_epoch_end(self, model, epoch, logs):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        regressor().fit(X, Y, epochs=2, **FIT, n_threads=1, callbacks=[Boom()])
    assert numba.get_num_threads() == before
    with pytest.raises(fastbp.TrainingDivergedError):
        diverging().fit(XD, YD, epochs=30, batch_size=4, lr=0.05, n_threads=1)
    assert numba.get_num_threads() == before


# -- bad arguments ---------------------------------------------------------------------

BAD = [
    (
        dict(callbacks=[EarlyStopping]),
        TypeError,
        r"callbacks\[0\] is the class EarlyStopping",
    ),
    (dict(callbacks=["stop"]), TypeError, r"callbacks\[0\] must be a callback"),
    (dict(callbacks=42), TypeError, "callbacks must be a callback"),
    (dict(lr_schedule="cosine"), TypeError, "lr_schedule must be"),
    (dict(validation_split=0), ValueError, "validation_split must be a number in"),
    (dict(validation_split=1.0), ValueError, "validation_split"),
    (dict(validation_split=float("nan")), ValueError, "validation_split"),
    (dict(validation_split="0.2"), TypeError, "validation_split"),
    (dict(validation_split=True), TypeError, "validation_split"),
    (
        dict(validation_split=0.2, validation_data=(XV, YV)),
        ValueError,
        "mutually exclusive",
    ),
    (dict(n_threads=0), ValueError, "n_threads must be a positive integer"),
    (dict(n_threads=-2), ValueError, "n_threads"),
    (dict(n_threads=2.0), TypeError, "n_threads"),
    (dict(n_threads="2"), TypeError, "n_threads"),
    (
        dict(callbacks=[EarlyStopping()]),
        ValueError,
        "EarlyStopping monitor='val_loss' is not",
    ),
    (
        dict(callbacks=[ModelCheckpoint("/no/such/folder/m.npz")]),
        ValueError,
        "does not exist",
    ),
    (
        dict(callbacks=[ModelCheckpoint("m-{nope}.npz")]),
        ValueError,
        "ModelCheckpoint path",
    ),
    (
        dict(callbacks=[HistoryLogger("/no/such/folder/h.csv")]),
        ValueError,
        "does not exist",
    ),
]


@pytest.mark.parametrize(
    "kwargs,error,message", BAD, ids=[f"{i}-{c[2][:20]}" for i, c in enumerate(BAD)]
)
def test_bad_arguments_raise_naming_them_and_change_nothing(kwargs, error, message):
    model = regressor()
    model.fit(X, Y, epochs=1, **FIT)  # some optimizer state
    before = (
        model.params.copy(),
        model._optimizer.buf1.copy(),
        model._rng.bit_generator.state,
        numba.get_num_threads(),
    )
    Xc, Yc = X.copy(), Y.copy()
    with pytest.raises(error, match=message):
        model.fit(Xc, Yc, epochs=2, **FIT, **kwargs)
    assert np.array_equal(model.params, before[0])
    assert np.array_equal(model._optimizer.buf1, before[1])
    assert model._rng.bit_generator.state == before[2]
    assert numba.get_num_threads() == before[3]
    np.testing.assert_array_equal(Xc, X)
    np.testing.assert_array_equal(Yc, Y)


def test_a_refused_callback_closes_the_bars_begun_before_it(capsys):
    bar = ProgressBar(force=True)
    with pytest.raises(ValueError, match="EarlyStopping monitor"):
        regressor().fit(X, Y, callbacks=[bar, EarlyStopping()])
    assert bar.bar is None


def test_validation_split_needs_two_samples():
    with pytest.raises(
        ValueError, match="validation_split=0.5 cannot split these 1 samples"
    ):
        regressor().fit(X[:1], Y[:1], validation_split=0.5)


@pytest.mark.parametrize(
    "make,error,message",
    [
        (lambda: EarlyStopping(patience=-1), ValueError, "patience"),
        (lambda: EarlyStopping(patience=1.5), TypeError, "patience"),
        (lambda: EarlyStopping(min_delta=-0.1), ValueError, "min_delta"),
        (lambda: EarlyStopping(mode="up"), ValueError, "mode"),
        (lambda: EarlyStopping(monitor=3), TypeError, "monitor"),
        (
            lambda: EarlyStopping(restore_best_weights=1),
            TypeError,
            "restore_best_weights",
        ),
        (lambda: ModelCheckpoint(3), TypeError, "path"),
        (lambda: ModelCheckpoint("m.npz", every=0), ValueError, "every"),
        (
            lambda: ModelCheckpoint("m.npz", save_best_only="yes"),
            TypeError,
            "save_best_only",
        ),
        (
            lambda: HistoryLogger("log.txt"),
            ValueError,
            r"path must end in \.csv or \.json",
        ),
        (lambda: ProgressBar(force="yes"), TypeError, "force"),
    ],
    ids=[
        "patience",
        "patience-float",
        "min_delta",
        "mode",
        "monitor",
        "restore",
        "path",
        "every",
        "save_best_only",
        "suffix",
        "force",
    ],
)
def test_bad_callback_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()
