"""The per-sample backward pass: the delta recursion of one sample with the
optimizer update fused into it (online training, batch size 1). Batches go
through :mod:`fastbp.kernels.batch`.

Inner loops run over 0-based views (see :mod:`fastbp.kernels.activations`).
"""

from fastbp.kernels._jit import jit_serial
from fastbp.kernels.activations import scale_by_derivative
from fastbp.kernels.dropout import drop_backward, rate
from fastbp.kernels.layout import BOFF, SIZE, UNIT, WOFF
from fastbp.kernels.update import online_constants, online_decays, online_layer


@jit_serial
def _layer_slices(layout, a, z, delta, l):
    """Views of layer l of one sample's rows: a^l, z^l, delta^l."""
    start = layout[UNIT, l]
    stop = start + layout[SIZE, l]
    return a[start:stop], z[start:stop], delta[start:stop]


@jit_serial
def online_step(params, layout, codes, hyper, step, a, z, delta, buf1, buf2, l2_weights, row):
    """Backward pass and optimizer update for one sample (batch size 1), fused;
    delta^L is in ``delta`` already (``activations.losses_and_deltas``).

    Walking down from layer L, each weight W^l_ij is read once: it feeds
    (W^l)^T delta^l for the next delta and is then replaced by its update with
    gradient delta^l_i a^(l-1)_j. ``step`` is the Adam step count of this update
    (1-based). Same rules as ``update.update_range`` with count 1; with
    weight decay 0 the term wd w adds an exact zero. ``l2_weights`` is the L2
    penalty's decay of the weights: l2 divided by the sample's weight (see
    train.train_epoch_online); ``update.online_decays`` adds weight_decay.
    ``row``: the sample's row in the data set, for its dropout masks.

    Loops index one 2-D view per layer and per buffer actually used: a slice or
    a call per ROW costs ~10-20 ns of reference counting, a reshape ~25 ns, more
    than the arithmetic of a 32-wide row (measured on 64-32-10: 430 -> ~200 ns a
    step for the last layer alone).
    """
    n_layers = layout.shape[1] - 1
    c = online_constants(hyper, step, params)
    wd_w, wd = online_decays(hyper, l2_weights, params)
    for l in range(n_layers, 0, -1):
        a_prev, z_prev, delta_prev = _layer_slices(layout, a, z, delta, l - 1)
        delta_l = _layer_slices(layout, a, z, delta, l)[2]
        back = l > 1
        if back:
            delta_prev[:] = 0
        online_layer(params, buf1, buf2, hyper, c, layout[WOFF, l], layout[BOFF, l],
                     layout[SIZE, l], layout[SIZE, l - 1], delta_l, a_prev, delta_prev, back,
                     wd_w, wd)
        if back and rate(hyper, l - 1) > 0.0:  # the sample's masks (kernels/dropout.py)
            drop_backward(z_prev, a_prev, delta_prev, codes[0], hyper, l - 1, row)
        elif back:
            scale_by_derivative(z_prev, a_prev, delta_prev, codes[0])
