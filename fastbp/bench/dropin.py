"""The README's drop-in table: scikit-learn's MLPClassifier against
:class:`fastbp.sklearn.MLPClassifier`, every solver, float64 and float32, on the
digits and on a 20,000 x 784 set.

    python -m fastbp.bench.dropin [--data digits|wide] [--repeats 3] [--max-iter N]

``digits``: ``load_digits``, one stratified 75/25 split, standardised.
``wide``: ``make_classification(n_samples=20000, n_features=784, n_informative=64,
n_classes=10, random_state=0)``, the size of MNIST's images; a synthetic set (no
download here), split and standardised the same way.

Each (solver, dtype): both implementations with the same parameters
(``hidden_layer_sizes=(100,)``, ``random_state=0``, ``max_iter``), each fitted
``repeats`` times back to back after one untimed warm-up fit (JIT compile or cache
load), the median fit time and the held-out accuracy of the first fit.
"""

import argparse
import statistics
import time
import warnings

import numpy as np

SOLVERS = ("lbfgs", "sgd", "adam")
DTYPES = ("float64", "float32")


def load(name):
    """(X_train, X_test, y_train, y_test), standardised, float64."""
    from sklearn.datasets import load_digits, make_classification
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if name == "digits":
        X, y = load_digits(return_X_y=True)
    else:
        X, y = make_classification(n_samples=20000, n_features=784, n_informative=64,
                                   n_classes=10, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                        random_state=0)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def compare(data="digits", solvers=SOLVERS, dtypes=DTYPES, repeats=3, max_iter=200):
    """Rows of (solver, dtype, implementation, accuracy, n_iter_, median seconds)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as Sk

    from fastbp.sklearn import MLPClassifier as Fb

    X_train, X_test, y_train, y_test = load(data)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for solver in solvers:
            for dtype in dtypes:
                Xtr, Xte = X_train.astype(dtype), X_test.astype(dtype)
                for name, cls in (("scikit-learn", Sk), ("fastbp", Fb)):
                    params = dict(hidden_layer_sizes=(100,), solver=solver, max_iter=max_iter,
                                  random_state=0)
                    cls(**dict(params, max_iter=2)).fit(Xtr, y_train)  # warm-up
                    seconds, first = [], None
                    for _ in range(repeats):
                        est = cls(**params)
                        start = time.perf_counter()
                        est.fit(Xtr, y_train)
                        seconds.append(time.perf_counter() - start)
                        first = first or est
                    rows.append(dict(solver=solver, dtype=dtype, name=name,
                                     accuracy=float(first.score(Xte, y_test)),
                                     n_iter=int(first.n_iter_),
                                     seconds=statistics.median(seconds)))
    return rows


def table(rows):
    """Markdown: one line per (solver, dtype), both implementations side by side."""
    lines = ["| solver | dtype | scikit-learn s | its accuracy (n_iter_) | fastbp s | "
             "its accuracy (n_iter_) | speed-up |", "|---|---|---|---|---|---|---|"]
    for sk, fb in zip(rows[::2], rows[1::2], strict=True):
        lines.append(
            f"| {sk['solver']} | {sk['dtype']} | {sk['seconds']:.3f} | {sk['accuracy']:.4f} "
            f"({sk['n_iter']}) | {fb['seconds']:.3f} | {fb['accuracy']:.4f} "
            f"({fb['n_iter']}) | {sk['seconds'] / fb['seconds']:.2f}x |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastbp.bench.dropin")
    parser.add_argument("--data", choices=["digits", "wide"], default="digits")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--solver", nargs="+", choices=SOLVERS, default=list(SOLVERS))
    args = parser.parse_args(argv)
    import numba
    import sklearn

    print(f"{args.data}, MLPClassifier(hidden_layer_sizes=(100,), max_iter={args.max_iter}, "
          f"random_state=0), median of {args.repeats}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; scikit-learn "
          f"{sklearn.__version__}, numpy {np.__version__}, numba {numba.__version__}, "
          f"{numba.get_num_threads()} numba threads")
    print(table(compare(args.data, args.solver, repeats=args.repeats,
                        max_iter=args.max_iter)))
    return 0


if __name__ == "__main__":
    main()
