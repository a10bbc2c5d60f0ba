"""Accuracy with what it needs to be read by someone new to ML: the number of items it was measured on, a 95%
interval (Wilson's), what always answering the most frequent class would score, balanced accuracy when the classes
are unbalanced, and a one-line note when the validation set is too small to tell models apart or the training loss
has fallen far below the validation loss. Used by `Model.evaluate`, `model.summary`, the monitor and the model card.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["wilson", "Scored", "scored", "overfit_note", "interval_text"]

Z95 = 1.959964
SMALL_VALID = 100          # below this many validation items, two models a few points apart cannot be told apart
UNBALANCED = 0.6           # the most frequent class above this share: balanced accuracy is shown too
OVERFIT_RATIO = 0.25       # training loss below this fraction of the validation loss: the model learnt its labels


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for `correct` successes out of `n` (95% by default); (nan, nan) when n is 0."""
    if n <= 0:
        return math.nan, math.nan
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


class Scored(dict):
    """accuracy, n, low, high (95%), baseline (always the most frequent class), majority (that class),
    balanced_accuracy (None unless the classes are unbalanced), notes; `line` says it in one sentence."""

    @property
    def line(self) -> str:
        if not self["n"]:
            return "no validation items to measure accuracy on"
        text = (f"accuracy {self['accuracy']:.3f} on {self['n']} validation items (95% interval "
                f"{self['low']:.2f}-{self['high']:.2f}); always answering {self['majority']!r} would score "
                f"{self['baseline']:.3f}")
        if self.get("balanced_accuracy") is not None:
            text += f"; balanced accuracy (the mean of each class's recall) {self['balanced_accuracy']:.3f}"
        return text


def scored(actual, predicted) -> Scored:
    """The accuracy of `predicted` against `actual` (labels, same length) with its interval, baseline and notes."""
    actual, predicted = np.asarray(actual, object), np.asarray(predicted, object)
    n = len(actual)
    correct = int((actual == predicted).sum())
    classes, counts = np.unique(actual.astype(str), return_counts=True) if n else (np.array([]), np.array([]))
    majority = str(classes[counts.argmax()]) if n else None
    baseline = float(counts.max() / n) if n else math.nan
    low, high = wilson(correct, n)
    balanced = None
    if n and baseline > UNBALANCED and len(classes) > 1:
        recalls = [float((predicted[actual.astype(str) == c] == actual[actual.astype(str) == c]).mean())
                   for c in classes]
        balanced = float(np.mean(recalls))
    notes = []
    if 0 < n < SMALL_VALID:
        notes.append(f"measured on only {n} validation items: the true accuracy could be anywhere in "
                     f"{low:.2f}-{high:.2f}, so models closer than that cannot be told apart; label more to know")
    if n and baseline > UNBALANCED:
        notes.append(f"{baseline:.0%} of the validation items are {majority!r}: compare with {baseline:.3f} (always "
                     f"answering {majority!r}), and look at each class's recall")
    return Scored(accuracy=correct / n if n else math.nan, n=n, low=low, high=high, baseline=baseline,
                  majority=majority, balanced_accuracy=balanced, notes=notes)


def overfit_note(train_loss: float | None, valid_loss: float | None) -> str | None:
    """A note when the training loss is far below the validation loss (the model learnt its training labels by
    heart more than it learnt the task); None otherwise."""
    if train_loss is None or valid_loss is None or not (valid_loss > 0) or not math.isfinite(train_loss):
        return None
    if train_loss < OVERFIT_RATIO * valid_loss and valid_loss > 0.1:
        return (f"training loss {train_loss:.3f} is far below the validation loss {valid_loss:.3f}: the model fits "
                f"its training items much better than new ones (overfitting); more labels, or fewer epochs, help")
    return None


def interval_text(accuracy: float | None, n: int | None) -> str | None:
    """"0.80-0.97 (40 items)": the 95% interval of an accuracy measured on `n` items; None without both."""
    if accuracy is None or not n or accuracy != accuracy:
        return None
    low, high = wilson(int(round(accuracy * n)), int(n))
    return f"{low:.2f}-{high:.2f} ({int(n)} items)"
