"""Data set loaders returning NumPy arrays; none of them ever uses the network.

``load_digits`` gives scikit-learn's bundled 8x8 handwritten digits with a fixed,
stratified held-out split. ``load_npz``, ``load_csv`` and ``load_idx`` read user
files (``load_dataset`` picks one from the file name). Every malformed file raises
``ValueError`` whose message names the file and what was expected; a missing file
raises ``OSError`` (``FileNotFoundError``).
"""

import gzip
import os
import zipfile
import zlib

import numpy as np

__all__ = [
    "data_format",
    "load_csv",
    "load_dataset",
    "load_digits",
    "load_idx",
    "load_npy",
    "load_npz",
    "train_test_split",
]

# IDX type codes (the third byte of the magic number) -> big-endian NumPy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def load_digits(test_fraction=0.2, seed=0):
    """Load scikit-learn's bundled handwritten digits with a fixed held-out split.

    1797 images of 8x8 pixels (values 0..16) ship inside scikit-learn, so nothing
    is downloaded. Pixels are divided by 16 into [0, 1].

    Parameters
    ----------
    test_fraction : float, default 0.2
        Fraction of each class held out for testing, in (0, 1).
    seed : int, default 0
        Seed of the split (see ``train_test_split``); the same seed always gives
        the same arrays.

    Returns
    -------
    X_train : ndarray of float64, shape (n_train, 64)
    y_train : ndarray of int64, shape (n_train,)
        Class labels 0..9.
    X_test : ndarray of float64, shape (n_test, 64)
    y_test : ndarray of int64, shape (n_test,)

    Raises
    ------
    ImportError
        If scikit-learn is not installed.

    Examples
    --------
    >>> X_train, y_train, X_test, y_test = load_digits()
    >>> X_train.shape, X_test.shape
    ((1438, 64), (359, 64))
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:
        raise ImportError(
            "the digits data set ships with scikit-learn, which is not installed: "
            'pip install "fastbp[data]"'
        ) from exc
    bunch = _sk_load_digits()
    X = np.asarray(bunch.data, dtype=np.float64) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    return train_test_split(X, y, test_fraction, seed, stratify=True)


def train_test_split(X, y, test_fraction=0.2, seed=0, stratify=True):
    """Split samples into a training and a held-out part, deterministically.

    With ``stratify=True`` each class is split on its own: its samples are
    permuted by ``np.random.default_rng(seed)`` (one generator, classes taken in
    sorted order) and ``round(test_fraction * n_class)`` of them, at least one
    and at most ``n_class - 1``, are held out; a class with a single sample stays
    in the training part. Both parts keep the original sample order. Unlike
    scikit-learn's function of the same name, the result is ordered
    ``(X_train, y_train, X_test, y_test)``.

    Parameters
    ----------
    X : array_like, shape (n_samples, ...)
    y : array_like, shape (n_samples,) or (n_samples, n_out)
    test_fraction : float, default 0.2
        In (0, 1).
    seed : int or None, default 0
        Seed of the permutation; None draws fresh entropy (not reproducible).
    stratify : bool, default True
        Split each class separately; needs 1-D integer-valued labels.

    Returns
    -------
    X_train, y_train, X_test, y_test : ndarray

    Examples
    --------
    >>> X, y = np.arange(20.0).reshape(10, 2), np.array([0, 1] * 5)
    >>> X_train, y_train, X_test, y_test = train_test_split(X, y, 0.4, seed=0)
    >>> len(y_train), len(y_test), sorted(y_test.tolist())
    (6, 4, [0, 0, 1, 1])
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim == 0 or y.ndim == 0 or len(X) != len(y):
        raise ValueError(
            "X and y must have the same number of samples, got "
            f"X shape {X.shape} and y shape {y.shape}"
        )
    n = len(y)
    if isinstance(test_fraction, bool) or not (
        isinstance(test_fraction, (int, float, np.integer, np.floating))
        and 0.0 < float(test_fraction) < 1.0
    ):
        raise ValueError(
            f"test_fraction must be a number in (0, 1), got {test_fraction!r}"
        )
    if n < 2:
        raise ValueError(f"need at least 2 samples to split, got {n}")
    rng = np.random.default_rng(seed)
    if stratify:
        labels = _class_labels(y)
        test_parts = []
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            if len(idx) < 2:
                continue
            n_test = int(np.floor(test_fraction * len(idx) + 0.5))
            n_test = min(max(n_test, 1), len(idx) - 1)
            test_parts.append(idx[rng.permutation(len(idx))[:n_test]])
        test_idx = (
            np.sort(np.concatenate(test_parts)) if test_parts else np.array([], int)
        )
    else:
        n_test = min(max(int(np.floor(test_fraction * n + 0.5)), 1), n - 1)
        test_idx = np.sort(rng.permutation(n)[:n_test])
    if len(test_idx) == 0:
        raise ValueError(
            "stratified split left no test samples: every class has a single sample"
        )
    is_test = np.zeros(n, dtype=bool)
    is_test[test_idx] = True
    train_idx = np.flatnonzero(~is_test)
    return X[train_idx], y[train_idx], X[test_idx], y[test_idx]


def _class_labels(y):
    """Return ``y`` as int64 class labels, or raise if it is not 1-D integers."""
    if y.ndim != 1 or y.dtype.kind not in "biuf":
        raise ValueError(
            "stratify=True needs 1-D integer class labels, got y of shape "
            f"{y.shape} and dtype {y.dtype}; pass stratify=False"
        )
    if y.dtype.kind == "f" and not (
        np.all(np.isfinite(y)) and np.all(y == np.round(y))
    ):
        raise ValueError(
            "stratify=True needs integer class labels, got non-integer values in y; "
            "pass stratify=False"
        )
    return y.astype(np.int64)


def _check_exists(path):
    """Raise FileNotFoundError naming ``path`` unless it is an existing file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(2, "no such data file", os.fspath(path))


def _check_xy(path, X, y):
    """Check loaded arrays: numeric, 2-D X with samples, matching y length."""
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{path}: expected numeric features, got dtype {X.dtype}")
    if X.ndim < 2:
        raise ValueError(
            f"{path}: expected 2-D features (n_samples, n_features), "
            f"got shape {X.shape}"
        )
    if X.ndim > 2 and X.size:  # images (n, rows, cols, ...) -> one row per sample
        X = X.reshape(len(X), -1)
    if X.ndim > 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(
            f"{path}: expected at least one sample and one feature, got shape {X.shape}"
        )
    if y is not None:
        if y.dtype.kind in "US" and y.ndim == 1:  # class names: the CLI encodes them
            pass
        elif y.dtype.kind not in "biuf":
            raise ValueError(f"{path}: expected numeric labels or 1-D class names, "
                             f"got dtype {y.dtype}")
        if y.ndim not in (1, 2):
            raise ValueError(
                f"{path}: expected 1-D labels or 2-D targets, got shape {y.shape}"
            )
        if len(y) != len(X):
            raise ValueError(f"{path}: {len(X)} samples in X but {len(y)} labels in y")
    return X, y


def load_npy(path, labels_path=None):
    """Features from a NumPy ``.npy`` file as a read-only memory map (rows are read
    from disk as they are used, and processes mapping one file share its pages), and
    labels from a second ``.npy`` file, read whole.

    Parameters
    ----------
    path : str or path-like
        Features (n_samples, n_features); more dimensions are flattened per sample.
    labels_path : str or path-like, optional
        Labels (n_samples,) or targets (n_samples, n_out); None loads none.

    Returns
    -------
    X : numpy.memmap, shape (n_samples, n_features)
    y : ndarray or None

    Raises OSError for a missing file, ValueError for a file that is not a .npy
    array of numbers or X and y of different lengths."""
    arrays = []
    for where, mode in ((path, "r"), (labels_path, None)):
        if where is None:
            arrays.append(None)
            continue
        _check_exists(where)
        try:
            arrays.append(np.load(where, mmap_mode=mode, allow_pickle=False))
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"{where}: expected a NumPy .npy array ({exc})") from None
        if not isinstance(arrays[-1], np.ndarray):
            raise ValueError(f"{where}: expected a NumPy .npy array, found an .npz archive")
    return _check_xy(path, arrays[0], arrays[1])


def load_npz(path, x_key="X", y_key="y"):
    """Load features and labels from a NumPy ``.npz`` archive.

    Parameters
    ----------
    path : str or path-like
    x_key : str, default "X"
        Name of the feature array; if missing, its other case ("x") is tried.
    y_key : str or None, default "y"
        Name of the label array; if missing, its other case ("Y") is tried.
        None loads no labels.

    Returns
    -------
    X : ndarray, shape (n_samples, n_features)
        As stored; arrays of more than two dimensions are flattened per sample.
    y : ndarray, shape (n_samples,) or (n_samples, n_out), or None

    Raises
    ------
    OSError
        If the file does not exist.
    ValueError
        If the file is not an npz archive, lacks a key, holds non-numeric
        arrays, or X and y have different lengths.
    """
    _check_exists(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: expected a NumPy .npz archive ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{path}: expected a NumPy .npz archive, found a single .npy array"
        )
    with archive:
        keys = list(archive.files)
        try:
            X = _npz_array(path, archive, keys, x_key)
            y = None if y_key is None else _npz_array(path, archive, keys, y_key)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            if str(path) in str(exc):
                raise
            raise ValueError(f"{path}: cannot read array ({exc})") from None
    return _check_xy(path, X, y)


def _npz_array(path, archive, keys, key):
    """Return ``archive[key]``, trying the other letter case before failing."""
    for candidate in (key, key.swapcase()):
        if candidate in keys:
            return archive[candidate]
    raise ValueError(
        f"{path}: missing array {key!r} (also tried {key.swapcase()!r}); "
        f"the archive holds {keys}"
    )


def load_csv(path, label_column=-1, delimiter=",", skip_header=None):
    """Load a numeric delimited text file, one sample per line.

    Parameters
    ----------
    path : str or path-like
        A ``.gz`` name is decompressed transparently.
    label_column : int or None, default -1
        Column holding the labels (negative counts from the end); None loads no
        labels and uses every column as a feature.
    delimiter : str or None, default ","
        None splits on any whitespace.
    skip_header : bool or None, default None
        Skip the first non-empty line; None skips it when it is not numeric.

    Returns
    -------
    X : ndarray of float64, shape (n_samples, n_features)
    y : ndarray of int64 (integer-valued labels), float64 or str (class names such as
        "cat": any non-numeric cell in the label column), shape (n_samples,), or None

    Raises
    ------
    OSError
        If the file does not exist.
    ValueError
        Naming the file, line and column of a non-numeric cell, a row with a
        different number of columns, or an empty file.
    """
    _check_exists(path)
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: cannot read text ({exc})") from None
    numbered = [
        (lineno, line)
        for lineno, line in enumerate(lines, start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if numbered:
        first_cells = numbered[0][1].split(delimiter)
        if label_column is not None and -len(first_cells) <= label_column < len(first_cells):
            del first_cells[label_column]  # a class name there is data, not a header
        has_header = not all(_is_number(c) for c in first_cells)
        if skip_header or (skip_header is None and has_header):
            numbered = numbered[1:]
    if not numbered:
        raise ValueError(f"{path}: expected numeric rows, found no data")
    names = None if label_column is None else _text_labels(path, numbered, delimiter,
                                                             label_column)
    if names is not None:  # class names: parse the rest with "0" in their place
        zeroed = []
        for lineno, line in numbered:
            cells = line.split(delimiter)
            cells[label_column] = "0"
            zeroed.append((lineno, delimiter.join(cells)))
        numbered = zeroed
    try:
        # NumPy's C parser is fast; on any failure the slow scan below finds
        # the offending line and column for the message.
        data = np.loadtxt(
            [line for _, line in numbered],
            delimiter=delimiter,
            comments=None,
            dtype=np.float64,
            ndmin=2,
        )
    except ValueError as exc:
        _raise_csv_error(path, numbered, delimiter, exc)
    n_cols = data.shape[1]
    if label_column is None:
        return _check_xy(path, data, None)
    if not -n_cols <= label_column < n_cols:
        raise ValueError(
            f"{path}: label_column {label_column} is out of range for {n_cols} columns"
        )
    y = data[:, label_column] if names is None else names
    X = np.delete(data, label_column % n_cols, axis=1)
    if names is None and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    return _check_xy(path, X, y)


def _text_labels(path, numbered, delimiter, label_column):
    """The label column as stripped strings when any cell of it is not a number
    (class names such as "cat"), else None."""
    cells = []
    for _, line in numbered:
        row = line.split(delimiter)
        if not -len(row) <= label_column < len(row):
            return None  # the numeric path reports the bad row
        cells.append(row[label_column].strip())
    if all(_is_number(c) for c in cells):
        return None
    return np.array(cells)


def _raise_csv_error(path, numbered, delimiter, exc):
    """Raise ValueError naming the first bad line/column of a CSV file."""
    n_cols = None
    for lineno, line in numbered:
        cells = [c.strip() for c in line.split(delimiter)]
        if n_cols is None:
            n_cols = len(cells)
        elif len(cells) != n_cols:
            raise ValueError(
                f"{path}: line {lineno} has {len(cells)} columns, expected {n_cols} "
                "like the first data row"
            )
        for col, cell in enumerate(cells):
            if not _is_number(cell):
                raise ValueError(
                    f"{path}: line {lineno}, column {col + 1}: expected a number, "
                    f"got {cell!r} (delimiter {delimiter!r})"
                )
    raise ValueError(f"{path}: expected numeric CSV data ({exc})")


def _is_number(text):
    """True if ``text`` parses as a float."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_idx(images_path, labels_path=None):
    """Load MNIST-format IDX files (optionally gzip-compressed).

    An IDX file starts with two zero bytes, a type code (0x08 ubyte, 0x09 sbyte,
    0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64) and the number of
    dimensions, then one big-endian uint32 per dimension, then the data.

    Parameters
    ----------
    images_path : str or path-like
        IDX file of shape (n, ...); images are flattened to (n, rows * cols).
    labels_path : str or path-like or None, default None
        IDX file of the labels, shape (n,) (or (n, ...) targets).

    Returns
    -------
    X : ndarray, shape (n, n_features)
        In the file's type, native byte order (0..255 ``uint8`` for MNIST).
    y : ndarray of int64 (integer files) or float, shape (n,), or None

    Raises
    ------
    OSError
        If a file does not exist.
    ValueError
        Naming the file: wrong magic number, unknown type code, truncated or
        oversized data, corrupt gzip, or label count != image count.
    """
    images = _read_idx(images_path)
    if images.size == 0:
        raise ValueError(
            f"{images_path}: expected at least one sample and one "
            f"feature, got dimensions {images.shape}"
        )
    X = images.reshape(len(images), -1)
    y = None
    if labels_path is not None:
        y = _read_idx(labels_path)
        if len(y) != len(X):
            raise ValueError(
                f"{labels_path}: {len(y)} labels but {images_path} holds "
                f"{len(X)} images; expected one label per image"
            )
        if y.ndim > 2:
            y = y.reshape(len(y), -1)
        if y.dtype.kind in "iu":
            y = y.astype(np.int64)
    return X, y


def _read_idx(path):
    """Parse one IDX file into a native-byte-order array of its stored shape."""
    _check_exists(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == _GZIP_MAGIC or os.fspath(path).endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(
                f"{path}: expected gzip-compressed IDX data ({exc})"
            ) from None
    if len(raw) < 4:
        raise ValueError(
            f"{path}: truncated IDX file: {len(raw)} bytes, "
            "expected a 4-byte magic number"
        )
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ValueError(
            f"{path}: wrong IDX magic number 0x{raw[:4].hex()}: expected 0x0000TTNN "
            "with type TT in 08, 09, 0b, 0c, 0d, 0e and NN >= 1 dimensions"
        )
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{path}: truncated IDX header: expected {ndim} dimension "
            f"sizes in {header} bytes, file has {len(raw)} bytes"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        what = (
            "truncated IDX data"
            if len(raw) < expected
            else "trailing bytes after IDX data"
        )
        raise ValueError(
            f"{path}: {what}: dimensions {dims} of {dtype.name} need "
            f"{expected} bytes, file has {len(raw)}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def data_format(path):
    """Name the loader for a file from its name: "npz", "npy", "csv" or "idx".

    ``.npz`` -> "npz"; ``.npy`` -> "npy" (memory-mapped, so never .gz); ``.csv``/``.txt``
    -> "csv"; names containing ``idx`` or ending in ``-ubyte`` -> "idx". A trailing
    ``.gz`` is ignored.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    str

    Raises
    ------
    ValueError
        If the name matches none of these.

    Examples
    --------
    >>> data_format("train-images-idx3-ubyte.gz"), data_format("data.CSV")
    ('idx', 'csv')
    """
    name = os.path.basename(os.fspath(path)).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(".npz"):
        return "npz"
    if name.endswith(".npy") and not os.fspath(path).lower().endswith(".gz"):
        return "npy"
    if name.endswith((".csv", ".txt")):
        return "csv"
    if "idx" in name or name.endswith("-ubyte"):
        return "idx"
    raise ValueError(
        f"{path}: unknown data file type; expected .npz, .npy, .csv, .txt, or an IDX file "
        "(name containing 'idx' or ending in '-ubyte', optionally .gz)"
    )


def load_dataset(path, **kwargs):
    """Load ``(X, y)`` from a file, choosing the loader from its name.

    See ``data_format``: "npz" -> ``load_npz``, "csv" -> ``load_csv``, "idx" ->
    ``load_idx`` (pass ``labels_path=`` for the labels file), "npy" -> ``load_npy``
    (the same).

    Parameters
    ----------
    path : str or path-like
    **kwargs
        Passed to the chosen loader.

    Returns
    -------
    X : ndarray, shape (n_samples, n_features)
    y : ndarray or None

    Raises
    ------
    ValueError
        If the file type is not recognised, or from the loader.
    """
    loader = {"npz": load_npz, "npy": load_npy, "csv": load_csv,
              "idx": load_idx}[data_format(path)]
    return loader(path, **kwargs)
