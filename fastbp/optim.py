"""Optimizers: a frozen settings value and the state that goes with it.

``Settings`` is what ``fit`` was asked for besides the learning rate (the kind and
its lr-independent settings), validated once. ``State`` owns the flat buffers
(mirroring ``Model.params``) and the step count, builds the kernels' settings
array, snapshots and restores itself (the divergence rollback), resets, rescales
momentum (the scikit-learn wrapper's rate changes) and reads/writes its part of a
model file. ``fit`` keeps the state when called again with equal settings.

Adding an optimizer: a name in ``OPTIMIZERS`` with the settings it uses in
``_USES``, its slots and code in ``fastbp.kernels.codes``, its update in
``fastbp.kernels.update``, and its rule in ``fastbp.reference``.

Gradient clipping (``clip_norm``, ``clip_value``) is a setting too, but not part
of the state's identity: changing it keeps the buffers.
"""

import dataclasses

import numpy as np

from fastbp import _buffers
from fastbp import _validation as v
from fastbp.kernels import codes as k

OPTIMIZERS = {"sgd": k.SGD, "adam": k.ADAM, "adamw": k.ADAMW, "rmsprop": k.RMSPROP}
# Where Adam adds eps (slot H_EPS_MODE): to the bias-corrected sqrt(v) (torch) or to
# sqrt(v) before the correction (scikit-learn).
EPS_MODES = {"torch": k.EPS_TORCH, "sklearn": k.EPS_SKLEARN}
ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam defaults
ADAM_EPS = 1e-8
RMSPROP_ALPHA = 0.99  # torch.optim.RMSprop defaults (its eps is Adam's 1e-8)
ADAMW_WEIGHT_DECAY = 0.01  # torch.optim.AdamW's default; every other kind's is 0
# The settings (besides weight_decay and l2, which every kind takes) each kind uses;
# the others must keep their defaults.
_USES = {"sgd": {"momentum", "nesterov"}, "adam": {"betas", "eps", "eps_mode"},
         "adamw": {"betas", "eps"}, "rmsprop": {"momentum", "eps", "alpha", "centered"}}
_DEFAULTS = {"momentum": 0.0, "nesterov": False, "betas": ADAM_BETAS, "eps": ADAM_EPS,
             "eps_mode": "torch", "alpha": RMSPROP_ALPHA, "centered": False}


def _check_alpha(alpha):
    """RMSprop's smoothing constant: a real number in [0, 1]."""
    alpha = v.check_nonneg_float("alpha", alpha)
    if alpha > 1.0:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha}")
    return alpha


@dataclasses.dataclass(frozen=True)
class Settings:
    """An optimizer's settings besides the learning rate, as ``Model.fit`` takes them.

    Equal settings keep the optimizer state across ``fit`` calls. ``l2`` (part of
    the loss, not of the optimizer's state) does not take part in the comparison.
    """

    kind: str = "sgd"
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple = ADAM_BETAS
    eps: float = ADAM_EPS
    eps_mode: str = "torch"
    alpha: float = RMSPROP_ALPHA
    centered: bool = False
    l2: float = dataclasses.field(default=0.0, compare=False)
    clip_norm: float = dataclasses.field(default=0.0, compare=False)
    clip_value: float = dataclasses.field(default=0.0, compare=False)

    @classmethod
    def checked(cls, kind="sgd", momentum=0.0, nesterov=False, weight_decay=None,
                betas=ADAM_BETAS, eps=ADAM_EPS, eps_mode="torch", l2=0.0,
                alpha=RMSPROP_ALPHA, centered=False, clip_norm=None, clip_value=None):
        """Settings from ``fit``'s arguments; TypeError/ValueError naming the
        argument when one is wrong or does not apply to ``kind``. ``weight_decay``
        None is the kind's default (torch's: 0.01 for AdamW, else 0); ``clip_norm``
        and ``clip_value`` None (stored as 0) clip nothing."""
        kind = v.check_choice("optimizer", kind, OPTIMIZERS)
        given = dict(momentum=v.check_nonneg_float("momentum", momentum),
                     nesterov=v.check_bool("nesterov", nesterov),
                     betas=v.check_betas(betas), eps=v.check_nonneg_float("eps", eps),
                     eps_mode=v.check_choice("eps_mode", eps_mode, EPS_MODES),
                     alpha=_check_alpha(alpha),
                     centered=v.check_bool("centered", centered))
        if weight_decay is None:
            weight_decay = ADAMW_WEIGHT_DECAY if kind == "adamw" else 0.0
        weight_decay = v.check_nonneg_float("weight_decay", weight_decay)
        l2 = v.check_nonneg_float("l2", l2)
        clips = [0.0 if c is None else v.check_positive_float(name, c)
                 for name, c in (("clip_norm", clip_norm), ("clip_value", clip_value))]
        if clips[0] and clips[1]:
            raise ValueError("clip_norm and clip_value are exclusive: pass one of them")
        for name in ("betas", "eps", "eps_mode", "alpha", "centered"):
            if name not in _USES[kind] and given[name] != _DEFAULTS[name]:
                users = [o for o in OPTIMIZERS if name in _USES[o]]
                raise ValueError(f"{name} applies to optimizer={' or '.join(map(repr, users))} "
                                 f"only, not {kind!r}")
        return cls(kind, weight_decay=weight_decay, l2=l2, clip_norm=clips[0],
                   clip_value=clips[1], **given)

    def check_combination(self):
        """The rules between settings (after fit's other checks, as before)."""
        if self.nesterov and (self.kind != "sgd" or self.momentum == 0):
            raise ValueError("nesterov=True needs optimizer='sgd' and momentum > 0")
        if "momentum" not in _USES[self.kind] and self.momentum != 0:
            raise ValueError(f"momentum applies to optimizer='sgd' or 'rmsprop' only; "
                             f"{self.kind!r} uses its betas")

    def hyper(self, lr):
        """The kernels' float64 settings array (slots named in fastbp.kernels.codes)."""
        hyper = np.zeros(k.N_HYPER, dtype=np.float64)
        hyper[k.H_OPT] = OPTIMIZERS[self.kind]
        hyper[k.H_LR] = lr
        hyper[k.H_MOMENTUM] = self.momentum
        hyper[k.H_NESTEROV] = float(self.nesterov)
        hyper[k.H_WD] = self.weight_decay
        hyper[k.H_BETA1], hyper[k.H_BETA2] = self.betas
        hyper[k.H_EPS] = self.eps
        hyper[k.H_EPS_MODE] = EPS_MODES[self.eps_mode]
        hyper[k.H_L2] = self.l2
        hyper[k.H_ALPHA] = self.alpha
        hyper[k.H_CENTERED] = float(self.centered)
        hyper[k.H_CLIP_NORM] = self.clip_norm
        hyper[k.H_CLIP_VALUE] = self.clip_value
        return hyper

    @property
    def buf2_length_factor(self):
        """buf2 holds n elements, 2 n for centered RMSprop (its gradient average
        after the square average: see fastbp.kernels.update)."""
        return 2 if self.kind == "rmsprop" and self.centered else 1

    def to_file(self):
        """The list a model file stores (format 1): kind, momentum, nesterov,
        weight_decay, beta1, beta2, eps, eps_mode, alpha, centered (l2 and the
        clipping are not stored: they are not part of the state)."""
        return [self.kind, self.momentum, self.nesterov, self.weight_decay, *self.betas,
                self.eps, self.eps_mode, self.alpha, self.centered]

    @classmethod
    def from_file(cls, key):
        """Settings from ``to_file``'s list; files from before betas, eps and eps_mode
        (4 entries) or alpha and centered (8) were settings get their defaults."""
        if not key:
            return None
        defaults = [*ADAM_BETAS, ADAM_EPS, "torch", RMSPROP_ALPHA, False]
        if 4 <= len(key) < 10:
            key = [*key, *defaults[len(key) - 4:]]
        kind, momentum, nesterov, weight_decay, beta1, beta2, eps, eps_mode, alpha, centered = key
        return cls(kind, momentum, nesterov, weight_decay, (beta1, beta2), eps, eps_mode, alpha,
                   centered)


class State:
    """The optimizer's flat buffers and step count for ``n`` parameters.

    ``buf1`` is the momentum buffer or Adam's first moment, ``buf2`` Adam's second
    moment or RMSprop's square average (and, centered, its gradient average after
    it: 2 n elements); ``step`` counts the updates (batches) so far; ``settings`` are those the
    buffers belong to (None before the first ``fit``).
    """

    def __init__(self, n, dtype):
        self.n, self.dtype = n, np.dtype(dtype)
        self.reset(None)

    def reset(self, settings):
        """Fresh (zero) state for ``settings``."""
        self.settings = settings
        self.buf1 = _buffers.line_aligned_zeros(self.n, self.dtype)
        factor = settings.buf2_length_factor if settings else 1
        self.buf2 = _buffers.line_aligned_zeros(factor * self.n, self.dtype)
        self.step = 0

    def use(self, settings):
        """Keep the state for equal settings, else start afresh. The settings' l2
        (not compared) is taken either way."""
        if settings != self.settings:
            self.reset(settings)
        self.settings = settings

    def snapshot(self):
        return self.buf1.copy(), self.buf2.copy(), self.step

    def restore(self, snapshot):
        self.buf1[...], self.buf2[...], self.step = snapshot

    def rescale_momentum(self, factor):
        """Multiply the momentum buffer by ``factor``: scikit-learn's velocity holds
        the rate, fastbp's buffer does not, so a rate change rescales it."""
        self.buf1 *= factor

    def __getstate__(self):
        return dict(vars(self))

    def __setstate__(self, state):
        vars(self).update(state)
        for name in ("buf1", "buf2"):  # line-aligned, as built
            setattr(self, name, _buffers.line_aligned_copy(getattr(self, name)))

    # -- the file (format 1: meta "optimizer" and "step", arrays buf1 and buf2) -------

    def to_file(self):
        meta = {"optimizer": self.settings.to_file() if self.settings else None,
                "step": self.step}
        return meta, {"buf1": self.buf1, "buf2": self.buf2}

    def from_file(self, meta, arrays):
        self.reset(Settings.from_file(meta.get("optimizer")))
        self.buf1[...], self.buf2[...] = arrays["buf1"], arrays["buf2"]
        self.step = int(meta.get("step", 0))
