"""fastbp.schedules: lr sequences by hand and against torch; use in fit."""

import math
import warnings

import numpy as np
import pytest

import fastbp
from fastbp.schedules import (
    CosineWithWarmup,
    ExponentialLR,
    LRSchedule,
    ReduceLROnPlateau,
    StepLR,
)

# A metric that improves, stalls, worsens and improves again.
METRIC = [1.0, 0.9, 0.95, 0.91, 0.96, 0.97, 0.5, 0.5, 0.49995, 0.6, 0.7, 0.8, 0.9, 0.3]


def rates(schedule, base_lr, n, metric=None, monitor="val_loss"):
    """The lr of epochs 0..n-1, stepping after each as a torch loop does."""
    schedule.start(base_lr)
    out = []
    for e in range(n):
        out.append(schedule.lr)
        schedule.step(None if metric is None else {monitor: metric[e]})
    return out


def torch_rates(make, base_lr, n, metric=None):
    torch = pytest.importorskip("torch")
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=base_lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's deprecation chatter
        sched = make(torch.optim.lr_scheduler, opt)
        out = []
        for e in range(n):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step() if metric is None else sched.step(metric[e])
    return out


# -- by hand ---------------------------------------------------------------------------


def test_sequences_by_hand():
    assert rates(StepLR(2, 0.5), 0.1, 5) == [0.1, 0.1, 0.05, 0.05, 0.025]
    assert rates(StepLR(1), 1.0, 3) == [1.0, 0.1, 0.1 * 0.1]
    assert rates(ExponentialLR(0.5), 0.1, 4) == [0.1, 0.05, 0.025, 0.0125]
    # warm-up 1 of 4 epochs: 0.1 * 1/2, then cos over 3 epochs, then min_lr
    expected = [
        0.05,
        0.1,
        0.1 * (1 + math.cos(math.pi / 3)) / 2,
        0.1 * (1 + math.cos(2 * math.pi / 3)) / 2,
        0.0,
        0.0,
    ]
    np.testing.assert_allclose(
        rates(CosineWithWarmup(4, warmup_epochs=1), 0.1, 6),
        expected,
        rtol=1e-15,
        atol=0,
    )
    np.testing.assert_allclose(
        rates(CosineWithWarmup(2, min_lr=0.01), 0.1, 3), [0.1, 0.055, 0.01], rtol=1e-15
    )
    # plateau, patience 1: the 2nd epoch in a row without a 1e-4 relative gain cuts
    plateau = ReduceLROnPlateau(patience=1, factor=0.5)
    lrs = rates(plateau, 0.1, len(METRIC), METRIC)
    # epochs 0-1 improve; 2, 3 do not -> after epoch 3 cut; 4, 5 not -> cut; 6 improves;
    # 7 equal, 8 improves by 1e-4 relative only (not more) -> cut after 8; 9, 10 -> cut
    assert lrs == [
        0.1,
        0.1,
        0.1,
        0.1,
        0.05,
        0.05,
        0.025,
        0.025,
        0.025,
        0.0125,
        0.0125,
        0.00625,
        0.00625,
        0.003125,
    ]
    lrs = rates(ReduceLROnPlateau(patience=0, factor=0.5, min_lr=0.03), 0.1, 6, METRIC)
    assert lrs == [0.1, 0.1, 0.1, 0.05, 0.03, 0.03]  # never below min_lr
    lrs = rates(
        ReduceLROnPlateau(monitor="val_accuracy", patience=0, factor=0.5),
        1.0,
        4,
        [0.5, 0.6, 0.6, 0.7],
        monitor="val_accuracy",
    )
    assert lrs == [1.0, 1.0, 1.0, 0.5]  # mode "auto" maximises accuracies


# -- against torch.optim.lr_scheduler --------------------------------------------------


@pytest.mark.parametrize("base_lr", [0.1, 0.3])
def test_sequences_equal_torch(base_lr):
    n = 25
    assert rates(StepLR(3, 0.7), base_lr, n) == torch_rates(
        lambda s, o: s.StepLR(o, step_size=3, gamma=0.7), base_lr, n
    )
    assert rates(ExponentialLR(0.9), base_lr, n) == torch_rates(
        lambda s, o: s.ExponentialLR(o, gamma=0.9), base_lr, n
    )
    np.testing.assert_allclose(
        rates(CosineWithWarmup(n, min_lr=0.01), base_lr, n),
        torch_rates(
            lambda s, o: s.CosineAnnealingLR(o, T_max=n, eta_min=0.01), base_lr, n
        ),
        rtol=1e-12,
    )
    w = 4
    np.testing.assert_allclose(
        rates(CosineWithWarmup(n, warmup_epochs=w, min_lr=0.001), base_lr, n),
        torch_rates(
            lambda s, o: s.SequentialLR(
                o,
                [
                    s.LinearLR(
                        o, start_factor=1 / (w + 1), end_factor=1.0, total_iters=w
                    ),
                    s.CosineAnnealingLR(o, T_max=n - w, eta_min=0.001),
                ],
                milestones=[w],
            ),
            base_lr,
            n,
        ),
        rtol=1e-12,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(patience=1, factor=0.5),
        dict(patience=0, factor=0.3, min_lr=0.01, threshold=0.0),
        dict(patience=2, factor=0.5, cooldown=2, threshold=0.05),
        dict(patience=1, factor=0.5, mode="max"),
    ],
    ids=["patience1", "min_lr", "cooldown", "max"],
)
def test_reduce_on_plateau_equals_torch(kwargs):
    metric = np.random.default_rng(1).uniform(0, 1, 40).round(2).tolist() + METRIC
    expected = torch_rates(
        lambda s, o: s.ReduceLROnPlateau(o, **kwargs), 0.1, len(metric), metric
    )
    assert rates(ReduceLROnPlateau(**kwargs), 0.1, len(metric), metric) == expected
    assert len(set(expected)) > 2  # the test exercises several cuts


# -- in fit ----------------------------------------------------------------------------

RNG = np.random.default_rng(0)
X = RNG.normal(size=(20, 3))
Y = RNG.normal(size=(20, 2))


def model():
    return fastbp.Model([3, 5, 2], hidden="tanh", dtype="float64", seed=0)


@pytest.mark.parametrize("batch_size", [1, 4], ids=["online", "batch"])
def test_fit_trains_each_epoch_at_the_schedule_rate(batch_size):
    fit = dict(batch_size=batch_size, momentum=0.9)
    scheduled = model()
    history = scheduled.fit(X, Y, epochs=5, lr=0.2, lr_schedule=StepLR(2, 0.1), **fit)
    assert history.history["lr"] == [0.2, 0.2, 0.2 * 0.1, 0.2 * 0.1, 0.2 * 0.1 * 0.1]
    by_hand = model()  # optimizer state persists across calls that change only lr
    for lr in history.history["lr"]:
        by_hand.fit(X, Y, epochs=1, lr=lr, **fit)
    np.testing.assert_array_equal(scheduled.params, by_hand.params)
    unscheduled = model()
    unscheduled.fit(X, Y, epochs=5, lr=0.2, **fit)
    assert not np.array_equal(unscheduled.params, scheduled.params)


def test_schedule_continues_across_fit_calls_on_the_same_model():
    once, twice = model(), model()
    h_once = once.fit(
        X,
        Y,
        epochs=4,
        batch_size=4,
        lr=0.3,
        lr_schedule=CosineWithWarmup(4, warmup_epochs=1),
    )
    schedule = CosineWithWarmup(4, warmup_epochs=1)
    h1 = twice.fit(X, Y, epochs=2, batch_size=4, lr=0.3, lr_schedule=schedule)
    h2 = twice.fit(X, Y, epochs=2, batch_size=4, lr=0.3, lr_schedule=schedule)
    assert h1.history["lr"] + h2.history["lr"] == h_once.history["lr"]
    np.testing.assert_array_equal(once.params, twice.params)
    # another lr for the same model: an error naming lr_schedule; reset() starts again
    with pytest.raises(ValueError, match="lr_schedule is part-way through"):
        twice.fit(X, Y, lr=0.1, lr_schedule=schedule)
    schedule.reset()
    assert twice.fit(X, Y, lr=0.1, lr_schedule=schedule).history["lr"] == [0.05]
    # another model starts the schedule from the beginning
    assert model().fit(X, Y, epochs=2, lr=0.3, lr_schedule=schedule).history["lr"] == [
        0.15,
        0.3,
    ]


def test_reduce_on_plateau_in_fit_follows_the_monitored_loss():
    history = model().fit(
        X,
        Y,
        epochs=12,
        batch_size=4,
        lr=3.0,
        validation_data=(X, Y),
        lr_schedule=ReduceLROnPlateau(patience=0, factor=0.5),
    )
    replay = rates(
        ReduceLROnPlateau(patience=0, factor=0.5), 3.0, 12, history.history["val_loss"]
    )
    assert history.history["lr"] == replay
    assert len(set(replay)) > 1
    with pytest.raises(ValueError, match="lr_schedule monitors 'val_loss'"):
        model().fit(X, Y, lr_schedule=ReduceLROnPlateau())
    history = model().fit(X, Y, epochs=2, lr_schedule=ReduceLROnPlateau(monitor="loss"))
    assert history.history["lr"] == [0.1, 0.1]


def test_a_schedule_giving_a_bad_rate_raises():
    class Bad(LRSchedule):
        def _next_lr(self, logs):
            return float("nan")

    m = model()
    with pytest.raises(ValueError, match="lr_schedule gave lr=nan for epoch 2"):
        m.fit(X, Y, epochs=3, lr_schedule=Bad())
    with pytest.raises(RuntimeError, match="before start"):
        StepLR(1).step()


@pytest.mark.parametrize(
    "make,error,message",
    [
        (lambda: StepLR(0), ValueError, "step_size"),
        (lambda: StepLR(2.0), TypeError, "step_size"),
        (lambda: StepLR(2, gamma=0), ValueError, "gamma"),
        (lambda: StepLR(2, gamma=float("inf")), ValueError, "gamma"),
        (lambda: ExponentialLR(-0.5), ValueError, "gamma"),
        (lambda: ExponentialLR("0.5"), TypeError, "gamma"),
        (lambda: CosineWithWarmup(0), ValueError, "total_epochs"),
        (lambda: CosineWithWarmup(5, warmup_epochs=5), ValueError, "warmup_epochs"),
        (lambda: CosineWithWarmup(5, warmup_epochs=-1), ValueError, "warmup_epochs"),
        (lambda: CosineWithWarmup(5, min_lr=-1.0), ValueError, "min_lr"),
        (lambda: ReduceLROnPlateau(factor=1.0), ValueError, "factor"),
        (lambda: ReduceLROnPlateau(patience=-1), ValueError, "patience"),
        (lambda: ReduceLROnPlateau(monitor=None), TypeError, "monitor"),
        (lambda: ReduceLROnPlateau(mode="best"), ValueError, "mode"),
        (lambda: ReduceLROnPlateau(threshold=-1e-4), ValueError, "threshold"),
    ],
    ids=[
        "step0",
        "step-float",
        "gamma0",
        "gamma-inf",
        "exp-neg",
        "exp-str",
        "total0",
        "warmup-all",
        "warmup-neg",
        "min_lr",
        "factor",
        "patience",
        "monitor",
        "mode",
        "threshold",
    ],
)
def test_bad_schedule_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()
