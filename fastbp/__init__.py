"""fastbp: fast CPU training of multilayer perceptrons with backpropagation."""

from fastbp import callbacks, schedules
from fastbp._info import show_config
from fastbp._version import __version__
from fastbp.model import History, Model, TrainingDivergedError

__all__ = ["History", "Model", "TrainingDivergedError", "__version__", "callbacks",
           "schedules", "show_config"]
