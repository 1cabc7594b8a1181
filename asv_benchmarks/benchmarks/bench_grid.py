"""The ``fastbp bench`` grid under asv: fastbp's fit and predict on S, M and L
(float32), and the peers (NumPy by hand, PyTorch eager, JAX, scikit-learn, FANN)
on the very same problems as baselines, side by side in the same run.

    S  64-32-10           sigmoid / linear  / mse            batch 1, 16, 128
    M  784-256-128-10     relu    / softmax / cross_entropy  batch 1, 32, 256
    L  784-1024-1024-10   relu    / softmax / cross_entropy  batch 256

Every framework trains ``SAMPLES[case]`` samples per epoch from the same seeded
data and initial weights (``fastbp.bench.peers.make_problem``), plain SGD, one
shuffle per epoch: ``GridFit.time_fit_epoch`` and ``PeerFit.time_peer_epoch``
with the same case and batch compare directly. Thread counts are the libraries'
defaults (all cores); ``fastbp bench`` measures 1 and 2 threads in isolation.
Each benchmark warms up (JIT compile) in setup.
"""

from fastbp.bench.grid import CASES, LR
from fastbp.bench.peers import PEERS, Unavailable, make_problem

# smaller than fastbp bench's epochs: asv repeats each timing several times, and
# the slow peers at batch 1 must stay within a few seconds an epoch
SAMPLES = {"S": 8192, "M": 1024, "L": 512}
GRID = [f"{c.name}-{b}" for c in CASES.values() for b in c.batch_sizes]


def _problem(case, n=None):
    c = CASES[case]
    return make_problem(c.sizes, c.hidden, c.output, c.loss, n or SAMPLES[case], LR)


def _split(case_batch):
    case, batch = case_batch.split("-")
    return case, int(batch)


class GridFit:
    """fastbp.Model.fit, one epoch, float32, on each case and batch of the grid."""

    params = [GRID]
    param_names = ["case_batch"]
    timeout = 300

    def setup_cache(self):
        # Runs once, in a process of its own, before the benchmarks' processes.
        # The data are built here so that peakmem_* does not count their
        # generation, and every kernel of the grid is compiled here so that no
        # benchmark process compiles: peakmem_* then measures a process that loads
        # compiled kernels and trains. Measured from an empty cache (asv 0.6.6,
        # 2026-12-07): S-1 182 MB and S-16 185 MB, against 241 and 282 MB when the
        # first benchmark process of each kernel compiled it in its own setup.
        problems = {case: _problem(case) for case in CASES}
        for case_batch in GRID:
            self.setup(problems, case_batch)
        return problems

    def setup(self, problems, case_batch):
        case, self.batch = _split(case_batch)
        self.peer = PEERS["fastbp"]()
        self.peer.setup(problems[case], self.batch, None)
        p = problems[case].head(4 * self.batch)
        self.peer.model.fit(p.X, p.T, batch_size=self.batch, lr=LR)  # warm-up

    def time_fit_epoch(self, problems, case_batch):
        self.peer.run_epoch()

    def peakmem_fit_epoch(self, problems, case_batch):
        self.peer.run_epoch()


class GridPredict:
    """fastbp.Model.predict on 4096 samples of each case."""

    params = [list(CASES)]
    param_names = ["case"]

    def setup(self, case):
        self.problem = _problem(case, 4096)
        self.peer = PEERS["fastbp"]()
        self.peer.setup(self.problem, 1, None)
        self.peer.model.predict(self.problem.X[:8])  # warm-up: JIT

    def time_predict(self, case):
        self.peer.model.predict(self.problem.X)


class PeerFit:
    """One epoch of each peer on the problem of GridFit: the baselines. Skipped
    (NotImplementedError in setup) where the peer is not installed or cannot
    train the case (FANN: batch 1 only)."""

    params = [[name for name in PEERS if name != "fastbp"], GRID]
    param_names = ["peer", "case_batch"]
    timeout = 600

    def setup(self, peer, case_batch):
        cls = PEERS[peer]
        try:
            cls.available()
        except Unavailable as exc:
            raise NotImplementedError(str(exc)) from None
        case, batch = _split(case_batch)
        problem = _problem(case)
        self.peer = cls()
        reason = self.peer.unsupported(problem, batch)
        if reason:
            raise NotImplementedError(reason)
        self.peer.setup(problem, batch, None)
        self.peer.run_epoch()  # warm-up: JIT (jax), thread pools, allocations

    def teardown(self, peer, case_batch):
        if hasattr(self, "peer"):
            self.peer.close()

    def time_peer_epoch(self, peer, case_batch):
        self.peer.run_epoch()
