"""The register-tile matrix products of kernels/tiles.py against NumPy.

Shapes cover full tiles, edge tiles in every direction (rows past a tile's
edge, columns past a vector, a contraction length that is not a multiple of the
vector width) and 1 x 1; blocks sit at offsets inside larger buffers, whose
other elements must stay untouched. Splitting the rows of a product must not
change a bit (the thread-count determinism of the GEMM kernels rests on it).
"""

import numpy as np
import pytest

from fastbp.kernels import tiles

SHAPES = [(1, 1, 1), (3, 17, 5), (7, 33, 45), (5, 100, 129), (32, 64, 10), (13, 256, 70),
          (9, 300, 20)]
TOL = {"float32": dict(rtol=2e-5, atol=2e-5), "float64": dict(rtol=1e-12, atol=1e-12)}
SENTINEL = 7.0


def padded(rng, n, dtype, pad):
    """A flat buffer of ``pad`` sentinels then n random numbers then ``pad`` more."""
    buf = np.full(n + 2 * pad, SENTINEL, dtype=dtype)
    buf[pad : pad + n] = rng.standard_normal(n)
    return buf


def unchanged_outside(buf, pad, n):
    return (buf[:pad] == SENTINEL).all() and (buf[pad + n :] == SENTINEL).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows,inner,cols", SHAPES)
def test_matmul_nt_is_A_times_W_transposed(dtype, rows, inner, cols):
    rng = np.random.default_rng(rows * inner + cols)
    A, W = padded(rng, rows * inner, dtype, 3), padded(rng, cols * inner, dtype, 2)
    Z = np.full(rows * cols + 8, SENTINEL, dtype=dtype)
    tiles.matmul_nt(A, 3, W, 2, rows, inner, cols, Z, 4, cols)
    expected = A[3:-3].reshape(rows, inner) @ W[2:-2].reshape(cols, inner).T
    np.testing.assert_allclose(Z[4:-4].reshape(rows, cols), expected, **TOL[dtype])
    assert unchanged_outside(Z, 4, rows * cols)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows,inner,cols", SHAPES)
def test_matvec_is_each_row_times_W_transposed_with_the_batch_bits(dtype, rows, inner, cols):
    """One sample's z = W x (online training, prediction) against NumPy, and with
    the same bits as that sample's row of the batch product."""
    rng = np.random.default_rng(rows + 3 * inner + cols)
    A, W = padded(rng, rows * inner, dtype, 3), padded(rng, cols * inner, dtype, 2)
    batch = np.zeros(rows * cols, dtype=dtype)
    tiles.matmul_nt(A, 3, W, 2, rows, inner, cols, batch, 0, cols)
    for s in range(rows):
        z = np.full(cols + 8, SENTINEL, dtype=dtype)
        tiles.matvec(W, 2, cols, inner, A, 3 + s * inner, z, 4)
        x = A[3 + s * inner : 3 + (s + 1) * inner]
        np.testing.assert_allclose(z[4:-4], W[2:-2].reshape(cols, inner) @ x, **TOL[dtype])
        assert unchanged_outside(z, 4, cols)
        assert np.array_equal(z[4:-4], batch[s * cols : (s + 1) * cols])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows,inner,cols", SHAPES)
def test_matmul_nn_is_D_times_W(dtype, rows, inner, cols):
    rng = np.random.default_rng(rows + inner * cols)
    D, W = padded(rng, rows * inner, dtype, 1), padded(rng, inner * cols, dtype, 5)
    out = np.full(rows * cols + 2, SENTINEL, dtype=dtype)
    tiles.matmul_nn(D, 1, W, 5, rows, inner, cols, out, 1)
    expected = D[1:-1].reshape(rows, inner) @ W[5:-5].reshape(inner, cols)
    np.testing.assert_allclose(out[1:-1].reshape(rows, cols), expected, **TOL[dtype])
    assert unchanged_outside(out, 1, rows * cols)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows,inner,cols", [(7, 300, 45), (13, 2 * tiles.NN_CHUNK, 70)])
def test_matmul_nn_in_ranges_of_rows_of_W_has_the_bits_of_one_range(dtype, rows, inner, cols):
    """D W over ranges of the contraction (sums continued from the output) against
    the same product in one range, bitwise, and against NumPy."""
    rng = np.random.default_rng(rows + inner)
    D, W = padded(rng, rows * inner, dtype, 1), padded(rng, inner * cols, dtype, 5)
    ranged, whole = (np.full(rows * cols + 2, SENTINEL, dtype=dtype) for _ in range(2))
    tiles.matmul_nn(D, 1, W, 5, rows, inner, cols, ranged, 1)
    tiles._nn_range(D, 1, W, 5, rows, inner, cols, whole, 1, 0, inner)
    assert np.array_equal(ranged, whole)
    expected = D[1:-1].reshape(rows, inner) @ W[5:-5].reshape(inner, cols)
    np.testing.assert_allclose(ranged[1:-1].reshape(rows, cols), expected, **TOL[dtype])
    assert unchanged_outside(ranged, 1, rows * cols)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("samples,units,cols", SHAPES)
def test_matmul_tn_is_D_transposed_times_A_in_any_row_split(dtype, samples, units, cols):
    rng = np.random.default_rng(samples * cols + units)
    D, A = padded(rng, samples * units, dtype, 2), padded(rng, samples * cols, dtype, 3)
    dW = np.full(units * cols + 6, SENTINEL, dtype=dtype)
    tiles.matmul_tn(D, 2, units, 0, units, A, 3, samples, cols, dW, 3)
    expected = D[2:-2].reshape(samples, units).T @ A[3:-3].reshape(samples, cols)
    np.testing.assert_allclose(dW[3:-3].reshape(units, cols), expected, **TOL[dtype])
    assert unchanged_outside(dW, 3, units * cols)
    # the rows in two calls, split off a tile boundary: the same bits
    split = np.full_like(dW, SENTINEL)
    half = units // 2 + 1 if units > 1 else 1
    tiles.matmul_tn(D, 2, units, 0, half, A, 3, samples, cols, split, 3)
    tiles.matmul_tn(D, 2, units, half, units, A, 3, samples, cols, split, 3)
    assert np.array_equal(split, dW)


def test_forward_rows_in_parts_give_the_same_bits():
    """Z for all rows at once == Z computed part by part, by rows (samples) or by
    columns (units): how threads split it."""
    rng = np.random.default_rng(0)
    rows, inner, cols = 37, 130, 29
    A, W = rng.standard_normal(rows * inner), rng.standard_normal(cols * inner)
    whole, parts = np.zeros(rows * cols), np.zeros(rows * cols)
    tiles.matmul_nt(A, 0, W, 0, rows, inner, cols, whole, 0, cols)
    for r0, r1 in [(0, 11), (11, 12), (12, 37)]:
        tiles.matmul_nt(A, r0 * inner, W, 0, r1 - r0, inner, cols, parts, r0 * cols, cols)
    assert np.array_equal(whole, parts)
    # and by columns: blocks of units written into the rows of the whole Z
    by_units = np.zeros(rows * cols)
    for c0, c1 in [(0, 7), (7, 8), (8, 29)]:
        tiles.matmul_nt(A, 0, W, c0 * inner, rows, inner, c1 - c0, by_units, c0, cols)
    assert np.array_equal(whole, by_units)


def test_blocks_outside_their_buffers_raise():
    A, W, Z = np.zeros(12), np.zeros(12), np.zeros(9)
    tiles.matmul_nt(A, 0, W, 0, 3, 4, 3, Z, 0, 3)  # fits exactly
    with pytest.raises(IndexError):
        tiles.matmul_nt(A, 1, W, 0, 3, 4, 3, Z, 0, 3)
    with pytest.raises(IndexError):
        tiles.matmul_nt(A, 0, W, 0, 3, 4, 2, Z, 0, 4)  # rows 4 apart: 10 > 9 elements
    with pytest.raises(IndexError):
        tiles.matmul_nt(A, 0, W, 0, 3, 4, 3, Z, 0, 2)  # rows overlapping
    with pytest.raises(IndexError):
        tiles.matmul_nn(A, 0, W, 0, 3, 4, 4, Z, 0)
    with pytest.raises(IndexError):
        tiles.matmul_tn(A, 0, 4, 2, 5, W, 0, 3, 3, np.zeros(12), 0)


AVX2_SCRIPT = '''
import numpy as np
from fastbp import Model, reference
from fastbp.kernels import tiles

assert tiles.VECTOR_BYTES == 32 and (tiles.DOT_ROWS, tiles.AXPY_VECS, tiles.VEC_COLS) == (2, 2, 6)
rng = np.random.default_rng(0)
for dtype, tol in (("float32", 2e-5), ("float64", 1e-12)):
    for rows, inner, cols in [(1, 1, 1), (7, 33, 45), (5, 100, 129), (13, 256, 70)]:
        A = rng.standard_normal(rows * inner).astype(dtype)
        W = rng.standard_normal(cols * inner).astype(dtype)
        Z = np.zeros(rows * cols, dtype)
        tiles.matmul_nt(A, 0, W, 0, rows, inner, cols, Z, 0, cols)
        expected = A.reshape(rows, inner) @ W.reshape(cols, inner).T
        np.testing.assert_allclose(Z.reshape(rows, cols), expected, rtol=tol, atol=tol)
        Wn = rng.standard_normal(inner * cols).astype(dtype)
        tiles.matmul_nn(A, 0, Wn, 0, rows, inner, cols, Z, 0)
        expected = A.reshape(rows, inner) @ Wn.reshape(inner, cols)
        np.testing.assert_allclose(Z.reshape(rows, cols), expected, rtol=tol, atol=tol)
        Am = rng.standard_normal(rows * cols).astype(dtype)
        dW = np.zeros(inner * cols, dtype)
        tiles.matmul_tn(A, 0, inner, 0, inner, Am, 0, rows, cols, dW, 0)
        expected = A.reshape(rows, inner).T @ Am.reshape(rows, cols)
        np.testing.assert_allclose(dW.reshape(inner, cols), expected, rtol=tol, atol=tol)
        z = np.zeros(cols, dtype)
        tiles.matvec(W, 0, cols, inner, A, 0, z, 0)
        expected = W.reshape(cols, inner) @ A[:inner]
        np.testing.assert_allclose(z, expected, rtol=tol, atol=tol)
sizes = [6, 40, 30, 3]
X = rng.standard_normal((20, 6))
T = np.eye(3)[rng.integers(0, 3, 20)]
model = Model(sizes, hidden="relu", output="softmax", loss="cross_entropy", seed=3,
              dtype="float64")
p0 = model.params.copy()
model.fit(X, T, epochs=2, batch_size=8, shuffle=False, lr=0.05, momentum=0.9)
expected = reference.train(p0, sizes, True, X, T, [np.arange(20)] * 2, 8, "relu", "softmax",
                           "cross_entropy", optimizer="sgd", lr=0.05, momentum=0.9)
np.testing.assert_allclose(model.params, expected, rtol=1e-10, atol=1e-12)
model = Model(sizes, hidden="sigmoid", seed=4, dtype="float64")  # batch 1: tiles.matvec
p0 = model.params.copy()
model.fit(X, T, epochs=2, batch_size=1, shuffle=False, lr=0.05)
expected = reference.train(p0, sizes, True, X, T, [np.arange(20)] * 2, 1, "sigmoid", "linear",
                           "mse", optimizer="sgd", lr=0.05)
np.testing.assert_allclose(model.params, expected, rtol=1e-10, atol=1e-12)
print("ok")
'''


@pytest.mark.slow
def test_the_avx2_build_of_the_tiles_is_right_too(tmp_path):
    """Machines without AVX-512 get 32-byte vectors and smaller tiles: built here for
    a Haswell CPU in a fresh process and cache, held to NumPy and the reference."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "FASTBP_VECTOR_BYTES": "32", "NUMBA_CPU_NAME": "haswell",
           "FASTBP_CACHE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", AVX2_SCRIPT], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sgd_step_inside_the_gradient_product_is_the_separate_update(dtype):
    """sgd_step_tn steps W tile by tile from gradient sums it never stores: the same
    bits as matmul_tn storing them and update.sgd_update, in any split of the rows."""
    from fastbp.kernels import update

    rng = np.random.default_rng(4)
    samples, units, cols = 37, 13, 70  # 70 = a full strip + a narrow one (float32)
    D = rng.standard_normal(samples * units).astype(dtype)
    A = rng.standard_normal(samples * cols).astype(dtype)
    W0 = rng.standard_normal(units * cols + 3).astype(dtype)
    sums = np.zeros(units * cols, dtype)
    tiles.matmul_tn(D, 0, units, 0, units, A, 0, samples, cols, sums, 0)
    expected = W0.copy()
    update.sgd_block(expected, np.concatenate([np.zeros(3, dtype), sums]), 37.0,
                     np.zeros(0, dtype), 0.1, 0.0, False, 0.01, 3, W0.shape[0])
    stepped = W0.copy()
    for r0, r1 in [(0, 5), (5, 13)]:
        tiles.sgd_step_tn(D, 0, units, r0, r1, A, 0, samples, cols, stepped, 3, 0.1, 37.0, 0.01)
    assert np.array_equal(stepped, expected)
    with pytest.raises(IndexError):
        tiles.sgd_step_tn(D, 0, units, 0, units, A, 0, samples, cols, stepped, 4, 0.1, 37.0, 0.0)
