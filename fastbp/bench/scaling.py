"""The README's scaling model for data-parallel training on many hosts (fastbp.distributed):

    python -m fastbp.bench.scaling [--rate S=2512782 --rate M=... --rate L=...]

Per synchronous step of a per-host batch b on P hosts, float32:

- compute: b / R seconds, R the samples/s one host reaches on its own at that batch
  (measured: ``fastbp bench`` or ``python -m fastbp.bench.distributed --sync model``);
- communication: the gradient sums' reduce-scatter plus all-gather, as the
  deterministic mode's Alltoall + Allgather (and a ring Allreduce) move them:
  2 (P - 1) / P * 4 N bytes over a link of B bits/s, plus 2 (P - 1) messages of
  latency alpha each;
- no overlap of the two (fastbp starts the collectives after the gradient), so the
  efficiency against P independent hosts is compute / (compute + communication), and
  communication stops dominating at the per-host batch b* = R * communication time.

The link latencies are assumptions (MPI over TCP on 10 and 25 Gb/s Ethernet, an
RDMA fabric at 100 Gb/s), not measurements; the rates are measurements.
"""

import argparse

NETS = {"S": [64, 32, 10], "M": [784, 256, 128, 10], "L": [784, 1024, 1024, 10]}
# samples/s of one 2-core host at batch 128 (S) and 256 (M, L), float32, 2 threads:
# S from the README's bench table; M and L measured with fastbp.bench.distributed
# --sync model on 2026-12-07 (see the README's scaling section).
RATES = {"S": 2_512_782, "M": 151_334, "L": 17_336}
LINKS = {"10 Gb/s": (10e9, 30e-6), "25 Gb/s": (25e9, 20e-6), "100 Gb/s": (100e9, 5e-6)}
HOSTS = (2, 4, 8, 16, 32, 64)


def n_params(sizes):
    return sum(sizes[l] * sizes[l - 1] + sizes[l] for l in range(1, len(sizes)))


def communication_seconds(P, params, bits_per_second, latency, itemsize=4):
    """One step's reduce-scatter + all-gather of ``params`` values on P hosts."""
    return 2 * (P - 1) * latency + 2 * (P - 1) / P * params * itemsize * 8 / bits_per_second


def efficiency(batch, rate, comm):
    compute = batch / rate
    return compute / (compute + comm)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastbp.bench.scaling")
    parser.add_argument("--rate", action="append", default=[], metavar="NET=SAMPLES_PER_S",
                        help="one host's measured samples/s for S, M or L")
    parser.add_argument("--batch", type=int, default=256, help="per-host batch")
    args = parser.parse_args(argv)
    rates = dict(RATES)
    for item in args.rate:
        net, value = item.split("=")
        rates[net] = float(value)
    print(f"per-step bytes (float32 gradient) and efficiency at a per-host batch of "
          f"{args.batch}; b* = per-host batch where communication equals compute")
    for net, sizes in NETS.items():
        N = n_params(sizes)
        print(f"\n{net} {'-'.join(map(str, sizes))}: {N:,} parameters, {4 * N / 1e6:.2f} MB "
              f"a step each way; one host {rates[net]:,.0f} samples/s")
        print("| hosts | " + " | ".join(f"{name} efficiency | {name} b*" for name in LINKS)
              + " |")
        print("|---" * (1 + 2 * len(LINKS)) + "|")
        for P in HOSTS:
            cells = []
            for bits, latency in LINKS.values():
                comm = communication_seconds(P, N, bits, latency)
                cells.append(f"{100 * efficiency(args.batch, rates[net], comm):.0f}%")
                cells.append(f"{rates[net] * comm:,.0f}")
            print(f"| {P} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
