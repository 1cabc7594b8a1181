"""The grid of ``fastbp bench`` and its options: the cases, the defaults (and
--quick's), the argument parser, and the settings a run uses (see
:mod:`fastbp.bench.driver` for the whole run)."""

import argparse
import os
import sys
from dataclasses import dataclass

import numpy as np

from fastbp.bench import peers

__all__ = ["CASES", "LR", "add_arguments", "build_parser"]


@dataclass(frozen=True)
class Case:
    name: str
    sizes: tuple
    hidden: str
    output: str
    loss: str
    batch_sizes: tuple
    max_samples: int  # cap of the samples per epoch (the data generated)


# fmt: off
_REG, _CLS = ("sigmoid", "linear", "mse"), ("relu", "softmax", "cross_entropy")
CASES = {
    "S": Case("S", (64, 32, 10), *_REG, (1, 16, 128), 200_000),
    "M": Case("M", (784, 256, 128, 10), *_CLS, (1, 32, 256), 20_000),
    "L": Case("L", (784, 1024, 1024, 10), *_CLS, (256,), 4096),
}
FRAMEWORKS = list(peers.PEERS)  # fastbp (and its dropout run) first, then the peers
PEER_NAMES = [name for name in FRAMEWORKS if not name.startswith("fastbp")]
LR = 0.01
QUICK = dict(cases=["S"], batch_sizes=[1, 16], thread_counts=[1], samples=512,
             repeats=1, gemm_size=256)
DEFAULTS = dict(cases=list(CASES), batch_sizes=None, thread_counts=[1, 2],
                samples=None, repeats=3, gemm_size=2048)
# fmt: on


# -- arguments ---------------------------------------------------------------------


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _names(choices, extra=()):
    def convert(text):
        names = [s.strip() for s in text.split(",") if s.strip()]
        bad = [s for s in names if s not in choices and s not in extra]
        if not names or bad:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join([*choices, *extra])}, "
                f"got {text!r}"
            )
        return names

    return convert


# fmt: off
def add_arguments(p, worker=False):
    """The options of ``fastbp bench`` (the CLI's and ``python -m fastbp.bench``'s)."""
    p.add_argument("--cases", type=_names(list(CASES)), metavar="S,M,L",
                   help="comma-separated cases of the grid (default: S,M,L)")
    p.add_argument("--batch-sizes", type=_positive_int, nargs="+", metavar="B",
                   help="only these batch sizes of each case's grid (default: the "
                   "grid's, S 1 16 128, M 1 32 256, L 256)")
    p.add_argument("--threads", type=_positive_int, nargs="+", metavar="N",
                   dest="thread_counts",
                   help="thread counts, each measured in fresh worker processes; "
                   "capped at the number of CPUs (default: 1 2)")
    p.add_argument("--samples", type=_positive_int, metavar="N",
                   help="samples per epoch for every framework, rounded down to a "
                   "multiple of the batch size; samples/s is reported either way "
                   "(default: sized per framework by a short probe epoch so that an "
                   "epoch takes about --epoch-seconds, at most S 200000, M 20000, "
                   "L 4096)")
    p.add_argument("--epoch-seconds", type=_positive_float, default=0.4, metavar="SEC",
                   help="target length of an epoch when --samples is not given "
                   "(default: %(default)s)")
    p.add_argument("--repeats", type=_positive_int, metavar="R",
                   help="timed epochs per measurement, the median is reported; one "
                   "untimed warm-up epoch (JIT compile) comes first; with worker "
                   "processes the timed epochs of all frameworks and thread counts "
                   "take turns, one each a round (default: 3)")
    p.add_argument("--peers", type=_names(PEER_NAMES, ("all", "none")), metavar="LIST",
                   help="comma-separated peers to compare with: "
                   f"{', '.join(PEER_NAMES)}, 'all' or 'none'; missing ones are "
                   "reported as skipped (default: all)")
    p.add_argument("--gemm-size", type=_positive_int, metavar="N",
                   help="size of the square matrices of the GEMM peak "
                   "(default: 2048)")
    p.add_argument("--json", action="store_true",
                   help="print the results as JSON instead of tables (default: tables)")
    p.add_argument("--save", metavar="PATH",
                   help="also write the JSON results to PATH (default: not written)")
    p.add_argument("--quick", action="store_true",
                   help="a tiny run for tests: case S, batch 1 and 16, 1 thread, 512 "
                   "samples, 1 repeat, 256x256 GEMM; explicit options still apply "
                   "(default: off)")
    p.add_argument("--busy", type=int, default=0, metavar="N",
                   help="keep N other processes spinning on the CPUs for the whole run, "
                   "to measure every framework on a busy machine (default: 0)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="the data and parameters of every framework (FANN: float32 only; "
                   "JAX with jax_enable_x64 for float64); the GEMM peak is measured in "
                   "the same dtype (default: %(default)s)")
    p.add_argument("--dropout", action="store_true",
                   help="also time fastbp with dropout 0.2 on every hidden layer "
                   "(fastbp-dropout), side by side: what dropout costs (default: off)")
    p.add_argument("--no-shuffle", action="store_true",
                   help="every framework visits the samples in order in every epoch, "
                   "instead of shuffling each epoch (default: off)")
    p.add_argument("--in-process", action="store_true",
                   help="run every framework in this process instead of worker "
                   "processes: thread counts are then set at run time only (numba, "
                   "torch, BLAS through threadpoolctl), not for JAX (default: off)")
    if worker:
        p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
        p.add_argument("--framework", choices=FRAMEWORKS, help=argparse.SUPPRESS)
# fmt: on


def _settings(args):
    """Options with the --quick or the normal defaults filled in."""
    base = QUICK if args.quick else DEFAULTS
    s = {k: v if getattr(args, k, None) is None else getattr(args, k)
         for k, v in base.items()}  # fmt: skip
    s["epoch_seconds"] = args.epoch_seconds
    if getattr(args, "busy", 0) < 0:
        raise ValueError(f"--busy: a count of processes >= 0, got {args.busy}")
    s["busy"] = getattr(args, "busy", 0)
    s["shuffle"] = not getattr(args, "no_shuffle", False)
    s["dtype"] = getattr(args, "dtype", "float32")
    s["dropout"] = getattr(args, "dropout", False)
    cpus = os.cpu_count() or 1
    counts = sorted({min(n, cpus) for n in s["thread_counts"]})
    if counts != sorted(set(s["thread_counts"])) and not getattr(args, "worker", False):
        print(f"note: thread counts capped at the {cpus} CPUs", file=sys.stderr)
    s["thread_counts"] = counts
    wanted = args.peers or ["all"]
    s["peers"] = [p for p in PEER_NAMES if "all" in wanted or p in wanted]
    if "none" in wanted:
        s["peers"] = []
    if not _grid(s):
        raise ValueError(
            f"--batch-sizes {' '.join(map(str, s['batch_sizes']))}: no batch size of "
            f"the cases {','.join(s['cases'])} (S 1 16 128, M 1 32 256, L 256)"
        )
    return s


def _grid(settings):
    """[(case, batch)] of the grid after the --cases and --batch-sizes filters."""
    pairs = []
    for name in settings["cases"]:
        case = CASES[name]
        for batch in case.batch_sizes:
            if settings["batch_sizes"] is None or batch in settings["batch_sizes"]:
                pairs.append((case, batch))
    return pairs


DESCRIPTION = (
    "Measure training throughput (samples/s over an epoch, float32 or float64, plain SGD) of "
    "fastbp and its installed peers (PyTorch eager, JAX with the epoch jitted through "
    "lax.scan, NumPy on its BLAS, scikit-learn's MLP, the C library FANN) on the grid "
    "S = 64-32-10 sigmoid/linear/mse at batch 1, 16, 128; M = 784-256-128-10 "
    "relu/softmax/cross-entropy at batch 1, 32, 256; L = 784-1024-1024-10 relu/softmax/"
    "cross-entropy at batch 256; at 1 and 2 threads. Reports GFLOP/s (2 FLOPs per "
    "weight forward, 2 for its gradient, 2 for propagating delta, except into the "
    "input layer) and the percentage of the GEMM peak (np.dot, same dtype) measured in "
    "the same run at the same thread count, and the ratio of each framework's "
    "samples/s to the fastest peer's (fastbp excluded). Each (framework, thread "
    "count) runs in a fresh worker process pinned to that many CPUs, so that its "
    "thread pools start with the right size; the timed epochs of all of them take "
    "turns (one epoch each a round), so that the ratios compare epochs of the same "
    "minutes. Around every multi-thread epoch a probe times how many cores the host "
    "gives the threads right then (shared virtual machines at times run both vCPUs on "
    "one core), shown beside the 2-threads-vs-1 ratios."
)



def build_parser(worker=False, prog="python -m fastbp.bench",
                 parser_class=argparse.ArgumentParser):
    """The parser of ``python -m fastbp.bench`` (``worker``: with the worker
    process's hidden options); ``fastbp bench`` builds it with its own ``prog`` and
    ``parser_class``."""
    parser = parser_class(prog=prog, description=DESCRIPTION)
    add_arguments(parser, worker=worker)
    return parser
