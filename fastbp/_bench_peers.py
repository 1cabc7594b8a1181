"""The frameworks ``fastbp bench`` (and the asv suite) time, behind one interface.

Every framework trains the same problem (:func:`make_problem`: seeded float32
data, Glorot-uniform weights with zero biases, copied into each framework) with
plain SGD, and every one of them shuffles the samples once per epoch, inside the
timed epoch:

    fastbp   Model.fit(epochs=1): a permutation in Python, gathered in the kernel
    torch    eager nn.Sequential + torch.optim.SGD; randperm, then X[perm]
    jax      the whole epoch jitted: random.permutation + lax.scan over batches
    numpy    hand-written batched forward/backward with matmuls (OpenBLAS)
    sklearn  MLPClassifier/MLPRegressor(solver="sgd").partial_fit: one epoch
    fann     the C library FANN through ctypes: online (batch 1) fann_train_epoch
             after fann_shuffle_train_data

A peer is a class with ``available()`` (version, or raises :class:`Unavailable`
with the reason), ``unsupported(problem, batch)`` (None, or why it cannot run
that case), ``setup(problem, batch, threads)`` and ``run_epoch()``. ``threads``
None leaves the framework's thread pools as they are (asv); the thread-count
environment variables are set by the parent process (see ``fastbp.bench``).
After ``setup``, ``notes`` says where a peer differs from the problem (FANN has
no softmax, for instance) and ``exact`` whether it trains exactly the problem's
model and loss.
"""

import ctypes
import ctypes.util
import os
import tempfile
from dataclasses import dataclass

import numpy as np

__all__ = ["PEERS", "Problem", "Unavailable", "make_problem"]


class Unavailable(Exception):
    """The framework is not installed (the message says what is missing)."""


@dataclass
class Problem:
    """One training problem, identical for every framework.

    X (n, n_in) float32; T (n, n_out) float32 targets (one-hot for classifiers);
    y (n,) int64 class labels or None; Ws[l] (n_(l+1), n_l) and bs[l] float32
    initial parameters, which ``setup`` copies (never modifies).
    """

    sizes: tuple
    hidden: str
    output: str
    loss: str
    X: np.ndarray
    T: np.ndarray
    y: object
    Ws: list
    bs: list
    lr: float

    @property
    def classifier(self):
        return self.output == "softmax"

    def head(self, n):
        """The same problem on the first ``n`` samples."""
        y = None if self.y is None else self.y[:n]
        return Problem(
            self.sizes,
            self.hidden,
            self.output,
            self.loss,
            self.X[:n],
            self.T[:n],
            y,
            self.Ws,
            self.bs,
            self.lr,
        )


def make_problem(sizes, hidden, output, loss, n, lr=0.01, seed=0):
    """Seeded data and initial parameters: X ~ N(0, 1); one-hot targets of uniform
    labels for a softmax output, else T ~ U(0, 1); Glorot-uniform W, zero b."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, sizes[0]), dtype=np.float32)
    if output == "softmax":
        y = rng.integers(0, sizes[-1], size=n)
        T = np.eye(sizes[-1], dtype=np.float32)[y]
    else:
        y, T = None, rng.uniform(0.0, 1.0, size=(n, sizes[-1])).astype(np.float32)
    Ws, bs = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        limit = np.sqrt(6.0 / (n_in + n_out))
        Ws.append(rng.uniform(-limit, limit, size=(n_out, n_in)).astype(np.float32))
        bs.append(np.zeros(n_out, dtype=np.float32))
    return Problem(tuple(sizes), hidden, output, loss, X, T, y, Ws, bs, float(lr))


def _check_head(problem, outputs=("linear", "sigmoid", "softmax")):
    """The (output, loss) pairs the hand-written peers implement, or a reason."""
    pair = (problem.output, problem.loss)
    if pair not in {(o, "mse") for o in outputs if o != "softmax"} | {
        ("softmax", "cross_entropy")
    }:
        return f"output {problem.output!r} with loss {problem.loss!r} not implemented"
    return None


class Peer:
    name = "?"
    shuffles = True
    notes = ""
    exact = True

    @staticmethod
    def available():
        """Version string of the framework; raises Unavailable if not importable."""
        raise NotImplementedError

    def unsupported(self, problem, batch):
        return None

    def close(self):
        pass


# -- fastbp -------------------------------------------------------------------


class Fastbp(Peer):
    name = "fastbp"

    @staticmethod
    def available():
        from fastbp import __version__

        return __version__

    def setup(self, problem, batch, threads):
        import numba

        import fastbp

        if threads is not None:
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        p = problem
        self.model = fastbp.Model(
            p.sizes,
            hidden=p.hidden,
            output=p.output,
            loss=p.loss,
            init="xavier",
            dtype="float32",
            seed=0,
        )
        for W, b, W0, b0 in zip(
            self.model.weights, self.model.biases, p.Ws, p.bs, strict=True
        ):
            W[...], b[...] = W0, b0
        self.X, self.T, self.batch, self.lr = p.X, p.T, batch, p.lr
        self.fit_rates = []
        self.held_up_epochs = 0

    def run_epoch(self):
        import warnings

        with warnings.catch_warnings():  # counted and reported instead (bench notes)
            warnings.simplefilter("ignore", RuntimeWarning)
            history = self.model.fit(
                self.X, self.T, epochs=1, batch_size=self.batch, lr=self.lr, shuffle=True
            )
        # fit's own clock: the kernel call only, without validation and shuffling
        self.fit_rates.append(history.history["samples_per_second"][0])
        # epochs fit ran serially because other processes held the CPUs
        self.held_up_epochs += history.held_up_epochs


# -- PyTorch ------------------------------------------------------------------


class Torch(Peer):
    name = "torch"

    @staticmethod
    def available():
        try:
            import torch
        except ImportError as exc:
            raise Unavailable(f"torch is not installed ({exc})") from None
        return torch.__version__

    def unsupported(self, problem, batch):
        return _check_head(problem)

    def setup(self, problem, batch, threads):
        import torch
        from torch import nn

        if threads is not None:
            torch.set_num_threads(threads)
            try:  # allowed once, before any inter-op work
                torch.set_num_interop_threads(threads)
            except RuntimeError:
                pass
        act = {
            "sigmoid": nn.Sigmoid,
            "relu": nn.ReLU,
            "tanh": nn.Tanh,
            "linear": nn.Identity,
        }[problem.hidden]
        layers = []
        for l, (W, b) in enumerate(zip(problem.Ws, problem.bs, strict=True)):
            lin = nn.Linear(W.shape[1], W.shape[0])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(W))
                lin.bias.copy_(torch.from_numpy(b))
            layers.append(lin)
            if l < len(problem.Ws) - 1:
                layers.append(act())
        if problem.output == "sigmoid":
            layers.append(nn.Sigmoid())
        # softmax + cross-entropy: the net gives logits, F.cross_entropy applies
        # log-softmax (the usual, and fastest, way to write it in torch)
        self.net = nn.Sequential(*layers)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=problem.lr)
        self.X = torch.from_numpy(problem.X)
        if problem.classifier:
            self.target = torch.from_numpy(problem.y)
            self.loss = nn.functional.cross_entropy
        else:
            self.target = torch.from_numpy(problem.T)
            self.loss = lambda out, t: 0.5 * ((out - t) ** 2).sum(dim=1).mean()
        self.batch = batch
        self.generator = torch.Generator().manual_seed(0)
        self.torch = torch

    def run_epoch(self):
        n, B = self.X.shape[0], self.batch
        perm = self.torch.randperm(n, generator=self.generator)
        X, target = self.X[perm], self.target[perm]
        net, opt, loss = self.net, self.opt, self.loss
        for i in range(0, n, B):
            opt.zero_grad(set_to_none=True)
            loss(net(X[i : i + B]), target[i : i + B]).backward()
            opt.step()


# -- JAX ----------------------------------------------------------------------


class Jax(Peer):
    name = "jax"

    @staticmethod
    def available():
        try:
            import jax
        except ImportError as exc:
            raise Unavailable(f"jax is not installed ({exc})") from None
        return jax.__version__

    def unsupported(self, problem, batch):
        if problem.X.shape[0] % batch:
            return "the number of samples must be a multiple of the batch size"
        return _check_head(problem)

    def setup(self, problem, batch, threads):
        import jax
        import jax.numpy as jnp

        hidden = {
            "sigmoid": jax.nn.sigmoid,
            "relu": jax.nn.relu,
            "tanh": jnp.tanh,
            "linear": lambda z: z,
        }[problem.hidden]
        output = problem.output
        n, lr = problem.X.shape[0], problem.lr

        def batch_loss(params, x, t):
            a = x
            for l, (W, b) in enumerate(params):
                z = a @ W.T + b
                a = hidden(z) if l < len(params) - 1 else z
            if output == "softmax":  # with cross_entropy
                return -jnp.mean(jnp.sum(t * jax.nn.log_softmax(a), axis=1))
            if output == "sigmoid":
                a = jax.nn.sigmoid(a)
            return 0.5 * jnp.mean(jnp.sum((a - t) ** 2, axis=1))

        grad = jax.grad(batch_loss)

        def step(params, xt):
            g = grad(params, *xt)
            return jax.tree_util.tree_map(lambda p, d: p - lr * d, params, g), None

        def epoch(params, key, X, T):
            perm = jax.random.permutation(key, n)
            Xb = X[perm].reshape(n // batch, batch, X.shape[1])
            Tb = T[perm].reshape(n // batch, batch, T.shape[1])
            params, _ = jax.lax.scan(step, params, (Xb, Tb))
            return params

        self.epoch = jax.jit(epoch)
        self.params = [
            (jnp.asarray(W), jnp.asarray(b))
            for W, b in zip(problem.Ws, problem.bs, strict=True)
        ]
        self.X, self.T = jnp.asarray(problem.X), jnp.asarray(problem.T)
        self.key = jax.random.PRNGKey(0)
        self.jax = jax

    def run_epoch(self):
        self.key, sub = self.jax.random.split(self.key)
        self.params = self.epoch(self.params, sub, self.X, self.T)
        self.jax.block_until_ready(self.params)


# -- NumPy ----------------------------------------------------------------------


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


_ACT = {
    "sigmoid": _sigmoid,
    "relu": lambda z: np.maximum(z, 0, out=z),
    "tanh": np.tanh,
    "linear": lambda z: z,
}
# derivative as a function of the activation a = s(z)
_DACT = {
    "sigmoid": lambda a: a * (1 - a),
    "relu": lambda a: a > 0,
    "tanh": lambda a: 1 - a * a,
    "linear": None,
}


class Numpy(Peer):
    name = "numpy"

    @staticmethod
    def available():
        return np.__version__

    def unsupported(self, problem, batch):
        return _check_head(problem)

    def setup(self, problem, batch, threads):
        self.Ws = [W.copy() for W in problem.Ws]
        self.bs = [b.copy() for b in problem.bs]
        self.X, self.T, self.batch = problem.X, problem.T, batch
        self.lr = np.float32(problem.lr)
        self.hidden, self.output = problem.hidden, problem.output
        self.rng = np.random.default_rng(0)

    def run_epoch(self):
        n, B = self.X.shape[0], self.batch
        perm = self.rng.permutation(n)
        X, T = self.X[perm], self.T[perm]
        Ws, bs, lr, L = self.Ws, self.bs, self.lr, len(self.Ws)
        s, ds = _ACT[self.hidden], _DACT[self.hidden]
        for i in range(0, n, B):
            a = [X[i : i + B]]
            for l in range(L):  # z^l = W^l a^(l-1) + b^l, a row per sample
                z = a[-1] @ Ws[l].T
                z += bs[l]
                a.append(s(z) if l < L - 1 else z)
            out = a[-1]
            if self.output == "softmax":  # + cross-entropy: delta^L = a^L - t
                out = np.exp(out - out.max(axis=1, keepdims=True))
                out /= out.sum(axis=1, keepdims=True)
                delta = out - T[i : i + B]
            elif self.output == "sigmoid":  # + mse
                out = _sigmoid(out)
                delta = (out - T[i : i + B]) * out * (1 - out)
            else:  # linear + mse
                delta = out - T[i : i + B]
            delta *= np.float32(1.0 / len(delta))  # batch mean
            for l in reversed(range(L)):
                dW = delta.T @ a[l]  # dC/dW^l = delta^l (a^(l-1))^T, summed
                db = delta.sum(axis=0)
                if l:  # delta^(l-1) = (W^l)^T delta^l o s'(z^(l-1)), with the old W
                    delta = delta @ Ws[l]
                    if ds is not None:
                        delta *= ds(a[l])
                Ws[l] -= lr * dW
                bs[l] -= lr * db


# -- scikit-learn -----------------------------------------------------------------


class Sklearn(Peer):
    name = "sklearn"

    @staticmethod
    def available():
        try:
            import sklearn
        except ImportError as exc:
            raise Unavailable(f"scikit-learn is not installed ({exc})") from None
        return sklearn.__version__

    def unsupported(self, problem, batch):
        pair = (problem.output, problem.loss)
        if pair not in (("softmax", "cross_entropy"), ("linear", "mse")):
            return (
                "MLPClassifier/MLPRegressor have softmax+log-loss or identity+mse heads"
            )
        return None

    def setup(self, problem, batch, threads):
        import warnings

        from sklearn.neural_network import MLPClassifier, MLPRegressor

        activation = {
            "sigmoid": "logistic",
            "relu": "relu",
            "tanh": "tanh",
            "linear": "identity",
        }[problem.hidden]
        cls = MLPClassifier if problem.classifier else MLPRegressor
        self.est = cls(
            hidden_layer_sizes=problem.sizes[1:-1],
            activation=activation,
            solver="sgd",
            alpha=0.0,
            batch_size=batch,
            learning_rate="constant",
            learning_rate_init=problem.lr,
            momentum=0.0,
            nesterovs_momentum=False,
            shuffle=True,
            random_state=0,
            max_iter=1,
        )
        self.X = problem.X
        self.target = problem.y if problem.classifier else problem.T
        extra = {"classes": np.arange(problem.sizes[-1])} if problem.classifier else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.est.partial_fit(
                self.X[:batch], self.target[:batch], **extra
            )  # allocates
        # then the shared initial parameters (sklearn stores W^T)
        self.est.coefs_ = [W.T.copy() for W in problem.Ws]
        self.est.intercepts_ = [b.copy() for b in problem.bs]
        if not problem.classifier:
            self.notes = "sklearn's squared loss is also averaged over the outputs"

    def run_epoch(self):
        self.est.partial_fit(self.X, self.target)


# -- FANN (C, through ctypes) ---------------------------------------------------------


class _Connection(ctypes.Structure):
    _fields_ = [
        ("from_neuron", ctypes.c_uint),
        ("to_neuron", ctypes.c_uint),
        ("weight", ctypes.c_float),
    ]


_FILL = ctypes.CFUNCTYPE(
    None,
    ctypes.c_uint,
    ctypes.c_uint,
    ctypes.c_uint,
    ctypes.POINTER(ctypes.c_float),
    ctypes.POINTER(ctypes.c_float),
)
# enum fann_activationfunc_enum; LINEAR_PIECE_RECT (ReLU) only exists from FANN 2.3
_FANN_ACT = {
    "linear": 0,
    "sigmoid": 3,
    "tanh": 5,
    "linear_piece": 12,
    "linear_piece_rect": 18,
}
_FANN_LIB = None


def _fann():
    """The float build of FANN (fann_type = float) as a ctypes library."""
    global _FANN_LIB
    if _FANN_LIB is not None:
        return _FANN_LIB
    names = ["libfloatfann.so.2", "libfloatfann.so", "libfann.so.2", "libfann.so"]
    for found in (
        ctypes.util.find_library("floatfann"),
        ctypes.util.find_library("fann"),
    ):
        if found:
            names.insert(0, found)
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        raise Unavailable(
            "FANN's C library was not found (Debian: apt-get install libfann-dev)"
        )
    P, U, F = ctypes.c_void_p, ctypes.c_uint, ctypes.c_float
    sigs = {
        "fann_create_standard_array": (P, [U, ctypes.POINTER(U)]),
        "fann_destroy": (None, [P]),
        "fann_set_activation_function_hidden": (None, [P, ctypes.c_int]),
        "fann_set_activation_function_output": (None, [P, ctypes.c_int]),
        "fann_set_activation_steepness_hidden": (None, [P, F]),
        "fann_set_activation_steepness_output": (None, [P, F]),
        "fann_set_training_algorithm": (None, [P, ctypes.c_int]),
        "fann_set_train_error_function": (None, [P, ctypes.c_int]),
        "fann_set_learning_rate": (None, [P, F]),
        "fann_set_learning_momentum": (None, [P, F]),
        "fann_get_total_connections": (U, [P]),
        "fann_get_connection_array": (None, [P, ctypes.POINTER(_Connection)]),
        "fann_set_weight_array": (None, [P, ctypes.POINTER(_Connection), U]),
        "fann_create_train_from_callback": (P, [U, U, U, _FILL]),
        "fann_shuffle_train_data": (None, [P]),
        "fann_train_epoch": (F, [P, P]),
        "fann_destroy_train": (None, [P]),
        "fann_run": (ctypes.POINTER(F), [P, ctypes.POINTER(F)]),
        "fann_save": (ctypes.c_int, [P, ctypes.c_char_p]),
        "fann_create_from_file": (P, [ctypes.c_char_p]),
    }
    for fname, (restype, argtypes) in sigs.items():
        fn = getattr(lib, fname)
        fn.restype, fn.argtypes = restype, argtypes
    lib.has_relu = hasattr(lib, "fann_create_train_array")  # a 2.3 symbol
    _FANN_LIB = lib
    return lib


class Fann(Peer):
    name = "fann"

    @staticmethod
    def available():
        lib = _fann()
        return "2.3+" if lib.has_relu else "2.2"

    def unsupported(self, problem, batch):
        if batch != 1:
            return "FANN trains online (batch 1) only"
        return None

    def setup(self, problem, batch, threads):
        lib, p = _fann(), problem
        notes = ["single-threaded"]
        hidden = p.hidden
        if hidden == "relu" and not lib.has_relu:
            hidden = "linear_piece"
            notes.append(
                "relu -> FANN_LINEAR_PIECE (clipped to [0, 1]; FANN 2.2 has no relu)"
            )
        elif hidden == "relu":
            hidden = "linear_piece_rect"
        output = p.output
        if output == "softmax":
            output = "sigmoid"
            notes.append("softmax+cross-entropy -> sigmoid+mse (FANN has no softmax)")
        elif p.loss != "mse":
            notes.append(f"{p.loss} -> mse")
        self.exact = len(notes) == 1
        self.notes = "; ".join(notes)
        sizes = (ctypes.c_uint * len(p.sizes))(*p.sizes)
        self.ann = lib.fann_create_standard_array(len(p.sizes), sizes)
        lib.fann_set_activation_function_hidden(self.ann, _FANN_ACT[hidden])
        lib.fann_set_activation_function_output(self.ann, _FANN_ACT[output])
        # FANN computes s(steepness * z) with sigmoid(x) = 1 / (1 + exp(-2x)):
        # steepness 0.5 is the logistic sigmoid, 1.0 keeps the linear ones as they are
        lib.fann_set_activation_steepness_hidden(
            self.ann, 0.5 if hidden == "sigmoid" else 1.0
        )
        lib.fann_set_activation_steepness_output(
            self.ann, 0.5 if output == "sigmoid" else 1.0
        )
        self._set_weights(lib, p)
        lib.fann_set_training_algorithm(self.ann, 0)  # FANN_TRAIN_INCREMENTAL
        lib.fann_set_train_error_function(self.ann, 0)  # FANN_ERRORFUNC_LINEAR (mse)
        lib.fann_set_learning_rate(self.ann, p.lr)
        lib.fann_set_learning_momentum(self.ann, 0.0)
        X, T = p.X, p.T

        def fill(i, n_in, n_out, inp, out):
            ctypes.memmove(inp, X[i].ctypes.data, 4 * n_in)
            ctypes.memmove(out, T[i].ctypes.data, 4 * n_out)

        self.data = lib.fann_create_train_from_callback(
            X.shape[0], X.shape[1], T.shape[1], _FILL(fill)
        )
        self.lib, self.n_out = lib, p.sizes[-1]

    def _set_weights(self, lib, p):
        """FANN numbers neurons layer by layer, each layer ending in its bias neuron;
        a neuron's connections come from every neuron of the layer before."""
        n = lib.fann_get_total_connections(self.ann)
        conns = (_Connection * n)()
        lib.fann_get_connection_array(self.ann, conns)
        c = np.ctypeslib.as_array(conns)
        start = np.cumsum([0] + [k + 1 for k in p.sizes])  # first neuron of each layer
        layer = np.searchsorted(start, c["to_neuron"], side="right") - 1  # l >= 1
        for l in range(1, len(p.sizes)):
            sel = layer == l
            j = c["to_neuron"][sel] - start[l]
            i = c["from_neuron"][sel] - start[l - 1]
            is_bias = i == p.sizes[l - 1]
            W, b = p.Ws[l - 1], p.bs[l - 1]
            c["weight"][sel] = np.where(
                is_bias, b[j], W[j, np.minimum(i, W.shape[1] - 1)]
            )
        # fann_set_weight_array searches every connection for each one it sets
        # (quadratic: 40 s for M), so the weights go through FANN's own file format:
        # save the net, rewrite its connections line (same order), load it back.
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "net.fann").encode()
            if lib.fann_save(self.ann, path) != 0:
                raise OSError("fann_save failed")
            with open(path) as fh:
                lines = fh.read().splitlines()
            head = "connections (connected_to_neuron, weight)="
            k = next(k for k, line in enumerate(lines) if line.startswith(head))
            lines[k] = head + " ".join(
                f"({f}, {w:.9e})"
                for f, w in zip(
                    c["from_neuron"].tolist(), c["weight"].tolist(), strict=True
                )
            )
            with open(path, "w") as fh:
                fh.write("\n".join(lines) + "\n")
            lib.fann_destroy(self.ann)
            self.ann = lib.fann_create_from_file(path)
        if not self.ann:
            raise OSError("fann_create_from_file failed")

    def predict_one(self, x):
        """Outputs of the FANN net for one sample (to check the weight copy)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = self.lib.fann_run(
            self.ann, x.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        )
        return np.ctypeslib.as_array(out, shape=(self.n_out,)).copy()

    def run_epoch(self):
        self.lib.fann_shuffle_train_data(self.data)
        self.lib.fann_train_epoch(self.ann, self.data)

    def close(self):
        if getattr(self, "data", None):
            self.lib.fann_destroy_train(self.data)
            self.data = None
        if getattr(self, "ann", None):
            self.lib.fann_destroy(self.ann)
            self.ann = None

    def __del__(self):
        self.close()


PEERS = {cls.name: cls for cls in (Fastbp, Torch, Jax, Numpy, Sklearn, Fann)}
