"""History.plot: the curves drawn are the History's values; matplotlib is optional."""

import builtins
import sys

import numpy as np
import pytest

import fastbp

matplotlib = pytest.importorskip("matplotlib")  # the test extra installs it
matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 3))
Y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def classifier_history(validation=True):
    model = fastbp.Model(
        [3, 6, 3], hidden="tanh", output="softmax", loss="cross_entropy", seed=0
    )
    return model.fit(
        X,
        Y,
        epochs=5,
        batch_size=8,
        lr=0.3,
        validation_split=0.25 if validation else None,
    )


def regressor_history():
    model = fastbp.Model([3, 6, 1], hidden="tanh", seed=0)
    return model.fit(
        X, X[:, 0], epochs=4, batch_size=8, lr=0.1, validation_data=(X, X[:, 0])
    )


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def assert_line(line, epochs, values):
    np.testing.assert_array_equal(line.get_xdata(), epochs)
    np.testing.assert_array_equal(line.get_ydata(), values)


def test_classifier_plot_has_loss_and_accuracy_panels_with_the_history_values():
    history = classifier_history()
    fig, axes = history.plot(title="run 1")
    assert isinstance(fig, Figure) and len(axes) == 2
    loss_ax, acc_ax = axes
    losses = lines_by_label(loss_ax)
    assert set(losses) == {"loss", "val_loss"}
    for key in ("loss", "val_loss"):
        assert_line(losses[key], history.epochs, history.history[key])
    accuracies = lines_by_label(acc_ax)
    assert set(accuracies) == {"val_accuracy"}
    assert_line(
        accuracies["val_accuracy"], history.epochs, history.history["val_accuracy"]
    )
    assert loss_ax.get_xlabel() == "epoch" and loss_ax.get_ylabel() == "loss"
    assert acc_ax.get_ylabel() == "accuracy"
    assert fig._suptitle.get_text() == "run 1"
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == [
        "loss",
        "val_loss",
    ]


def test_regressor_and_no_validation_plot_losses_only():
    history = regressor_history()
    fig, axes = history.plot()
    assert len(axes) == 1 and len(fig.axes) == 1
    assert set(lines_by_label(axes[0])) == {"loss", "val_loss"}
    assert_line(
        lines_by_label(axes[0])["val_loss"], history.epochs, history.history["val_loss"]
    )
    # a classifier without validation data has no accuracy to draw
    history = classifier_history(validation=False)
    _, axes = history.plot()
    assert len(axes) == 1 and set(lines_by_label(axes[0])) == {"loss"}
    with pytest.raises(ValueError, match="no accuracy values"):
        history.plot(accuracy=True)


def test_plot_into_given_axes():
    history = classifier_history()
    fig, (a, b) = plt.subplots(1, 2)
    got_fig, axes = history.plot(ax=(a, b))
    assert got_fig is fig and axes == [a, b]
    assert set(lines_by_label(b)) == {"val_accuracy"}
    # one Axes: accuracies on a twin y-axis of it
    fig, ax = plt.subplots()
    _, axes = history.plot(ax=ax, title="t")
    assert axes[0] is ax and len(axes) == 2 and axes[1] in fig.axes
    assert_line(
        lines_by_label(axes[1])["val_accuracy"],
        history.epochs,
        history.history["val_accuracy"],
    )
    assert ax.get_title() == "t"
    # accuracy=False leaves it out
    fig, ax = plt.subplots()
    _, axes = history.plot(ax=ax, accuracy=False)
    assert axes == [ax] and len(fig.axes) == 1
    with pytest.raises(ValueError, match="ax holds 1 Axes"):
        history.plot(ax=[ax])


def test_png_written_is_a_valid_png(tmp_path):
    fig, _ = classifier_history().plot()
    path = tmp_path / "curves.png"
    fig.savefig(path)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and data[12:16] == b"IHDR"
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    assert width > 100 and height > 100


def test_without_matplotlib_the_error_says_how_to_install_it(monkeypatch):
    history = classifier_history()
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r'pip install "fastbp\[plot\]"'):
        history.plot()
    # the same through sys.modules (how an uninstalled package looks to import)
    monkeypatch.setattr(builtins, "__import__", real_import)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"History\.plot needs matplotlib"):
        history.plot()


def test_import_fastbp_does_not_import_matplotlib():
    import subprocess

    code = "import sys, fastbp; print('matplotlib' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"
