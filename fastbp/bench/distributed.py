"""The README's distributed speed table: samples/s of ``fastbp.distributed.fit`` on
784-256-128-10 in float32, 8,192 random samples, median of 3 epochs after a
warm-up, beside ``Model.fit`` in the same process setup.

    HYDRA_LAUNCHER=fork mpiexec -n P python -m mpi4py -m fastbp.bench.distributed \\
        [--sync deterministic|fast|model] [--batch 256]

``--sync model`` times ``Model.fit`` instead (run it with ``-n 1``).
"""

import argparse
import statistics

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastbp.bench.distributed")
    parser.add_argument("--sync", choices=["deterministic", "fast", "model"],
                        default="deterministic")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from mpi4py import MPI

    import fastbp
    from fastbp import distributed

    rng = np.random.default_rng(0)
    X = rng.normal(size=(8192, 784)).astype(np.float32)
    y = rng.integers(0, 10, 8192)
    model = fastbp.Model([784, 256, 128, 10], hidden="relu", output="softmax",
                         loss="cross_entropy", seed=0)
    if args.sync == "model":
        def epoch(data, labels):
            return model.fit(data, labels, batch_size=args.batch, lr=0.01)
    else:
        def epoch(data, labels):
            return distributed.fit(model, data, labels, sync=args.sync,
                                   batch_size=args.batch, lr=0.01)
    epoch(X[:512], y[:512])  # compile or load the kernels outside the timing
    rates = [epoch(X, y).history["samples_per_second"][0] for _ in range(args.repeats)]
    comm = MPI.COMM_WORLD
    if comm.Get_rank() == 0:
        print(f"{args.sync}, {comm.Get_size()} rank(s), batch {args.batch}: "
              f"{statistics.median(rates):,.0f} samples/s")


if __name__ == "__main__":
    main()
