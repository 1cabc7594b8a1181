"""Memory during fit (issue 3's target): the data set is never copied when it
already has the model's dtype and layout, writeable or not (a read-only memory
map included), nor split by validation_split (rows picked by index); copied once
when it must be converted. Everything else stays within a few copies of the
parameters, the targets, the shuffling order and the batch buffers. The same for
predict, evaluate, loss and gradients.

tracemalloc sees NumPy's allocations (NumPy reports them to it), so the peak is
that of every array fit makes, not of the process.
"""

import tracemalloc

import numpy as np
import pytest

import fastbp
from fastbp.kernels.layout import row_width

N, SIZES = 12_000, [784, 64, 10]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, SIZES[0])).astype(np.float32)  # 37.6 MB
    y = rng.integers(0, SIZES[-1], size=N)
    return X, y


def model():
    m = fastbp.Model(SIZES, hidden="relu", output="softmax", loss="cross_entropy", seed=0)
    # Load (or compile) every kernel outside the measurement: tracemalloc also
    # counts the JIT's own Python objects.
    m.fit(np.zeros((8, SIZES[0]), np.float32), [0, 1, 2, 3] * 2, batch_size=2,
          validation_split=0.5)
    return m


def fit_peak(m, *args, **kwargs):
    tracemalloc.start()
    try:
        m.fit(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def budget(m, n, batch_size):
    """The targets (one-hot, model dtype), the order, a few parameter-sized arrays
    (the pre-epoch copy kept for divergence, optimizer buffers, gradients) and
    the batch buffers (4 layer-major blocks of batch x width), plus 1 MB."""
    item = m.dtype.itemsize
    targets = n * SIZES[-1] * item + n * 8
    batch = 5 * min(batch_size, n) * row_width(m._layout) * item
    return targets + 6 * m.params.nbytes + batch + 2**20


@pytest.mark.parametrize("batch_size", [1, 32, 256])
def test_fit_does_not_copy_the_data(data, batch_size):
    X, y = data
    m = model()
    peak = fit_peak(m, X, y, batch_size=batch_size, lr=0.001)
    assert peak < budget(m, N, batch_size), (peak, budget(m, N, batch_size))
    assert peak < 0.25 * X.nbytes  # no copy of X


def test_fit_converts_the_data_once(data):
    X, y = data
    m = model()
    X64 = X.astype(np.float64)  # converted to the model's float32: one copy
    peak = fit_peak(m, X64, y, batch_size=32, lr=0.001)
    assert X.nbytes < peak < X.nbytes + budget(m, N, 32)


def test_validation_split_copies_nothing(data):
    X, y = data
    m = model()
    peak = fit_peak(m, X, y, batch_size=32, lr=0.001, validation_split=0.1)
    # the held-out part is evaluated every epoch: its outputs and targets
    assert peak < 2 * budget(m, N, 32) and peak < 0.25 * X.nbytes


@pytest.fixture(scope="module")
def read_only(data, tmp_path_factory):
    """The data as np.load(..., mmap_mode="r") gives it: a read-only memory map."""
    path = tmp_path_factory.mktemp("mmap") / "X.npy"
    np.save(path, data[0])
    X = np.load(path, mmap_mode="r")
    assert not X.flags.writeable
    return X, data[1]


CALLS = {
    "fit": lambda m, X, y: m.fit(X, y, batch_size=32, lr=0.001),
    "fit-validation_split": lambda m, X, y: m.fit(X, y, batch_size=32, lr=0.001,
                                                  validation_split=0.1),
    "fit-online": lambda m, X, y: m.fit(X, y, batch_size=1, lr=0.001),
    "predict": lambda m, X, y: m.predict(X),
    "evaluate": lambda m, X, y: m.evaluate(X, y),
    "loss": lambda m, X, y: m.loss(X, y),
    "gradients": lambda m, X, y: m.gradients(X, y),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_a_read_only_memory_map_is_read_in_place(read_only, call):
    X, y = read_only
    m = model()
    CALLS[call](m, X[:64], y[:64])  # every kernel this call needs, loaded beforehand
    tracemalloc.start()
    try:
        CALLS[call](m, X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * budget(m, N, 32) and peak < 0.25 * X.nbytes, peak
    assert not X.flags.writeable  # the user's array is as it was


def test_read_only_data_trains_the_same_bits_without_a_new_compile(data, read_only):
    X, y = data
    results = []
    for features in (X, read_only[0]):
        m = fastbp.Model(SIZES, hidden="relu", output="softmax", loss="cross_entropy",
                         seed=0)
        m.fit(features[:2000], y[:2000], batch_size=16, lr=0.01, validation_split=0.2)
        results.append((m.params.tobytes(), m.predict(features[:50]).tobytes()))
    assert results[0] == results[1]
    from fastbp.kernels import train

    # no build for read-only arrays: they reach the kernel typed as writeable
    assert not any(getattr(t, "readonly", False)
                   for kernel in (train.region, train.train_epoch_online)
                   for sig in kernel.signatures for t in sig)
