"""fastbp against PyTorch: the same network built from nn.Linear layers with the
model's weights copied in, compared on outputs, mean loss, autograd gradients and
whole training trajectories under torch.optim.SGD / torch.optim.Adam.

DESIGN.md promises torch's optimizer semantics exactly, so trajectories must agree
to rounding: float64 to ~1e-10 relative (measured: ~1e-15), float32 (both sides in
float32, summing in different orders) to ~1e-4 (measured: ~4e-7 of the largest
parameter, no farther from a float64 run than torch's own float32 run).
"""

import numpy as np
import pytest
from conftest import make_problem

import fastbp

torch = pytest.importorskip("torch")
F = torch.nn.functional

# Tolerances per dtype. One pass (outputs, loss, gradients); trajectories
# accumulate rounding over up to 20 steps, hence the looser float32 pair.
PASS_TOL = {
    "float64": dict(rtol=1e-10, atol=1e-12),
    "float32": dict(rtol=1e-5, atol=1e-6),
}
TRAJ_TOL = {
    "float64": dict(rtol=1e-10, atol=1e-12),
    "float32": dict(rtol=1e-4, atol=1e-5),
}
TORCH_DTYPE = {"float64": torch.float64, "float32": torch.float32}
DTYPES = ["float64", "float32"]

HIDDEN = ["sigmoid", "tanh", "relu", "leaky_relu", "linear"]
HEADS = [  # (output, loss)
    ("linear", "mse"),
    ("sigmoid", "mse"),
    ("tanh", "mse"),
    ("softmax", "mse"),
    ("softmax", "cross_entropy"),
    ("sigmoid", "cross_entropy"),
    ("exp", "poisson"),
    ("linear", "huber"),
]
HEAD_IDS = [f"{o}+{lo}" for o, lo in HEADS]

SIZES = [5, 7, 3]
N = 10

ACTIVATION = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu": lambda z: F.leaky_relu(z, negative_slope=0.01),
    "linear": lambda z: z,
    "softmax": lambda z: torch.softmax(z, dim=1),
    "exp": torch.exp,
}


def make_data(output, loss, seed=0):
    """X (N, 5) and targets T (N, 3) that fit the output/loss, float64."""
    return make_problem(SIZES, output, loss, N, seed=seed)


def make_model(hidden, output, loss, dtype, seed=0):
    model = fastbp.Model(SIZES, hidden=hidden, output=output, loss=loss, dtype=dtype,
                         seed=seed)
    # Biases start at zero; give them values so that they are really tested.
    rng = np.random.default_rng(seed + 100)
    for b in model.biases:
        b[...] = rng.normal(0.0, 0.3, size=b.shape)
    return model


class TorchMLP(torch.nn.Module):
    """The fastbp model rebuilt from nn.Linear layers, with its weights copied."""

    def __init__(self, model):
        super().__init__()
        self.dtype = TORCH_DTYPE[model.dtype.name]
        self.hidden, self.output = model.hidden, model.output
        self.loss_name = model.loss_name
        self.huber_delta = model.huber_delta
        self.layers = torch.nn.ModuleList(
            torch.nn.Linear(n_in, n_out, bias=model.bias, dtype=self.dtype)
            for n_in, n_out in zip(model.sizes[:-1], model.sizes[1:])
        )
        with torch.no_grad():
            for l, layer in enumerate(self.layers):
                layer.weight.copy_(torch.from_numpy(model.weights[l].copy()))
                if model.bias:
                    layer.bias.copy_(torch.from_numpy(model.biases[l].copy()))

    def logits(self, x):
        a = x
        for layer in self.layers[:-1]:
            a = ACTIVATION[self.hidden](layer(a))
        return self.layers[-1](a)

    def forward(self, x):
        return ACTIVATION[self.output](self.logits(x))

    def loss(self, x, t):
        """Mean over samples of the per-sample losses of DESIGN.md, from torch's
        own loss functions (summed, then divided by the sample count)."""
        n = x.shape[0]
        z = self.logits(x)
        if self.loss_name == "mse":  # 1/2 ||a - t||^2
            return 0.5 * F.mse_loss(ACTIVATION[self.output](z), t, reduction="sum") / n
        if self.loss_name == "huber":  # torch's HuberLoss, summed over the outputs
            return F.huber_loss(z, t, reduction="sum", delta=self.huber_delta) / n
        if self.loss_name == "poisson":  # sum_k [t_k log(t_k / a_k) - t_k + a_k]:
            # torch's exp(z) - t z, plus the constant t log t - t it leaves out
            constant = torch.special.xlogy(t, t) - t
            return (F.poisson_nll_loss(z, t, log_input=True, full=False, reduction="sum")
                    + constant.sum()) / n
        if self.output == "softmax":  # -sum_k t_k log a_k
            return F.cross_entropy(z, t, reduction="sum") / n
        # -sum_k [t_k log a_k + (1 - t_k) log(1 - a_k)]
        return F.binary_cross_entropy_with_logits(z, t, reduction="sum") / n

    def flat(self):
        """Parameters in fastbp's layout: W^1, b^1, W^2, b^2."""
        return torch.cat([p.detach().reshape(-1) for p in self.parameters()]).numpy()


def as_torch(arr, dtype):
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=dtype))


# ---------------------------------------------------------------------------
# One pass: outputs, loss, gradients, every hidden activation x every head
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPES)
@pytest.mark.parametrize("output, loss", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize("hidden", HIDDEN, ids=HIDDEN)
def test_predict_and_loss_match_torch(hidden, output, loss, dtype):
    X, T = make_data(output, loss)
    model = make_model(hidden, output, loss, dtype)
    net = TorchMLP(model)
    x, t = as_torch(X, dtype), as_torch(T, dtype)
    with torch.no_grad():
        out = net(x).numpy()
        want_loss = net.loss(x, t).item()
    got = model.predict(X)
    assert got.dtype == np.dtype(dtype) and got.shape == (N, SIZES[-1])
    np.testing.assert_allclose(got, out, **PASS_TOL[dtype])
    np.testing.assert_allclose(model.predict(X[3]), out[3], **PASS_TOL[dtype])
    np.testing.assert_allclose(model.loss(X, T), want_loss, **PASS_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPES)
@pytest.mark.parametrize("output, loss", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize("hidden", HIDDEN, ids=HIDDEN)
def test_gradients_match_autograd(hidden, output, loss, dtype):
    X, T = make_data(output, loss)
    model = make_model(hidden, output, loss, dtype)
    net = TorchMLP(model)
    net.loss(as_torch(X, dtype), as_torch(T, dtype)).backward()
    dWs, dbs = model.gradients(X, T)
    assert len(dWs) == len(dbs) == len(net.layers)
    for l, layer in enumerate(net.layers):
        assert dWs[l].dtype == np.dtype(dtype)
        np.testing.assert_allclose(dWs[l], layer.weight.grad.numpy(), **PASS_TOL[dtype],
                                   err_msg=f"dW^{l + 1}")
        np.testing.assert_allclose(dbs[l], layer.bias.grad.numpy(), **PASS_TOL[dtype],
                                   err_msg=f"db^{l + 1}")
    # the gradients are not all ~0 (the comparison above means something)
    assert max(np.abs(g).max() for g in dWs) > 1e-3


# ---------------------------------------------------------------------------
# Training trajectories against torch.optim, shuffle=False
# ---------------------------------------------------------------------------

OPTIMIZERS = {  # id -> (fastbp fit kwargs, torch optimizer class, torch kwargs)
    "sgd": (dict(optimizer="sgd", lr=0.1), torch.optim.SGD, dict(lr=0.1)),
    "momentum": (dict(optimizer="sgd", lr=0.1, momentum=0.9), torch.optim.SGD,
                 dict(lr=0.1, momentum=0.9)),
    "nesterov": (dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True),
                 torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    "sgd-wd": (dict(optimizer="sgd", lr=0.1, weight_decay=0.01), torch.optim.SGD,
               dict(lr=0.1, weight_decay=0.01)),
    "momentum-wd": (dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01),
                    torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    "adam": (dict(optimizer="adam", lr=0.01), torch.optim.Adam, dict(lr=0.01)),
    "adam-wd": (dict(optimizer="adam", lr=0.01, weight_decay=0.01), torch.optim.Adam,
                dict(lr=0.01, weight_decay=0.01)),
    # weight_decay left out: torch's AdamW default, 0.01, on both sides
    "adamw": (dict(optimizer="adamw", lr=0.01), torch.optim.AdamW, dict(lr=0.01)),
    "adamw-wd": (dict(optimizer="adamw", lr=0.01, weight_decay=0.3, betas=(0.8, 0.99)),
                 torch.optim.AdamW, dict(lr=0.01, weight_decay=0.3, betas=(0.8, 0.99))),
    "rmsprop": (dict(optimizer="rmsprop", lr=0.01), torch.optim.RMSprop, dict(lr=0.01)),
    "rmsprop-momentum-wd": (
        dict(optimizer="rmsprop", lr=0.01, momentum=0.9, weight_decay=0.01, alpha=0.9),
        torch.optim.RMSprop, dict(lr=0.01, momentum=0.9, weight_decay=0.01, alpha=0.9)),
    "rmsprop-centered": (dict(optimizer="rmsprop", lr=0.01, centered=True),
                         torch.optim.RMSprop, dict(lr=0.01, centered=True)),
    "rmsprop-centered-momentum": (
        dict(optimizer="rmsprop", lr=0.005, centered=True, momentum=0.5, eps=1e-3),
        torch.optim.RMSprop, dict(lr=0.005, centered=True, momentum=0.5, eps=1e-3)),
}
OPT_IDS = list(OPTIMIZERS)
NETS = {  # id -> (hidden, output, loss)
    "tanh-softmax-ce": ("tanh", "softmax", "cross_entropy"),
    "sigmoid-linear-mse": ("sigmoid", "linear", "mse"),
}
NET_IDS = list(NETS)
# 1: the fused online step; 5 divides N = 10; 4 leaves a final batch of 2.
BATCH_SIZES = [1, 5, 4]
BATCH_IDS = ["bs1", "bs5", "bs4-partial"]
EPOCHS = 2


def torch_train(net, X, T, batch_size, epochs, opt_cls, opt_kwargs, dtype,
                optimizer=None, clip=None):
    """Mini-batches in order (a final partial batch used), mean loss per batch,
    ``clip(parameters)`` between backward and step when given.
    Returns (optimizer, per-epoch mean of the per-sample losses before each step)."""
    x, t = as_torch(X, dtype), as_torch(T, dtype)
    opt = optimizer or opt_cls(net.parameters(), **opt_kwargs)
    epoch_losses = []
    for _ in range(epochs):
        total = 0.0
        for first in range(0, len(X), batch_size):
            xb, tb = x[first : first + batch_size], t[first : first + batch_size]
            opt.zero_grad()
            loss = net.loss(xb, tb)
            loss.backward()
            if clip is not None:
                clip(net.parameters())
            opt.step()
            total += loss.item() * xb.shape[0]
        epoch_losses.append(total / len(X))
    return opt, epoch_losses


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPES)
@pytest.mark.parametrize("net_id", NET_IDS, ids=NET_IDS)
@pytest.mark.parametrize("batch_size", BATCH_SIZES, ids=BATCH_IDS)
@pytest.mark.parametrize("opt_id", OPT_IDS, ids=OPT_IDS)
def test_training_matches_torch_optim(opt_id, batch_size, net_id, dtype):
    fit_kwargs, opt_cls, opt_kwargs = OPTIMIZERS[opt_id]
    hidden, output, loss = NETS[net_id]
    X, T = make_data(output, loss, seed=1)
    model = make_model(hidden, output, loss, dtype, seed=1)
    net = TorchMLP(model)
    np.testing.assert_array_equal(model.params, net.flat())
    start = model.params.copy()

    history = model.fit(X, T, epochs=EPOCHS, batch_size=batch_size, shuffle=False,
                        **fit_kwargs)
    _, torch_losses = torch_train(net, X, T, batch_size, EPOCHS, opt_cls, opt_kwargs,
                                  dtype)

    want = net.flat()
    assert np.abs(want - start).max() > 1e-3  # training really moved the parameters
    np.testing.assert_allclose(model.params, want, **TRAJ_TOL[dtype])
    np.testing.assert_allclose(history.history["loss"], torch_losses, **TRAJ_TOL[dtype])


@pytest.mark.parametrize("batch_size", [1, 4], ids=["bs1", "bs4-partial"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01], ids=["adam", "adam-wd"])
def test_adam_tiny_gradients_match_torch(weight_decay, batch_size):
    # Targets a hair away from the outputs: gradients ~1e-8, the size of eps, so
    # where eps sits (sqrt(v) / sqrt(1 - beta2^t) + eps) and the bias corrections
    # change the step at first order instead of hiding below the tolerance. The
    # gradients are differences a - t of nearly equal numbers, relative rounding
    # ~1e-8 on either side (measured: 2e-11 absolute after 20 steps), hence the
    # looser tolerance.
    hidden, output, loss = NETS["sigmoid-linear-mse"]
    X, _ = make_data(output, loss, seed=4)
    model = make_model(hidden, output, loss, "float64", seed=4)
    T = model.predict(X) + 1e-8 * np.random.default_rng(4).normal(size=(N, SIZES[-1]))
    net = TorchMLP(model)
    start = model.params.copy()
    model.fit(X, T, epochs=2, batch_size=batch_size, shuffle=False, optimizer="adam",
              lr=1e-3, weight_decay=weight_decay)
    torch_train(net, X, T, batch_size, 2, torch.optim.Adam,
                dict(lr=1e-3, weight_decay=weight_decay), "float64")
    want = net.flat()
    assert np.abs(want - start).max() > 1e-5
    np.testing.assert_allclose(model.params, want, rtol=1e-7, atol=1e-9)


PERSIST_OPTS = ["momentum", "nesterov", "momentum-wd", "adam", "adam-wd", "adamw-wd",
                "rmsprop-momentum-wd", "rmsprop-centered-momentum"]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPES)
@pytest.mark.parametrize("batch_size", [1, 4], ids=["bs1", "bs4-partial"])
@pytest.mark.parametrize("opt_id", PERSIST_OPTS, ids=PERSIST_OPTS)
def test_fit_twice_equals_fit_once_and_torch(opt_id, batch_size, dtype):
    # Optimizer state (momentum buffer, Adam moments and step count) persists
    # across fit calls, as it does across steps of one torch optimizer.
    fit_kwargs, opt_cls, opt_kwargs = OPTIMIZERS[opt_id]
    hidden, output, loss = NETS["tanh-softmax-ce"]
    X, T = make_data(output, loss, seed=2)
    once = make_model(hidden, output, loss, dtype, seed=2)
    twice = make_model(hidden, output, loss, dtype, seed=2)
    net = TorchMLP(once)

    once.fit(X, T, epochs=2, batch_size=batch_size, shuffle=False, **fit_kwargs)
    twice.fit(X, T, epochs=1, batch_size=batch_size, shuffle=False, **fit_kwargs)
    twice.fit(X, T, epochs=1, batch_size=batch_size, shuffle=False, **fit_kwargs)
    opt, _ = torch_train(net, X, T, batch_size, 1, opt_cls, opt_kwargs, dtype)
    torch_train(net, X, T, batch_size, 1, opt_cls, opt_kwargs, dtype, optimizer=opt)

    np.testing.assert_array_equal(twice.params, once.params)
    np.testing.assert_allclose(once.params, net.flat(), **TRAJ_TOL[dtype])


@pytest.mark.parametrize("opt_id", ["momentum", "adam"], ids=["momentum", "adam"])
def test_fit_twice_equals_fit_once_shuffled(opt_id):
    # With shuffle=True the shuffling stream persists too.
    fit_kwargs = OPTIMIZERS[opt_id][0]
    X, T = make_data("softmax", "cross_entropy", seed=3)
    once = make_model("tanh", "softmax", "cross_entropy", "float64", seed=3)
    twice = make_model("tanh", "softmax", "cross_entropy", "float64", seed=3)
    once.fit(X, T, epochs=2, batch_size=3, shuffle=True, **fit_kwargs)
    twice.fit(X, T, epochs=1, batch_size=3, shuffle=True, **fit_kwargs)
    twice.fit(X, T, epochs=1, batch_size=3, shuffle=True, **fit_kwargs)
    np.testing.assert_array_equal(twice.params, once.params)


@pytest.mark.parametrize("batch_size", [1, 4], ids=["bs1", "bs4-partial"])
def test_adam_betas_and_eps_match_torch(batch_size):
    """Non-default betas and eps reach the kernels (online and mini-batch)."""
    X, T = make_data("softmax", "cross_entropy", seed=2)
    model = make_model("tanh", "softmax", "cross_entropy", "float64", seed=2)
    net = TorchMLP(model)
    kwargs = dict(lr=0.01, betas=(0.8, 0.95), eps=1e-3)
    model.fit(X, T, epochs=2, batch_size=batch_size, shuffle=False, optimizer="adam", **kwargs)
    torch_train(net, X, T, batch_size, 2, torch.optim.Adam, kwargs, "float64")
    np.testing.assert_allclose(model.params, net.flat(), **TRAJ_TOL["float64"])
    default = make_model("tanh", "softmax", "cross_entropy", "float64", seed=2)
    default.fit(X, T, epochs=2, batch_size=batch_size, shuffle=False, optimizer="adam",
                lr=0.01)
    assert np.abs(default.params - model.params).max() > 1e-4  # the settings mattered


@pytest.mark.parametrize("batch_size", [1, 4], ids=["bs1", "bs4-partial"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPES)
def test_huber_delta_matches_torch(dtype, batch_size):
    """A huber_delta of 0.8, with residuals on both sides of it: loss, gradients and
    an Adam trajectory equal torch's HuberLoss(delta=0.8)."""
    X, T = make_data("linear", "huber", seed=5)
    model = fastbp.Model(SIZES, hidden="tanh", loss="huber", huber_delta=0.8, dtype=dtype,
                         seed=5)
    residual = np.abs(model.predict(X) - T)
    assert 0.2 < np.mean(residual < 0.8) < 0.8  # both branches of the loss are taken
    net = TorchMLP(model)
    x, t = as_torch(X, dtype), as_torch(T, dtype)
    loss = net.loss(x, t)
    loss.backward()
    np.testing.assert_allclose(model.loss(X, T), loss.item(), **PASS_TOL[dtype])
    dWs, _ = model.gradients(X, T)
    np.testing.assert_allclose(dWs[0], net.layers[0].weight.grad.numpy(), **PASS_TOL[dtype])
    start = model.params.copy()
    model.fit(X, T, epochs=2, batch_size=batch_size, shuffle=False, optimizer="adam",
              lr=0.01)
    net.zero_grad()
    torch_train(net, X, T, batch_size, 2, torch.optim.Adam, dict(lr=0.01), dtype)
    assert np.abs(net.flat() - start).max() > 1e-3
    np.testing.assert_allclose(model.params, net.flat(), **TRAJ_TOL[dtype])
    default = fastbp.Model(SIZES, hidden="tanh", loss="huber", dtype=dtype, seed=5)
    assert abs(default.loss(X, T) - model.loss(X, T)) > 1e-3  # the delta mattered
