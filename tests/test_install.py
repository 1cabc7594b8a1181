"""The README's two commands in one checkout, in either order, leave a working
install: the compiled-kernel cache stays out of the installed package, and
Python started in the checkout's root imports the same fastbp as anywhere else."""

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numba
import pytest

REPO = Path(__file__).resolve().parents[1]
SITE = Path(numba.__file__).resolve().parents[1]  # this venv's dependencies

_TRAIN = (
    "import sys, numpy as np, fastbp;"
    "m = fastbp.Model([4, 6, 3], seed=0);"
    "X = np.random.default_rng(0).standard_normal((32, 4));"
    "m.fit(X, np.eye(3)[np.arange(32) % 3], batch_size=1);"
    "print(fastbp.__file__, fastbp.Model.__name__)"
)


def _checkout(tmp_path):
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    root = tmp_path / "checkout"
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    return root


def _venv(tmp_path):
    """A venv without pip that sees this venv's dependencies (numpy, numba,
    setuptools) through a path line, but not its editable fastbp."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "deps.pth").write_text(f"{SITE}\n")
    return python, Path(site)


def _pip(python, *args):
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                             "-q", "--no-deps", "--no-build-isolation", *map(str, args)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _python(python, code, cwd):
    return subprocess.run([python, "-c", code], cwd=cwd, capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})


@pytest.mark.skipif(sys.platform == "win32", reason="venv layout")
def test_install_train_reinstall_editable_import_anywhere(tmp_path):
    checkout = _checkout(tmp_path)
    python, site = _venv(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    _pip(python, checkout)  # `pip install .`, then a fit
    run = _python(python, _TRAIN, elsewhere)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(str(site / "fastbp"))
    assert not list(site.rglob("*.nb[ic]"))  # no compiled kernels inside the install
    # Python in the checkout's root finds ./fastbp without its kernels: a clear error
    run = _python(python, "import fastbp", checkout)
    assert "pip install -e ." in run.stderr

    _pip(python, "-e", checkout)  # then `pip install -e .` over it
    for cwd in (elsewhere, checkout):
        run = _python(python, _TRAIN, cwd)
        assert run.returncode == 0, run.stderr
        assert run.stdout.split()[0] == str(checkout / "fastbp" / "__init__.py")
    assert not list(site.rglob("*.nb[ic]"))
    assert not list(checkout.rglob("*.nb[ic]"))
