"""From the workers' records to the result: :func:`_derive` (GFLOP/s, share of the
GEMM peak, ratios to the best peer and to 1 thread, the paired per-round ratios,
the core probes' summary) and :func:`format_report`, the tables."""

import statistics

from fastbp._threads import flops_per_sample
from fastbp.bench.grid import CASES, FRAMEWORKS

__all__ = ["format_report"]

# A core probe found the threads short of cores below this share of them (quiet host,
# 2 threads: 1.85-2.0 cores; vCPUs sharing a core: about 1.1).
FULL_CORES = 0.85


def _per_round(r):
    """A record's samples/s in each timed epoch (round), in order."""
    return [r["samples"] / t for t in r["epoch_seconds"]]


def _paired(a, b):
    """Median over rounds of a's samples/s / b's, and the rounds a was faster in;
    (None, None) unless both timed the same number of rounds."""
    fa, fb = _per_round(a), _per_round(b)
    if not fa or len(fa) != len(fb):
        return None, None
    return statistics.median(x / y for x, y in zip(fa, fb)), sum(x > y for x, y in zip(fa, fb))


def _derive(records, peak, paired=False):
    """gflops, percent_of_peak, ratio_to_best_peer and speedup_vs_1_thread, in place;
    with ``paired`` (the epochs took turns, round by round) also the per-round
    comparisons: paired_ratio_to_best_peer (median over rounds of the two epochs'
    ratio), rounds_ahead_of_best_peer, paired_speedup_vs_1_thread. A round's epochs
    ran within seconds of each other, so a slow spell of the host that lasts a few
    seconds falls on both sides of its ratio."""
    best = {}
    for r in records:
        if r["status"] == "ok" and not r["framework"].startswith("fastbp"):
            key = (r["case"], r["batch_size"], r["threads"])
            if r["samples_per_second"] > best.get(key, {}).get("samples_per_second", 0):
                best[key] = r
    ones = {(r["framework"], r["case"], r["batch_size"]): r for r in records
            if r["status"] == "ok" and r["threads"] == 1}
    for r in records:
        case = CASES[r["case"]]
        r.update(sizes=list(case.sizes), hidden=case.hidden, output=case.output,
                 loss=case.loss)  # fmt: skip
        if r["status"] != "ok":
            continue
        r["flops_per_sample"] = flops_per_sample(case.sizes)
        r["gflops"] = r["flops_per_sample"] * r["samples_per_second"] / 1e9
        r["gemm_peak_gflops"] = peak.get(r["threads"])
        r["percent_of_peak"] = 100.0 * r["gflops"] / peak[r["threads"]]
        b = best.get((r["case"], r["batch_size"], r["threads"]))
        r["best_peer"] = b["framework"] if b else None
        ratio = r["samples_per_second"] / b["samples_per_second"] if b else None
        r["ratio_to_best_peer"] = ratio
        if paired and b:
            r["paired_ratio_to_best_peer"], r["rounds_ahead_of_best_peer"] = _paired(r, b)
        one = ones.get((r["framework"], r["case"], r["batch_size"]))
        if r["threads"] > 1 and one:
            r["speedup_vs_1_thread"] = r["samples_per_second"] / one["samples_per_second"]
            if paired:
                r["paired_speedup_vs_1_thread"] = _paired(r, one)[0]
        if r.get("host_cores"):
            _core_probes(r)


def _core_probes(r):
    """From the core probes before and after each of a multi-thread record's epochs
    (host_cores, [before, after] a round): host_cores_median and probes_short_of_cores,
    the probes that found under FULL_CORES of the threads' cores. A probe tells the
    state of the host in its ~20 ms, not over the epoch: spells of one shared core
    begin and end within a second (measured: an epoch at 1-thread speed between two
    probes that found 1.8 and 1.9 cores), so the epochs are not sorted by them."""
    found = [x for pair in r["host_cores"] for x in pair if x is not None]
    r["host_cores_median"] = statistics.median(found) if found else None
    r["probes_short_of_cores"] = sum(x < FULL_CORES * r["threads"] for x in found)
    r["core_probes"] = len(found)


# -- output ------------------------------------------------------------------------


def _fmt(x, spec=",.0f"):
    return "-" if x is None else format(x, spec)


# fmt: off
def format_report(result):
    """The human-readable tables of a :func:`run` result."""
    m, s, results = result["machine"], result["settings"], result["results"]
    peaks = ", ".join(f"{t} thread(s) {g:,.1f} GFLOP/s"
                      for t, g in result["gemm_peak_gflops"].items())
    flops = ", ".join(f"{n} {c['flops_per_sample']:,}"
                      for n, c in result["cases"].items())
    lines = [
        f"fastbp bench: {m['cpu_model']}, {m['cores']} CPUs; python {m['python']}, "
        f"numpy {m['numpy']} ({m['blas']}), numba {m['numba']}, fastbp {m['fastbp']}; "
        f"{m['date']}",
        f"{s.get('dtype', 'float32')}, plain SGD lr {s['lr']}, median of {s['repeats']} "
        "epoch(s) after a "
        "warm-up epoch; "
        + ("every framework shuffles each epoch" if s.get("shuffle", True)
           else "no framework shuffles (every epoch in sample order)")
        + ("" if s.get("in_process") else "; the frameworks' epochs take turns")
        + (f"; {s['busy']} other process(es) spinning on the CPUs throughout"
           if s.get("busy") else ""),
        f"GEMM peak ({s.get('dtype', 'float32')} np.dot, {s['gemm_size']}x{s['gemm_size']}): "
        f"{peaks}",
        f"FLOPs per sample: {flops}",
        "",
    ]
    table = {}
    for r in results:
        key = (r["case"], r["batch_size"], r["threads"])
        table.setdefault(key, {})[r["framework"]] = r
    rows = [("case", "sizes", "batch", "threads", "fastbp/s", "best peer", "peer/s",
             "ratio", "paired", "ahead", "GFLOP/s", "% peak")]
    for (case, batch, threads), by in table.items():
        f = by.get("fastbp", {})
        ok, best = f.get("status") == "ok", f.get("best_peer")
        peer = by.get(best, {}) if best else {}
        mark = "~" if peer and not peer.get("exact", True) else ""
        ratio = _fmt(f.get("ratio_to_best_peer"), ".2f") + ("x" if ok and best else "")
        rows.append((case, "-".join(map(str, CASES[case].sizes)), str(batch),
                     str(threads),
                     _fmt(f.get("samples_per_second")) if ok else f.get("status", "-"),
                     (best or "-") + mark, _fmt(peer.get("samples_per_second")), ratio,
                     _times(f.get("paired_ratio_to_best_peer")), _ahead(f),
                     _fmt(f.get("gflops"), ".2f"),
                     _fmt(f.get("percent_of_peak"), ".1f")))
    lines += _columns(rows, left=2)
    status = {f: i["status"] for f, i in result["frameworks"].items()}
    ran = [f for f in FRAMEWORKS if status.get(f) == "ok"]
    if len(ran) > 1:
        lines += ["", "samples/s of every framework (~: not the same model, see notes)"]
        rows = [("case", "batch", "threads", *ran)]
        for (case, batch, threads), by in table.items():
            cells = [_cell(by.get(name)) for name in ran]
            rows.append((case, str(batch), str(threads), *cells))
        lines += _columns(rows, left=1)
    if "fastbp-dropout" in ran:
        lines += _dropout_rows(table, paired=not s.get("in_process"))
    multi = [k for k in table if k[2] > 1]
    if multi and ran:
        lines += ["", "2 threads vs 1: ratio of the medians (paired: median of the rounds' "
                  "ratios)" if not s.get("in_process") else "2 threads vs 1: ratio of the medians"]
        rows = [("case", "batch", "threads", "host cores", *ran)]
        for case, batch, threads in multi:
            by = table[case, batch, threads]
            rows.append((case, str(batch), str(threads), _host_cores(by),
                         *(_speedup(by.get(name)) for name in ran)))
        lines += _columns(rows, left=1)
        if any(row[3] != "-" for row in rows[1:]):
            lines.append(f"host cores: the median of the core probes before and after each "
                         f"2-thread epoch (short: under {FULL_CORES:.0%} of the threads' "
                         "cores; these vCPUs at times share one core)")
    notes = sorted({(r["framework"], r["case"], r["notes"]) for r in results
                    if r.get("notes")})
    not_run = sorted({(r["framework"], r["reason"]) for r in results
                      if r["status"] == "skipped"})
    lines.append("")
    lines += [f"note: {f} on {c}: {n}" for f, c, n in notes]
    lines += [f"not run: {f}: {why}" for f, why in not_run]
    lines += [f"skipped: {n}: {i['reason']}" for n, i in result["frameworks"].items()
              if i["status"] != "ok"]
    lines += [f"error: {r['framework']} {r['case']} batch {r['batch_size']} "
              f"{r['threads']} thread(s): {r['reason']}"
              for r in results if r["status"] == "error"]
    lines.append(f"wall time: {result['wall_seconds']:.1f} s")
    return "\n".join(lines)
# fmt: on


def _host_cores(by):
    """The 2-threads-vs-1 table's cell for the core probes of a grid point's records
    ``by``: the median probe, and how many of them found too few cores."""
    probed = [r for r in by.values() if r.get("core_probes")]
    if not probed:
        return "-"
    cores = statistics.median(r["host_cores_median"] for r in probed)
    short = sum(r["probes_short_of_cores"] for r in probed)
    return f"{cores:.2f} ({short}/{sum(r['core_probes'] for r in probed)} short)"


def _times(x):
    return "-" if x is None else f"{x:.2f}x"


def _ahead(r):
    """Rounds in which fastbp's epoch beat the best peer's, of all rounds."""
    won = r.get("rounds_ahead_of_best_peer")
    return "-" if won is None else f"{won}/{len(r['epoch_seconds'])}"


def _speedup(r):
    if r is None or r.get("speedup_vs_1_thread") is None:
        return "n/a"
    text = f"{r['speedup_vs_1_thread']:.2f}x"
    paired = r.get("paired_speedup_vs_1_thread")
    return text if paired is None else f"{text} ({paired:.2f}x)"


def _cell(r):
    if r is None or r["status"] == "skipped":
        return "n/a"
    if r["status"] != "ok":
        return "error"
    return _fmt(r["samples_per_second"]) + ("" if r["exact"] else "~")


def _columns(rows, left):
    """Rows of strings as aligned text, the first ``left`` columns left-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def _dropout_rows(table, paired):
    """What dropout costs: fastbp-dropout's samples/s over fastbp's, per row (paired:
    the median over rounds of the two epochs' ratio)."""
    lines = ["", "fastbp with dropout 0.2 on every hidden layer / without"]
    rows = [("case", "batch", "threads", "ratio", "paired")]
    for (case, batch, threads), by in table.items():
        f, d = by.get("fastbp", {}), by.get("fastbp-dropout", {})
        if f.get("status") != "ok" or d.get("status") != "ok":
            continue
        ratio = d["samples_per_second"] / f["samples_per_second"]
        rows.append((case, str(batch), str(threads), f"{ratio:.2f}x",
                     _times(_paired(d, f)[0]) if paired else "-"))
    return lines + _columns(rows, left=1)
