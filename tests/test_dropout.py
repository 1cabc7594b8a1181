"""Dropout: the kernels' masks are the reference's, every path trains like the
reference with them, torch with the same masks agrees, rates are right, and the
masks never depend on threads; p = 0 changes no bit; save/load/resume exact."""

import copy

import numpy as np
import pytest
from conftest import TOL, make_problem

import fastbp
from fastbp import reference
from fastbp.kernels import dropout as kdropout
from fastbp.kernels.codes import H_DROP_KEY, H_EPOCH, N_HYPER

SIZES = [4, 9, 7, 3]
N = 12
RATES = dict(dropout=[0.3, 0.5], input_dropout=0.2)


def _model(dtype="float64", hidden="tanh", seed=1, **kwargs):
    return fastbp.Model(SIZES, hidden=hidden, output="softmax", loss="cross_entropy",
                        dtype=dtype, seed=seed, init="uniform", **{**RATES, **kwargs})


def _hyper(key, epoch, layer, p):
    hyper = np.zeros(N_HYPER + layer + 1)
    hyper[H_DROP_KEY], hyper[H_EPOCH], hyper[N_HYPER + layer] = key, epoch, p
    return hyper


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_kernel_masks_are_the_references_and_drop_at_rate_p(p):
    """drop_forward on ones keeps exactly the reference's units, scaled by
    1 / (1 - p); over 200,000 units the dropped share is within 5 standard
    deviations of p, for each of several (key, epoch, row, layer)."""
    n = 200_000
    for key, epoch, row, layer in [(0, 0, 0, 0), (2**52 + 3, 7, 12345, 1), (99, 2, 5, 2)]:
        a = np.ones(n)
        kdropout.drop_forward(a, _hyper(key, epoch, layer, p), layer, row, 0)
        keep = reference.dropout_keep(key, epoch, row, layer, n, p)
        assert np.array_equal(a != 0, keep)
        assert np.all(a[keep] == 1.0 / (1.0 - p))
        sd = np.sqrt(p * (1 - p) / n)
        assert abs((1 - keep.mean()) - p) < 5 * sd
    # a different epoch, row, layer or key gives another mask
    base = reference.dropout_keep(5, 1, 10, 1, 1000, 0.5)
    for other in [(6, 1, 10, 1), (5, 2, 10, 1), (5, 1, 11, 1), (5, 1, 10, 2)]:
        assert not np.array_equal(base, reference.dropout_keep(*other, 1000, 0.5))


def test_draws_of_other_rows_and_units_are_independent():
    """4000 rows x 64 units at p = 0.5: each unit's drop share over the rows, and
    the share of units dropped both by neighbouring rows and next to each other,
    are within 5 standard deviations of p and p^2 (rows whose draws were shifted
    copies of each other, or a unit counter that leaked through the mixer, would
    agree far more often)."""
    p, rows, n = 0.5, 4000, 64
    drop = ~np.array([reference.dropout_keep(11, 3, r, 1, n, p) for r in range(rows)])
    assert np.all(np.abs(drop.mean(axis=0) - p) < 5 * np.sqrt(p * (1 - p) / rows))
    q = p * p
    for both in (drop[1:] & drop[:-1], drop[:, 1:] & drop[:, :-1]):
        assert abs(both.mean() - q) < 5 * np.sqrt(q * (1 - q) / both.size)


def test_a_units_mask_does_not_depend_on_where_its_part_starts():
    """The first layer is cut into parts by units: unit u's draw is the same
    whether its part starts at 0 or at u0."""
    hyper = _hyper(17, 3, 1, 0.4)
    whole = np.ones(50)
    kdropout.drop_forward(whole, hyper, 1, 8, 0)
    part = np.ones(30)
    kdropout.drop_forward(part, hyper, 1, 8, 20)
    assert np.array_equal(part, whole[20:])


PATHS = ["online", "partial", "full", "parts-parallel"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("hidden", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("path", PATHS)
def test_every_path_trains_like_the_reference_with_the_same_masks(path, hidden, dtype,
                                                                  monkeypatch):
    from fastbp import _threads as policy

    batch_size = {"online": 1, "partial": 5, "full": N, "parts-parallel": 6}[path]
    if path == "parts-parallel":
        monkeypatch.setattr(policy, "SERIAL_PARTS", 3)
        monkeypatch.setattr(policy, "PARALLEL_MIN_FLOPS", 0)
        monkeypatch.setattr(policy, "held_up", lambda: False)
    X, T = make_problem(SIZES, "softmax", "cross_entropy", N, seed=3)
    weights = np.random.default_rng(3).uniform(0.5, 2.0, size=N)
    model = _model(dtype, hidden)
    p0 = model.params.astype(np.float64)
    case = dict(lr=0.05, momentum=0.9)
    model.fit(X.astype(dtype), T, epochs=3, batch_size=batch_size, shuffle=False,
              sample_weight=weights, **case)
    args = (p0, SIZES, True, X, T, [np.arange(N)] * 3, batch_size, hidden, "softmax",
            "cross_entropy")
    expected = reference.train(*args, sample_weight=weights, dropout_rates=[0.2, 0.3, 0.5],
                               dropout_key=model._dropout_key, **case)
    tol = TOL["float64"] if dtype == "float64" else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.params, expected, **tol)
    without = reference.train(*args, sample_weight=weights, **case)
    assert np.abs(without - expected).max() > 1e-3  # the masks mattered


@pytest.mark.parametrize("opt", ["momentum", "adam"])
@pytest.mark.parametrize("batch_size", [1, 5], ids=["bs1", "bs5-partial"])
def test_torch_with_the_same_masks_gives_the_same_gradients_and_trajectory(opt, batch_size):
    """A torch MLP that multiplies a^l by the same masks m^l / (1 - p_l): the same
    training losses and parameters, step by step (SGD with momentum, Adam)."""
    torch = pytest.importorskip("torch")
    X, T = make_problem(SIZES, "softmax", "cross_entropy", N, seed=4)
    model = _model("float64", "tanh", seed=4)
    layers = [torch.nn.Linear(n_in, n_out).double() for n_in, n_out in zip(SIZES, SIZES[1:])]
    with torch.no_grad():
        for layer, W, b in zip(layers, model.weights, model.biases):
            layer.weight.copy_(torch.from_numpy(W.copy()))
            layer.bias.copy_(torch.from_numpy(b.copy()))
    params = [p for layer in layers for p in layer.parameters()]
    kwargs = dict(lr=0.05, momentum=0.9) if opt == "momentum" else dict(lr=0.01)
    torch_opt = (torch.optim.SGD(params, **kwargs) if opt == "momentum"
                 else torch.optim.Adam(params, **kwargs))
    history = model.fit(X, T, epochs=2, batch_size=batch_size, shuffle=False,
                        optimizer="sgd" if opt == "momentum" else "adam", **kwargs)
    rates = [0.2, 0.3, 0.5]
    losses = []
    for epoch in range(2):
        total = 0.0
        for first in range(0, N, batch_size):
            rows = np.arange(first, min(first + batch_size, N))
            masks = [reference.dropout_masks(model._dropout_key, epoch, i, SIZES, rates)
                     for i in rows]
            a = torch.from_numpy(X[rows]) * torch.from_numpy(np.array([m[0] for m in masks]))
            for l, layer in enumerate(layers[:-1]):
                m = torch.from_numpy(np.array([mk[l + 1] for mk in masks]))
                a = torch.tanh(layer(a)) * m
            loss = torch.nn.functional.cross_entropy(layers[-1](a), torch.from_numpy(T[rows]),
                                                     reduction="mean")
            torch_opt.zero_grad()
            loss.backward()
            torch_opt.step()
            total += loss.item() * len(rows)
        losses.append(total / N)
    want = torch.cat([p.detach().reshape(-1) for p in params]).numpy()
    np.testing.assert_allclose(model.params, want, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-9)


@pytest.mark.parametrize("batch_size", [1, 5, N])
def test_rate_zero_changes_no_bit(batch_size):
    X, T = make_problem(SIZES, "softmax", "cross_entropy", N, seed=5)
    plain = _model("float32", dropout=0.0, input_dropout=0.0)
    zeros = _model("float32", dropout=[0.0, 0.0], input_dropout=0.0)
    assert "dropout" not in repr(zeros)
    for m in (plain, zeros):
        m.fit(X, T, epochs=2, batch_size=batch_size, lr=0.05, optimizer="adam")
    assert np.array_equal(plain.params, zeros.params)
    default = fastbp.Model(SIZES, hidden="tanh", output="softmax", loss="cross_entropy",
                           dtype="float32", seed=1, init="uniform")
    default.fit(X, T, epochs=2, batch_size=batch_size, lr=0.05, optimizer="adam")
    assert np.array_equal(default.params, plain.params)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_same_bits_at_one_and_two_threads_and_any_cut(opt, monkeypatch, restore_threads):
    from fastbp import _threads as policy

    monkeypatch.setattr(policy, "PARALLEL_MIN_FLOPS", 0)
    monkeypatch.setattr(policy, "held_up", lambda: False)
    X, T = make_problem(SIZES, "softmax", "cross_entropy", 61, seed=6)
    results = []
    for threads, parts in [(1, 1), (1, 3), (2, 2)]:
        monkeypatch.setattr(policy, "SERIAL_PARTS", parts)
        model = _model("float32", "relu", seed=6)
        model.fit(X, T, epochs=3, batch_size=8, n_threads=threads, optimizer=opt, lr=0.02)
        results.append(model.params.copy())
    assert np.array_equal(results[0], results[1])
    assert np.array_equal(results[0], results[2])


@pytest.mark.parametrize("seed", [7, None])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_saved_loaded_and_resumed_on_the_same_masks(seed, batch_size, tmp_path):
    X, T = make_problem(SIZES, "softmax", "cross_entropy", N, seed=7)
    first = _model("float32", seed=seed)
    once = copy.deepcopy(first)  # the same key, seed or not
    once.fit(X, T, epochs=4, batch_size=batch_size, lr=0.05, momentum=0.9)
    first.fit(X, T, epochs=2, batch_size=batch_size, lr=0.05, momentum=0.9)
    first.save(tmp_path / "m.npz")
    resumed = fastbp.Model.load(tmp_path / "m.npz")
    assert resumed._dropout_key == first._dropout_key
    assert resumed.dropout == (0.3, 0.5) and resumed.input_dropout == 0.2
    resumed.fit(X, T, epochs=2, batch_size=batch_size, lr=0.05, momentum=0.9)
    assert np.array_equal(resumed.params, once.params)


def test_evaluation_calls_see_the_whole_network():
    """predict, loss, evaluate and gradients of a model with dropout equal those of
    the same parameters without it; only fit drops."""
    X, T = make_problem(SIZES, "softmax", "cross_entropy", N, seed=8)
    model = _model("float64", seed=8)
    model.fit(X, T, epochs=1, batch_size=4, lr=0.05)
    plain = fastbp.Model(SIZES, hidden="tanh", output="softmax", loss="cross_entropy",
                         dtype="float64", seed=8)
    plain.params[...] = model.params
    assert np.array_equal(model.predict(X), plain.predict(X))
    assert np.array_equal(model.predict(X[:2]), plain.predict(X[:2]))
    assert model.loss(X, T) == plain.loss(X, T)
    assert model.evaluate(X, T) == plain.evaluate(X, T)
    for got, want in zip(model.gradients(X, T)[0], plain.gradients(X, T)[0]):
        assert np.array_equal(got, want)


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        (dict(dropout=1.0), ValueError, "dropout"),
        (dict(dropout=-0.1), ValueError, "dropout"),
        (dict(dropout=float("nan")), ValueError, "dropout"),
        (dict(dropout="0.5"), TypeError, "dropout"),
        (dict(dropout=True), TypeError, "dropout"),
        (dict(dropout=[0.1]), ValueError, "one rate per hidden layer"),
        (dict(dropout=[0.1, 1.5]), ValueError, r"dropout\[1\]"),
        (dict(dropout=[0.1, None]), TypeError, r"dropout\[1\]"),
        (dict(input_dropout=1.0), ValueError, "input_dropout"),
        (dict(input_dropout="x"), TypeError, "input_dropout"),
    ],
)
def test_bad_rates_name_the_argument(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        fastbp.Model(SIZES, **kwargs)
