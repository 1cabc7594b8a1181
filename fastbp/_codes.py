"""Names of activations, losses and optimizers -> the small ints kernels branch on.

Kernels never see strings: the API translates names once, here, and passes a tiny
int64 ``codes`` array ``[hidden, output, loss]``.

The numbers themselves (and the slots of the settings array ``hyper``) are
written once, in :mod:`fastbp.kernels.codes`.
"""

from fastbp.kernels.codes import (  # noqa: F401  (re-exported: fastbp._codes.H_LR, ...)
    ADAM,
    CROSS_ENTROPY,
    EPS_SKLEARN,
    EPS_TORCH,
    H_BETA1,
    H_BETA2,
    H_EPS,
    H_EPS_MODE,
    H_L2,
    H_LR,
    H_MOMENTUM,
    H_NESTEROV,
    H_OPT,
    H_WD,
    LEAKY_RELU,
    LEAKY_SLOPE,
    LINEAR,
    MSE,
    N_HYPER,
    RELU,
    SGD,
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
OUTPUT = {"linear": LINEAR, "sigmoid": SIGMOID, "softmax": SOFTMAX, "tanh": TANH}
LOSS = {"mse": MSE, "cross_entropy": CROSS_ENTROPY}
OPTIMIZER = {"sgd": SGD, "adam": ADAM}
INIT = ("xavier", "he", "normal", "uniform", "zeros")
DTYPES = ("float32", "float64")

# Outputs that cross_entropy fits: for both, delta^L = a^L - t.
CROSS_ENTROPY_OUTPUTS = ("softmax", "sigmoid")

# Where Adam adds eps (hyper[H_EPS_MODE]; the slots: see fastbp.kernels.codes).
ADAM_EPS_MODES = {"torch": EPS_TORCH, "sklearn": EPS_SKLEARN}
ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam defaults
ADAM_EPS = 1e-8


def is_classifier(output, loss):
    """Whether a network with this output and loss classifies (and so reports
    accuracy): softmax, or sigmoid with cross_entropy."""
    return output == "softmax" or (output == "sigmoid" and loss == "cross_entropy")
