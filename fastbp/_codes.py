"""Names of activations, losses and optimizers -> the small ints kernels branch on.

Kernels never see strings: the API translates names once, here, and passes a tiny
int64 ``codes`` array ``[hidden, output, loss]``.
"""

SIGMOID, TANH, RELU, LEAKY_RELU, LINEAR, SOFTMAX = 0, 1, 2, 3, 4, 5
MSE, CROSS_ENTROPY = 0, 1
SGD, ADAM = 0, 1

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

LEAKY_SLOPE = 0.01

# Indices into the float64 ``hyper`` array handed to the training kernels.
# H_L2 is scikit-learn's alpha: an L2 penalty on the weights only (not biases), divided
# by each batch's total sample weight; H_WD is torch's weight_decay on every parameter.
# H_EPS_MODE: 0 adds Adam's eps to the bias-corrected sqrt(v) (torch), 1 to sqrt(v)
# before the correction (scikit-learn; see kernels/update.py).
H_OPT, H_LR, H_MOMENTUM, H_NESTEROV, H_WD, H_BETA1, H_BETA2, H_EPS, H_L2, H_EPS_MODE = range(10)
N_HYPER = 10
ADAM_EPS_MODES = {"torch": 0, "sklearn": 1}
ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam defaults
ADAM_EPS = 1e-8


def is_classifier(output, loss):
    """Whether a network with this output and loss classifies (and so reports
    accuracy): softmax, or sigmoid with cross_entropy."""
    return output == "softmax" or (output == "sigmoid" and loss == "cross_entropy")
