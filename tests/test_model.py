"""The Model API boundary: bad input raises naming the argument and leaves the
model and the user's arrays untouched; unusual-but-good input works; seeds
reproduce; save/load round-trips; divergence is caught and undone."""

import os
import re

import numpy as np
import pytest

import fastbp
from fastbp import TrainingDivergedError

SIZES = [4, 6, 3]


def classifier(dtype="float64", seed=0, **kw):
    return fastbp.Model(SIZES, hidden="tanh", output="softmax", loss="cross_entropy",
                        dtype=dtype, seed=seed, **kw)


def data(n=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)), rng.integers(0, 3, size=n)


# -- constructor ---------------------------------------------------------------

BAD_MODELS = [
    (dict(sizes=[3]), ValueError, "sizes"),
    (dict(sizes=[]), ValueError, "sizes"),
    (dict(sizes=5), TypeError, "sizes"),
    (dict(sizes="34"), TypeError, "sizes"),
    (dict(sizes=[3, 0, 2]), ValueError, r"sizes\[1\]"),
    (dict(sizes=[3, -2]), ValueError, r"sizes\[1\]"),
    (dict(sizes=[3, 2.5]), TypeError, r"sizes\[1\]"),
    (dict(sizes=[3, True]), TypeError, r"sizes\[1\]"),
    (dict(hidden="swish"), ValueError, "hidden"),
    (dict(hidden=None), TypeError, "hidden"),
    (dict(output="relu"), ValueError, "output"),
    (dict(loss="hinge"), ValueError, "loss"),
    (dict(loss="cross_entropy", output="linear"), ValueError, "cross_entropy"),
    (dict(loss="cross_entropy", output="tanh"), ValueError, "cross_entropy"),
    (dict(loss="poisson", output="linear"), ValueError, "'poisson' and output='exp'"),
    (dict(loss="mse", output="exp"), ValueError, "'poisson' and output='exp'"),
    (dict(output="softmax", sizes=[3, 1]), ValueError, "softmax"),
    (dict(init="glorot"), ValueError, "init"),
    (dict(init=float("nan")), ValueError, "init"),
    (dict(init=[1, 2]), TypeError, "init"),
    (dict(dtype="float16"), ValueError, "dtype"),
    (dict(dtype="int32"), ValueError, "dtype"),
    (dict(dtype=3.5), TypeError, "dtype"),
    (dict(bias="yes"), TypeError, "bias"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed=1.5), TypeError, "seed"),
]


def test_poisson_targets_must_not_be_negative():
    model = fastbp.Model([3, 4, 2], output="exp", loss="poisson", seed=0)
    X = np.ones((5, 3))
    T = np.ones((5, 2))
    T[3, 1] = -0.5
    before = model.params.copy()
    with pytest.raises(ValueError, match=r"Y targets for loss='poisson' must be >= 0"):
        model.fit(X, T)
    assert np.array_equal(model.params, before)
    assert model.fit(X, np.abs(T), epochs=2, batch_size=2).history["loss"][-1] >= 0


@pytest.mark.parametrize("kwargs,error,name", BAD_MODELS,
                         ids=[f"{i}-{c[2]}" for i, c in enumerate(BAD_MODELS)])
def test_bad_constructor_arguments_raise_naming_them(kwargs, error, name):
    kwargs = {"sizes": [3, 4, 2], **kwargs}
    with pytest.raises(error, match=name):
        fastbp.Model(**kwargs)


def test_constructor_accepts_numpy_ints_and_dtypes():
    model = fastbp.Model(np.array([3, 4, 2]), dtype=np.float64, init=0.25)
    assert model.sizes == (3, 4, 2)
    assert model.dtype == np.float64
    assert np.all(model.weights[0] == 0.25)
    assert np.all(model.biases[1] == 0)


# -- fit / predict / loss / gradients / evaluate -------------------------------

X0, y0 = data()
BAD_FIT = [
    (dict(X=X0[:, :3]), ValueError, "X has 3 features"),
    (dict(X=X0[None]), ValueError, "X must be 2-D"),
    (dict(X=np.zeros((0, 4)), Y=np.zeros(0, int)), ValueError, "X is empty"),
    (dict(X=np.where(np.arange(80).reshape(20, 4) == 5, np.nan, X0)), ValueError, "X contains NaN"),
    (dict(X=np.where(np.arange(80).reshape(20, 4) == 5, np.inf, X0)), ValueError, "X contains NaN"),
    (dict(X=X0.astype(str)), TypeError, "X must hold real numbers"),
    (dict(X=X0.astype(object)), TypeError, "X must hold real numbers"),
    (dict(X="data"), TypeError, "X must be an array"),
    (dict(X=X0.astype(complex)), TypeError, "X must hold real numbers"),
    (dict(X=[[1, 2], [3]]), ValueError, "X could not be read"),
    (dict(Y=y0[:-1]), ValueError, "Y has 19 samples but X has 20"),
    (dict(Y=np.where(np.arange(20) == 3, 3, y0)), ValueError, "Y has class labels outside 0..2"),
    (dict(Y=np.where(np.arange(20) == 3, -1, y0)), ValueError, "Y has class labels outside"),
    (dict(Y=y0 + 0.5), ValueError, "Y as 1-D class labels must be integers"),
    (dict(Y=np.full(20, np.nan)), ValueError, "Y contains NaN"),
    (dict(Y=np.eye(4)[y0]), ValueError, "Y has 4 columns"),
    (dict(Y=2 * np.eye(3)[y0]), ValueError, r"Y targets for cross_entropy must lie in \[0, 1\]"),
    (dict(Y=np.zeros((20, 3, 1))), ValueError, "Y must be 1-D or 2-D"),
    (dict(epochs=-1), ValueError, "epochs must be a non-negative integer"),
    (dict(epochs=2.0), TypeError, "epochs"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=-3), ValueError, "batch_size"),
    (dict(batch_size=True), TypeError, "batch_size"),
    (dict(batch_size="32"), TypeError, "batch_size"),
    (dict(lr=-0.1), ValueError, "lr"),
    (dict(lr=float("nan")), ValueError, "lr"),
    (dict(lr=float("inf")), ValueError, "lr"),
    (dict(lr="0.1"), TypeError, "lr"),
    (dict(momentum=-0.5), ValueError, "momentum"),
    (dict(weight_decay=-1e-4), ValueError, "weight_decay"),
    (dict(nesterov=True), ValueError, "nesterov"),
    (dict(nesterov=True, momentum=0.9, optimizer="adam"), ValueError, "nesterov"),
    (dict(optimizer="lbfgs"), ValueError, "optimizer"),
    (dict(optimizer="adam", momentum=0.9), ValueError, "momentum"),
    (dict(shuffle="yes"), TypeError, "shuffle"),
    (dict(validation_data=X0), TypeError, "validation_data"),
    (dict(validation_data=(X0, y0, np.ones(20))), TypeError, "validation sample weights"),
    (dict(validation_data=(X0[:, :2], y0)), ValueError, r"validation_data\[0\] has 2 features"),
    (dict(validation_data=(X0, y0[:5])), ValueError, r"validation_data\[1\] has 5 samples"),
]


@pytest.mark.parametrize("kwargs,error,message", BAD_FIT,
                         ids=[f"{i}-{c[2][:24]}" for i, c in enumerate(BAD_FIT)])
def test_bad_fit_input_raises_and_changes_nothing(kwargs, error, message):
    model = classifier()
    model.fit(X0, y0, epochs=1, batch_size=4, momentum=0.9)  # some optimizer state
    before = (model.params.copy(), model._optimizer.buf1.copy(), model._rng.bit_generator.state)
    kwargs = dict(kwargs)
    X = kwargs.pop("X", X0.copy())
    Y = kwargs.pop("Y", y0.copy())
    X_copy = np.array(X, dtype=object) if isinstance(X, list) else np.copy(X)
    Y_copy = np.copy(Y)
    with pytest.raises(error, match=message):
        model.fit(X, Y, **kwargs)
    assert np.array_equal(model.params, before[0])
    assert np.array_equal(model._optimizer.buf1, before[1])
    assert model._rng.bit_generator.state == before[2]
    if isinstance(X, np.ndarray) and X.dtype.kind == "f":
        np.testing.assert_array_equal(X, X_copy)  # NaNs compare equal here
    np.testing.assert_array_equal(Y, Y_copy)


def test_values_beyond_float32_raise_for_a_float32_model():
    model = classifier("float32")
    X = X0.copy()
    X[0, 0] = 1e39
    with pytest.raises(ValueError, match="X has values beyond the range"):
        model.fit(X, y0)
    with pytest.raises(ValueError, match="X has values beyond the range"):
        model.predict(X)
    classifier("float64").fit(X, y0)  # fine in float64


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, "both"])
def test_non_finite_values_in_the_models_dtype_raise(bad):
    """Data already in the model's dtype is checked by one sum (see
    _check_finite_fits): any NaN or infinity still raises, +inf and -inf together
    too, and finite values whose sum overflows pass (min and max then decide)."""
    from fastbp import _validation as v

    X = X0.astype(np.float32)
    if bad == "both":
        X[0, 0], X[3, 1] = np.inf, -np.inf
    else:
        X[2, 3] = bad
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        classifier("float32").predict(X)
    huge = np.full((4, 4), np.finfo(np.float32).max, dtype=np.float32)
    assert not np.isfinite(np.add.reduce(huge, axis=None))  # the sum overflows
    v._check_finite_fits("X", huge, np.dtype(np.float32))  # yet every value fits


@pytest.mark.parametrize("method", ["predict", "loss", "gradients", "evaluate"])
def test_other_methods_check_their_input(method):
    model = classifier()
    before = model.params.copy()
    args = (X0[:, :3],) if method == "predict" else (X0[:, :3], y0)
    with pytest.raises(ValueError, match="X has 3 features per sample, the model expects 4"):
        getattr(model, method)(*args)
    if method != "predict":
        with pytest.raises(ValueError, match="Y has class labels outside"):
            getattr(model, method)(X0, y0 + 3)
    assert np.array_equal(model.params, before)


def test_predict_rejects_3d_and_nan():
    model = classifier()
    with pytest.raises(ValueError, match="X must be 1-D .one sample. or 2-D"):
        model.predict(X0[None])
    with pytest.raises(ValueError, match="X contains NaN"):
        model.predict(np.full(4, np.nan))


def test_unusual_but_good_input_works():
    """Fortran order, strides, integers, lists, read-only and float64-into-float32
    all give the same result as the canonical array."""
    model = classifier("float32")
    X = np.round(X0 * 3)
    canonical = model.predict(X.astype(np.float32))
    fortran = np.asfortranarray(X)
    strided = np.repeat(X, 2, axis=0)[::2]
    readonly = X.copy()
    readonly.flags.writeable = False
    for variant in (fortran, strided, X.astype(np.int64), X.astype(np.int8), X.tolist(),
                    readonly, X.astype(np.float64)):
        np.testing.assert_array_equal(model.predict(variant), canonical)
    one = model.predict(X[3])
    assert one.shape == (3,)
    np.testing.assert_array_equal(one, canonical[3])
    # training on each gives the same parameters
    results = []
    for variant in (X.astype(np.float32), fortran, strided, X.astype(np.int32)):
        m = classifier("float32")
        m.fit(variant, y0.astype(np.uint8), epochs=2, batch_size=3)
        results.append(m.params.copy())
    assert all(np.array_equal(results[0], r) for r in results[1:])
    assert fortran.flags.f_contiguous  # the user's array is left as it was


def test_target_forms_are_equivalent():
    model_labels, model_onehot = classifier(), classifier()
    model_labels.fit(X0, y0, epochs=2, batch_size=5)
    model_onehot.fit(X0, np.eye(3)[y0], epochs=2, batch_size=5)
    assert np.array_equal(model_labels.params, model_onehot.params)
    reg = fastbp.Model([4, 5, 1], seed=0)
    reg2 = fastbp.Model([4, 5, 1], seed=0)
    y = X0.sum(axis=1)
    reg.fit(X0, y, epochs=2, batch_size=4)
    reg2.fit(X0, y[:, None], epochs=2, batch_size=4)
    assert np.array_equal(reg.params, reg2.params)


def test_same_seed_same_bits_and_resumable_fits():
    a, b, c = classifier(seed=3), classifier(seed=3), classifier(seed=4)
    assert np.array_equal(a.params, b.params) and not np.array_equal(a.params, c.params)
    a.fit(X0, y0, epochs=2, batch_size=3, momentum=0.9, lr=0.05)
    b.fit(X0, y0, epochs=1, batch_size=3, momentum=0.9, lr=0.05)
    b.fit(X0, y0, epochs=1, batch_size=3, momentum=0.9, lr=0.05)
    assert np.array_equal(a.params, b.params)  # optimizer state and shuffling persist
    d = classifier(seed=3)
    d.fit(X0, y0, epochs=1, batch_size=3, optimizer="adam", lr=0.01)
    d.fit(X0, y0, epochs=1, batch_size=3, optimizer="adam", lr=0.01)
    e = classifier(seed=3)
    e.fit(X0, y0, epochs=2, batch_size=3, optimizer="adam", lr=0.01)
    assert np.array_equal(d.params, e.params)


def test_weights_and_biases_are_views_into_params():
    model = classifier()
    model.weights[0][1, 2] = 7.5
    model.biases[1][0] = -2.0
    assert 7.5 in model.params and -2.0 in model.params
    assert all(np.shares_memory(W, model.params) for W in model.weights)
    assert model.params.flags.c_contiguous and model.params.ndim == 1
    no_bias = fastbp.Model([4, 6, 3], bias=False)
    assert no_bias.biases == [] and no_bias.params.size == 4 * 6 + 6 * 3


def test_history_and_evaluate():
    model = classifier()
    history = model.fit(X0, y0, epochs=3, batch_size=4, validation_data=(X0, y0))
    assert set(history.history) == {"loss", "samples_per_second", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in history.history.values())
    assert all(s > 0 for s in history.history["samples_per_second"])
    result = model.evaluate(X0, y0)
    assert result["loss"] == pytest.approx(history.history["val_loss"][-1])
    assert result["accuracy"] == history.history["val_accuracy"][-1]
    expected = np.mean(model.predict(X0).argmax(axis=1) == y0)
    assert result["accuracy"] == expected
    assert "accuracy" not in fastbp.Model([4, 1]).evaluate(X0, X0[:, 0])
    binary = fastbp.Model([4, 1], output="sigmoid", loss="cross_entropy", seed=0)
    yb = (X0[:, 0] > 0).astype(float)
    acc = binary.evaluate(X0, yb)["accuracy"]
    assert acc == np.mean((binary.predict(X0)[:, 0] > 0.5) == (yb > 0.5))


def test_divergence_stops_naming_the_epoch_and_restores_parameters():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 4)) * 10
    Y = rng.normal(size=(32, 2)) * 10
    for lr in (0.02, 0.05, 0.2, 1.0, 10.0, 1e3):
        model = fastbp.Model([4, 8, 2], hidden="linear", dtype="float32", seed=1)
        try:
            model.fit(X, Y, epochs=30, batch_size=4, lr=lr)
        except TrainingDivergedError as exc:
            epoch = int(re.search(r"in epoch (\d+)", str(exc)).group(1))
            break
    else:
        pytest.fail("no learning rate diverged")
    assert np.isfinite(model.params).all()
    replay = fastbp.Model([4, 8, 2], hidden="linear", dtype="float32", seed=1)
    if epoch > 1:
        replay.fit(X, Y, epochs=epoch - 1, batch_size=4, lr=lr)
    assert np.array_equal(model.params, replay.params)  # the state before that epoch


# -- save / load ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_round_trip_bit_exact(tmp_path, dtype):
    model = fastbp.Model([4, 6, 3], hidden="relu", output="softmax", loss="cross_entropy",
                         dtype=dtype, seed=2, bias=dtype == "float32")
    model.fit(X0, y0, epochs=2, batch_size=4, momentum=0.9)
    path = tmp_path / "model.bin"  # any name: save writes exactly this path
    model.save(path)
    assert os.listdir(tmp_path) == ["model.bin"]
    loaded = fastbp.Model.load(path)
    assert loaded.params.dtype == np.dtype(dtype)
    assert np.array_equal(loaded.params, model.params)
    assert (loaded.sizes, loaded.hidden, loaded.output, loaded.bias) == (
        model.sizes, model.hidden, model.output, model.bias)
    np.testing.assert_array_equal(loaded.predict(X0), model.predict(X0))
    # training goes on exactly as without the round trip
    model.fit(X0, y0, epochs=1, batch_size=4, momentum=0.9)
    loaded.fit(X0, y0, epochs=1, batch_size=4, momentum=0.9)
    assert np.array_equal(loaded.params, model.params)


def test_load_rejects_truncated_foreign_and_missing_files(tmp_path):
    model = classifier()
    good = tmp_path / "good.npz"
    model.save(good)
    raw = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(raw[: len(raw) // 2])
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, X=np.zeros(3))
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a model at all")
    for path in (truncated, foreign, junk):
        with pytest.raises(ValueError, match="not a fastbp model file"):
            fastbp.Model.load(path)
    with pytest.raises(OSError):
        fastbp.Model.load(tmp_path / "missing.npz")


def test_1d_targets_for_a_multi_output_regression_are_refused():
    # read as class labels they would silently train one-hot targets
    model = fastbp.Model([4, 6, 3], output="linear", loss="mse", seed=0)
    X, y = np.zeros((5, 4)), np.arange(5) % 3
    before = model.params.copy()
    for call in (lambda: model.fit(X, y), lambda: model.evaluate(X, y),
                 lambda: model.loss(X, y), lambda: model.gradients(X, y)):
        with pytest.raises(ValueError, match=r"Y is 1-D.*not a classifier.*\(n_samples, 3\)"):
            call()
    assert np.array_equal(model.params, before)
    # a classifier still takes labels, a single output still takes 1-D values
    fastbp.Model([4, 6, 3], output="softmax", loss="cross_entropy").fit(X, y)
    fastbp.Model([4, 6, 1], output="linear").fit(X, y.astype(float))


def test_fit_of_zero_epochs_changes_nothing_and_still_checks_its_input():
    # a resumed run that is already complete: fit(epochs=TOTAL - epochs_done)
    model = classifier()
    X = np.random.default_rng(0).normal(size=(10, 4))
    y = np.arange(10) % 3
    model.fit(X, y, epochs=2, optimizer="adam", lr=0.01)
    before = model.params.copy(), model._optimizer.step, model.epochs_done
    before_rng = model._rng.bit_generator.state
    history = model.fit(X, y, epochs=0, optimizer="adam", lr=0.01)
    assert history.epochs == [] and history.history["loss"] == []
    assert np.array_equal(model.params, before[0])
    assert (model._optimizer.step, model.epochs_done) == before[1:]
    assert model._rng.bit_generator.state == before_rng
    with pytest.raises(ValueError, match="Y has 9 samples"):
        model.fit(X, y[:-1], epochs=0)


def test_load_of_other_numpy_files_names_the_file(tmp_path):
    # a .npy array (np.load returns an array, not an archive), a pickled object
    # array in an .npz, and a plain pickle: each a ValueError naming the path,
    # never numpy's advice to pass allow_pickle=True
    npy = tmp_path / "weights.npy"
    np.save(npy, np.zeros(3))
    objects = tmp_path / "objects.npz"
    np.savez(objects, meta=np.array([{"a": 1}], dtype=object), params=np.zeros(3),
             buf1=np.zeros(3), buf2=np.zeros(3))
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for path in (npy, objects, pickled):
        with pytest.raises(ValueError, match="not a fastbp model file") as caught:
            fastbp.Model.load(path)
        assert str(path) in str(caught.value)
        assert "allow_pickle" not in str(caught.value)


def test_metadata_round_trips_and_must_be_json(tmp_path):
    model = classifier()
    model.metadata = {"classes": ["cat", "dog", "emu"], "data": "x.csv", "n": 3}
    model.save(tmp_path / "m.npz")
    assert fastbp.Model.load(tmp_path / "m.npz").metadata == model.metadata
    model.metadata = {"when": object()}
    with pytest.raises(TypeError, match="model.metadata must hold JSON-able values"):
        model.save(tmp_path / "m2.npz")
    assert not (tmp_path / "m2.npz").exists()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_saved_files_honour_the_umask(tmp_path, umask):
    model = classifier()
    old = os.umask(umask)
    try:
        model.save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o666 & ~umask


def test_saving_over_a_file_keeps_its_mode(tmp_path):
    path = tmp_path / "m.npz"
    classifier().save(path)
    os.chmod(path, 0o640)
    classifier().save(path)
    assert path.stat().st_mode & 0o777 == 0o640


def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    model = classifier()
    path = tmp_path / "model.npz"
    model.save(path)
    old = path.read_bytes()

    def failing_savez(fh, **arrays):
        fh.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", failing_savez)
    model.params += 1
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind


def test_docstring_examples_run():
    import doctest

    import fastbp.model

    result = doctest.testmod(fastbp.model)
    assert result.attempted > 0 and result.failed == 0


def test_pickle_keeps_views_and_training_state():
    """A pickled model comes back with weights/biases as views into params (not
    detached copies) and trains on exactly as the original would."""
    import pickle

    X = np.random.default_rng(0).normal(size=(20, 3))
    y = np.random.default_rng(1).integers(0, 2, size=20)
    model = fastbp.Model([3, 5, 2], output="softmax", loss="cross_entropy", seed=3,
                         dtype="float64")
    model.fit(X, y, epochs=2, batch_size=4, lr=0.1, momentum=0.9)
    copy = pickle.loads(pickle.dumps(model))
    assert np.shares_memory(copy.weights[0], copy.params)
    assert np.shares_memory(copy.biases[1], copy.params)
    copy.weights[0][0, 0] = 42.0
    assert 42.0 in copy.params and 42.0 not in model.params
    copy.weights[0][0, 0] = model.weights[0][0, 0]
    model.fit(X, y, epochs=2, batch_size=4, lr=0.1, momentum=0.9)
    copy.fit(X, y, epochs=2, batch_size=4, lr=0.1, momentum=0.9)
    np.testing.assert_array_equal(copy.params, model.params)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(optimizer="adam", betas=(0.9,)), TypeError, "betas must be a pair"),
        (dict(optimizer="adam", betas=(0.9, 1.0)), ValueError, r"betas\[1\]"),
        (dict(optimizer="adam", betas=(float("nan"), 0.9)), ValueError, r"betas\[0\]"),
        (dict(optimizer="adam", betas=("a", 0.9)), TypeError, r"betas\[0\]"),
        (dict(optimizer="adam", eps=-1.0), ValueError, "eps"),
        (dict(optimizer="sgd", betas=(0.8, 0.9)), ValueError,
         "betas applies to optimizer='adam' or 'adamw' only, not 'sgd'"),
        (dict(optimizer="sgd", eps=1e-3), ValueError,
         "eps applies to optimizer='adam' or 'adamw' or 'rmsprop' only"),
        (dict(optimizer="adam", eps_mode="keras"), ValueError, "eps_mode"),
        (dict(optimizer="sgd", eps_mode="sklearn"), ValueError, "optimizer='adam' only"),
    ],
)
def test_bad_adam_settings_raise(kwargs, error, match):
    X = np.zeros((4, 3))
    model = fastbp.Model([3, 2], seed=0)
    before = model.params.copy()
    with pytest.raises(error, match=match):
        model.fit(X, np.zeros((4, 2)), **kwargs)
    assert np.array_equal(model.params, before)


def test_changing_betas_resets_adam_state():
    X = np.random.default_rng(0).normal(size=(8, 3))
    Y = np.random.default_rng(1).normal(size=(8, 2))
    a = fastbp.Model([3, 2], seed=0, dtype="float64")
    b = fastbp.Model([3, 2], seed=0, dtype="float64")
    a.fit(X, Y, optimizer="adam", lr=0.01)
    a.fit(X, Y, optimizer="adam", lr=0.01, betas=(0.5, 0.9))  # new settings: fresh moments
    b.fit(X, Y, optimizer="adam", lr=0.01)
    b._optimizer.reset(None)
    b.fit(X, Y, optimizer="adam", lr=0.01, betas=(0.5, 0.9))
    np.testing.assert_array_equal(a.params, b.params)


def test_read_only_inputs_are_accepted_and_left_alone():
    """Read-only X/Y (e.g. memory maps) train like writeable ones; fastbp hands
    the kernels the same memory typed as writeable (no copy, no new compile), and
    the user's arrays stay read-only and unchanged."""
    X = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 2, size=12)
    Xr, yr = X.copy(), y.copy()
    Xr.flags.writeable = False
    yr.flags.writeable = False
    a = fastbp.Model([3, 4, 2], output="softmax", loss="cross_entropy", seed=0)
    b = fastbp.Model([3, 4, 2], output="softmax", loss="cross_entropy", seed=0)
    a.fit(X, y, epochs=2, batch_size=4)
    b.fit(Xr, yr, epochs=2, batch_size=4)
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(a.predict(X), b.predict(Xr))
    from fastbp import _validation

    view, _ = _validation.check_X("X", Xr, 3, np.dtype(np.float32))
    assert view.flags.writeable and np.shares_memory(view, Xr)  # a loan, not a copy
    assert not Xr.flags.writeable and np.array_equal(Xr, X)
    same, _ = _validation.check_X("X", X, 3, np.dtype(np.float32))
    assert np.shares_memory(same, X)  # writeable data is not copied
