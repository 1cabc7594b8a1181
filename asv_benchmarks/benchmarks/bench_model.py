"""Training and prediction speed of fastbp.Model, with the NumPy reference as the
baseline measured in the same run. Each benchmark runs in a fresh process: the
JIT compile happens in setup (see bench_compile for its cost)."""

import numpy as np

import fastbp
from fastbp import reference

from .common import make_data

SIZES = [[64, 128, 10], [784, 256, 128, 10]]
SIZE_IDS = ["64-128-10", "784-256-128-10"]


class FitEpoch:
    params = (SIZE_IDS, [1, 32, 256], ["float32", "float64"])
    param_names = ["sizes", "batch_size", "dtype"]

    def setup(self, sizes, batch_size, dtype):
        self.sizes = SIZES[SIZE_IDS.index(sizes)]
        self.X, self.Y = make_data(2048, self.sizes, dtype, seed=0)
        self.model = fastbp.Model(self.sizes, hidden="relu", output="softmax",
                                  loss="cross_entropy", dtype=dtype, seed=0)
        self.model.fit(self.X[:64], self.Y[:64], batch_size=batch_size, lr=0.01)  # warm-up

    def time_fit_epoch(self, sizes, batch_size, dtype):
        self.model.fit(self.X, self.Y, batch_size=batch_size, lr=0.01)

    # peakmem of fit: bench_grid.GridFit (data from setup_cache, not counted here)


OPTIMIZERS = {"sgd": dict(optimizer="sgd", lr=0.01), "adam": dict(optimizer="adam", lr=1e-3),
              "adamw": dict(optimizer="adamw", lr=1e-3),
              "rmsprop": dict(optimizer="rmsprop", lr=1e-3),
              "rmsprop-centered-momentum": dict(optimizer="rmsprop", lr=1e-3, centered=True,
                                                momentum=0.9)}
CLIPS = {"none": {}, "norm": dict(clip_norm=1.0), "value": dict(clip_value=0.1)}


class FitOptimizer:
    """An epoch of 784-256-128-10 at batch 32 under each optimizer, with and
    without clipping: the update pass's and the clip's share of an epoch (the
    'sgd'/'none' row is the baseline, in the same run)."""

    params = (list(OPTIMIZERS), list(CLIPS))
    param_names = ["optimizer", "clip"]

    def setup(self, optimizer, clip):
        self.sizes = SIZES[1]
        self.X, self.Y = make_data(2048, self.sizes, "float32", seed=0)
        self.model = fastbp.Model(self.sizes, hidden="relu", output="softmax",
                                  loss="cross_entropy", seed=0)
        self.kwargs = dict(OPTIMIZERS[optimizer], **CLIPS[clip], batch_size=32)
        self.model.fit(self.X[:64], self.Y[:64], **self.kwargs)  # warm-up

    def time_fit_epoch(self, optimizer, clip):
        self.model.fit(self.X, self.Y, **self.kwargs)


class Predict:
    params = (SIZE_IDS, ["float32", "float64"])
    param_names = ["sizes", "dtype"]

    def setup(self, sizes, dtype):
        self.sizes = SIZES[SIZE_IDS.index(sizes)]
        self.X, _ = make_data(4096, self.sizes, dtype, seed=1)
        self.model = fastbp.Model(self.sizes, hidden="relu", output="softmax",
                                  loss="cross_entropy", dtype=dtype, seed=0)
        self.model.predict(self.X[:8])

    def time_predict(self, sizes, dtype):
        self.model.predict(self.X)


class ReferenceBaseline:
    """The NumPy reference on the same small problem: the speed-up baseline."""

    params = [[1, 32]]
    param_names = ["batch_size"]

    def setup(self, batch_size):
        self.sizes = [64, 128, 10]
        self.X, self.Y = make_data(256, self.sizes, "float64", seed=0)
        self.model = fastbp.Model(self.sizes, hidden="relu", output="softmax",
                                  loss="cross_entropy", dtype="float64", seed=0)
        self.model.fit(self.X[:32], self.Y[:32], batch_size=batch_size, lr=0.01)

    def time_reference_epoch(self, batch_size):
        reference.train(self.model.params.copy(), self.sizes, True, self.X, self.Y,
                        [np.arange(len(self.X))], batch_size, "relu", "softmax",
                        "cross_entropy", lr=0.01)

    def time_fastbp_epoch(self, batch_size):
        self.model.fit(self.X, self.Y, batch_size=batch_size, lr=0.01, shuffle=False)


class DigitsAccuracy:
    """Held-out accuracy of ``fastbp train``'s default recipe (fastbp.cli.RECIPE:
    architecture, standardised inputs, SGD settings) on the bundled digits, run
    through the CLI itself and evaluated like ``fastbp evaluate``."""

    timeout = 300

    def setup(self):
        try:
            from fastbp.datasets import load_digits

            self.data = load_digits()
        except ImportError as exc:  # scikit-learn not installed: asv skips
            raise NotImplementedError(str(exc)) from None

    def track_digits_heldout_accuracy(self):
        import contextlib
        import io
        import os
        import tempfile

        from fastbp import cli

        _, _, X_test, y_test = self.data
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.npz")
            with contextlib.redirect_stdout(io.StringIO()):
                status = cli.main(["train", "--no-progress", "--output-model", path])
            if status != 0:
                raise RuntimeError(f"fastbp train exited with status {status}")
            model = fastbp.Model.load(path)  # input scaling folded into layer 1
        return model.evaluate(X_test, y_test)["accuracy"]

    track_digits_heldout_accuracy.unit = "fraction"
