"""The redesign changes no bit: digests of trained parameters, optimizer state and
History for a grid of configurations, recorded at ec08e64 (before the first move),
and a model file written by that commit that still loads and resumes to the same bits.

Every path is covered: online (batch 1), mini-batch serial with one part and with
forced parts, mini-batch parallel with forced parts (3 parts on 2 threads), and the
data-set pass (loss, gradients, predict, evaluate); float32 and float64; SGD,
momentum, Nesterov, Adam (torch's and scikit-learn's eps), weight_decay, l2, sample
and class weights, validation split and an lr schedule.

The bits depend on the tiles' vector width (kernels/_tile_ir.py: 64 bytes on
AVX-512 machines, 32 on AVX2 ones). ``bit_digests.json`` holds the 64-byte build's,
recorded at ec08e64; ``bit_digests_32.json`` the 32-byte build's, recorded at the
commit that added it (ec08e64 was never measured on an AVX2 machine). On a machine
whose width is not 64, one more test runs this file again in a process forced to
the 64-byte build (FASTBP_VECTOR_BYTES=64 runs on AVX2: LLVM splits the vectors),
so every machine checks the bits of ec08e64.

Regenerate (only when a change of bits is intended and explained in the commit):
``python tests/test_bits.py`` (this machine's width; FASTBP_VECTOR_BYTES=64 for the
other file).
"""

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numba
import numpy as np
import pytest

import fastbp
from fastbp import schedules
from fastbp.kernels._tile_ir import VECTOR_BYTES

DATA = pathlib.Path(__file__).parent / "data"
DIGESTS = DATA / ("bit_digests.json" if VECTOR_BYTES == 64
                  else f"bit_digests_{VECTOR_BYTES}.json")
OLD_FILE = DATA / "model_ec08e64.npz"

# (name, fit keywords); every case trains 2 epochs on a 37-sample problem.
OPTIMIZERS = {
    "sgd": dict(lr=0.1),
    "momentum": dict(lr=0.05, momentum=0.9, weight_decay=0.01),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "adam": dict(lr=0.01, optimizer="adam", weight_decay=0.001),
    "adam-sklearn-l2": dict(lr=0.01, optimizer="adam", eps_mode="sklearn", l2=0.1,
                            betas=(0.8, 0.99), eps=1e-7),
    "sgd-l2-weights": dict(lr=0.1, l2=0.5, sample_weight="linspace"),
    "momentum-class-weight": dict(lr=0.05, momentum=0.5, class_weight="balanced",
                                  validation_split=0.2, lr_schedule="step"),
}
# (name, batch_size, threads, serial parts, parts in parallel or None)
PATHS = [
    ("online", 1, 1, 1, None),
    ("serial", 8, 1, 1, None),
    ("serial-3-parts", 8, 1, 3, None),
    ("parallel-3-parts", 8, 2, 1, 3),
]
SIZES = [7, 12, 9, 4]
N = 37


def _problem():
    rng = np.random.default_rng(123)
    X = rng.normal(size=(N, SIZES[0]))
    y = rng.integers(0, SIZES[-1], size=N)
    return X, y


def _force(monkeypatch, serial_parts, parallel_parts):
    """Steer the thread policy: parts of a serial epoch, and parallel regions for
    any batch with ``parallel_parts`` parts."""
    from fastbp import _threads as policy

    monkeypatch.setattr(policy, "SERIAL_PARTS", serial_parts)
    if parallel_parts is not None:
        monkeypatch.setattr(policy, "PARALLEL_MIN_FLOPS", 0)
        monkeypatch.setattr(policy, "held_up", lambda: False)  # even when busy
        monkeypatch.setattr(policy, "parts",
                            lambda parallel: parallel_parts if parallel else serial_parts)


def _optimizer_state(model):
    """(buf1, buf2, step) of the model's optimizer."""
    state = model._optimizer
    return state.buf1, state.buf2, state.step


def _h(*arrays):
    digest = hashlib.sha256()
    for arr in arrays:
        digest.update(np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()[:24]


def _fit_digest(dtype, path, opt):
    _, batch_size, threads, _, _ = next(p for p in PATHS if p[0] == path)
    X, y = _problem()
    kwargs = dict(OPTIMIZERS[opt])
    if kwargs.get("sample_weight") == "linspace":
        kwargs["sample_weight"] = np.linspace(0.0, 2.0, N)
    if kwargs.get("lr_schedule") == "step":
        kwargs["lr_schedule"] = schedules.StepLR(1, gamma=0.5)
    model = fastbp.Model(SIZES, hidden="tanh", output="softmax", loss="cross_entropy",
                         dtype=dtype, seed=5)
    history = model.fit(X, y, epochs=2, batch_size=batch_size, n_threads=threads, **kwargs)
    buf1, buf2, step = _optimizer_state(model)
    keys = sorted(history.history)
    values = [history.history[k] for k in keys if k != "samples_per_second"]
    return {
        "params": _h(model.params),
        "optimizer": _h(buf1, buf2, np.array([step])),
        "history": _h(np.array(values, dtype=np.float64)),
        "keys": keys,
        "rng": _h(np.array(json.dumps(model._rng.bit_generator.state, sort_keys=True))),
    }


def _pass_digest(dtype, threads):
    X, y = _problem()
    model = fastbp.Model(SIZES, hidden="relu", output="softmax", loss="cross_entropy",
                         dtype=dtype, seed=9)
    numba.set_num_threads(threads)
    dWs, dbs = model.gradients(X, y)
    ev = model.evaluate(X, y)
    return {
        "gradients": _h(*dWs, *dbs),
        "loss": _h(np.array([model.loss(X, y), ev["loss"], ev["accuracy"]])),
        "predict": _h(model.predict(X), model.predict(X[3])),
    }


FIT_CASES = [(d, p[0], o) for d in ("float32", "float64") for p in PATHS for o in OPTIMIZERS]
PASS_CASES = [(d, t) for d in ("float32", "float64") for t in (1, 2)]


def _compute_all(monkeypatch):
    out = {}
    for dtype, path, opt in FIT_CASES:
        spec = next(p for p in PATHS if p[0] == path)
        with monkeypatch.context() as patch:
            _force(patch, spec[3], spec[4])
            out[f"fit/{dtype}/{path}/{opt}"] = _fit_digest(dtype, path, opt)
    for dtype, threads in PASS_CASES:
        with monkeypatch.context() as patch:
            _force(patch, 1, 3)
            out[f"pass/{dtype}/{threads}"] = _pass_digest(dtype, threads)
    return out


def _expected():
    return json.loads(DIGESTS.read_text())


needs_two = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                               reason="needs 2 numba threads")


@pytest.mark.parametrize("dtype,path,opt", FIT_CASES,
                         ids=[f"{d}-{p}-{o}" for d, p, o in FIT_CASES])
def test_training_gives_the_recorded_bits(dtype, path, opt, monkeypatch, restore_threads):
    spec = next(p for p in PATHS if p[0] == path)
    if spec[2] > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs 2 numba threads")
    _force(monkeypatch, spec[3], spec[4])
    assert _fit_digest(dtype, path, opt) == _expected()[f"fit/{dtype}/{path}/{opt}"]


@pytest.mark.parametrize("dtype,threads", PASS_CASES,
                         ids=[f"{d}-{t}-threads" for d, t in PASS_CASES])
def test_dataset_pass_gives_the_recorded_bits(dtype, threads, monkeypatch, restore_threads):
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs 2 numba threads")
    _force(monkeypatch, 1, 3)
    assert _pass_digest(dtype, threads) == _expected()[f"pass/{dtype}/{threads}"]


def _resume_from(path):
    """Train 2 more epochs from a model file (Adam, a schedule, the shuffling
    stream and epochs_done all come from the file)."""
    X, y = _problem()
    model = fastbp.Model.load(path)
    schedule = schedules.ExponentialLR(0.9)
    model.fit(X, y, epochs=2, batch_size=8, optimizer="adam", lr=0.01, lr_schedule=schedule)
    buf1, buf2, step = _optimizer_state(model)
    return {"params": _h(model.params), "optimizer": _h(buf1, buf2, np.array([step])),
            "epochs_done": model.epochs_done}


def _write_old_file(path):
    X, y = _problem()
    model = fastbp.Model(SIZES, hidden="tanh", output="softmax", loss="cross_entropy",
                         dtype="float32", seed=5)
    model.fit(X, y, epochs=2, batch_size=8, optimizer="adam", lr=0.01,
              lr_schedule=schedules.ExponentialLR(0.9))
    model.save(path)


def test_file_written_by_ec08e64_loads_and_resumes_to_the_recorded_bits():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a version warning, if the version moved on
        assert _resume_from(OLD_FILE) == _expected()["resume"]


@pytest.mark.slow
@pytest.mark.skipif(VECTOR_BYTES == 64, reason="this process runs the 64-byte build")
def test_the_64_byte_build_gives_the_bits_of_ec08e64_on_this_machine(tmp_path):
    env = dict(os.environ, FASTBP_VECTOR_BYTES="64")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-m", "not slow", __file__], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and " failed" not in done.stdout


if __name__ == "__main__":  # regenerate: python tests/test_bits.py
    import warnings

    from _pytest.monkeypatch import MonkeyPatch

    DATA.mkdir(exist_ok=True)
    mp = MonkeyPatch()
    before = numba.get_num_threads()
    digests = _compute_all(mp)
    numba.set_num_threads(before)
    if not OLD_FILE.exists():
        _write_old_file(OLD_FILE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        digests["resume"] = _resume_from(OLD_FILE)
    DIGESTS.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(digests)} digests to {DIGESTS}", file=sys.stderr)
