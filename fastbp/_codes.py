"""Names of activations and losses -> the small ints kernels branch on.

Kernels never see strings: the API translates names once, here, and passes a tiny
int64 ``codes`` array ``[hidden, output, loss]``.

The numbers themselves (and the slots of the settings array ``hyper``) are
written once, in :mod:`fastbp.kernels.codes`; optimizer names in :mod:`fastbp.optim`.
"""

from fastbp.kernels.codes import (
    CROSS_ENTROPY,
    EXP,
    HUBER,
    LEAKY_RELU,
    LINEAR,
    MSE,
    POISSON,
    RELU,
    SIGMOID,
    SOFTMAX,
    TANH,
)

HIDDEN = {
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
    "linear": LINEAR,
}
OUTPUT = {"linear": LINEAR, "sigmoid": SIGMOID, "softmax": SOFTMAX, "tanh": TANH,
          "exp": EXP}
LOSS = {"mse": MSE, "cross_entropy": CROSS_ENTROPY, "poisson": POISSON, "huber": HUBER}
INIT = ("xavier", "he", "normal", "uniform", "zeros")
DTYPES = ("float32", "float64")

# Outputs that cross_entropy fits: for both, delta^L = a^L - t.
CROSS_ENTROPY_OUTPUTS = ("softmax", "sigmoid")
# poisson (the half Poisson deviance) and the exp output go together (delta^L = a^L - t);
# huber (torch's HuberLoss) takes a linear output (delta^L = a^L - t clamped to +-delta).

# Optimizer names, settings and their defaults: fastbp.optim.


def is_classifier(output, loss):
    """Whether a network with this output and loss classifies (and so reports
    accuracy): softmax, or sigmoid with cross_entropy."""
    return output == "softmax" or (output == "sigmoid" and loss == "cross_entropy")
