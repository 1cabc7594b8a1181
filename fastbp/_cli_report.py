"""What ``fastbp train``, ``evaluate`` and ``predict`` print: the epoch lines, the
result line, the chance-level warning, and predictions as the original labels."""

import sys

import numpy as np


class EpochLines:
    """``fastbp train``'s line per epoch on stdout, written and flushed as the epoch
    ends (through tqdm.write, which clears a live bar first and draws it again)."""

    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, model, epoch, logs):
        from tqdm import tqdm

        line = f"epoch {epoch:>{len(str(self.epochs))}}/{self.epochs}  loss {logs['loss']:.4f}"
        for key in ("val_loss", "val_accuracy"):
            if key in logs:
                line += f"  {key} {logs[key]:.4f}"
        line += f"  {logs['samples_per_second']:,.0f} samples/s"
        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()


def warn_at_chance(accuracy, n_classes, how):
    """Say plainly when a classifier ended no better than guessing."""
    if accuracy <= 1.2 / n_classes:
        print(f"fastbp: warning: accuracy {accuracy:.4f} is at chance level for "
              f"{n_classes} classes (1/{n_classes} = {1 / n_classes:.4f}): the model "
              "learned nothing useful. Check the labels and the input scaling "
              f"(--scale {how}), or try a smaller --lr or more --epochs.", file=sys.stderr)


def result_line(where, result):
    line = f"{where}: loss {result['loss']:.4f}"
    if "accuracy" in result:
        line += f", accuracy {result['accuracy']:.4f}"
    return line


def predictions(model, out, raw):
    """(what to write, its numpy format) for the outputs ``out``: the outputs
    themselves when ``raw`` or for a regression; else one class per sample (the
    argmax of a softmax; sigmoid outputs thresholded at 0.5, one column for a binary
    model), as the labels the model was trained on when its file records them."""
    if raw or not model.is_classifier:
        return out, "%.9g"
    if model.output == "softmax":
        result = out.argmax(axis=1)
    else:
        result = (out > 0.5).astype(np.int64)
        if result.shape[1] == 1:
            result = result[:, 0]
    classes = model.metadata.get("classes")
    if classes is not None and result.ndim == 1:
        result = np.asarray(classes)[result]
        return result, "%s" if result.dtype.kind in "US" else "%d"
    return result, "%d"
