"""The data side of ``fastbp train`` / ``evaluate`` / ``predict``: reading data files,
the train/test split, the number of outputs, and input scaling folded into the
first layer. Raises ``UsageError`` for bad arguments (the CLI prints it)."""

import numpy as np

from fastbp import datasets
from fastbp._codes import is_classifier


class UsageError(Exception):
    """Bad command-line arguments (reported in one line, exit status 2)."""


def read_data(path, labels_path, label_column, want_labels=True, labels_flag="--labels",
              keys=("X", "y")):
    """(X, y) from a user file; y is None when ``want_labels`` is False. ``keys``:
    the names of the features and labels arrays in an .npz file."""
    fmt = datasets.data_format(path)
    if fmt not in ("idx", "npy") and labels_path is not None:
        raise UsageError(f"{labels_flag} is only for IDX and .npy data files, got {path}")
    if fmt == "npy":
        if want_labels and labels_path is None:
            raise UsageError(f".npy data {path} needs its labels file: {labels_flag} PATH")
        return datasets.load_npy(path, labels_path if want_labels else None)
    if fmt == "idx":
        if want_labels and labels_path is None:
            raise UsageError(
                f"IDX data {path} needs its labels file: {labels_flag} PATH"
            )
        return datasets.load_idx(path, labels_path if want_labels else None)
    if fmt == "npz":
        return datasets.load_npz(path, x_key=keys[0], y_key=keys[1] if want_labels else None)
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
    keys = (args.x_key, args.y_key)
    X, y = read_data(args.data, args.labels, args.label_column, keys=keys)
    if args.test_data is not None:
        Xte, yte = read_data(
            args.test_data,
            args.test_labels,
            args.label_column,
            labels_flag="--test-labels",
            keys=keys,
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
    """(number of outputs, training targets, test targets, classes). A classifier's
    labels - integers with gaps, class names - become class indices 0..K-1, and
    ``classes`` holds the original labels (index k means classes[k]); it is None
    for a regression."""
    if y_train.ndim == 2:  # the Model checks that held-out targets match
        return y_train.shape[1], y_train, y_test, None
    names = y_train.dtype.kind in "US"
    if not is_classifier(args.output, args.loss):
        if names:
            raise ValueError(
                "class names as labels need a classifier: --output softmax (or sigmoid "
                f"with --loss cross_entropy), got --output {args.output} --loss {args.loss}")
        return 1, y_train, y_test, None
    parts = [y for y in (y_train, y_test) if y is not None]
    if len({y.dtype.kind in "US" for y in parts}) > 1:
        raise ValueError("the training and held-out labels must both be numbers or both "
                         "be class names")
    labels = np.concatenate(parts)
    if not names:
        if not integral_labels(labels):
            raise ValueError(
                f"--output {args.output} with --loss {args.loss} needs class labels "
                f"(integers or names), found values from {labels.min()} to {labels.max()} "
                "that are not all integers")
        labels = labels.astype(np.int64)
    classes, index = np.unique(labels, return_inverse=True)
    y_train, y_test = index[:len(y_train)], (None if y_test is None
                                             else index[len(y_train):])
    if args.output == "sigmoid" and len(classes) <= 2:
        return 1, y_train, y_test, classes  # binary: one sigmoid unit, targets 0/1
    if len(classes) < 2:
        raise ValueError(
            f"--output {args.output} needs at least 2 classes, every label is {classes[0]}")
    return len(classes), y_train, y_test, classes


def encode_labels(y, classes, where):
    """Class indices of the labels ``y`` for a model trained on ``classes`` (the
    original labels saved in the model file)."""
    if y.ndim != 1 or classes is None:
        return y
    classes = np.asarray(classes)
    if (y.dtype.kind in "US") != (classes.dtype.kind in "US"):
        kind = "names" if y.dtype.kind in "US" else "numbers"
        raise ValueError(f"{where}: the labels are {kind}, unlike the model's classes "
                         f"{classes.tolist()}")
    if y.dtype.kind == "f" and integral_labels(y):
        y = y.astype(np.int64)
    index = np.searchsorted(classes, y)
    known = (index < len(classes)) & (classes[np.minimum(index, len(classes) - 1)] == y)
    if not known.all():
        raise ValueError(f"{where}: label {y[~known][0]!r} is not one of the model's "
                         f"classes {classes.tolist()}")
    return index


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
