"""The ``fastbp`` command: train, evaluate and predict from the shell.

    fastbp train                      # the bundled digits, the default recipe
    fastbp train --data d.npz --hidden-sizes 64 32 --epochs 10
    fastbp evaluate fastbp-model.npz  # the digits' held-out split
    fastbp predict fastbp-model.npz --data new.csv --output classes.csv
    fastbp bench                      # samples/s against the peers (fastbp.bench)

Bad arguments or bad data end with exit status 2 and one line
``fastbp: error: ...`` on stderr, never a traceback.
"""

import argparse
import contextlib
import os
import sys

import numba
import numpy as np

from fastbp import _codes, datasets, optim
from fastbp._cli_data import UsageError, encode_labels, read_data
from fastbp._cli_report import predictions, result_line
from fastbp._cli_train import RECIPE, cmd_train
from fastbp._persist import check_writable
from fastbp._threads import numba_threads
from fastbp._version import __version__

HIDDEN = list(_codes.HIDDEN)
OUTPUT = list(_codes.OUTPUT)
LOSS = list(_codes.LOSS)
INIT = list(_codes.INIT)
OPTIMIZER = list(optim.OPTIMIZERS)
DTYPES = list(_codes.DTYPES)
SCALE = ["auto", "none", "minmax", "standard"]
DEFAULT_MODEL_PATH = "fastbp-model.npz"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # argparse would print the usage and exit; raise so main() reports one line.
        raise UsageError(f"{message} (see '{self.prog} --help')")


# -- argument types ------------------------------------------------------------


def _number(cast, low, high=None, what=None):
    """An argparse type: ``cast(text)`` finite, >= low and (if given) < high."""

    def convert(text):
        try:
            value = cast(text)
        except ValueError:
            value = None
        if (
            value is None
            or not np.isfinite(value)
            or value < low
            or (high is not None and value >= high)
        ):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return convert


_positive_int = _number(int, 1, what="a positive integer")
_nonneg_int = _number(int, 0, what="an integer >= 0")
_nonneg_float = _number(float, 0.0, what="a finite number >= 0")
_fraction = _number(float, 0.0, 1.0, what="a number in [0, 1)")
_positive_float = _number(float, 1e-300, what="a finite number > 0")
_rate = _number(float, 0.0, 1.0, what="a rate in [0, 1)")


def _init(text):
    """An argparse type: an initialisation name or a finite constant."""
    if text in INIT:
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(INIT)} or a number, got {text!r}"
        )
    return value


# -- the parser ------------------------------------------------------------------
# Hand-laid option tables: ruff format would give every keyword its own line.
# fmt: off


def _add_data_options(p, what, digits=True):
    default = " (required)" if not digits else (
        " (default: scikit-learn's bundled 8x8 digits)")
    p.add_argument(
        "--data", metavar="PATH", required=not digits,
        help=f"{what}: .npz (arrays X and y), .npy (features, memory-mapped; labels "
        "in --labels), .csv/.txt (numbers, one sample a line, labels in "
        f"--label-column), or an MNIST-format IDX images file (optionally .gz){default}",
    )
    p.add_argument("--labels", metavar="PATH",
                   help="labels file for an IDX or .npy --data file (default: none)")
    p.add_argument("--label-column", type=int, default=-1, metavar="N",
                   help="column of the labels in a CSV file, negative counts from the "
                   "end (default: %(default)s)")
    p.add_argument("--x-key", default="X", metavar="NAME",
                   help="name of the features array in an .npz --data file "
                   "(default: %(default)s)")
    p.add_argument("--y-key", default="y", metavar="NAME",
                   help="name of the labels array in an .npz --data file "
                   "(default: %(default)s)")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="number of threads for the Numba kernels "
                   "(default: numba's default, all cores)")


def build_parser():
    """Return the ``argparse`` parser of the ``fastbp`` command."""
    parser = _Parser(
        prog="fastbp",
        description="Train multilayer perceptrons on the CPU with fastbp's Numba "
        "kernels, and evaluate or apply saved models.",
        epilog="Run 'fastbp COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"fastbp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    t = sub.add_parser(
        "train", help="train a model and save it",
        description="Train a model, report per-epoch loss, validation loss/accuracy "
        "and samples/s, evaluate on held-out data and save the model. Without --data "
        "it trains on scikit-learn's bundled digits with a fixed held-out split.",
    )
    _add_data_options(t, "training data")
    t.add_argument("--test-data", metavar="PATH",
                   help="held-out data, same formats as --data (default: split "
                   "--test-fraction off the training data)")
    t.add_argument("--test-labels", metavar="PATH",
                   help="IDX labels file for an IDX --test-data file (default: none)")
    t.add_argument("--test-fraction", type=_fraction, metavar="F",
                   help="fraction of each class held out when there is no "
                   "--test-data; 0 trains on everything and reports training accuracy "
                   "(default: 0.2)")
    t.add_argument("--split-seed", type=_nonneg_int, default=0, metavar="N",
                   help="seed of the held-out split (default: %(default)s)")
    t.add_argument("--hidden-sizes", type=_positive_int, nargs="*", metavar="N",
                   default=RECIPE["hidden_sizes"],
                   help="widths of the hidden layers; give none for no hidden layer "
                   f"(default: {' '.join(map(str, RECIPE['hidden_sizes']))})")
    t.add_argument("--hidden", choices=HIDDEN, default=RECIPE["hidden"],
                   help="hidden activation (default: %(default)s)")
    t.add_argument("--output", choices=OUTPUT, default=RECIPE["output"],
                   help="output activation (default: %(default)s)")
    t.add_argument("--loss", choices=LOSS, default=RECIPE["loss"],
                   help="loss; cross_entropy needs a softmax or sigmoid output, poisson "
                   "the exp output, huber the linear output (default: %(default)s)")
    t.add_argument("--huber-delta", type=_positive_float, metavar="D",
                   help="where the huber loss turns from quadratic to linear; --loss "
                   "huber only (default: 1.0)")
    t.add_argument("--dropout", type=_rate, nargs="+", metavar="P",
                   help="inverted dropout on the hidden layers during training: one rate "
                   "for all, or one per hidden layer (default: 0, none)")
    t.add_argument("--input-dropout", type=_rate, metavar="P",
                   help="dropout on the inputs during training (default: 0, none)")
    t.add_argument("--init", type=_init, default=RECIPE["init"], metavar="INIT",
                   help=f"weight initialisation: {', '.join(INIT)}, or a number for "
                   "every weight (default: %(default)s)")
    t.add_argument("--epochs", type=_positive_int, default=RECIPE["epochs"],
                   metavar="N",
                   help="passes over the training data (default: %(default)s)")
    t.add_argument("--batch-size", type=_positive_int, default=RECIPE["batch_size"],
                   metavar="N", help="samples per gradient step (default: %(default)s)")
    t.add_argument("--lr", type=_nonneg_float, metavar="LR",
                   help=f"learning rate (default: {RECIPE['lr_sgd']} for sgd, "
                   f"{RECIPE['lr_adam']} for adam, adamw and rmsprop)")
    t.add_argument("--optimizer", choices=OPTIMIZER, default="sgd",
                   help="optimizer, with the semantics of torch.optim's SGD, Adam, AdamW "
                   "and RMSprop (default: %(default)s)")
    t.add_argument("--momentum", type=_nonneg_float, metavar="M",
                   help=f"momentum; sgd and rmsprop only (default: {RECIPE['momentum']} "
                   "for sgd, 0 for rmsprop)")
    t.add_argument("--nesterov", action="store_true",
                   help="Nesterov momentum; sgd only (default: off)")
    t.add_argument("--alpha", type=_number(float, 0.0, 1.0 + 1e-12, "a number in [0, 1]"),
                   metavar="A", help="RMSprop's smoothing constant of the mean square; "
                   "rmsprop only (default: 0.99)")
    t.add_argument("--centered", action="store_true",
                   help="centered RMSprop; rmsprop only (default: off)")
    t.add_argument("--weight-decay", type=_nonneg_float, metavar="WD",
                   help="weight decay of every parameter: added to the gradient (sgd, "
                   "adam, rmsprop) or decoupled (adamw) (default: 0, 0.01 for adamw "
                   "as torch)")
    t.add_argument("--clip-norm", type=_positive_float, metavar="C",
                   help="clip each batch's gradient to this global L2 norm, as "
                   "torch.nn.utils.clip_grad_norm_ (default: no clipping)")
    t.add_argument("--clip-value", type=_positive_float, metavar="C",
                   help="clip each element of each batch's gradient to [-C, C], as "
                   "torch.nn.utils.clip_grad_value_ (default: no clipping)")
    t.add_argument("--dtype", choices=DTYPES,
                   default=RECIPE["dtype"],
                   help="floating-point type of the model (default: %(default)s)")
    t.add_argument("--seed", type=_nonneg_int, default=RECIPE["seed"], metavar="N",
                   help="seed of the initial weights and the shuffling "
                   "(default: %(default)s)")
    t.add_argument("--scale", choices=SCALE, default=RECIPE["scale"],
                   help="input scaling fitted on the training data: standard (zero "
                   "mean, unit variance), minmax (to [0, 1]) or none; it is folded "
                   "into the first layer, so the saved model takes unscaled data "
                   "(default: %(default)s, for every data source)"),
    t.add_argument("--output-model", metavar="PATH", default=DEFAULT_MODEL_PATH,
                   help="where to save the trained model (default: %(default)s in "
                   "the current directory)")
    t.add_argument("--no-progress", action="store_true",
                   help="do not show the progress bar (default: shown)")
    t.add_argument("--plot", metavar="PATH",
                   help="also draw the loss (and, for classifiers, accuracy) curves "
                   "per epoch to PATH, e.g. curves.png (.pdf, .svg, ...); needs "
                   'matplotlib: pip install "fastbp[plot]" (default: no plot)')
    t.add_argument("--distributed", action="store_true",
                   help="train data-parallel on the ranks of an MPI job: mpiexec -n P "
                   "fastbp train --distributed ... (fastbp.distributed; needs "
                   'pip install "fastbp[mpi]"); rank 0 prints and saves (default: one process)')
    t.add_argument("--sync", choices=("deterministic", "fast", "average"),
                   help="with --distributed: how ranks combine their work "
                   "(default: deterministic, the same bits at any power-of-two rank "
                   "count; see fastbp.distributed)")
    t.add_argument("--ranks", type=_positive_int, metavar="P",
                   help="with --distributed: the rank count the job must have, an error "
                   "otherwise (default: any)")
    t.add_argument("--average-every", type=_positive_int, metavar="N",
                   help="with --sync average: local steps between averages (default 8)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser(
        "evaluate", help="print the loss and accuracy of a saved model",
        description="Print the mean loss and, for classifiers, the accuracy of a saved "
        "model. Without --data it uses the held-out split of the bundled digits.",
    )
    e.add_argument("model", metavar="MODEL",
                   help="model file written by 'fastbp train'")
    _add_data_options(e, "data with labels")
    e.add_argument("--test-fraction", type=_fraction, default=0.2, metavar="F",
                   help="held-out fraction of the bundled digits; match "
                   "'fastbp train' (default: %(default)s)")
    e.add_argument("--split-seed", type=_nonneg_int, default=0, metavar="N",
                   help="seed of the bundled digits' split; match 'fastbp train' "
                   "(default: %(default)s)")
    e.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "predict", help="write the predictions of a saved model",
        description="Predict with a saved model: class labels for classifiers "
        "(argmax of softmax, sigmoid outputs thresholded at 0.5), output activations "
        "otherwise. A CSV file with one column more than the model's inputs has its "
        "--label-column dropped.",
    )
    p.add_argument("model", metavar="MODEL",
                   help="model file written by 'fastbp train'")
    _add_data_options(p, "input data", digits=False)
    p.add_argument("--output", metavar="PATH",
                   help="write to PATH, .csv (text) or .npy (NumPy) "
                   "(default: print to stdout)")
    p.add_argument("--raw-outputs", action="store_true",
                   help="write the output activations, shape (n_samples, n_out), "
                   "instead of class labels (default: off)")
    p.set_defaults(func=cmd_predict)

    # Listed here with its help only: its options are fastbp.bench's own parser
    # (see main), so that the other commands never load the benchmark lab.
    sub.add_parser(
        "bench", help="measure training samples/s against PyTorch, JAX, NumPy, "
        "scikit-learn and FANN",
    )

    i = sub.add_parser(
        "info", help="show versions, thread count, usable cores, BLAS and JIT cache",
        description="Print what fastbp runs on: its version, Python, NumPy and numba "
        "versions, the thread count and the cores this process may use, the BLAS libraries "
        "loaded and their threads, and the folder of the JIT cache.",
    )
    i.set_defaults(func=cmd_info, threads=None)

    k = sub.add_parser(
        "compile", help="compile every kernel into the cache ahead of time",
        description="Compile the kernels each API call needs into the cache folder "
        "(see `fastbp cache`), with the time each step took, so that the first fit, "
        "evaluate and predict do not pay the JIT compile (all of it: ~140 s on 2 cores, "
        "both dtypes). For Docker images and CI.",
    )
    k.add_argument("--dtype", nargs="+", choices=("float32", "float64"),
                   default=["float32", "float64"], help="(default: both)")
    k.add_argument("--path", nargs="+", choices=("online", "batch", "inference"),
                   default=["online", "batch", "inference"],
                   help="online: fit at batch size 1; batch: mini-batch fit; inference: "
                   "evaluate, loss, gradients and predict (default: all)")
    k.set_defaults(func=cmd_compile, threads=None)

    c = sub.add_parser(
        "cache", help="show or clear the folder of compiled kernels",
        description="List the folders of fastbp's compiled kernels (one per version of "
        "the kernel sources; the current one is marked) with their sizes, or delete "
        "them all. The root is FASTBP_CACHE_DIR, else NUMBA_CACHE_DIR/fastbp, else "
        "~/.cache/fastbp.",
    )
    c.add_argument("--clear", action="store_true",
                   help="delete every folder of compiled kernels (the next call compiles "
                   "again)")
    c.set_defaults(func=cmd_cache, threads=None)
    return parser
# fmt: on


# -- data ----------------------------------------------------------------------------


def cmd_evaluate(args):
    """``fastbp evaluate``; returns the exit status."""
    from fastbp import Model

    model = Model.load(args.model)
    if args.data is None:
        if args.labels is not None:
            raise UsageError("--labels needs --data")
        if model.metadata.get("data") != "digits":
            raise UsageError(
                f"--data is needed: {args.model} was not trained on the bundled digits "
                f"(trained on: {model.metadata.get('data', 'not recorded')})")
        if args.test_fraction == 0:
            raise UsageError("--test-fraction must be in (0, 1) for the digits")
        _, _, X, y = datasets.load_digits(args.test_fraction, args.split_seed)
        where = f"digits held-out split ({len(X)} samples)"
    else:
        X, y = read_data(args.data, args.labels, args.label_column,
                         keys=(args.x_key, args.y_key))
        where = f"{args.data} ({len(X)} samples)"
        y = encode_labels(y, model.metadata.get("classes"), args.data)
    result = model.evaluate(X, y)
    print(f"model: {args.model}: {model}")
    print(result_line(where, result))
    if "accuracy" not in result:
        print("accuracy: not reported (the model is not a classifier)")
    return 0


def cmd_predict(args):
    """``fastbp predict``; returns the exit status."""
    from fastbp import Model

    if args.output is not None and not args.output.lower().endswith((".csv", ".npy")):
        raise UsageError(f"--output must end in .csv or .npy, got {args.output}")
    if args.output is not None:
        check_writable(args.output)
    model = Model.load(args.model)
    keys, n_in = (args.x_key, args.y_key), model.sizes[0]
    try:
        X, _ = read_data(args.data, args.labels, args.label_column, want_labels=False,
                         keys=keys)
    except ValueError:
        if datasets.data_format(args.data) != "csv":
            raise
        # a labelled file whose labels are class names: read it as one
        X, _ = read_data(args.data, args.labels, args.label_column, keys=keys)
    if datasets.data_format(args.data) == "csv" and X.shape[1] == n_in + 1:
        X = np.delete(X, args.label_column % X.shape[1], axis=1)  # a labelled file
    result, fmt = predictions(model, model.predict(X), args.raw_outputs)
    if args.output is None:
        np.savetxt(sys.stdout, result, fmt=fmt, delimiter=",")
    elif args.output.lower().endswith(".npy"):
        np.save(args.output, result)
    else:
        np.savetxt(args.output, result, fmt=fmt, delimiter=",")
    if args.output is not None:
        print(f"wrote {len(result)} predictions to {os.path.abspath(args.output)}")
    return 0


def cmd_bench(args):
    """``fastbp bench``; returns the exit status."""
    from fastbp.bench import driver

    return driver.main(args)


def _parse(parser, argv):
    """The parsed ``argv``. The command ``bench`` is looked up by the top-level
    parser only; its options go to fastbp.bench's own parser (prog "fastbp bench"),
    loaded for that command alone."""
    # the top-level options (--help, --version) take no values: the first word that
    # is not an option is the command
    at = next((i for i, word in enumerate(argv) if not str(word).startswith("-")), None)
    if at is None or argv[at] != "bench":
        return parser.parse_args(argv)
    parser.parse_args(argv[: at + 1])  # --help or --version before the command
    from fastbp.bench import grid

    bench = grid.build_parser(prog=f"{parser.prog} bench", parser_class=_Parser)
    args, extra = bench.parse_known_args(argv[at + 1 :])
    if extra:  # reported by the top-level parser, as argparse does for subcommands
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    # bench sets the threads of each run itself (--threads is its own option)
    args.command, args.func, args.threads = "bench", cmd_bench, None
    return args


# -- entry point ---------------------------------------------------------------------


@contextlib.contextmanager
def _threads(n):
    """Run with ``n`` Numba threads (None: leave as is), restoring the old count."""
    if n is not None and n > numba.config.NUMBA_NUM_THREADS:
        raise UsageError(
            f"argument --threads: at most {numba.config.NUMBA_NUM_THREADS} "
            f"threads are available, got {n}"
        )
    with numba_threads(n):
        yield


def _error(message):
    text = " ".join(str(message).split())  # one line, whatever the message holds
    print(f"fastbp: error: {text}", file=sys.stderr)


def cmd_info(args):
    from fastbp._info import show_config

    show_config()
    return 0


def cmd_compile(args):
    from fastbp._compile import compile_kernels

    compile_kernels(args.dtype, args.path, out=lambda line: print(line, flush=True))
    return 0


def cmd_cache(args):
    import shutil

    from fastbp.kernels import _cache

    found = _cache.folders()
    if args.clear:
        for path, _, _ in found:
            shutil.rmtree(path, ignore_errors=True)
        freed = sum(size for _, size, _ in found)
        print(f"removed {len(found)} folder(s), {freed / 1e6:.1f} MB, under {_cache.cache_root()}")
        return 0
    print(f"cache root: {_cache.cache_root()}")
    print(f"current:    {_cache.CACHE_DIR or '(off: no writable folder)'}")
    for path, size, current in found:
        print(f"{size / 1e6:8.1f} MB  {path}{'  (current)' if current else ''}")
    return 0


def main(argv=None):
    """Run the ``fastbp`` command with ``argv`` (default ``sys.argv[1:]``).

    Parameters
    ----------
    argv : list of str or None

    Returns
    -------
    int
        Exit status: 0 on success (and for ``--help``), 1 if training diverged
        or a dependency is missing, 2 for bad arguments or bad data.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = _parse(build_parser(), argv)
    except UsageError as exc:
        _error(exc)
        return 2
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else 0
    status = _run(args)
    if status and getattr(args, "distributed", False):
        # one rank failing must end the job: the others may wait in a collective
        from fastbp import distributed

        world = distributed._mpi().COMM_WORLD
        if world.Get_size() > 1:
            sys.stdout.flush()
            sys.stderr.flush()
            world.Abort(status)
    return status


def _run(args):
    """The command's exit status; errors are reported in one line."""
    from fastbp import TrainingDivergedError

    try:
        with _threads(args.threads):
            return args.func(args)
    except (TrainingDivergedError, ImportError) as exc:
        _error(exc)
        return 1
    except OSError as exc:
        if exc.filename is not None and exc.strerror:
            _error(f"{exc.filename}: {exc.strerror}")
        else:
            _error(exc)
        return 2
    except (UsageError, ValueError, TypeError) as exc:
        _error(exc)
        return 2
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
