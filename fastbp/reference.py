"""Plain-NumPy backpropagation, written equation by equation. Slow on purpose.

This is the ground truth the Numba kernels are tested against: one sample at a
time, column vectors, lists of per-layer arrays, explicit loops for batch means,
optimizer steps copied line by line from the torch.optim documentation.

    z^l = W^l a^(l-1) + b^l,   a^l = s_l(z^l)
    delta^L = (a^L - t) o s_L'(z^L)            (mse)
    delta^L = a^L - t                          (cross_entropy, softmax or sigmoid)
    delta^l = (W^(l+1))^T delta^(l+1) o s_l'(z^l)
    dC/dW^l = delta^l (a^(l-1))^T,   dC/db^l = delta^l

``Ws[l - 1]`` is W^l; ``bs`` is a list of the same length, or ``None`` for a
network without biases.

Parameters
----------
The functions share their parameter names, each with one meaning (so that each
function's docstring can stay one equation long):

Ws, bs : list of ndarray, list of ndarray or None
    W^l of shape (n_l, n_(l-1)) and b^l of shape (n_l,), l = 1 .. L.
x, t : ndarray
    One sample's input (n_0,) and target (n_L,).
X, T : ndarray
    Inputs (n, n_0) and targets (n, n_L), one sample per row.
z : ndarray
    Pre-activations.
a_out, z_out : ndarray
    One sample's a^L and z^L.
name, hidden, output : str
    An activation: "sigmoid", "tanh", "relu", "leaky_relu", "linear" (hidden)
    or "linear", "sigmoid", "softmax", "tanh" (output).
loss : str
    "mse", "cross_entropy", "poisson" or "huber".
huber_delta : float
    The huber loss's delta (torch's HuberLoss ``delta``); other losses ignore it.
sample_weight : array-like of shape (n,) or None
    Weights >= 0 of the samples (None: all 1).
l2 : float
    scikit-learn's alpha: the penalty l2/2 ||W||^2 over the total sample weight.
p, g : ndarray
    Flat parameters and their gradient, in fastbp's layout (``flatten``).
sizes : list of int
    Layer widths n_0 .. n_L.
bias : bool
    Whether the layers have biases.
buf, m, v : ndarray or None
    Optimizer state: SGD's (or RMSprop's) momentum buffer (None before SGD's first
    step), Adam's first and second moments.
sq, ga : ndarray
    RMSprop's square average and (centered) gradient average.
t : int
    In ``adam_step``: the step number, from 1.
lr, momentum, nesterov, weight_decay : float, float, bool, float
    torch.optim.SGD's settings (dampening 0); momentum and weight_decay also
    RMSprop's, weight_decay AdamW's (decoupled).
beta1, beta2, betas, eps, eps_mode : float, float, tuple, float, str
    torch.optim.Adam's settings; eps_mode "sklearn" adds eps where scikit-learn does.
alpha, centered : float, bool
    torch.optim.RMSprop's smoothing constant and centered variant.
clip_norm, clip_value : float or None
    Clip the batch's mean gradient to this global L2 norm / each element to
    [-clip_value, clip_value] (torch.nn.utils' clip_grad_norm_ / clip_grad_value_).
optimizer : str
    "sgd", "adam", "adamw" or "rmsprop".
orders : list of index arrays
    One epoch per array: the samples in the order visited.
batch_size : int
    Samples per step (the last batch of an epoch may be smaller).
key, epoch, row, layer : int
    Dropout's counter: the model's key (below 2^53), the epoch, the sample's row
    in the data set and the layer l of a^l (0: the input).
n_units : int
    The units of a^layer.
p : float
    A dropout rate in [0, 1).
rates, dropout_rates : sequence of float
    Dropout rates p_0 (the input) .. p_(L-1) of a^0 .. a^(L-1).
masks : list
    Dropout's multipliers m^l / (1 - p_l) (or None) of one sample per l < L, as
    ``dropout_masks`` gives (``gradients``: one such list per row of X).
dropout_key, first_epoch : int
    ``train``'s dropout key, and the number of the first epoch of ``orders``.
"""

import numpy as np

LEAKY_SLOPE = 0.01


def activation(name, z):
    """s(z) for the activation ``name``."""
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, LEAKY_SLOPE * z)
    if name == "linear":
        return z.copy()
    if name == "softmax":
        e = np.exp(z - z.max())
        return e / e.sum()
    if name == "exp":
        return np.exp(z)
    raise ValueError(f"unknown activation {name!r}")


def activation_derivative(name, z):
    """s'(z), element-wise (softmax has a Jacobian and is handled in ``output_delta``)."""
    if name == "sigmoid":
        s = activation("sigmoid", z)
        return s * (1.0 - s)
    if name == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, LEAKY_SLOPE).astype(z.dtype)
    if name == "linear":
        return np.ones_like(z)
    if name == "exp":
        return np.exp(z)
    raise ValueError(f"no element-wise derivative for {name!r}")


def forward(Ws, bs, x, hidden, output):
    """Return (zs, activations): zs[l - 1] = z^l, activations[l] = a^l, a^0 = x."""
    a, zs = [x], []
    n_layers = len(Ws)
    for l in range(n_layers):
        b = bs[l] if bs is not None else 0.0
        zs.append(Ws[l] @ a[-1] + b)  # z^l = W^l a^(l-1) + b^l
        name = hidden if l < n_layers - 1 else output
        a.append(activation(name, zs[-1]))  # a^l = s_l(z^l)
    return zs, a


def sample_loss(a_out, t, output, loss, huber_delta=1.0):
    """Per-sample loss: mse 1/2 ||a - t||^2; cross-entropy as in DESIGN.md; poisson
    the half Poisson deviance sum_k [t_k log(t_k / a_k) - t_k + a_k] (0 log 0 = 0);
    huber sum_k of 1/2 x_k^2 where |x_k| < huber_delta, else
    huber_delta (|x_k| - huber_delta / 2), x = a - t (torch's HuberLoss)."""
    if loss == "mse":
        return 0.5 * np.sum((a_out - t) ** 2)
    if loss == "huber":
        x = np.abs(a_out - t)
        return np.sum(np.where(x < huber_delta, 0.5 * x**2,
                               huber_delta * (x - 0.5 * huber_delta)))
    if loss == "poisson":
        t_log_t = np.where(t > 0, t * np.log(np.where(t > 0, t, 1.0)), 0.0)
        return np.sum(t_log_t - t * np.log(a_out) - t + a_out)
    if output == "softmax":
        return -np.sum(t * np.log(a_out))
    return -np.sum(t * np.log(a_out) + (1.0 - t) * np.log(1.0 - a_out))


def output_delta(a_out, z_out, t, output, loss, huber_delta=1.0):
    """delta^L for one sample."""
    if loss == "huber":  # linear output: dC/da = a - t, clamped to +-huber_delta
        return np.clip(a_out - t, -huber_delta, huber_delta)
    if loss in ("cross_entropy", "poisson"):
        return a_out - t  # softmax or sigmoid with cross-entropy; exp with poisson
    if output == "softmax":
        # mse through the softmax Jacobian J = diag(a) - a a^T (symmetric):
        # delta = J (a - t) = a o ((a - t) - <a - t, a>)
        jac = np.diag(a_out) - np.outer(a_out, a_out)
        return jac @ (a_out - t)
    return (a_out - t) * activation_derivative(output, z_out)


_GOLDEN, _M1, _M2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _mix(z):
    """splitmix64's finalizer on uint64 arrays (arithmetic modulo 2^64)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def _fmix32(h):
    """murmur3's 32-bit finalizer on uint32 arrays (arithmetic modulo 2^32)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def dropout_keep(key, epoch, row, layer, n_units, p):
    """Which of the n_units units of a^layer the sample in data row ``row`` keeps in
    epoch ``epoch`` at rate p (boolean, shape (n_units,)): the counter-based draw
    of fastbp.kernels.dropout. base = mix(mix(mix(key + epoch golden) + row golden)
    + layer golden) (splitmix64's finalizer, modulo 2^64), lo and hi its 32-bit
    halves; unit k's u = the top 24 bits of fmix32(((lo + k 0x9E3779B9) mod 2^32)
    xor hi); kept when u >= round(p 2^24)."""
    g = np.array([_GOLDEN], np.uint64)  # arrays: numpy scalars warn when they wrap
    z = _mix(np.array([key], np.uint64) + np.array([epoch], np.uint64) * g)
    z = _mix(z + np.array([row], np.uint64) * g)
    base = _mix(z + np.array([layer], np.uint64) * g)
    lo = (base & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    hi = (base >> np.uint64(32)).astype(np.uint32)
    units = np.arange(n_units, dtype=np.uint32)
    u = _fmix32((lo + units * np.uint32(0x9E3779B9)) ^ hi) >> np.uint32(8)
    return u >= np.uint32(int(p * 2**24 + 0.5))


def dropout_masks(key, epoch, row, sizes, rates):
    """The multipliers m^l / (1 - p_l) of a^l, l = 0 .. L - 1, for one sample (None
    where p_l is 0): ``rates`` holds p_0 (the input) .. p_(L-1)."""
    return [None if p == 0 else dropout_keep(key, epoch, row, l, sizes[l], p) / (1.0 - p)
            for l, p in enumerate(rates)]


def backprop(Ws, bs, x, t, hidden, output, loss, huber_delta=1.0, masks=None):
    """Gradients (dWs, dbs) of the loss of ONE sample, by the delta recursion; with
    ``masks`` (``dropout_masks``: m^l / (1 - p_l) or None per l < L), inverted
    dropout: a~^l = a^l o m^l / (1 - p_l) feeds layer l + 1, and
    delta^l = (W^(l+1))^T delta^(l+1) o m^l / (1 - p_l) o s'(z^l)."""
    n_layers = len(Ws)
    masks = masks or [None] * n_layers
    a, zs = [x if masks[0] is None else x * masks[0]], []
    for l in range(n_layers):
        zs.append(Ws[l] @ a[-1] + (bs[l] if bs is not None else 0.0))
        if l < n_layers - 1:
            a_l = activation(hidden, zs[-1])
            a.append(a_l if masks[l + 1] is None else a_l * masks[l + 1])
        else:
            a.append(activation(output, zs[-1]))
    delta = output_delta(a[-1], zs[-1], t, output, loss, huber_delta)
    dWs, dbs = [None] * n_layers, [None] * n_layers
    for l in reversed(range(n_layers)):
        dWs[l] = np.outer(delta, a[l])  # dC/dW^l = delta^l (a^(l-1))^T
        dbs[l] = delta  # dC/db^l = delta^l
        if l:  # delta^l = (W^(l+1))^T delta^(l+1) o s'(z^l)
            back = Ws[l].T @ delta
            if masks[l] is not None:
                back = back * masks[l]
            delta = back * activation_derivative(hidden, zs[l - 1])
    return dWs, (dbs if bs is not None else None)


def gradients(Ws, bs, X, T, hidden, output, loss, sample_weight=None, l2=0.0,
              huber_delta=1.0, masks=None):
    """Mean over the rows of X, T of the per-sample gradients; with
    ``sample_weight`` s the weighted mean sum_i s_i g_i / sum_i s_i. ``l2`` adds
    the gradient of the penalty l2/2 ||W||^2 / sum_i s_i (weights only, not
    biases: scikit-learn's alpha). ``masks``: one sample's dropout masks per row
    (see ``backprop``)."""
    s = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, float)
    masks = masks or [None] * len(X)
    dWs = [np.zeros_like(W) for W in Ws]
    dbs = [np.zeros_like(b) for b in bs] if bs is not None else None
    for x, t, s_i, m in zip(X, T, s, masks):
        gW, gb = backprop(Ws, bs, x, t, hidden, output, loss, huber_delta, m)
        for l in range(len(Ws)):
            dWs[l] += s_i * gW[l]
            if bs is not None:
                dbs[l] += s_i * gb[l]
    total = s.sum()
    return ([(g + l2 * W) / total for g, W in zip(dWs, Ws)],
            ([g / total for g in dbs] if bs is not None else None))


def mean_loss(Ws, bs, X, T, hidden, output, loss, sample_weight=None, huber_delta=1.0):
    """Mean per-sample loss over the rows of X, T (weighted by ``sample_weight``)."""
    s = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, float)
    total = 0.0
    for x, t, s_i in zip(X, T, s):
        _, a = forward(Ws, bs, x, hidden, output)
        total += s_i * sample_loss(a[-1], t, output, loss, huber_delta)
    return total / s.sum()


def flatten(Ws, bs):
    """One vector in fastbp's layout: W^1, b^1, W^2, b^2, ..."""
    parts = []
    for l, W in enumerate(Ws):
        parts.append(W.ravel())
        if bs is not None:
            parts.append(bs[l])
    return np.concatenate(parts)


def unflatten(p, sizes, bias):
    """Inverse of ``flatten``: lists of copies (Ws, bs or None)."""
    Ws, bs, pos = [], [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        Ws.append(p[pos : pos + n_out * n_in].reshape(n_out, n_in).copy())
        pos += n_out * n_in
        if bias:
            bs.append(p[pos : pos + n_out].copy())
            pos += n_out
    return Ws, (bs if bias else None)


def sgd_step(p, g, buf, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """One torch.optim.SGD step (dampening 0); returns (p, buf). buf None at first."""
    if weight_decay != 0:
        g = g + weight_decay * p
    if momentum != 0:
        if buf is None:
            buf = g.copy()
        else:
            buf = momentum * buf + g
        if nesterov:
            g = g + momentum * buf
        else:
            g = buf
    return p - lr * g, buf


def adam_step(p, g, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
              eps_mode="torch"):
    """One torch.optim.Adam step number t (1-based); returns (p, m, v). With
    ``eps_mode="sklearn"``, scikit-learn's rule: eps added to sqrt(v) before the
    bias correction, lr sqrt(1 - beta2^t) / (1 - beta1^t) m / (sqrt(v) + eps)."""
    if weight_decay != 0:
        g = g + weight_decay * p
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    if eps_mode == "sklearn":
        lr_t = lr * np.sqrt(1 - beta2**t) / (1 - beta1**t)
        return p - lr_t * m / (np.sqrt(v) + eps), m, v
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def adamw_step(p, g, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
    """One torch.optim.AdamW step number t (1-based); returns (p, m, v): the
    decoupled decay p (1 - lr weight_decay) first, then Adam's step without decay."""
    p = p * (1 - lr * weight_decay)
    return adam_step(p, g, m, v, t, lr, beta1, beta2, eps)


def rmsprop_step(p, g, sq, ga, buf, lr, alpha=0.99, eps=1e-8, weight_decay=0.0,
                 momentum=0.0, centered=False):
    """One torch.optim.RMSprop step; returns (p, sq, ga, buf): the square average
    sq, the gradient average ga (centered) and the momentum buffer buf."""
    if weight_decay != 0:
        g = g + weight_decay * p
    sq = alpha * sq + (1 - alpha) * g * g
    if centered:
        ga = alpha * ga + (1 - alpha) * g
        avg = np.sqrt(sq - ga * ga) + eps
    else:
        avg = np.sqrt(sq) + eps
    if momentum > 0:
        buf = momentum * buf + g / avg
        return p - lr * buf, sq, ga, buf
    return p - lr * g / avg, sq, ga, buf


def clip_gradient(g, clip_norm=None, clip_value=None):
    """The mean gradient g (flat) clipped as torch.nn.utils.clip_grad_norm_ (the
    global L2 norm to at most clip_norm, scale clip_norm / (norm + 1e-6)) or
    clip_grad_value_ (each element into [-clip_value, clip_value])."""
    if clip_norm:
        return g * min(1.0, clip_norm / (np.linalg.norm(g) + 1e-6))
    if clip_value:
        return np.clip(g, -clip_value, clip_value)
    return g


def train(p, sizes, bias, X, T, orders, batch_size, hidden, output, loss,
          optimizer="sgd", lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0,
          sample_weight=None, l2=0.0, betas=(0.9, 0.999), eps=1e-8, eps_mode="torch",
          alpha=0.99, centered=False, clip_norm=None, clip_value=None, huber_delta=1.0,
          dropout_rates=None, dropout_key=0, first_epoch=0):
    """Mini-batch training from flat parameters ``p``: one epoch per index array in
    ``orders``, batches taken in that order with a final partial batch, the batch
    gradient the (``sample_weight``-weighted) mean over its samples plus the
    ``l2`` penalty's (see ``gradients``), clipped (``clip_gradient``) before the
    step of ``optimizer`` ("sgd", "adam", "adamw", "rmsprop"). A batch whose
    weights sum to 0 takes no step but counts as one for Adam. ``dropout_rates``
    (p_0 .. p_(L-1)) trains with the masks ``dropout_masks`` draws for
    ``dropout_key``, epochs numbered from ``first_epoch``. Returns the final
    flat parameters."""
    s = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, float)
    buf, m, v, t = None, np.zeros_like(p), np.zeros_like(p), 0
    ga, rms_buf = np.zeros_like(p), np.zeros_like(p)
    for epoch, order in enumerate(orders, first_epoch):
        for first in range(0, len(order), batch_size):
            idx = order[first : first + batch_size]
            t += 1
            if s[idx].sum() == 0:
                continue
            Ws, bs = unflatten(p, sizes, bias)
            masks = None if dropout_rates is None else [
                dropout_masks(dropout_key, epoch, i, sizes, dropout_rates) for i in idx]
            dWs, dbs = gradients(Ws, bs, X[idx], T[idx], hidden, output, loss, s[idx], l2,
                                 huber_delta, masks)
            g = clip_gradient(flatten(dWs, dbs), clip_norm, clip_value)
            if optimizer == "sgd":
                p, buf = sgd_step(p, g, buf, lr, momentum, nesterov, weight_decay)
            elif optimizer == "adamw":
                p, m, v = adamw_step(p, g, m, v, t, lr, *betas, eps, weight_decay)
            elif optimizer == "rmsprop":
                p, v, ga, rms_buf = rmsprop_step(p, g, v, ga, rms_buf, lr, alpha, eps,
                                                 weight_decay, momentum, centered)
            else:
                p, m, v = adam_step(p, g, m, v, t, lr, *betas, eps, weight_decay, eps_mode)
    return p
