"""scikit-learn's own MLP tests, run on fastbp's estimators.

The installed scikit-learn's ``sklearn/neural_network/tests/test_mlp.py`` (it ships
inside the wheel) is copied with one line changed, the import of MLPClassifier and
MLPRegressor, and run with scikit-learn's fixtures (``-p sklearn.conftest``). Every
test must pass; none may be skipped (pandas is in the test extra for the two that
use it). A few read scikit-learn-private names; fastbp.sklearn answers them (see
its notes on differences).
"""

import pathlib
import re
import subprocess
import sys

import pytest

sklearn = pytest.importorskip("sklearn")

IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
SOURCE = pathlib.Path(sklearn.__file__).parent / "neural_network" / "tests" / "test_mlp.py"


@pytest.mark.slow
@pytest.mark.skipif(not SOURCE.exists(), reason="this scikit-learn ships without its tests")
def test_scikit_learns_own_mlp_tests_pass_on_fastbp(tmp_path):
    text = SOURCE.read_text()
    assert text.count(IMPORT) == 1, "the import line to swap has changed"
    text = text.replace(IMPORT, "from fastbp.sklearn import MLPClassifier, MLPRegressor")
    text += ('\n\ndef test_the_estimators_are_fastbps():\n'
             '    assert MLPClassifier.__module__ == MLPRegressor.__module__ == "fastbp.sklearn"\n')
    copy = tmp_path / "test_mlp_on_fastbp.py"
    copy.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "sklearn.conftest", "-p",
         "no:cacheprovider", "-rfEs", str(copy)],
        capture_output=True, text=True, cwd=tmp_path, timeout=1800)
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    counts = dict((word, int(n)) for n, word in re.findall(r"(\d+) (\w+)", summary))
    assert set(counts) <= {"passed", "warnings", "warning"}, summary  # no skip, no fail
    assert counts["passed"] >= 60, summary  # scikit-learn 1.9.1: 59 of its own, plus ours
