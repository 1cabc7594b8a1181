"""Cold start: import time and the first fit in a fresh process (JIT compile or
cache load shown, not hidden)."""


class ColdStart:
    timeout = 600

    def timeraw_import_fastbp(self):
        return "import fastbp"

    def timeraw_first_fit(self):
        return """
import numpy as np
import fastbp
X = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
y = np.arange(64) % 3
fastbp.Model([8, 16, 3], hidden="relu", output="softmax", loss="cross_entropy",
             seed=0).fit(X, y, batch_size=8)
"""
