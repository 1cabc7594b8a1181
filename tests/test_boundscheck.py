"""Every kernel path under NUMBA_BOUNDSCHECK=1: an out-of-bounds read or write
raises IndexError instead of silently touching memory. Runs in a subprocess with
its own JIT cache folder, so the bounds-checked build is compiled, not loaded."""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import fastbp

    rng = np.random.default_rng(0)
    X = rng.normal(size=(11, 5))
    y = rng.integers(0, 3, size=11)
    for bias in (True, False):
        for hidden, output, loss in [("relu", "softmax", "cross_entropy"),
                                     ("sigmoid", "softmax", "mse"),
                                     ("tanh", "sigmoid", "cross_entropy")]:
            model = fastbp.Model([5, 7, 4, 3], hidden=hidden, output=output, loss=loss,
                                 bias=bias, dtype="float64", seed=0)
            Y = np.eye(3)[y]
            for batch_size in (1, 4, 11, 50):  # online, partial, whole, larger than n
                model.fit(X, Y, batch_size=batch_size, lr=0.01, momentum=0.9)
                model.fit(X, Y, batch_size=batch_size, lr=0.001, optimizer="adam")
                w = rng.uniform(0.0, 2.0, size=11)  # weighted paths, with the L2 penalty
                model.fit(X, Y, batch_size=batch_size, lr=0.01, sample_weight=w, l2=0.1)
            model.predict(X)
            model.predict(X[0])
            model.loss(X, Y)
            model.gradients(X, Y)
            model.evaluate(X, Y)
    print("bounds ok")
    """
)


@pytest.mark.slow
def test_all_kernel_paths_stay_in_bounds(tmp_path):
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "FASTBP_CACHE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bounds ok" in result.stdout
