"""Data-parallel training over MPI: ``fastbp.distributed.fit`` (extra ``fastbp[mpi]``).

Run a script on P processes, ``mpiexec -n P python -m mpi4py train.py``; every rank
builds the same model and passes the same X, Y; ``fit`` makes them one run:

- at the start rank 0's parameters, optimizer state and step, shuffling stream and
  epoch count go to every rank; every rank then draws the same global batch order;
- each rank computes the gradient sum over its share of each global batch, the
  sums are combined and divided by the batch's sample count, and every rank takes
  the same optimizer step (``fastbp.kernels.update``, the kernels' own update);
- once an epoch the ranks compare a checksum of the parameters and raise if the
  replicas diverged.

Reduction modes (``sync``):

``"deterministic"`` (default)
    Each global batch is cut into ``groups`` = G = 2^k sample groups that depend
    only on the batch (group g: samples floor(g m / G) .. floor((g + 1) m / G) of a
    batch of m). Each group's gradient is summed by the mini-batch kernel in a
    fixed order, the groups are added by one fixed balanced binary tree, each rank
    owning an aligned subtree (G / P groups), and the P subtree sums are gathered
    (``Allgather``) and added by the top of the same tree on every rank: MPI's own
    reduction order is never used. So the parameters are the same bits for P = 1,
    2, 4, ... G, run after run; P must be a power of two dividing G.
``"fast"``
    One ``Allreduce`` of each rank's gradient sum over its contiguous share of the
    batch: equal to "deterministic" to rounding, not bit-reproducible across P or
    MPI libraries.

Not yet here (issue 17): callbacks, schedules, validation, sample weights, the L2
penalty and batch size 1's fused online path are ``Model.fit``'s only; the
"average" (local SGD) mode, fault handling across ranks and the CLI.
"""

import hashlib

import numpy as np

from fastbp import _threads, optim
from fastbp import _validation as v
from fastbp._training import History
from fastbp.kernels import update as kupdate
from fastbp.kernels.codes import H_WD

__all__ = ["fit"]

SYNCS = ("deterministic", "fast")


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise ImportError("fastbp.distributed needs mpi4py: pip install "
                          '"fastbp[mpi]" (mpi4py and the mpich wheel)') from exc
    return MPI


def _tree_sum(values):
    """Add ``values`` (a power-of-two count) by a balanced binary tree, pairwise."""
    while len(values) > 1:
        values = [values[i] + values[i + 1] for i in range(0, len(values), 2)]
    return values[0]


def _same_everywhere(comm, what, value):
    """Raise ValueError on every rank unless ``value`` is equal on all of them."""
    values = comm.allgather(value)
    if any(other != values[0] for other in values):
        raise ValueError(f"fastbp.distributed.fit: {what} differs between ranks: "
                         + ", ".join(f"rank {r}: {x}" for r, x in enumerate(values)))


def _broadcast_state(comm, model):
    """Rank 0's parameters, optimizer state and step, shuffling stream, epochs_done."""
    opt = model._optimizer
    for array in (model.params, opt.buf1, opt.buf2):
        comm.Bcast(array, root=0)
    opt.step, state, model.epochs_done = comm.bcast(
        (opt.step, model._rng.bit_generator.state, model.epochs_done), root=0)
    model._rng.bit_generator.state = state


def _checksum(params):
    return hashlib.sha256(params.tobytes()).hexdigest()


def fit(model, X, Y, *, comm=None, sync="deterministic", groups=16, epochs=1,
        batch_size=32, lr=0.1, optimizer="sgd", momentum=0.0, nesterov=False,
        weight_decay=0.0, shuffle=True, betas=optim.ADAM_BETAS, eps=optim.ADAM_EPS,
        eps_mode="torch"):
    """``model.fit`` on the ranks of ``comm``, data-parallel (see the module doc).

    Every rank calls it with the same arguments and the same X, Y. Returns the
    same :class:`fastbp.History` on every rank ("loss" is the mean over each
    epoch's samples, before each step, as in ``Model.fit``).

    Parameters
    ----------
    model : fastbp.Model
        The same architecture on every rank; rank 0's state is the one trained.
    X, Y : array-like
        The whole data set, on every rank, as for ``Model.fit``.
    comm : mpi4py.MPI.Comm, optional
        The ranks to train on (default: ``MPI.COMM_WORLD``).
    sync : "deterministic" (default) or "fast"
        How the gradient sums are combined (see the module doc).
    groups : int, default 16
        G, the sample groups of each batch in "deterministic" mode: a power of two
        that the number of ranks divides. The bits depend on it, not on the ranks.
    epochs, batch_size, lr, optimizer, momentum, nesterov, weight_decay, shuffle : see fit
        As for :meth:`fastbp.Model.fit` (``batch_size`` is the global batch).
    betas, eps, eps_mode : see fit
        Adam's settings, as for :meth:`fastbp.Model.fit`.
    """
    MPI = _mpi()
    comm = MPI.COMM_WORLD if comm is None else comm
    P = comm.Get_size()
    sync = v.check_choice("sync", sync, SYNCS)
    groups = v.check_positive_int("groups", groups)
    epochs = v.check_nonneg_int("epochs", epochs)
    batch_size = v.check_positive_int("batch_size", batch_size)
    lr = v.check_nonneg_float("lr", lr)
    shuffle = v.check_bool("shuffle", shuffle)
    settings = optim.Settings.checked(optimizer, momentum, nesterov, weight_decay, betas,
                                      eps, eps_mode, 0.0)
    settings.check_combination()
    if groups & (groups - 1) or (sync == "deterministic" and (groups % P or P & (P - 1))):
        raise ValueError(f"sync='deterministic' needs groups a power of two that the "
                         f"{P} ranks divide (P a power of two <= groups), got groups={groups}")
    try:  # a rank whose data is bad must not leave the others waiting in a collective
        Xc, T = model._XY(X, Y)
        problem = None
    except (TypeError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    problems = comm.allgather(problem)
    if any(problems):
        raise ValueError("fastbp.distributed.fit: bad input on "
                         + "; ".join(f"rank {r}: {p}" for r, p in enumerate(problems) if p))
    _same_everywhere(comm, "the model (sizes, activations, loss, dtype)", repr(model))
    _same_everywhere(comm, "the data (samples, features, dtype)",
                     (Xc.shape, str(Xc.dtype), T.shape))
    _same_everywhere(comm, "the data's contents (a digest of X and Y)",
                     _checksum(Xc) + _checksum(T))
    model._optimizer.use(settings)
    _broadcast_state(comm, model)
    hyper = settings.hyper(lr)
    history = History()
    n = Xc.shape[0]
    with _threads.numba_threads(_threads_per_rank(comm)):
        for epoch in range(1, epochs + 1):
            order = model._rng.permutation(n) if shuffle else np.arange(n)
            start = MPI.Wtime()
            total_loss = 0.0
            for first in range(0, n, batch_size):
                batch = order[first : first + batch_size]
                if sync == "deterministic":
                    loss, grad = _deterministic_sums(comm, model, Xc, T, batch, groups)
                else:
                    loss, grad = _fast_sums(comm, model, Xc, T, batch)
                total_loss += loss
                model._optimizer.step += 1
                opt = model._optimizer
                kupdate.update_range(model.params, grad, float(len(batch)), opt.buf1,
                                     opt.buf2, hyper, opt.step, hyper[H_WD], 0,
                                     model.params.size)
            seconds = MPI.Wtime() - start
            _same_everywhere(comm, f"the parameters after epoch {epoch} (replicas diverged)",
                             _checksum(model.params))
            model.epochs_done += 1
            history._append(epoch, loss=total_loss / n,
                            samples_per_second=n / max(seconds, 1e-12))
    return history


def _threads_per_rank(comm):
    """numba threads for each rank: the host's usable cores shared by its ranks."""
    MPI = _mpi()
    host = comm.Split_type(MPI.COMM_TYPE_SHARED)
    on_host = host.Get_size()
    host.Free()
    return max(1, _threads.usable_cores() // on_host)


def _group_sums(model, Xc, T, rows):
    """(loss sum, gradient sum) over the samples ``rows`` (zeros for none)."""
    if rows.shape[0] == 0:
        return 0.0, np.zeros(model.params.size, dtype=model.dtype)
    loss, _, grad = model._pass(Xc, T, True, True, np.ascontiguousarray(rows))
    return loss, grad


def _deterministic_sums(comm, model, Xc, T, batch, groups):
    """This batch's loss and gradient sums, by the fixed tree (see the module doc)."""
    P, rank = comm.Get_size(), comm.Get_rank()
    m = batch.shape[0]
    cuts = [g * m // groups for g in range(groups + 1)]
    mine = range(rank * groups // P, (rank + 1) * groups // P)
    sums = [_group_sums(model, Xc, T, batch[cuts[g] : cuts[g + 1]]) for g in mine]
    loss = _tree_sum([s[0] for s in sums])
    grad = _tree_sum([s[1] for s in sums])
    if P == 1:
        return loss, grad
    gathered = np.empty((P, grad.size), dtype=grad.dtype)
    comm.Allgather(grad, gathered)
    losses = comm.allgather(loss)
    return _tree_sum(losses), _tree_sum(list(gathered))


def _fast_sums(comm, model, Xc, T, batch):
    """This batch's loss and gradient sums: each rank's share, one Allreduce."""
    MPI = _mpi()
    P, rank = comm.Get_size(), comm.Get_rank()
    m = batch.shape[0]
    loss, grad = _group_sums(model, Xc, T, batch[rank * m // P : (rank + 1) * m // P])
    comm.Allreduce(MPI.IN_PLACE, grad, op=MPI.SUM)
    return comm.allreduce(loss, op=MPI.SUM), grad
