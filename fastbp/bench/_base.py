"""What every peer shares: the training problem (:class:`Problem`,
:func:`make_problem`), the :class:`Peer` interface and :class:`Unavailable`.
Public through :mod:`fastbp.bench.peers`."""

from dataclasses import dataclass

import numpy as np


class Unavailable(Exception):
    """The framework is not installed (the message says what is missing)."""


@dataclass
class Problem:
    """One training problem, identical for every framework.

    X (n, n_in) and T (n, n_out) targets (one-hot for classifiers) in ``dtype``
    ("float32" or "float64"); y (n,) int64 class labels or None; Ws[l]
    (n_(l+1), n_l) and bs[l] initial parameters in ``dtype``, which ``setup``
    copies (never modifies). ``shuffle``: each epoch visits the samples in a new
    random order (else in order, every epoch).
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
    shuffle: bool = True
    dtype: str = "float32"

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
            self.shuffle,
            self.dtype,
        )


def make_problem(sizes, hidden, output, loss, n, lr=0.01, seed=0, shuffle=True,
                 dtype="float32"):
    """Seeded data and initial parameters: X ~ N(0, 1); one-hot targets of uniform
    labels for a softmax output, else T ~ U(0, 1); Glorot-uniform W, zero b. Drawn
    in float32, then stored in ``dtype``: the float64 problem holds the same values."""
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
    X, T = X.astype(dtype), T.astype(dtype)
    Ws, bs = [W.astype(dtype) for W in Ws], [b.astype(dtype) for b in bs]
    return Problem(tuple(sizes), hidden, output, loss, X, T, y, Ws, bs, float(lr), shuffle,
                   dtype)


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
