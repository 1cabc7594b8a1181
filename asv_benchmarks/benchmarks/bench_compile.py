"""Cold start: ``import fastbp`` and the first fit in a fresh process, each
sample its own process, with the kernel cache in a known state:

- ``timeraw_first_fit_empty_cache``: a new empty ``FASTBP_CACHE_DIR`` for every
  sample, so every sample compiles (what a new user waits for);
- ``timeraw_first_fit_filled_cache``: a folder filled once by ``setup_cache``
  (its own process), so every sample loads compiled kernels and compiles nothing.

Neither depends on what ran before in the environment or on the user's own
cache folder. The fit is the README's cold-start row: 784-256-128-10, float32,
batch 32.
"""

import os
import subprocess
import sys

FIRST_FIT = """
import numpy as np
import fastbp
X = np.random.default_rng(0).normal(size=(256, 784)).astype(np.float32)
y = np.arange(256) % 10
model = fastbp.Model([784, 256, 128, 10], hidden="relu", output="softmax",
                     loss="cross_entropy", seed=0)
model.fit(X, y, batch_size=32)
"""

EMPTY_CACHE = """
import atexit, os, shutil, tempfile
folder = tempfile.mkdtemp(prefix="fastbp-asv-empty-")
atexit.register(shutil.rmtree, folder, True)
os.environ["FASTBP_CACHE_DIR"] = folder
"""


class ColdStart:
    timeout = 900
    # each empty-cache sample compiles for ~10-15 s: three are enough to see a
    # change of a few seconds, and keep the class within a few minutes
    repeat = 3
    warmup_time = 0

    def setup_cache(self):
        folder = os.path.abspath("fastbp-asv-filled-cache")
        env = dict(os.environ, FASTBP_CACHE_DIR=folder)
        subprocess.run([sys.executable, "-c", FIRST_FIT], env=env, check=True)
        return folder

    def timeraw_import_fastbp(self, folder):
        return "import fastbp"

    def timeraw_first_fit_empty_cache(self, folder):
        return FIRST_FIT, EMPTY_CACHE

    def timeraw_first_fit_filled_cache(self, folder):
        return FIRST_FIT, f"import os\nos.environ['FASTBP_CACHE_DIR'] = {folder!r}\n"
