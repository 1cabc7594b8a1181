"""The README's distributed speed and scaling tables: samples/s of
``fastbp.distributed.fit`` and of ``Model.fit`` on the same work, and the share of
each rank's epoch spent in the collectives (waiting for the slowest rank included).

    HYDRA_LAUNCHER=fork mpiexec -n P python -m mpi4py -m fastbp.bench.distributed \\
        [--net S|M|L] [--sync deterministic|fast|average|model] [--batch 256] \\
        [--threads T] [--average-every H] [--samples N]

64-32-10 (S), 784-256-128-10 (M) or 784-1024-1024-10 (L), float32, 8,192 random
samples (``--samples``), the median of ``--repeats`` epochs after a warm-up fit
(compile or cache load outside the timing). ``--sync model`` times ``Model.fit``
(run it with ``-n 1``); ``--threads`` sets numba threads per rank (default: the
host's cores / ranks).
"""

import argparse
import statistics

import numpy as np

NETS = {"S": [64, 32, 10], "M": [784, 256, 128, 10], "L": [784, 1024, 1024, 10]}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastbp.bench.distributed")
    parser.add_argument("--net", choices=sorted(NETS), default="M")
    parser.add_argument("--sync", choices=["deterministic", "fast", "average", "model"],
                        default="deterministic")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--average-every", type=int, default=8)
    args = parser.parse_args(argv)
    from mpi4py import MPI

    import fastbp
    from fastbp import distributed

    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.samples, NETS[args.net][0])).astype(np.float32)
    y = rng.integers(0, 10, args.samples)
    model = fastbp.Model(NETS[args.net], hidden="relu", output="softmax",
                         loss="cross_entropy", seed=0)
    if args.sync == "model":
        def epoch(data, labels):
            return model.fit(data, labels, batch_size=args.batch, lr=0.01,
                             n_threads=args.threads)
    else:
        def epoch(data, labels):
            return distributed.fit(model, data, labels, sync=args.sync,
                                   batch_size=args.batch, lr=0.01, n_threads=args.threads,
                                   average_every=args.average_every)
    epoch(X[: 2 * args.batch], y[: 2 * args.batch])  # kernels compiled or loaded here
    rates, shares = [], []
    for _ in range(args.repeats):
        history = epoch(X, y)
        rate = history.history["samples_per_second"][0]
        rates.append(rate)
        seconds = args.samples / rate
        shares.append(getattr(history, "communication_seconds", 0.0) / seconds)
    comm = MPI.COMM_WORLD
    shares = comm.gather(statistics.median(shares), root=0)
    if comm.Get_rank() == 0:
        threads = "cores/ranks" if args.threads is None else args.threads
        every = f" every {args.average_every}" if args.sync == "average" else ""
        print(f"{args.net} {args.sync}{every}, {comm.Get_size()} rank(s) x {threads} thread(s), "
              f"batch {args.batch}: {statistics.median(rates):,.0f} samples/s, "
              f"collectives {100 * max(shares):.0f}% of an epoch")


if __name__ == "__main__":
    main()
