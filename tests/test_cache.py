"""Where compiled kernels are cached: outside the install, keyed by every kernel
source, safe to fill from several processes at once, and numba's cache of other
packages untouched."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import fastbp
from fastbp.kernels import _cache, train

REPO = Path(__file__).resolve().parents[1]


def _run(code, env, cwd, *args):
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd,
                            env={**os.environ, **env}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_cache_folder_is_outside_the_package_and_named_by_the_source_digest():
    package = Path(fastbp.__file__).resolve().parent
    kernels = Path(train.__file__).resolve().parent
    folder = Path(train.train_epoch_online._cache.cache_path).resolve()
    assert folder == Path(_cache.CACHE_DIR).resolve()
    assert folder.name == "kernels-" + _cache.SOURCE_DIGEST[:16]
    for inside in (package, kernels, REPO):
        assert inside not in folder.parents
    assert not list(kernels.glob("__pycache__/*.nb[ic]"))


def test_fastbp_cache_dir_overrides_the_folder(tmp_path):
    code = ("from fastbp.kernels import _cache, train;"
            "print(train.region._cache.cache_path)")
    out = _run(code, {"FASTBP_CACHE_DIR": str(tmp_path / "c")}, tmp_path).strip()
    assert Path(out).parent == tmp_path / "c"


def _installed_copy(tmp_path):
    """fastbp laid out as installed (fastbp/kernels inside fastbp/), importable
    through PYTHONPATH ahead of the editable install."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "fastbp", site / "fastbp",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "kernels", site / "fastbp" / "kernels",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return site


_PREDICT = (
    "import sys, numpy as np, fastbp;"
    "assert fastbp.__file__.startswith(sys.argv[1]), fastbp.__file__;"
    "m = fastbp.Model([3, 4, 2], hidden='tanh', seed=0);"
    "print(m.predict(np.ones((2, 3))).tobytes().hex())"
)


def test_a_callee_edit_reaches_its_callers_through_the_cache(tmp_path):
    """predict runs train.region, which calls activations.activate through
    batch._samples_part (other files): editing only
    the callee must change what the caller computes, and restoring it brings back
    the first answer, each time through the same cache folder."""
    site = _installed_copy(tmp_path)
    env = {"FASTBP_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(site)}
    callee = site / "fastbp" / "kernels" / "activations.py"
    original = callee.read_text()
    assert original.count("a[k] = np.tanh(z[k])") == 1
    first = _run(_PREDICT, env, tmp_path, site)
    callee.write_text(original.replace("a[k] = np.tanh(z[k])", "a[k] = np.tanh(z[k]) + one"))
    edited = _run(_PREDICT, env, tmp_path, site)
    callee.write_text(original)
    again = _run(_PREDICT, env, tmp_path, site)
    assert edited != first
    assert again == first
    assert len(list((tmp_path / "cache").glob("kernels-*"))) == 2
    assert not list(site.rglob("*.nb[ic]"))  # nothing written inside the install


def test_other_packages_keep_numbas_own_cache(tmp_path):
    (tmp_path / "other.py").write_text(
        "import numba\n\n@numba.njit(cache=True)\ndef twice(x):\n    return 2 * x\n")
    code = ("import fastbp, numpy as np, other;"
            "fastbp.Model([2, 2], seed=0).predict(np.ones((1, 2)));"
            "print(other.twice(3), other.twice._cache.cache_path)")
    out = _run(code, {"FASTBP_CACHE_DIR": str(tmp_path / "cache"),
                      "PYTHONPATH": str(tmp_path)}, tmp_path).split()
    assert out[0] == "6"
    assert Path(out[1]) == tmp_path / "__pycache__"
    assert list((tmp_path / "__pycache__").glob("other.twice-*.nbi"))
    assert not list((tmp_path / "cache").rglob("other*"))


_FILL = (
    "import numpy as np, fastbp; from fastbp.kernels import train;"
    "X = np.random.default_rng(0).standard_normal((64, 5)); Y = X[:, :2] ** 2;"
    "m = fastbp.Model([5, 7, 2], seed=0); m.fit(X, Y, batch_size=1, epochs=2);"
    "p = m.predict(X);"
    "misses = sum(train.train_epoch_online.stats.cache_misses.values())"
    " + sum(train.region.stats.cache_misses.values());"
    "print(m.params.tobytes().hex()[:64], p.tobytes().hex()[:64], misses)"
)


def test_processes_filling_one_empty_cache_at_once(tmp_path):
    """Four processes compile into one empty folder at the same time: all succeed
    with the same bits, and a fifth loads every kernel it needs from the folder."""
    env = {**os.environ, "FASTBP_CACHE_DIR": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", _FILL], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outs]
    results = {tuple(out.split()[:2]) for out, _ in outs}
    assert len(results) == 1
    params, outputs, misses = _run(_FILL, {"FASTBP_CACHE_DIR": str(tmp_path / "cache")},
                                   tmp_path).split()
    assert (params, outputs) in results
    assert misses == "0"


def test_cache_and_compile_commands(tmp_path):
    env = {"FASTBP_CACHE_DIR": str(tmp_path / "cache")}
    cli = "import sys; from fastbp.cli import main; sys.exit(main(sys.argv[1:]))"
    out = _run(cli, env, tmp_path, "compile", "--dtype", "float64", "--path", "online")
    assert "float64  fit, batch size 1" in out and "done in" in out
    listed = _run(cli, env, tmp_path, "cache")
    (folder,) = (tmp_path / "cache").glob("kernels-*")
    assert f"{folder}  (current)" in listed
    assert any(folder.glob("train.train_epoch_online-*.nbi"))
    out = _run(cli, env, tmp_path, "cache", "--clear")
    assert out.startswith("removed 1 folder(s)")
    assert not folder.exists()


def test_compile_leaves_nothing_to_compile(tmp_path):
    """After ``fastbp compile`` (float32, the default dtype), a fresh process's fits
    at batch 1 and mini-batch (serial and on two threads), evaluate, gradients and
    predict (many rows and one) compile nothing: every kernel loads from the cache."""
    env = {"FASTBP_CACHE_DIR": str(tmp_path / "cache"), "NUMBA_NUM_THREADS": "2"}
    cli = "import sys; from fastbp.cli import main; sys.exit(main(sys.argv[1:]))"
    _run(cli, env, tmp_path, "compile", "--dtype", "float32")
    code = (
        "import numpy as np, fastbp; from fastbp import _threads;"
        "from numba.core import event;"
        "compiled = [];"
        "event.register('numba:compile', event.Listener.__new__(type('L', (event.Listener,),"
        " {'on_start': lambda self, ev: compiled.append(ev.data['dispatcher'].py_func),"
        " 'on_end': lambda self, ev: None})));"
        "X = np.random.default_rng(0).standard_normal((64, 5)); Y = X[:, :2] ** 2;"
        "m = fastbp.Model([5, 7, 2], seed=0); m.fit(X, Y, batch_size=1);"
        "m.fit(X, Y, batch_size=8); _threads.PARALLEL_MIN_FLOPS = 0;"
        "_threads.held_up = lambda: False; m.fit(X, Y, batch_size=8);"
        "m.evaluate(X, Y); m.gradients(X, Y); m.predict(X); m.predict(X[0]);"
        "_threads.probe_seconds(2); from fastbp.kernels import train;"
        "print([f.__module__ + '.' + f.__name__ for f in compiled if"
        " f.__module__.startswith('fastbp')], train.region.stats.cache_hits)"
    )
    out = _run(code, env, tmp_path)
    assert out.startswith("[] "), out  # nothing of fastbp's compiled
    assert "1}" in out  # the region kernel came from the cache


def test_a_result_numba_cannot_cache_warns_instead_of_crashing():
    # numba refuses to cache code holding a process-specific address (here a
    # ctypes function pointer) and warns naming the locator's source file: the
    # locator must provide it, or the compile itself fails.
    import ctypes
    import ctypes.util
    import warnings

    import numba

    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    cos = libm.cos
    cos.restype, cos.argtypes = ctypes.c_double, (ctypes.c_double,)

    namespace = {"cos": cos}  # a global, not a closure cell (numba pickles those)
    exec("def uses_a_pointer(x):\n    return cos(x)\n", namespace)
    uses_a_pointer = namespace["uses_a_pointer"]
    kernel = _cache.enable(numba.njit(uses_a_pointer))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert kernel(0.0) == 1.0
    assert any("Cannot cache" in str(w.message) for w in caught)
