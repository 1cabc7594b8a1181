"""Same seed, same data -> the same bits in every process: the first one, which
compiles the kernels, and every later one, which loads them from numba's cache.

(With fastmath on every kernel they differed: see kernels/_jit.py.) Two fresh
interpreters share an empty cache folder; the first fills it, the second loads
from it; both train every kernel path and print digests of the results.
"""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import hashlib
    import numpy as np
    import fastbp

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6))
    y = rng.integers(0, 3, size=40)
    digests = []
    for dtype in ("float64", "float32"):
        for hidden, output, loss in [("relu", "softmax", "cross_entropy"),
                                     ("sigmoid", "linear", "mse"),
                                     ("tanh", "sigmoid", "cross_entropy")]:
            Y = np.eye(3)[y]
            for batch_size in (1, 4, 40):
                for kwargs in (dict(lr=0.05), dict(lr=0.05, momentum=0.9, nesterov=True),
                               dict(lr=0.01, optimizer="adam", weight_decay=0.01),
                               dict(lr=0.05, momentum=0.5, l2=0.1,
                                    sample_weight=np.linspace(0.0, 2.0, 40))):
                    model = fastbp.Model([6, 9, 7, 3], hidden=hidden, output=output,
                                         loss=loss, dtype=dtype, seed=1)
                    history = model.fit(X, Y, epochs=2, batch_size=batch_size, **kwargs)
                    digests.append(hashlib.sha1(model.params.tobytes()).hexdigest())
                    digests.append(repr(history.history["loss"]))
            digests.append(hashlib.sha1(model.predict(X).tobytes()).hexdigest())
            digests.append(repr(model.loss(X, Y)))
            grads = model.gradients(X, Y)[0]
            digests.append(hashlib.sha1(b"".join(g.tobytes() for g in grads)).hexdigest())
    print(hashlib.sha1("".join(digests).encode()).hexdigest())
    """
)


@pytest.mark.slow
def test_first_process_and_cached_processes_agree(tmp_path):
    env = {**os.environ, "FASTBP_CACHE_DIR": str(tmp_path)}
    runs = []
    for _ in range(2):  # compiles and fills the cache, then loads from it
        result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                                text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(result.stdout.strip())
    assert any(tmp_path.rglob("*.nbc")), "the first run wrote no cache"
    assert runs[0] == runs[1]
