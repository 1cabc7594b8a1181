"""The package installs as designed: fastbp.kernels, never a top-level kernels;
a wheel built from the repo imports from outside the repo."""

import importlib.util
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import fastbp

REPO = Path(__file__).resolve().parents[1]
TOP_LEVEL_KERNELS = re.compile(r"^\s*(import|from) kernels\b", re.MULTILINE)


def test_kernels_import_as_a_subpackage():
    from fastbp.kernels import forward, train  # noqa: F401

    assert importlib.util.find_spec("fastbp.kernels") is not None
    assert fastbp.__version__


def test_no_module_imports_a_top_level_kernels():
    for folder in ("fastbp", "kernels", "tests", "asv_benchmarks"):
        for path in (REPO / folder).rglob("*.py"):
            if any(part.startswith(".") for part in path.relative_to(REPO).parts):
                continue  # tool folders such as asv's .asv/env are not ours
            text = path.read_text()
            assert not TOP_LEVEL_KERNELS.search(text), path


@pytest.mark.slow
def test_wheel_contains_fastbp_kernels_and_imports_outside_the_repo(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path / "dist"), str(REPO)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("fastbp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "fastbp/kernels/train.py" in names and "fastbp/model.py" in names
    assert not [n for n in names if n.startswith("kernels/")]
    assert any(n.endswith("entry_points.txt") for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # Run from an empty folder with only the unpacked wheel (plus the dependencies
    # of this interpreter) importable: the repo's own folders must not be found.
    code = (
        "import fastbp, fastbp.kernels.train, numpy as np, sys;"
        "assert fastbp.__file__.startswith(sys.argv[1]), fastbp.__file__;"
        "m = fastbp.Model([2, 3, 1], seed=0); m.fit(np.eye(2), [0.0, 1.0]);"
        "print('ok', fastbp.__version__)"
    )
    env = {**os.environ, "PYTHONPATH": str(site), "FASTBP_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", code, str(site)], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")
