"""The frameworks ``fastbp bench`` (and the asv suite) time, behind one interface.

Every framework trains the same problem (:func:`make_problem`: seeded float32
or float64 data (``fastbp bench --dtype``), Glorot-uniform weights with zero
biases, copied into each framework) with
plain SGD, and every one of them shuffles the samples once per epoch, inside the
timed epoch (unless the problem says ``shuffle=False``: then every epoch visits
them in order):

    fastbp   Model.fit(epochs=1): a permutation in Python, gathered in the kernel
             (fastbp-dropout, with --dropout: the same with dropout 0.2; not a peer)
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
environment variables are set by the parent process (see ``fastbp.bench.workers``).
After ``setup``, ``notes`` says where a peer differs from the problem (FANN has
no softmax, for instance) and ``exact`` whether it trains exactly the problem's
model and loss.
"""

import numpy as np

from fastbp.bench._base import Peer, Problem, Unavailable, _check_head, make_problem
from fastbp.bench._fann import Fann

__all__ = ["PEERS", "Problem", "Unavailable", "make_problem"]


# -- fastbp -------------------------------------------------------------------


class Fastbp(Peer):
    name = "fastbp"
    dropout = 0.0  # FastbpDropout's rate on every hidden layer

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
            dtype=p.dtype,
            seed=0,
            dropout=self.dropout if len(p.sizes) > 2 else 0.0,
        )
        for W, b, W0, b0 in zip(
            self.model.weights, self.model.biases, p.Ws, p.bs, strict=True
        ):
            W[...], b[...] = W0, b0
        self.X, self.T, self.batch, self.lr, self.shuffle = p.X, p.T, batch, p.lr, p.shuffle
        self.fit_rates = []
        self.held_up_epochs = 0

    def run_epoch(self):
        import warnings

        with warnings.catch_warnings():  # counted and reported instead (bench notes)
            warnings.simplefilter("ignore", RuntimeWarning)
            history = self.model.fit(
                self.X, self.T, epochs=1, batch_size=self.batch, lr=self.lr,
                shuffle=self.shuffle,
            )
        # fit's own clock: the kernel call only, without validation and shuffling
        self.fit_rates.append(history.history["samples_per_second"][0])
        # epochs fit ran serially because other processes held the CPUs
        self.held_up_epochs += history.held_up_epochs


class FastbpDropout(Fastbp):
    """fastbp with inverted dropout 0.2 on every hidden layer (``fastbp bench
    --dropout``): what dropout costs, side by side with fastbp in the same run.
    Not a peer: it is never the "best peer" a ratio is taken to."""

    name = "fastbp-dropout"
    dropout = 0.2
    exact = False
    notes = "dropout 0.2 on every hidden layer (the others: none)"


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
            lin = nn.Linear(W.shape[1], W.shape[0], dtype=getattr(torch, problem.dtype))
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
        self.torch, self.shuffle = torch, problem.shuffle

    def run_epoch(self):
        n, B = self.X.shape[0], self.batch
        X, target = self.X, self.target
        if self.shuffle:
            perm = self.torch.randperm(n, generator=self.generator)
            X, target = X[perm], target[perm]
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

        if problem.dtype == "float64":  # else JAX keeps float32 and casts the data down
            jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        hidden = {
            "sigmoid": jax.nn.sigmoid,
            "relu": jax.nn.relu,
            "tanh": jnp.tanh,
            "linear": lambda z: z,
        }[problem.hidden]
        output, shuffle = problem.output, problem.shuffle
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
            if shuffle:  # decided when the epoch is traced
                perm = jax.random.permutation(key, n)
                X, T = X[perm], T[perm]
            Xb = X.reshape(n // batch, batch, X.shape[1])
            Tb = T.reshape(n // batch, batch, T.shape[1])
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
        self.lr = np.dtype(problem.dtype).type(problem.lr)
        self.hidden, self.output = problem.hidden, problem.output
        self.rng = np.random.default_rng(0)
        self.shuffle = problem.shuffle

    def run_epoch(self):
        n, B = self.X.shape[0], self.batch
        X, T = self.X, self.T
        if self.shuffle:
            perm = self.rng.permutation(n)
            X, T = X[perm], T[perm]
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
            delta *= delta.dtype.type(1.0 / len(delta))  # batch mean
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
            shuffle=problem.shuffle,
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


PEERS = {cls.name: cls for cls in (Fastbp, FastbpDropout, Torch, Jax, Numpy, Sklearn, Fann)}
