"""The README's cold-start table: what the first calls cost in a fresh process,
with an empty kernel cache and with a filled one, beside JAX's first epoch of
the same network (whole epoch jitted with ``lax.scan``, compile included) when
JAX is installed.

    python -m fastbp.bench.coldstart [repeats] [--jax-python PATH]

(``--jax-python``: an interpreter with JAX installed, when this one has none.)

Each measurement runs in a new Python process. The empty-cache runs get a new
empty FASTBP_CACHE_DIR each, and the filled-cache runs reuse the folder the
previous empty run filled. Runs of fastbp and JAX take turns, and each figure is
the median over ``repeats`` (default 2).
"""

import os
import statistics
import subprocess
import sys
import tempfile

_DATA = (
    "import time, numpy as np\n"
    "X = np.random.default_rng(0).standard_normal((4096, 784)).astype(np.float32)\n"
    "Y = np.eye(10, dtype=np.float32)[np.arange(4096) % 10]\n"
)

FASTBP = _DATA + """
t = [time.perf_counter()]
import fastbp
t.append(time.perf_counter())
m = fastbp.Model([784, 256, 128, 10], dtype="float32", seed=0)
m.fit(X, Y, batch_size=32); t.append(time.perf_counter())
m.evaluate(X, Y); t.append(time.perf_counter())
m.predict(X); t.append(time.perf_counter())
m.fit(X, Y, batch_size=1); t.append(time.perf_counter())
from sklearn.datasets import load_digits
from fastbp.sklearn import MLPClassifier
Xd, yd = load_digits(return_X_y=True)
MLPClassifier((64,), max_iter=1).fit(Xd / 16, yd); t.append(time.perf_counter())
m.fit(X, Y, batch_size=32); t.append(time.perf_counter())
print(*[b - a for a, b in zip(t, t[1:])])
"""
FASTBP_ROWS = ("import fastbp", "fit, 784-256-128-10, batch 32, float32, 4,096 samples",
               "then evaluate", "then predict", "then fit at batch 1",
               "then fastbp.sklearn.MLPClassifier((64,), max_iter=1).fit(digits)",
               "a second fit at batch 32 (warm)")

JAX = _DATA + """
t0 = time.perf_counter()
import jax, jax.numpy as jnp
sizes = [784, 256, 128, 10]
rng = np.random.default_rng(0)
p = [(jnp.asarray(rng.standard_normal((o, i)).astype(np.float32) * np.sqrt(2 / (i + o))),
      jnp.zeros(o, jnp.float32)) for i, o in zip(sizes[:-1], sizes[1:])]
def loss(p, x, t):
    a = x
    for W, b in p[:-1]:
        a = jax.nn.sigmoid(a @ W.T + b)
    W, b = p[-1]
    return jnp.mean(jnp.sum(0.5 * (a @ W.T + b - t) ** 2, axis=1))
@jax.jit
def epoch(p, Xb, Yb):
    def step(p, xy):
        value, g = jax.value_and_grad(loss)(p, *xy)
        return jax.tree_util.tree_map(lambda w, gw: w - 0.1 * gw, p, g), value
    return jax.lax.scan(step, p, (Xb, Yb))
Xb, Yb = X.reshape(128, 32, 784), Y.reshape(128, 32, 10)
t1 = time.perf_counter()
p, _ = epoch(p, Xb, Yb); jax.block_until_ready(p)
t2 = time.perf_counter()
p, _ = epoch(p, Xb, Yb); jax.block_until_ready(p)
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def _run(code, env=None, python=sys.executable):
    out = subprocess.run([python, "-c", code], env={**os.environ, **(env or {})},
                         capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    return [float(x) for x in out.stdout.split()]


def measure(repeats=2, jax_python=None):
    """{"empty": [...], "filled": [...], "jax": [...] or None}: medians per row."""
    jax_python = jax_python or sys.executable
    have_jax = subprocess.run([jax_python, "-c", "import jax"], capture_output=True).returncode == 0
    runs = {"empty": [], "filled": [], "jax": []}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            runs["empty"].append(_run(FASTBP, {"FASTBP_CACHE_DIR": cache}))
            runs["filled"].append(_run(FASTBP, {"FASTBP_CACHE_DIR": cache}))
        if have_jax:
            runs["jax"].append(_run(JAX, python=jax_python))
    return {key: ([statistics.median(col) for col in zip(*rows)] if rows else None)
            for key, rows in runs.items()}


def format_table(result):
    lines = ["| first call in a fresh process | fastbp, empty cache | fastbp, cache filled |",
             "|---|---|---|"]
    for name, empty, filled in zip(FASTBP_ROWS, result["empty"], result["filled"], strict=True):
        lines.append(f"| {name} | {empty:.2f} s | {filled:.2f} s |")
    if result["jax"]:
        imp, first, second = result["jax"]
        lines.append(f"| JAX, same network and epoch, `lax.scan` (import {imp:.2f} s) | "
                     f"first epoch {first:.2f} s, compile included | "
                     f"second epoch {second:.2f} s |")
    return "\n".join(lines)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(prog="python -m fastbp.bench.coldstart")
    parser.add_argument("repeats", nargs="?", type=int, default=2)
    parser.add_argument("--jax-python", help="an interpreter with JAX installed")
    args = parser.parse_args(argv)
    print(format_table(measure(args.repeats, args.jax_python)))


if __name__ == "__main__":
    main()
