"""The data side of ``fastbp train`` / ``evaluate`` / ``predict``: reading data files,
the train/test split, the number of outputs, and input scaling folded into the
first layer. Raises ``UsageError`` for bad arguments (the CLI prints it)."""

import numpy as np

from fastbp import datasets
from fastbp._codes import is_classifier


class UsageError(Exception):
    """Bad command-line arguments (reported in one line, exit status 2)."""


def read_data(path, labels_path, label_column, want_labels=True, labels_flag="--labels"):
    """(X, y) from a user file; y is None when ``want_labels`` is False."""
    fmt = datasets.data_format(path)
    if fmt != "idx" and labels_path is not None:
        raise UsageError(f"{labels_flag} is only for IDX data files, got {path}")
    if fmt == "idx":
        if want_labels and labels_path is None:
            raise UsageError(
                f"IDX data {path} needs its labels file: {labels_flag} PATH"
            )
        return datasets.load_idx(path, labels_path if want_labels else None)
    if fmt == "npz":
        return datasets.load_npz(path, y_key="y" if want_labels else None)
    return datasets.load_csv(path, label_column=label_column if want_labels else None)


def training_data(args):
    """(name, X_train, y_train, X_test, y_test); the test part may be None."""
    if args.test_data is not None and args.test_fraction is not None:
        raise UsageError("give --test-data or --test-fraction, not both")
    if args.test_data is None and args.test_labels is not None:
        raise UsageError("--test-labels needs --test-data")
    fraction = 0.2 if args.test_fraction is None else args.test_fraction
    if args.data is None:
        if args.labels is not None or args.test_data is not None:
            raise UsageError("--labels and --test-data need --data")
        if fraction == 0:
            raise UsageError("--test-fraction 0 needs --data (the digits are split)")
        Xtr, ytr, Xte, yte = datasets.load_digits(fraction, args.split_seed)
        return "digits (scikit-learn's bundled 8x8 images)", Xtr, ytr, Xte, yte
    X, y = read_data(args.data, args.labels, args.label_column)
    if args.test_data is not None:
        Xte, yte = read_data(
            args.test_data,
            args.test_labels,
            args.label_column,
            labels_flag="--test-labels",
        )
        return args.data, X, y, Xte, yte
    if fraction == 0:
        return args.data, X, y, None, None
    stratify = y.ndim == 1 and is_classifier(args.output, args.loss) and integral_labels(y)
    Xtr, ytr, Xte, yte = datasets.train_test_split(
        X, y, fraction, args.split_seed, stratify=stratify
    )
    return args.data, Xtr, ytr, Xte, yte


def integral_labels(y):
    y = np.asarray(y)
    if y.dtype.kind in "biu":
        return True
    return y.dtype.kind == "f" and bool(
        np.all(np.isfinite(y)) and np.all(y == np.round(y))
    )


def n_outputs(args, y_train, y_test):
    """Number of outputs and the targets (1-D int64 labels for classifiers)."""
    if y_train.ndim == 2:  # the Model checks that held-out targets match
        return y_train.shape[1], y_train, y_test
    if not is_classifier(args.output, args.loss):
        return 1, y_train, y_test  # regression on 1-D values
    labels = np.concatenate([y for y in (y_train, y_test) if y is not None])
    if not integral_labels(labels) or labels.min() < 0:
        raise ValueError(
            f"--output {args.output} with --loss {args.loss} needs integer class "
            f"labels 0..K-1, found values from {labels.min()} to {labels.max()}"
            + ("" if integral_labels(labels) else " that are not all integers")
        )
    n_classes = int(labels.max()) + 1
    as_int = [None if y is None else y.astype(np.int64) for y in (y_train, y_test)]
    if args.output == "sigmoid" and n_classes <= 2:
        return 1, *as_int  # binary: one sigmoid unit, labels 0/1 as targets
    if n_classes < 2:
        raise ValueError(
            f"--output {args.output} needs at least 2 classes, the labels are all 0"
        )
    return n_classes, *as_int


def make_scaler(X, how):
    """(shift, scale) in float64 so that (X - shift) / scale is scaled, or None."""
    if how == "none":
        return None
    X = np.asarray(X, dtype=np.float64)
    if how == "minmax":
        shift, scale = X.min(axis=0), X.max(axis=0) - X.min(axis=0)
    else:
        shift, scale = X.mean(axis=0), X.std(axis=0)
    scale[scale == 0] = 1.0  # a constant feature is only shifted
    return shift, scale


def apply_scaler(X, scaler):
    if scaler is None or X is None:
        return X
    shift, scale = scaler
    return (np.asarray(X, dtype=np.float64) - shift) / scale


def fold_scaler(model, scaler):
    """Make the first layer take unscaled inputs: W x' + b with x' = (x - m) / s
    is (W / s) x + (b - (W / s) m)."""
    if scaler is None:
        return
    shift, scale = scaler
    W = model.weights[0].astype(np.float64) / scale
    model.biases[0][...] = model.biases[0].astype(np.float64) - W @ shift
    model.weights[0][...] = W


# -- commands ------------------------------------------------------------------------
