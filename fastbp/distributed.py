"""Data-parallel training over MPI: ``fastbp.distributed.fit`` (extra ``fastbp[mpi]``).

Run a script on P processes, ``mpiexec -n P python -m mpi4py train.py``; every rank
builds the same model and passes the same X, Y (the same file, or a memory map of
it: ``np.load(path, mmap_mode="r")``); ``fit`` makes them one run of
``Model.fit``, with the same arguments, callbacks, schedules, validation and
History:

- at the start rank 0's parameters, optimizer state and step, shuffling stream and
  epoch count go to every rank; every rank then draws the same global batch order;
- each rank computes the gradient sum over its share of each global batch; the
  sums are combined and divided by the batch's sample count (its total sample
  weight), never averaged over per-rank means; every rank takes the same optimizer
  step (``fastbp.kernels.update``, the kernels' own update);
- callbacks run on rank 0 only (so only rank 0 writes checkpoints, logs and
  progress bars); every rank follows its ``model.stop_training``, and parameters
  a callback restores at the end of fit (``EarlyStopping(restore_best_weights)``)
  go to every rank. Schedules and validation run on every rank, on the same
  numbers, so they agree;
- once an epoch the ranks compare a checksum of the parameters and raise if the
  replicas diverged;
- numba threads per rank default to the host's usable cores divided by the ranks
  on that host (``n_threads`` overrides it).

Reduction modes (``sync``):

``"deterministic"`` (default)
    Each global batch is cut into ``groups`` = G = 2^k sample groups that depend
    only on the batch (group g: samples floor(g m / G) .. floor((g + 1) m / G) of a
    batch of m). Each group's gradient is summed by the mini-batch kernel in a
    fixed order, the groups are added by one fixed balanced binary tree, each rank
    owning an aligned subtree (G / P groups), and the top of the tree is a
    hand-made reduce-scatter: each rank receives one slice of every rank's subtree
    sum (``Alltoall``), adds the P slices by the same tree, and the slices are
    gathered (``Allgather``). MPI's own reduction order is never used, so the
    parameters are the same bits for P = 1, 2, 4, ... G, run after run, and a
    checkpoint written at one P resumes at another on the same trajectory. P must
    be a power of two dividing G.
``"fast"``
    One ``Allreduce`` of each rank's gradient sum over its contiguous share of the
    batch: equal to "deterministic" to rounding, not bit-reproducible across P or
    MPI libraries.
``"average"``
    Local SGD: each rank trains on its own shard of the samples (rank r: rows
    floor(r n / P) .. floor((r + 1) n / P), shuffled each epoch) with
    ``Model.fit``'s own fused kernels, batch ``batch_size`` per rank (batch 1
    included), and the parameters are averaged (the same reduce-scatter, then / P)
    every ``average_every`` local steps and at the end of each epoch. The first
    ``warmup_epochs`` epochs run synchronously ("deterministic") instead.
    Optimizer moments stay local unless ``average_state=True``; a checkpoint holds
    rank 0's. The same bits run after run at a given P; P = 1 is ``Model.fit``.

An exception on one rank ends every rank when the script runs under
``python -m mpi4py`` (which aborts the job on an uncaught exception); input that is
bad on any rank raises ValueError on every rank before training.
"""

import hashlib
import time

import numpy as np

from fastbp import _buffers, _threads, _training, optim
from fastbp import _validation as v
from fastbp.kernels import update as kupdate
from fastbp.kernels.codes import H_EPOCH, H_L2, H_LR
from fastbp.kernels.layout import BOFF, WOFF
from fastbp.kernels.train import GRADIENTS

__all__ = ["fit"]

SYNCS = ("deterministic", "fast", "average")
# Rows of X in the digest the ranks compare (evenly spaced; all rows up to this):
# a full sha256 of X costs ~1 ms per MB on every fit call.
_DIGEST_ROWS = 4096


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise ImportError("fastbp.distributed needs mpi4py: pip install "
                          '"fastbp[mpi]" (mpi4py and the mpich wheel)') from exc
    return MPI


def _tree_sum(values):
    """Add ``values`` by a balanced binary tree, pairwise (an odd one out is carried
    up a level as it is): the same order for the same count, always."""
    values = list(values)
    while len(values) > 1:
        pairs = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
        values = pairs + values[len(values) - len(values) % 2:]
    return values[0]


def _tree_allreduce(comm, x):
    """The sum over the ranks of ``x`` (one vector per rank) by ``_tree_sum`` in rank
    order, on every rank: a hand-made reduce-scatter (each rank adds one slice of
    everyone's vector, ``Alltoall``) then ``Allgather``. Moves 2 (P - 1) / P of the
    vector per rank, as a ring Allreduce does, in an order MPI cannot change."""
    P = comm.Get_size()
    if P == 1:
        return x
    width = -(-x.size // P)
    send = np.zeros(P * width, dtype=x.dtype)
    send[: x.size] = x
    slices = np.empty((P, width), dtype=x.dtype)
    comm.Alltoall(send, slices)  # slices[q]: rank q's values of this rank's slice
    mine = np.ascontiguousarray(_tree_sum(slices))
    total = np.empty(P * width, dtype=x.dtype)
    comm.Allgather(mine, total)
    return total[: x.size]


def _same_everywhere(comm, what, value):
    """Raise ValueError on every rank unless ``value`` is equal on all of them."""
    values = comm.allgather(value)
    if any(other != values[0] for other in values):
        raise ValueError(f"fastbp.distributed.fit: {what} differs between ranks: "
                         + ", ".join(f"rank {r}: {x}" for r, x in enumerate(values)))


def _on_every_rank(comm, check):
    """``check()`` on every rank; if it raised TypeError/ValueError on any rank, a
    ValueError naming each such rank and its message is raised on every rank (a rank
    whose input is bad must not leave the others waiting in a collective)."""
    try:
        result, problem = check(), None
    except (TypeError, ValueError) as exc:
        result, problem = None, f"{type(exc).__name__}: {exc}"
    problems = comm.allgather(problem)
    if any(problems):
        raise ValueError("fastbp.distributed.fit: bad input on "
                         + "; ".join(f"rank {r}: {p}" for r, p in enumerate(problems) if p))
    return result


def _digest(array):
    rows = array if array.shape[0] <= _DIGEST_ROWS else array[
        np.linspace(0, array.shape[0] - 1, _DIGEST_ROWS).astype(np.int64)]
    return hashlib.sha256(np.ascontiguousarray(rows).tobytes()).hexdigest()


def _checksum(params):
    return hashlib.sha256(params.tobytes()).hexdigest()


def fit(model, X, Y, *, comm=None, sync="deterministic", ranks=None, groups=16,
        average_every=8, warmup_epochs=0, average_state=False, epochs=1, batch_size=32,
        lr=0.1, optimizer="sgd", momentum=0.0, nesterov=False, weight_decay=None,
        shuffle=True, validation_data=None, progress=False, callbacks=None,
        lr_schedule=None, validation_split=None, n_threads=None, sample_weight=None,
        class_weight=None, l2=0.0, betas=optim.ADAM_BETAS, eps=optim.ADAM_EPS,
        eps_mode="torch", alpha=optim.RMSPROP_ALPHA, centered=False, clip_norm=None,
        clip_value=None):
    """``model.fit`` on the ranks of ``comm``, data-parallel (see the module doc).

    Every rank calls it with the same arguments and the same X, Y. Returns the
    same :class:`fastbp.History` on every rank ("loss" is the mean over each
    epoch's samples, before each step, as in ``Model.fit``; "samples_per_second"
    counts the samples of all ranks).

    Parameters
    ----------
    model : fastbp.Model
        The same architecture on every rank; rank 0's state is the one trained,
        and every rank's model holds the result.
    X, Y : array-like
        The whole data set, on every rank, as for ``Model.fit`` (a read-only memory
        map is read in place).
    comm : mpi4py.MPI.Comm, optional
        The ranks to train on (default: ``MPI.COMM_WORLD``).
    sync : "deterministic" (default), "fast" or "average"
        How the ranks combine their work (see the module doc).
    ranks : int, optional
        The number of ranks the run must have: a different ``comm`` size is an
        error (a script started with the wrong ``mpiexec -n``).
    groups : int, default 16
        G, the sample groups of each batch in "deterministic" mode: a power of two
        that the number of ranks divides. The bits depend on it, not on the ranks.
    average_every : int >= 1, default 8
        "average" mode: local steps between averages of the parameters.
    warmup_epochs : int >= 0, default 0
        "average" mode: epochs trained synchronously ("deterministic") first,
        counted by ``model.epochs_done``.
    average_state : bool, default False
        "average" mode: average the optimizer's momentum/moment buffers too.
    epochs, batch_size, lr, optimizer, momentum, nesterov, weight_decay, shuffle : see fit
        As for :meth:`fastbp.Model.fit`; ``batch_size`` (default 32) is the global
        batch, except in "average" mode, where it is each rank's.
    validation_data, progress, callbacks, lr_schedule, validation_split : see fit
        As for :meth:`fastbp.Model.fit`; callbacks and the progress bar run on
        rank 0 only.
    n_threads : int, optional
        numba threads per rank (default: the host's usable cores divided by the
        ranks on that host, so that ranks x threads never exceed its cores).
    sample_weight, class_weight, l2, betas, eps, eps_mode, alpha, centered : see fit
        As for :meth:`fastbp.Model.fit`.
    clip_norm, clip_value : see fit
        As for :meth:`fastbp.Model.fit`: the global batch's gradient is clipped.
    """
    MPI = _mpi()
    comm = MPI.COMM_WORLD if comm is None else comm
    P, rank = comm.Get_size(), comm.Get_rank()

    def checked():
        if ranks is not None and v.check_positive_int("ranks", ranks) != P:
            raise ValueError(f"ranks={ranks}, but the communicator has {P} ranks "
                             f"(started with mpiexec -n {P}?)")
        mode = v.check_choice("sync", sync, SYNCS)
        G = v.check_positive_int("groups", groups)
        if G & (G - 1) or (mode == "deterministic" and (G % P or P & (P - 1))):
            raise ValueError(f"sync='deterministic' needs groups a power of two that the "
                             f"{P} ranks divide (P a power of two <= groups), got "
                             f"groups={groups}")
        options = dict(sync=mode, groups=G,
                       every=v.check_positive_int("average_every", average_every),
                       warmup=v.check_nonneg_int("warmup_epochs", warmup_epochs),
                       state=v.check_bool("average_state", average_state))
        if options["warmup"] and mode == "average" and (G % P or P & (P - 1)):
            raise ValueError(f"warmup_epochs runs 'deterministic' epochs: groups={groups} "
                             f"must be a power of two that the {P} ranks divide")
        plan = model._fit_plan(
            X, Y, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
            momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
            shuffle=shuffle, validation_data=validation_data, progress=progress and rank == 0,
            callbacks=callbacks, lr_schedule=lr_schedule, validation_split=validation_split,
            n_threads=n_threads, sample_weight=sample_weight, class_weight=class_weight,
            l2=l2, betas=betas, eps=eps, eps_mode=eps_mode, alpha=alpha, centered=centered,
            clip_norm=clip_norm, clip_value=clip_value)
        return options, plan, str(getattr(X, "dtype", type(X).__name__))

    options, plan, x_dtype = _on_every_rank(comm, checked)
    _same_everywhere(comm, "the model (sizes, activations, loss, dtype)", repr(model))
    _same_everywhere(comm, "X's dtype", x_dtype)
    if plan is None:  # epochs=0: nothing to train
        history = _training.History()
        history.communication_seconds = 0.0
        return history
    Xc, T = plan["Xc"], plan["T"]
    _same_everywhere(comm, "the data (samples, features, targets)", (Xc.shape, T.shape))
    _same_everywhere(comm, "the data's contents (a digest of X and Y)",
                     _digest(Xc) + _digest(T))
    _same_everywhere(comm, "sample_weight/class_weight", None if plan["weights"] is None
                     else _checksum(plan["weights"]))
    _broadcast_state(comm, model)
    threads = plan.pop("n_threads")
    plan["cbs"] = _RankZeroCallbacks(comm, plan["cbs"])

    loops = []

    def make_loop(*args):
        loops.append(_Replicated(comm, options, *args))
        return loops[-1]

    with _threads.numba_threads(threads or _threads_per_rank(comm)):
        history = _training.train(model, make_loop=make_loop, **plan)
    # seconds this rank spent in the collectives of the epochs (not in History's
    # records: those are Model.fit's); fastbp.bench.distributed reports the share
    history.communication_seconds = loops[0].comm_seconds
    return history


def _broadcast_state(comm, model):
    """Rank 0's parameters, optimizer state and step, shuffling stream, epochs_done,
    schedule state and dropout key (a model without a seed draws its own key on
    each rank: each rank's groups then took other masks, P = 2 was not P = 1)."""
    opt = model._optimizer
    for array in (model.params, opt.buf1, opt.buf2):
        comm.Bcast(array, root=0)
    (opt.step, state, model.epochs_done, model._schedule_state,
     model._dropout_key) = comm.bcast(
        (opt.step, model._rng.bit_generator.state, model.epochs_done,
         model._schedule_state, model._dropout_key), root=0)
    model._rng.bit_generator.state = state


def _threads_per_rank(comm):
    """numba threads for each rank: the host's usable cores shared by its ranks."""
    MPI = _mpi()
    host = comm.Split_type(MPI.COMM_TYPE_SHARED)
    on_host = host.Get_size()
    host.Free()
    return max(1, _threads.usable_cores() // on_host)


class _RankZeroCallbacks:
    """The fit's callbacks, run on rank 0 only: one process writes checkpoints, logs
    and progress. Every rank calls the hooks at the same points; after
    ``on_epoch_end`` and ``on_divergence`` rank 0's ``model.stop_training`` goes to
    every rank, after ``on_fit_end`` its parameters (a callback may restore the best
    ones). ``on_exception`` makes no collective call (the job is ending)."""

    def __init__(self, comm, cbs):
        self.comm, self.cbs, self.rank = comm, cbs, comm.Get_rank()

    def wanting(self, hook):
        return self.cbs.wanting(hook) if self.rank == 0 else []

    def call(self, hook, model, *args):
        if self.rank == 0:
            self.cbs.call(hook, model, *args)
        if hook in ("on_epoch_end", "on_divergence"):
            model.stop_training = self.comm.bcast(model.stop_training, root=0)
        elif hook == "on_fit_end":
            self.comm.Bcast(model.params, root=0)


class _Replicated(_training._Loop):
    """The epochs of one distributed fit: ``_training.train`` calls ``warm_up`` and
    ``epoch`` as it does ``_Loop``'s, on every rank."""

    def __init__(self, comm, options, model, Xc, T, weights, batch_size, lr, shuffle, rows):
        self.comm, self.P, self.rank = comm, comm.Get_size(), comm.Get_rank()
        self.sync, self.groups = options["sync"], options["groups"]
        self.every, self.warmup, self.average_state = (options["every"], options["warmup"],
                                                       options["state"])
        super().__init__(model, Xc, T, weights, batch_size, lr, shuffle, rows)
        self.weighted = weights is not None
        self.all_weights = weights
        self._scratch, self._pool, self._owned = {}, [], []
        self.comm_seconds = 0.0
        self._grads = _buffers.line_aligned_zeros(model.params.size, model.dtype)

    def warm_up(self):
        """Loads or compiles the kernels: rank 0 first, then the others from the
        cache it wrote (ranks compiling at once would write the same cache files
        together)."""
        start = time.perf_counter()
        for turn in (0, 1):
            if (self.rank == 0) == (turn == 0):
                if self.sync == "average":
                    super().warm_up()
                rows = np.arange(min(self.n, -(-self.batch_size // self.groups)))
                _, grad = self._group_sums(rows if self.rows is None else self.rows[rows])
                opt = self.model._optimizer
                kupdate.update_range(self.model.params.copy(), grad, 1.0, opt.buf1.copy(),
                                     opt.buf2.copy(), self.hyper, 1, 0.0, 0, grad.size)
            self.comm.Barrier()
        return time.perf_counter() - start

    def epoch(self, epoch, lr, batch_callbacks):
        model = self.model
        self.hyper[H_LR] = lr
        self.hyper[H_EPOCH] = model.epochs_done  # the dropout masks' epoch
        order = model._rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        if self.rows is not None:
            order = self.rows[order]
        start = time.perf_counter()
        if self.sync == "average" and model.epochs_done >= self.warmup:
            total = self._local_epoch(order, epoch, batch_callbacks)
        else:
            total = self._synchronous_epoch(order, epoch, batch_callbacks)
        seconds = time.perf_counter() - start
        loss = total / self.total_weight
        if not (np.isfinite(loss) and np.isfinite(model.params).all()):
            return loss, None, self.parallel
        _same_everywhere(self.comm, f"the parameters after epoch {epoch} "
                         "(replicas diverged)", _checksum(model.params))
        return loss, seconds, self.parallel  # never held up: not counted as such

    def _progress(self, callbacks, epoch, done, n_batches, samples, last):
        """``on_batches_end`` every CHUNK_SECONDS and at the end; the time of the last."""
        now = time.perf_counter()
        if callbacks and (now - last >= _training.CHUNK_SECONDS or done == n_batches):
            logs = {"batches": done, "n_batches": n_batches, "samples": samples,
                    "n_samples": self.n}
            for cb in callbacks:
                cb.on_batches_end(self.model, epoch, logs)
            return now
        return last

    # -- "deterministic" and "fast": every batch across the ranks -------------------

    def _synchronous_epoch(self, order, epoch, callbacks):
        opt = self.model._optimizer
        total, last = 0.0, time.perf_counter()
        for b in range(self.n_batches):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size]
            if self.sync == "fast":
                loss, grad = self._fast_sums(batch)
            else:
                loss, grad = self._deterministic_sums(batch)
            total += loss
            opt.step += 1
            count = self._count(batch)
            if count > 0.0:  # as the kernels: a batch weighing 0 takes no step
                self._step(grad, count)
            if any(grad is mine for mine in self._owned):
                self._pool.append(grad)
            last = self._progress(callbacks, epoch, b + 1, self.n_batches,
                                  min((b + 1) * self.batch_size, self.n), last)
        return total

    def _count(self, batch):
        """The batch's total sample weight, added in sample order as the kernels do."""
        if not self.weighted:
            return float(batch.shape[0])
        return float(np.cumsum(self.all_weights[batch], dtype=np.float64)[-1])

    def _step(self, grad, count):
        """The optimizer step with gradient grad / count: the L2 penalty l2 W / count
        on the weights only, as the mini-batch kernel (kernels/batch.py)."""
        model, opt, hyper = self.model, self.model._optimizer, self.hyper
        l2 = hyper[H_L2]
        spans = [(0, model.params.size, 0.0)]
        if kupdate.clipping(hyper):  # the region's CLIP and UPDATE phases, serially
            partials = np.array([kupdate.clip_squares(model.params, grad, hyper, model._layout, c)
                                 for c in range(kupdate.clip_slots(model._layout))])
            coef = kupdate.clip_coef(partials, count, hyper)
            for l in range(1, len(model.sizes)):
                w_off, b_off = model._layout[WOFF, l], model._layout[BOFF, l]
                b0, b1 = (b_off, b_off + model.sizes[l]) if model.bias else (0, 0)
                kupdate.clip_update(model.params, grad, count, opt.buf1, opt.buf2, hyper,
                                    opt.step, coef, w_off,
                                    w_off + model.sizes[l] * model.sizes[l - 1], b0, b1)
            return
        if l2 != 0.0:
            spans = []
            for l in range(1, len(model.sizes)):
                w_off = model._layout[WOFF, l]
                spans.append((w_off, w_off + model.sizes[l] * model.sizes[l - 1],
                              l2 / count))
                if model.bias:
                    b_off = model._layout[BOFF, l]
                    spans.append((b_off, b_off + model.sizes[l], 0.0))
        for k0, k1, l2_decay in spans:
            kupdate.update_range(model.params, grad, count, opt.buf1, opt.buf2, hyper,
                                 opt.step, l2_decay, k0, k1)

    def _group_sums(self, rows, into=None):
        """(loss sum, gradient sum) over the samples ``rows``: one region call,
        GRADIENTS mode, one batch. The kernel adds the batch's gradient into
        ``into`` (zeros by default: then it returns the sum itself; given the tree's
        left sibling, it returns left + right, the tree's own add, fused)."""
        model = self.model
        if into is None:
            into = self._zeros()
        m = rows.shape[0]
        if m == 0:
            return 0.0, into
        if m not in self._scratch:  # a batch's groups take at most two sizes
            self._scratch[m] = (
                _buffers.batch_scratch(model.params, model._layout, m, model.dtype),
                np.empty((m, model.sizes[-1]), dtype=model.dtype))
        scratch, out = self._scratch[m]
        empty = model.params[:0]
        weights = empty if self.all_weights is None else self.all_weights
        loss = _threads.run_region(
            _threads.parallel(m, model.sizes), GRADIENTS, True, model.params, empty, empty,
            model._layout, model._codes, self.hyper, 0, self.Xc, self.T,
            np.ascontiguousarray(rows), weights, m, *scratch, self._grads, into, out)
        return loss, into

    def _zeros(self):
        """A zeroed gradient-sized buffer, from the pool of this fit (no page faults
        from a fresh allocation per group: they cost more than the adds)."""
        if self._pool:
            buffer = self._pool.pop()
            buffer.fill(0)
            return buffer
        self._owned.append(_buffers.line_aligned_zeros(self.model.params.size,
                                                       self.model.dtype))
        return self._owned[-1]

    def _deterministic_sums(self, batch):
        """This batch's loss and gradient sums, by the fixed tree (see the module doc):
        this rank's G / P groups combined as they come, as a binary counter does (the
        same pairs as ``_tree_sum``), then the top of the tree across the ranks."""
        G, P, m = self.groups, self.P, batch.shape[0]
        cuts = [g * m // G for g in range(G + 1)]
        pending = []  # (level, loss, grad): the left siblings still waiting
        for g in range(self.rank * G // P, (self.rank + 1) * G // P):
            rows = batch[cuts[g] : cuts[g + 1]]
            if pending and pending[-1][0] == 0:  # a right leaf: added onto its left one
                _, left_loss, left = pending.pop()
                loss, grad = self._group_sums(rows, into=left)
                node = (1, left_loss + loss, grad)
            else:
                loss, grad = self._group_sums(rows)
                node = (0, loss, grad)
            while pending and pending[-1][0] == node[0]:
                level, left_loss, left = pending.pop()
                np.add(left, node[2], out=left)
                self._pool.append(node[2])
                node = (level + 1, left_loss + node[1], left)
            pending.append(node)
        (_, loss, grad), = pending
        if P > 1:
            start = time.perf_counter()
            loss = _tree_sum(self.comm.allgather(loss))
            total = _tree_allreduce(self.comm, grad)
            self.comm_seconds += time.perf_counter() - start
            self._pool.append(grad)
            grad = total
        return loss, grad

    def _fast_sums(self, batch):
        """This batch's loss and gradient sums: each rank's share, one Allreduce."""
        MPI = _mpi()
        P, m = self.P, batch.shape[0]
        loss, grad = self._group_sums(batch[self.rank * m // P : (self.rank + 1) * m // P])
        start = time.perf_counter()
        self.comm.Allreduce(MPI.IN_PLACE, grad, op=MPI.SUM)
        loss = self.comm.allreduce(loss, op=MPI.SUM)
        self.comm_seconds += time.perf_counter() - start
        return loss, grad

    # -- "average": local steps on each rank's shard, then the mean ------------------

    def _local_epoch(self, order, epoch, callbacks):
        """This rank's shard, in the epoch's order, through Model.fit's own kernel, the
        parameters averaged every ``every`` batches and at the end."""
        P, r, n_all = self.P, self.rank, self.Xc.shape[0]
        lo, hi = r * n_all // P, (r + 1) * n_all // P
        mine = order[(order >= lo) & (order < hi)]
        bs = self.batch_size
        # every rank makes the same number of averaging rounds: that of the largest shard
        shares = [int(np.count_nonzero((order >= q * n_all // P)
                                       & (order < (q + 1) * n_all // P))) for q in range(P)]
        n_batches = -(-mine.shape[0] // bs)
        most = -(-max(shares) // bs)
        opt, step = self.model._optimizer, self.model._optimizer.step
        total, last = 0.0, time.perf_counter()
        for first in range(0, most, self.every):
            stop = min(first + self.every, n_batches)
            if stop > first:
                total = self.run(step + first, mine[first * bs : stop * bs], self.parallel,
                                 total)
            self._average()
            done = min(first + self.every, most)
            last = self._progress(callbacks, epoch, done, most, min(done * bs * P, self.n),
                                  last)
        opt.step += most
        return _tree_sum(self.comm.allgather(total))

    def _average(self):
        """Every rank's parameters (and with average_state its optimizer buffers)
        replaced by their mean over the ranks, added in rank order."""
        model, opt = self.model, self.model._optimizer
        arrays = [model.params] + ([opt.buf1, opt.buf2] if self.average_state else [])
        start = time.perf_counter()
        for array in arrays:
            if array.size:
                array[...] = _tree_allreduce(self.comm, array) / array.dtype.type(self.P)
        self.comm_seconds += time.perf_counter() - start
