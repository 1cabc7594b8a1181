"""The small ints kernels branch on, and the slots of the settings array ``hyper``.

Kernels never see strings: ``fastbp._codes`` maps the user's names to these
numbers (written here once) and the API hands the kernels

- ``codes``, int64 ``[hidden, output, loss]``: activation codes (SIGMOID ..
  EXP) for the hidden layers and the output layer, and the loss (MSE,
  CROSS_ENTROPY, POISSON, HUBER);
- ``hyper``, float64 of length N_HYPER, the optimizer's settings, indexed only by
  the slot names below (a literal index drifts when a slot is added).

``hyper`` slots (who reads them):

    H_OPT       optimizer code, SGD or ADAM (update.update_range, update.plain_sgd,
                backward.online_step)
    H_LR        learning rate (every update)
    H_MOMENTUM  SGD momentum; 0 for plain SGD (SGD)
    H_NESTEROV  1.0 for Nesterov momentum, else 0.0 (SGD)
    H_WD        torch's weight_decay: wd * w added to the gradient of every
                parameter, biases included (SGD, Adam)
    H_BETA1     Adam's beta1 (ADAM)
    H_BETA2     Adam's beta2 (ADAM)
    H_EPS       Adam's eps (ADAM)
    H_L2        scikit-learn's alpha: an L2 penalty on the weights only (not the
                biases), its gradient l2 * W / the batch's total sample weight;
                folded into the weights' decay (batch._rows_part,
                train.train_epoch_online)
    H_EPS_MODE  where Adam adds eps: EPS_TORCH to the bias-corrected sqrt(v),
                EPS_SKLEARN to sqrt(v) before the correction (update.adam_eps)
    H_ALPHA     RMSprop's smoothing constant alpha (RMSPROP)
    H_CENTERED  1.0 for centered RMSprop, else 0.0 (RMSPROP)
    H_CLIP_NORM clip the batch's mean gradient to this global L2 norm; 0: off
    H_CLIP_VALUE clip each element of the mean gradient to +-this; 0: off
    H_HUBER     the Huber loss's delta (loss HUBER); set from the model by
                Model._kernel_hyper for every call
    H_EPOCH     the epoch index (0-based, Model.epochs_done) dropout masks are drawn for
    H_DROP_KEY  the model's dropout key, an integer below 2^53 held as a float64

Dropout rates, when a training call uses dropout, follow the N_HYPER slots:
hyper[N_HYPER + l] is the rate on a^l (l = 0: the input) for l = 0 .. L - 1; a
``hyper`` of length N_HYPER means no dropout (every evaluation, predict and
gradients call).

A new optimizer takes the next code and appends its slots before N_HYPER.
"""

# activations (codes[0] hidden, codes[1] output)
SIGMOID, TANH, RELU, LEAKY_RELU, LINEAR, SOFTMAX, EXP = 0, 1, 2, 3, 4, 5, 6
# losses (codes[2])
MSE, CROSS_ENTROPY, POISSON, HUBER = 0, 1, 2, 3
# optimizers (hyper[H_OPT])
SGD, ADAM, ADAMW, RMSPROP = 0, 1, 2, 3

LEAKY_SLOPE = 0.01  # leaky_relu's slope for z <= 0

# slots of hyper (see the module docstring)
(H_OPT, H_LR, H_MOMENTUM, H_NESTEROV, H_WD, H_BETA1, H_BETA2, H_EPS, H_L2, H_EPS_MODE,
 H_ALPHA, H_CENTERED, H_CLIP_NORM, H_CLIP_VALUE, H_HUBER, H_EPOCH, H_DROP_KEY) = range(17)
N_HYPER = 17

# hyper[H_EPS_MODE]
EPS_TORCH, EPS_SKLEARN = 0, 1
