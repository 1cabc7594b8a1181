"""Loaders in fastbp.datasets: exact arrays from hand-written files, clear errors."""

import gzip
import struct
import sys

import numpy as np
import pytest

from fastbp import datasets

IDX_CODES = {  # type code -> NumPy dtype of the values
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.int16,
    0x0C: np.int32,
    0x0D: np.float32,
    0x0E: np.float64,
}


def write_idx(path, array, code, compress=False):
    """Write ``array`` as an IDX file by hand (struct), gzip-compressed if asked."""
    array = np.asarray(array)
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.dtype(IDX_CODES[code]).newbyteorder(">")).tobytes()
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(raw)
    return path


# ---------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("code", list(IDX_CODES), ids=[f"0x{c:02x}" for c in IDX_CODES])
def test_idx_images_and_labels_exact(tmp_path, code, compress):
    rng = np.random.default_rng(0)
    kind = np.dtype(IDX_CODES[code]).kind
    lo, hi = (0, 255) if code == 0x08 else (-100, 100)
    images = rng.integers(lo, hi, size=(5, 3, 4)).astype(IDX_CODES[code])
    if kind == "f":
        images = images + np.asarray(0.25, dtype=IDX_CODES[code])
    labels = np.array([3, 0, 9, 1, 3], dtype=np.uint8)
    suffix = ".gz" if compress else ""
    img = write_idx(tmp_path / f"images-idx3-ubyte{suffix}", images, code, compress)
    lab = write_idx(tmp_path / f"labels-idx1-ubyte{suffix}", labels, 0x08, compress)

    X, y = datasets.load_idx(img, lab)

    assert X.dtype == np.dtype(IDX_CODES[code])
    assert X.dtype.isnative
    assert X.shape == (5, 12)
    np.testing.assert_array_equal(X, images.reshape(5, 12))
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, [3, 0, 9, 1, 3])


def test_idx_gzip_detected_by_content_and_no_labels(tmp_path):
    images = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "images.idx3", images, 0x08, compress=True)
    X, y = datasets.load_idx(path)
    assert y is None
    np.testing.assert_array_equal(X, np.arange(24).reshape(2, 12))


def test_idx_big_endian_values(tmp_path):
    # 0x0102 as a big-endian short is 258; a little-endian misread would give 513.
    path = tmp_path / "short.idx2"
    path.write_bytes(
        b"\x00\x00\x0b\x02" + struct.pack(">II", 1, 2) + b"\x01\x02\xff\xfe"
    )
    X, _ = datasets.load_idx(path)
    np.testing.assert_array_equal(X, [[258, -2]])


def test_idx_one_dimensional_images_become_one_feature(tmp_path):
    path = write_idx(tmp_path / "v.idx1", np.array([1.5, -2.0, 3.0]), 0x0E)
    X, _ = datasets.load_idx(path)
    np.testing.assert_array_equal(X, [[1.5], [-2.0], [3.0]])


def _valid_idx_bytes():
    return b"\x00\x00\x08\x02" + struct.pack(">II", 2, 3) + bytes(range(6))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (_valid_idx_bytes()[:-1], "truncated IDX data"),
        (_valid_idx_bytes() + b"\x00", "trailing bytes"),
        (_valid_idx_bytes()[:9], "truncated IDX header"),
        (b"\x00\x00", "truncated IDX file"),
        (b"", "truncated IDX file"),
        (b"\x08\x03\x00\x00" + _valid_idx_bytes()[4:], "wrong IDX magic"),
        (b"\x00\x00\x07\x02" + _valid_idx_bytes()[4:], "wrong IDX magic"),
        (b"\x00\x00\x08\x00", "wrong IDX magic"),
        (b"PK\x03\x04 not an idx file at all", "wrong IDX magic"),
    ],
    ids=[
        "short-data",
        "trailing",
        "short-header",
        "short-magic",
        "empty",
        "bad-zero-bytes",
        "bad-type",
        "zero-dims",
        "foreign",
    ],
)
def test_idx_bad_files_name_the_file(tmp_path, raw, expected):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=expected) as info:
        datasets.load_idx(path)
    assert str(path) in str(info.value)


def test_idx_truncated_gzip(tmp_path):
    path = tmp_path / "images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_valid_idx_bytes())[:-6])
    with pytest.raises(ValueError, match="gzip") as info:
        datasets.load_idx(path)
    assert str(path) in str(info.value)


def test_idx_label_count_mismatch(tmp_path):
    img = write_idx(tmp_path / "img.idx3", np.zeros((4, 2, 2)), 0x08)
    lab = write_idx(tmp_path / "lab.idx1", np.zeros(3), 0x08)
    with pytest.raises(ValueError, match="3 labels.*4 images") as info:
        datasets.load_idx(img, lab)
    assert str(img) in str(info.value) and str(lab) in str(info.value)


def test_idx_missing_file(tmp_path):
    with pytest.raises(OSError, match="missing-idx3-ubyte"):
        datasets.load_idx(tmp_path / "missing-idx3-ubyte")


# ---------------------------------------------------------------------------- npy


def test_npy_is_memory_mapped_read_only_and_flattened_per_sample(tmp_path):
    images = np.arange(24, dtype=np.float32).reshape(3, 2, 4)
    np.save(tmp_path / "X.npy", images)
    np.save(tmp_path / "y.npy", np.array([2, 0, 1]))
    X, y = datasets.load_npy(tmp_path / "X.npy", tmp_path / "y.npy")
    assert isinstance(X, np.memmap) and not X.flags.writeable  # on disk, not copied
    np.testing.assert_array_equal(X, images.reshape(3, 8))
    np.testing.assert_array_equal(y, [2, 0, 1])
    assert datasets.data_format("X.NPY") == "npy"
    X2, y2 = datasets.load_dataset(tmp_path / "X.npy")
    assert y2 is None and X2.shape == (3, 8)


def test_npy_errors_name_the_file(tmp_path):
    np.save(tmp_path / "X.npy", np.ones((3, 2)))
    np.save(tmp_path / "y.npy", np.array([0, 1]))
    with pytest.raises(ValueError, match="3 samples in X but 2 labels"):
        datasets.load_npy(tmp_path / "X.npy", tmp_path / "y.npy")
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    with pytest.raises(ValueError, match="bad.npy: expected a NumPy .npy array"):
        datasets.load_npy(tmp_path / "bad.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="obj.npy: expected a NumPy .npy array"):
        datasets.load_npy(tmp_path / "obj.npy")
    with pytest.raises(OSError):
        datasets.load_npy(tmp_path / "missing.npy")


# ---------------------------------------------------------------------------- npz


def test_npz_default_keys(tmp_path):
    X = np.arange(12.0).reshape(4, 3)
    y = np.array([0, 1, 1, 0])
    np.savez(tmp_path / "d.npz", X=X, y=y)
    X2, y2 = datasets.load_npz(tmp_path / "d.npz")
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)


@pytest.mark.parametrize(
    ("xk", "yk"), [("x", "y"), ("X", "Y"), ("x", "Y")], ids=["x-y", "X-Y", "x-Y"]
)
def test_npz_case_variants(tmp_path, xk, yk):
    np.savez(tmp_path / "d.npz", **{xk: np.ones((2, 2)), yk: np.array([1, 0])})
    X, y = datasets.load_npz(tmp_path / "d.npz")
    assert X.shape == (2, 2)
    np.testing.assert_array_equal(y, [1, 0])


def test_npz_custom_keys_flatten_and_no_labels(tmp_path):
    images = np.arange(16).reshape(2, 2, 4)
    np.savez(tmp_path / "d.npz", images=images, targets=np.array([[0.5], [1.5]]))
    X, y = datasets.load_npz(tmp_path / "d.npz", x_key="images", y_key="targets")
    np.testing.assert_array_equal(X, images.reshape(2, 8))
    np.testing.assert_array_equal(y, [[0.5], [1.5]])
    X, y = datasets.load_npz(tmp_path / "d.npz", x_key="images", y_key=None)
    assert y is None


def test_npz_missing_key(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, features=np.ones((2, 2)), y=np.array([0, 1]))
    with pytest.raises(ValueError, match="missing array 'X'") as info:
        datasets.load_npz(path)
    assert str(path) in str(info.value) and "features" in str(info.value)
    np.savez(path, X=np.ones((2, 2)))
    with pytest.raises(ValueError, match="missing array 'y'") as info:
        datasets.load_npz(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        ({"X": np.ones((3, 2)), "y": np.zeros(2)}, "3 samples in X but 2 labels"),
        ({"X": np.ones(3), "y": np.zeros(3)}, "expected 2-D features"),
        ({"X": np.array([["a", "b"]]), "y": np.zeros(1)}, "numeric features"),
        ({"X": np.ones((0, 2)), "y": np.zeros(0)}, "at least one sample"),
    ],
    ids=["length", "1-D", "strings", "empty"],
)
def test_npz_bad_arrays(tmp_path, arrays, expected):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=expected) as info:
        datasets.load_npz(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "content",
    [b"", b"not a zip archive", b"PK\x03\x04broken"],
    ids=["empty", "text", "broken-zip"],
)
def test_npz_not_an_archive(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="npz") as info:
        datasets.load_npz(path)
    assert str(path) in str(info.value)


def test_npz_single_npy_rejected(tmp_path):
    path = tmp_path / "array.npz"
    with open(path, "wb") as f:
        np.save(f, np.ones((2, 2)))
    with pytest.raises(ValueError, match="single .npy") as info:
        datasets.load_npz(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------- CSV


def test_csv_header_detected_and_labels_last(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("f1,f2,label\n0.5,1,2\n\n-3,4e1,0\n")
    X, y = datasets.load_csv(path)
    np.testing.assert_array_equal(X, [[0.5, 1.0], [-3.0, 40.0]])
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, [2, 0])


def test_csv_no_header_first_row_kept(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("1,2,3\n4,5,6\n")
    X, y = datasets.load_csv(path, label_column=0)
    np.testing.assert_array_equal(X, [[2, 3], [5, 6]])
    np.testing.assert_array_equal(y, [1, 4])
    X, y = datasets.load_csv(path, label_column=None)
    assert y is None and X.shape == (2, 3)
    X, y = datasets.load_csv(path, skip_header=True)
    np.testing.assert_array_equal(X, [[4, 5]])


def test_csv_float_labels_whitespace_and_gzip(tmp_path):
    path = tmp_path / "d.txt.gz"
    with gzip.open(path, "wt") as f:
        f.write("# comment line\n1 2 0.5\n3   4 1.5\n")
    X, y = datasets.load_csv(path, delimiter=None)
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, [0.5, 1.5])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,2,0\n3,abc,1\n", "line 2, column 2: expected a number, got 'abc'"),
        ("a,b,c\n1,2,0\n3,,1\n", "line 3, column 2: expected a number, got ''"),
        ("1,2,0\n3,4\n", "line 2 has 2 columns, expected 3"),
        ("", "found no data"),
        ("x,y\n", "found no data"),
        ("1\n2\n", "at least one sample and one feature"),
    ],
    ids=["cell", "empty-cell", "ragged", "empty", "header-only", "no-features"],
)
def test_csv_bad_files_name_the_file(tmp_path, text, expected):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=expected) as info:
        datasets.load_csv(path)
    assert str(path) in str(info.value)


def test_csv_label_column_out_of_range(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("1,2\n")
    with pytest.raises(ValueError, match="label_column 5"):
        datasets.load_csv(path, label_column=5)


# ---------------------------------------------------------------------------- dispatch


def test_load_dataset_dispatch(tmp_path):
    np.savez(tmp_path / "a.npz", X=np.ones((2, 1)), y=np.array([0, 1]))
    (tmp_path / "b.csv").write_text("1,0\n2,1\n")
    (tmp_path / "c.txt").write_text("1,0\n2,1\n")
    img = write_idx(tmp_path / "train-images-idx3-ubyte", np.ones((2, 2, 2)), 0x08)
    lab = write_idx(tmp_path / "train-labels.idx1.gz", np.array([0, 1]), 0x08, True)
    for name in ["a.npz", "b.csv", "c.txt"]:
        X, y = datasets.load_dataset(tmp_path / name)
        assert X.shape == (2, 1)
        np.testing.assert_array_equal(y, [0, 1])
    X, y = datasets.load_dataset(img, labels_path=lab)
    assert X.shape == (2, 4)
    np.testing.assert_array_equal(y, [0, 1])
    X, y = datasets.load_dataset(lab)  # a labels file read as data: one feature
    assert X.shape == (2, 1) and y is None


def test_load_dataset_unknown_suffix(tmp_path):
    path = tmp_path / "data.parquet"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown data file type") as info:
        datasets.load_dataset(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["nope.npz", "nope.csv", "nope-idx3-ubyte"])
def test_load_dataset_missing_file(tmp_path, name):
    with pytest.raises(OSError, match=name):
        datasets.load_dataset(tmp_path / name)


# ---------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    return datasets.load_digits()


def test_digits_shapes_and_scaling(digits):
    X_train, y_train, X_test, y_test = digits
    assert X_train.dtype == X_test.dtype == np.float64
    assert y_train.dtype == y_test.dtype == np.int64
    assert X_train.shape[1] == X_test.shape[1] == 64
    assert len(X_train) + len(X_test) == 1797
    assert len(X_test) == pytest.approx(0.2 * 1797, abs=10)
    assert X_train.min() == 0.0 and X_train.max() == 1.0
    assert set(np.unique(y_train)) == set(range(10))


def test_digits_split_fixed(digits):
    again = datasets.load_digits(seed=0)
    for a, b in zip(digits, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = datasets.load_digits(seed=1)
    assert not np.array_equal(digits[3], other[3]) or not np.array_equal(
        digits[2], other[2]
    )


def test_digits_split_stratified(digits):
    _, y_train, _, y_test = digits
    n_train = np.bincount(y_train, minlength=10)
    n_test = np.bincount(y_test, minlength=10)
    assert np.all(n_train > 0) and np.all(n_test > 0)
    n_class = n_train + n_test
    assert np.all(np.abs(n_test - 0.2 * n_class) <= 1)


def test_digits_split_disjoint_and_complete(digits):
    from sklearn.datasets import load_digits

    full = load_digits()
    # Split the sample indices the way load_digits splits the samples.
    idx = np.arange(len(full.target))
    i_train, y_train, i_test, y_test = datasets.train_test_split(
        idx, full.target, 0.2, 0
    )
    assert len(np.intersect1d(i_train, i_test)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([i_train, i_test])), idx)
    np.testing.assert_array_equal(digits[0], full.data[i_train] / 16.0)
    np.testing.assert_array_equal(digits[2], full.data[i_test] / 16.0)
    np.testing.assert_array_equal(digits[1], y_train)
    np.testing.assert_array_equal(digits[3], y_test)


def test_digits_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "fastbp\[data\]"'):
        datasets.load_digits()


# ---------------------------------------------------------------------------- split


def test_split_unstratified_and_small_classes():
    X = np.arange(10)
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2])  # class 2 has one sample
    X_train, y_train, X_test, y_test = datasets.train_test_split(X, y, 0.5, 3)
    assert 2 in y_train and 2 not in y_test
    # round(0.5 * 6) = 3 of class 0, round(0.5 * 3) = 2 of class 1.
    assert sorted(y_test.tolist()) == [0, 0, 0, 1, 1]
    assert np.all(np.diff(X_train) > 0) and np.all(np.diff(X_test) > 0)  # order kept
    np.testing.assert_array_equal(y[X_train], y_train)
    np.testing.assert_array_equal(y[X_test], y_test)
    X_train, y_train, X_test, y_test = datasets.train_test_split(
        X, X * 0.5, 0.3, 0, stratify=False
    )
    assert len(X_test) == 3 and len(X_train) == 7
    np.testing.assert_array_equal(y_test, X_test * 0.5)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, float("nan"), "0.2", True])
def test_split_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        datasets.train_test_split(np.ones((4, 1)), np.array([0, 1, 0, 1]), fraction, 0)


def test_split_stratify_needs_integer_labels():
    with pytest.raises(ValueError, match="stratify=False"):
        datasets.train_test_split(np.ones((4, 1)), np.array([0.5, 1, 0, 1]), 0.5, 0)
    with pytest.raises(ValueError, match="stratify=False"):
        datasets.train_test_split(np.ones((4, 1)), np.eye(4), 0.5, 0)
    with pytest.raises(ValueError, match="same number of samples"):
        datasets.train_test_split(np.ones((4, 1)), np.zeros(3), 0.5, 0)
