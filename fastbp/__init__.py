"""fastbp: fast CPU training of multilayer perceptrons with backpropagation."""

try:
    import fastbp.kernels  # noqa: F401  (kernels/ in a checkout, installed as fastbp.kernels)
except ModuleNotFoundError as exc:  # pragma: no cover - only in a mis-set checkout
    if exc.name != "fastbp.kernels":
        raise
    raise ImportError(
        f"fastbp was imported from {__path__[0]!r}, a source checkout, but its kernels "
        "package is not installed with it: run `pip install -e .` in the checkout (the "
        "README's commands do), or start Python outside it") from None

from fastbp import callbacks, schedules
from fastbp._info import show_config
from fastbp._version import __version__
from fastbp.model import History, Model, TrainingDivergedError

__all__ = ["History", "Model", "TrainingDivergedError", "__version__", "callbacks",
           "schedules", "show_config"]
