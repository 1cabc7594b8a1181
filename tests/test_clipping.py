"""AdamW, RMSprop and gradient clipping: the reference on every path, torch step by
step, the same bits at any thread count, and the settings' checks."""

import numpy as np
import pytest
from conftest import TOL, make_model, make_problem

import fastbp
from fastbp import reference

torch = pytest.importorskip("torch")
from test_torch import TRAJ_TOL, TorchMLP, torch_train  # noqa: E402
from test_torch import make_data as torch_data  # noqa: E402
from test_torch import make_model as torch_model  # noqa: E402

SIZES = [3, 6, 4]
N = 10
PATHS = ["online", "partial", "full", "parts-parallel"]
OPTIMIZERS = {  # id -> fit keywords (reference.train takes the same)
    "sgd": dict(optimizer="sgd", lr=0.1),
    "momentum": dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True),
    "adam": dict(optimizer="adam", lr=0.01),
    "adamw": dict(optimizer="adamw", lr=0.01, weight_decay=0.2),
    "rmsprop": dict(optimizer="rmsprop", lr=0.01, alpha=0.9),
    "rmsprop-centered-momentum": dict(optimizer="rmsprop", lr=0.01, centered=True,
                                      momentum=0.9, weight_decay=0.05),
}
CLIPS = {"none": {}, "norm": dict(clip_norm=0.05), "value": dict(clip_value=0.01)}


def _force_path(path, monkeypatch):
    """The batch size of ``path``; for parts-parallel, 3 parts on threads even when
    the machine is busy."""
    from fastbp import _threads as policy

    if path == "parts-parallel":
        monkeypatch.setattr(policy, "SERIAL_PARTS", 3)
        monkeypatch.setattr(policy, "PARALLEL_MIN_FLOPS", 0)
        monkeypatch.setattr(policy, "held_up", lambda: False)
    return {"online": 1, "partial": 3, "full": N, "parts-parallel": 4}[path]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("clip", list(CLIPS))
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("opt_id", list(OPTIMIZERS))
def test_optimizers_and_clipping_follow_the_reference(opt_id, path, clip, dtype,
                                                       monkeypatch):
    """fit == reference.train for every optimizer, with and without clipping, on the
    online step, serial mini-batches (partial and full) and parts on threads, with
    sample weights and the L2 penalty (folded in before the clip)."""
    batch_size = _force_path(path, monkeypatch)
    X, T = make_problem(SIZES, "softmax", "cross_entropy", N, seed=5)
    weights = np.random.default_rng(5).uniform(0.5, 2.0, size=N)
    model = make_model(SIZES, "tanh", "softmax", "cross_entropy", dtype)
    p0 = model.params.astype(np.float64)
    case = dict(OPTIMIZERS[opt_id], **CLIPS[clip], l2=0.1)
    model.fit(X.astype(dtype), T, epochs=2, batch_size=batch_size, shuffle=False,
              sample_weight=weights, **case)
    expected = reference.train(p0, SIZES, True, X, T, [np.arange(N)] * 2, batch_size, "tanh",
                               "softmax", "cross_entropy", sample_weight=weights, **case)
    tol = TOL["float64"] if dtype == "float64" else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.params, expected, **tol)
    if clip != "none":  # the clip bites here: without it the trajectory differs
        unclipped = reference.train(p0, SIZES, True, X, T, [np.arange(N)] * 2, batch_size,
                                    "tanh", "softmax", "cross_entropy", sample_weight=weights,
                                    **OPTIMIZERS[opt_id], l2=0.1)
        assert np.abs(unclipped - expected).max() > 1e-5


TORCH_CLIPS = {
    "norm": (dict(clip_norm=0.05),
             lambda params: torch.nn.utils.clip_grad_norm_(list(params), 0.05)),
    "value": (dict(clip_value=0.01),
              lambda params: torch.nn.utils.clip_grad_value_(list(params), 0.01)),
}
TORCH_OPTS = {  # id -> (fit keywords, torch class, torch keywords)
    "sgd": (dict(optimizer="sgd", lr=0.1), torch.optim.SGD, dict(lr=0.1)),
    "momentum": (dict(optimizer="sgd", lr=0.1, momentum=0.9), torch.optim.SGD,
                 dict(lr=0.1, momentum=0.9)),
    "adam": (dict(optimizer="adam", lr=0.01), torch.optim.Adam, dict(lr=0.01)),
    "adamw": (dict(optimizer="adamw", lr=0.01), torch.optim.AdamW, dict(lr=0.01)),
    "rmsprop": (dict(optimizer="rmsprop", lr=0.01, momentum=0.5, centered=True),
                torch.optim.RMSprop, dict(lr=0.01, momentum=0.5, centered=True)),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch_size", [1, 4], ids=["bs1", "bs4-partial"])
@pytest.mark.parametrize("clip", list(TORCH_CLIPS))
@pytest.mark.parametrize("opt_id", list(TORCH_OPTS))
def test_clipping_matches_torch(opt_id, clip, batch_size, dtype):
    """clip_norm / clip_value equal torch's clip_grad_norm_ / clip_grad_value_
    between backward and step, for every optimizer, trajectory and losses."""
    fit_kwargs, opt_cls, opt_kwargs = TORCH_OPTS[opt_id]
    clip_kwargs, torch_clip = TORCH_CLIPS[clip]
    X, T = torch_data("softmax", "cross_entropy", seed=6)
    model = torch_model("tanh", "softmax", "cross_entropy", dtype, seed=6)
    net = TorchMLP(model)
    history = model.fit(X, T, epochs=2, batch_size=batch_size, shuffle=False, **fit_kwargs,
                        **clip_kwargs)
    _, losses = torch_train(net, X, T, batch_size, 2, opt_cls, opt_kwargs, dtype,
                            clip=torch_clip)
    np.testing.assert_allclose(model.params, net.flat(), **TRAJ_TOL[dtype])
    np.testing.assert_allclose(history.history["loss"], losses, **TRAJ_TOL[dtype])


@pytest.mark.parametrize("clip", list(CLIPS))
@pytest.mark.parametrize("opt_id", ["sgd", "adamw", "rmsprop-centered-momentum"])
def test_same_bits_serially_and_on_threads(opt_id, clip, monkeypatch, restore_threads):
    """Parameters and optimizer state bit-identical at 1 and 2 threads, with the
    rows cut into parts (the clip's norm is summed in index order)."""
    from fastbp import _threads as policy

    monkeypatch.setattr(policy, "SERIAL_PARTS", 3)
    monkeypatch.setattr(policy, "PARALLEL_MIN_FLOPS", 0)
    monkeypatch.setattr(policy, "held_up", lambda: False)
    sizes = [9, 17, 11, 5]
    X, T = make_problem(sizes, "softmax", "cross_entropy", 53, seed=7)
    results = []
    for threads in (1, 2):
        model = make_model(sizes, "relu", "softmax", "cross_entropy", "float32")
        model.fit(X, T, epochs=3, batch_size=8, n_threads=threads, **OPTIMIZERS[opt_id],
                  **CLIPS[clip])
        opt = model._optimizer
        results.append((model.params.copy(), opt.buf1.copy(), opt.buf2.copy()))
    for a, b in zip(*results):
        assert np.array_equal(a, b)


def test_adamw_default_weight_decay_is_torchs():
    """weight_decay=None (the default) is 0.01 for AdamW, 0 for the others."""
    X, T = make_problem(SIZES, "linear", "mse", N, seed=1)
    runs = {}
    for name, kwargs in [("default", {}), ("explicit", dict(weight_decay=0.01)),
                         ("zero", dict(weight_decay=0.0))]:
        model = make_model(SIZES, "tanh", "linear", "mse", "float64")
        model.fit(X, T, epochs=2, batch_size=3, optimizer="adamw", lr=0.05, **kwargs)
        runs[name] = model.params
    assert np.array_equal(runs["default"], runs["explicit"])
    assert not np.array_equal(runs["default"], runs["zero"])
    sgd = make_model(SIZES, "tanh", "linear", "mse", "float64")
    plain = make_model(SIZES, "tanh", "linear", "mse", "float64")
    sgd.fit(X, T, batch_size=3, lr=0.05)
    plain.fit(X, T, batch_size=3, lr=0.05, weight_decay=0.0)
    assert np.array_equal(sgd.params, plain.params)


@pytest.mark.parametrize("batch_size", [1, 4], ids=["bs1", "bs4"])
@pytest.mark.parametrize("opt_id", ["adamw", "rmsprop", "rmsprop-centered-momentum"])
def test_state_saved_loaded_and_resumed_exactly(opt_id, batch_size, tmp_path):
    """Two epochs, save, load, two more == four at once, bit for bit (centered
    RMSprop's gradient average included); a clip setting change keeps the state."""
    X, T = make_problem(SIZES, "softmax", "cross_entropy", N, seed=3)
    once = make_model(SIZES, "tanh", "softmax", "cross_entropy", "float32")
    once.fit(X, T, epochs=4, batch_size=batch_size, **OPTIMIZERS[opt_id])
    first = make_model(SIZES, "tanh", "softmax", "cross_entropy", "float32")
    first.fit(X, T, epochs=2, batch_size=batch_size, **OPTIMIZERS[opt_id])
    first.save(tmp_path / "m.npz")
    resumed = fastbp.Model.load(tmp_path / "m.npz")
    assert resumed._optimizer.buf2.size == first._optimizer.buf2.size
    resumed.fit(X, T, epochs=2, batch_size=batch_size, **OPTIMIZERS[opt_id])
    assert np.array_equal(resumed.params, once.params)
    assert np.array_equal(resumed._optimizer.buf2, once._optimizer.buf2)
    step = resumed._optimizer.step
    resumed.fit(X, T, batch_size=batch_size, clip_norm=1.0, **OPTIMIZERS[opt_id])
    assert resumed._optimizer.step > step  # the state went on


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        (dict(optimizer="adam", alpha=0.9), ValueError, "alpha"),
        (dict(optimizer="sgd", centered=True), ValueError, "centered"),
        (dict(optimizer="rmsprop", betas=(0.8, 0.9)), ValueError, "betas"),
        (dict(optimizer="adamw", momentum=0.9), ValueError, "momentum"),
        (dict(optimizer="rmsprop", nesterov=True, momentum=0.9), ValueError, "nesterov"),
        (dict(optimizer="rmsprop", alpha=1.5), ValueError, "alpha"),
        (dict(optimizer="rmsprop", alpha="x"), TypeError, "alpha"),
        (dict(optimizer="rmsprop", centered=1), TypeError, "centered"),
        (dict(optimizer="nadam"), ValueError, "optimizer"),
        (dict(clip_norm=0.0), ValueError, "clip_norm"),
        (dict(clip_norm=-1.0), ValueError, "clip_norm"),
        (dict(clip_value=float("nan")), ValueError, "clip_value"),
        (dict(clip_value="1"), TypeError, "clip_value"),
        (dict(clip_norm=1.0, clip_value=1.0), ValueError, "clip_norm and clip_value"),
        (dict(optimizer="adamw", weight_decay=-0.1), ValueError, "weight_decay"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(kwargs, exc, words):
    X, T = make_problem(SIZES, "linear", "mse", N, seed=1)
    model = make_model(SIZES, "tanh", "linear", "mse", "float64")
    before = model.params.copy()
    with pytest.raises(exc, match=words):
        model.fit(X, T, **kwargs)
    assert np.array_equal(model.params, before)
    assert model._optimizer.settings is None and model.epochs_done == 0


@pytest.mark.parametrize("batch_size", [4, 10], ids=["bs4", "bs10"])
@pytest.mark.parametrize("opt_id", ["sgd", "momentum", "adamw", "rmsprop-centered-momentum"])
def test_a_norm_clip_that_never_binds_changes_no_bit(opt_id, batch_size):
    """The norm's scale is folded into the step, so a factor of 1 takes the very
    step of mini-batch training without clipping, l2 0 (plain SGD's gradient-fused
    update included). Batches of 1 are not compared: clipping moves them from the
    fused online step, whose sums round differently (no FMA), to the mini-batch
    kernel."""
    X, T = make_problem(SIZES, "softmax", "cross_entropy", N, seed=2)
    plain = make_model(SIZES, "tanh", "softmax", "cross_entropy", "float32")
    clipped = make_model(SIZES, "tanh", "softmax", "cross_entropy", "float32")
    plain.fit(X, T, epochs=2, batch_size=batch_size, **OPTIMIZERS[opt_id])
    clipped.fit(X, T, epochs=2, batch_size=batch_size, clip_norm=1e6,
                **OPTIMIZERS[opt_id])
    assert np.array_equal(clipped.params, plain.params)


@pytest.mark.parametrize("opt_id", ["adamw", "rmsprop"])
def test_schedules_and_callbacks_drive_the_new_optimizers_as_torch(opt_id, tmp_path):
    """StepLR halves the rate each epoch (AdamW's decay lr wd follows it, as torch's
    does), with clipping on; a checkpoint callback saves state that resumes."""
    from fastbp.callbacks import ModelCheckpoint
    from fastbp.schedules import StepLR

    fit_kwargs, opt_cls, opt_kwargs = TORCH_OPTS[opt_id]
    X, T = torch_data("softmax", "cross_entropy", seed=8)
    model = torch_model("tanh", "softmax", "cross_entropy", "float64", seed=8)
    net = TorchMLP(model)
    history = model.fit(X, T, epochs=3, batch_size=4, shuffle=False, clip_norm=0.05,
                        lr_schedule=StepLR(1, gamma=0.5), **fit_kwargs,
                        callbacks=[ModelCheckpoint(str(tmp_path / "ck.npz"))])
    opt = opt_cls(net.parameters(), **opt_kwargs)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
    for _ in range(3):
        torch_train(net, X, T, 4, 1, None, None, "float64", optimizer=opt,
                    clip=lambda params: torch.nn.utils.clip_grad_norm_(list(params), 0.05))
        sched.step()
    assert history.history["lr"] == [0.01, 0.005, 0.0025]
    np.testing.assert_allclose(model.params, net.flat(), **TRAJ_TOL["float64"])
    saved = fastbp.Model.load(tmp_path / "ck.npz")
    assert np.array_equal(saved.params, model.params)
    assert np.array_equal(saved._optimizer.buf2, model._optimizer.buf2)
