""""Can ML solve my problem?": a forecast of the accuracy the model `nbml.train(ds)` would reach with the labels there
are now, twice and four times as many, with 80% intervals, how many labels a target accuracy takes, and which
classes hold the accuracy back (`ds.forecast(model=None, target=None)`).

How it works. Every number comes from out-of-sample scores. The labelled items' cached embeddings (those
`ds.suggest` and `ds.label_issues` read) are split again and again into a scoring part (a stratified fifth, rotating
like the folds of cross-validation) and a training part, of which nested stratified subsets of 25% to 100% are fitted
with the kind's fast head (`nbml.kinds.of(ds).fit_and_score`, the head the data-centric loop uses: a linear head
on the embeddings for images, the closed-form head on embeddings and TF-IDF n-grams for texts, a logistic head on
the standardised columns for tables). An inverse power law with a bounded ceiling, `accuracy(m) = A - B m^-c`
(A <= 1, B >= 0; c on a grid), is fitted to the mean accuracy at each size m; a parametric bootstrap of those
means (each with its standard error: the spread between repeats, or the binomial error of the items scored where
larger) gives its spread. The head's curve is then carried to the trained model's by a correction measured by the
backtest (`benchmarks/forecast.py`) per kind and model (`Kind.forecast_rho`: a fine-tuned text encoder's is not the
static text model's): the trained model's error is that many times the head's error at the labels the model trains
on (`TRAIN_SHARE` of them: the rest validate), and the intervals are widened by `WIDEN` (and an absolute `FLOOR`
per doubling of labels) so that about 80% of the backtest's actual accuracies fell inside.

Honesty. Items in the 'test' split are never read. Items in the 'valid' split (those a later run evaluates on) are
left out unless `include_valid=True`, which the result then says. Labelled items without a split yet are used, and
the result says how many: the next `nbml.train` puts about a fifth of them in 'valid'.

When the curve cannot be trusted (a class with fewer than `MIN_PER_CLASS` labels outside 'valid' and 'test', a
curve that does not rise above chance, an 80% interval at twice the labels wider than `MAX_WIDTH`) the forecast
says "not yet: label N more per class" instead of numbers.

Where a user will see it: `headline(ds)` is the one line for the label grid's header, the training monitor's summary
and `model.summary` (two repeats: 0.2 s for 664 Titanic rows, about 1.5 s for 1,000 labelled texts with the
embeddings cached, measured under load; safe to run in a background thread; it never raises, and returns "" when
there is nothing to say). Wiring it into those places is
left to the widgets and the monitor.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import kinds

__all__ = ["Forecast", "forecast", "headline", "rho_of", "MIN_PER_CLASS", "MAX_WIDTH"]

MIN_PER_CLASS = 8         # labels of the smallest class (outside valid/test) below which it says "not yet"
MAX_WIDTH = 0.25          # an 80% interval at twice the labels wider than this: "not yet"
HORIZONS = (1, 2, 4)      # now, twice and four times the labels
FRACTIONS = (0.25, 0.4, 0.55, 0.75, 1.0)   # nested subsets of each repeat's training part
FOLDS = 5                 # each repeat scores a stratified fifth of the labels; the other 4/5 train
REPEATS = 5               # repeats (one pass of 5 folds); fewer for a large project, so it stays under ~2 s
C_GRID = np.linspace(0.15, 1.2, 22)   # exponents of the power law tried
BOOT = 200                # bootstrap draws of the measured means
MAX_LABELS_FACTOR = 16    # labels-to-target further than this many times today's: "not in sight"
TRAIN_SHARE = 0.8         # the share of a project's labels the trained model fits on (nbml.train's valid_pct=0.2)
# The trained model's error as a multiple of the head's error at the same labels is the kind's (`Kind.forecast_rho`,
# by the embeddings' backbone: a fine-tuned text encoder's differs from the static text model's); the interval's
# widening is from the backtest of 2026-12-07 (benchmarks/forecast.py, docs/forecast.md), fitted on its own cases.
WIDEN = 1.5               # the bootstrap's 80% half-widths are multiplied by this
FLOOR = 0.02              # and this much is added per doubling of the labels (0 for "now")


@dataclass
class Forecast:
    """What `ds.forecast()` returns: `summary` (one line), `frame` (now, 2x, 4x with intervals), `points` (the
    measured out-of-sample scores), `per_class`, `labels_to_target`, `not_yet`, `notes`, and `chart()`."""
    kind: str
    labels: int                     # labelled items of the project (outside 'test')
    used: int                       # of which the forecast read
    classes: list
    target: float | None
    frame: pd.DataFrame             # horizon, labels, accuracy, low, high
    points: pd.DataFrame            # labels (project scale), head_labels, accuracy, sd, low, high, repeats
    per_class: pd.DataFrame         # class, labelled, recall, recall_2x, needs (more labels of it), holds_back
    labels_to_target: dict | None   # {estimate, low, high, reachable, words}
    not_yet: str | None
    notes: list = field(default_factory=list)
    method: str = ""
    curve: dict = field(default_factory=dict)   # A, B, c of the head's curve, rho, share, bootstrap parameters
    seconds: float = 0.0

    # -- words -------------------------------------------------------------------------------------------------------
    @property
    def summary(self) -> str:
        """One line: the forecast now, at 2x and 4x with 80% intervals and the labels to the target, or 'not yet'."""
        if self.not_yet:
            return f"Forecast: not yet: {self.not_yet}"
        parts = []
        for row in self.frame.itertuples():
            what = "now" if row.horizon == 1 else f"{row.horizon}x"
            parts.append(f"{what} ({row.labels:,} labels) {_pct(row.accuracy)} [{_pct(row.low)}-{_pct(row.high)}]")
        line = "Forecast accuracy: " + ", ".join(parts)
        if self.labels_to_target is not None:
            line += f"; {self.labels_to_target['words']}"
        return line

    def __repr__(self) -> str:
        lines = [self.summary, f"from {self.used:,} of {self.labels:,} labels, {len(self.classes)} classes; "
                               f"{self.method}"]
        if not self.not_yet:
            lines.append(self.frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        if len(self.per_class):
            lines.append("per class (recall out of sample; needs: more labels of the class for the target):")
            lines.append(self.per_class.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_frame(self) -> pd.DataFrame:
        return self.frame.copy()

    # -- chart -------------------------------------------------------------------------------------------------------
    @property
    def spec(self) -> dict:
        """The Vega-Lite spec of `chart()`, data inline: measured points with their spread, the fitted curve and its
        80% band, the forecasts at 1x/2x/4x and the target line."""
        x = {"field": "labels", "type": "quantitative", "title": "labelled items in the project (labels)",
             "scale": {"type": "log"}}
        y_title = "accuracy of nbml.train's model (share of items right)"
        y = {"field": "accuracy", "type": "quantitative", "title": y_title, "axis": {"format": ".0%"},
             "scale": {"zero": False}}
        pts = self.points.assign(what="measured (out of sample)")
        layers = [
            {"data": {"values": _records(pts)}, "mark": {"type": "rule", "color": "#4c78a8"},
             "encoding": {"x": x, "y": {**y, "field": "low"}, "y2": {"field": "high"},
                          "tooltip": [{"field": "labels", "format": ",.0f"}, {"field": "sd", "format": ".3f"}]}},
            {"data": {"values": _records(pts)}, "mark": {"type": "point", "filled": True, "color": "#4c78a8"},
             "encoding": {"x": x, "y": y, "tooltip": [
                 {"field": "labels", "title": "labels", "format": ",.0f"},
                 {"field": "accuracy", "format": ".1%"}, {"field": "repeats"}]}},
        ]
        curve = self.curve_frame()
        if len(curve):
            layers.insert(0, {"data": {"values": _records(curve)},
                              "mark": {"type": "area", "opacity": 0.2, "color": "#f58518"},
                              "encoding": {"x": x, "y": {**y, "field": "low"}, "y2": {"field": "high"}}})
            layers.append({"data": {"values": _records(curve)}, "mark": {"type": "line", "color": "#f58518"},
                           "encoding": {"x": x, "y": y}})
            fc = self.frame.assign(what=[("now" if h == 1 else f"{h}x") for h in self.frame["horizon"]])
            layers.append({"data": {"values": _records(fc)}, "mark": {"type": "rule", "color": "#e45756"},
                           "encoding": {"x": x, "y": {**y, "field": "low"}, "y2": {"field": "high"}}})
            layers.append({"data": {"values": _records(fc)},
                           "mark": {"type": "point", "shape": "diamond", "filled": True, "size": 80,
                                    "color": "#e45756"},
                           "encoding": {"x": x, "y": y, "tooltip": [
                               {"field": "what"}, {"field": "labels", "format": ",.0f"},
                               {"field": "accuracy", "format": ".1%"}, {"field": "low", "format": ".1%"},
                               {"field": "high", "format": ".1%"}]}})
        if self.target is not None:
            layers.append({"data": {"values": [{"target": self.target, "what": f"target {self.target:.0%}"}]},
                           "mark": {"type": "rule", "strokeDash": [6, 4], "color": "#54a24b"},
                           "encoding": {"y": {"field": "target", "type": "quantitative"},
                                        "tooltip": [{"field": "what"}]}})
        title = self.summary if len(self.summary) < 110 else self.summary[:107] + "..."
        return {"title": {"text": "Accuracy against labels", "subtitle": title}, "width": 420, "height": 260,
                "layer": layers}

    def chart(self):
        """The forecast drawn by nbml's bundled Vega-Lite, offline (`.spec` is its spec)."""
        from .widgets.chart import Chart
        return Chart(self.spec)

    def curve_frame(self, steps: int = 40) -> pd.DataFrame:
        """The fitted curve and its 80% band on the project's label scale, from the smallest measured size to 4x."""
        if self.not_yet or not self.curve:
            return pd.DataFrame(columns=["labels", "accuracy", "low", "high"])
        lo_n = float(self.points["labels"].min())
        hi_n = float(max(HORIZONS) * self.labels)
        n = np.geomspace(lo_n, hi_n, steps)
        acc, low, high = _band(self.curve, n, self.labels)
        return pd.DataFrame({"labels": n, "accuracy": acc, "low": low, "high": high})

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.chart()._repr_mimebundle_(include=include, exclude=exclude)
        bundle = bundle[0] if isinstance(bundle, tuple) else bundle
        bundle = dict(bundle or {})
        bundle["text/plain"] = repr(self)
        return bundle


def _pct(share: float) -> str:
    """A share as the summary shows it: whole percents, one decimal from 99.5% (an estimate is never shown as 100%
    unless it is exactly 1)."""
    return f"{share:.0%}" if share < 0.995 or share >= 1 else f"{min(share, 0.999):.1%}"


def _records(frame: pd.DataFrame) -> list[dict]:
    out = []
    for row in frame.to_dict("records"):
        out.append({k: (None if isinstance(v, float) and not math.isfinite(v) else
                        v.item() if isinstance(v, np.generic) else v) for k, v in row.items()})
    return out


# -- the curve ---------------------------------------------------------------------------------------------------------
def fit_power_law(m: np.ndarray, Y: np.ndarray, w: np.ndarray | None = None):
    """Least-squares fits of `y = A - B m^-c` (A <= 1, B >= 0, c on C_GRID) to each row of Y [R, J] at sizes m [J]
    with weights w [J]. Returns arrays A, B, c [R]."""
    m = np.asarray(m, np.float64)
    Y = np.atleast_2d(np.asarray(Y, np.float64))
    w = np.ones(len(m)) if w is None else np.asarray(w, np.float64)
    w = w / w.sum()
    X = m[None, :] ** -C_GRID[:, None]                                 # [C, J]
    xbar = X @ w                                                       # [C]
    ybar = Y @ w                                                       # [R]
    xc = X - xbar[:, None]
    var = (xc ** 2) @ w                                                # [C]
    cov = (Y[:, None, :] - ybar[:, None, None]) * xc[None] @ w         # [R, C]
    B = np.maximum(-cov / var[None], 0.0)
    A = ybar[:, None] + B * xbar[None]
    over = A > 1.0                                                     # the ceiling: refit B with A = 1
    if over.any():
        B1 = np.maximum(((1.0 - Y)[:, None, :] * X[None] @ w) / ((X ** 2) @ w)[None], 0.0)
        A = np.where(over, 1.0, A)
        B = np.where(over, B1, B)
    sse = (((Y[:, None, :] - (A[..., None] - B[..., None] * X[None])) ** 2) @ w)   # [R, C]
    best = sse.argmin(1)
    r = np.arange(len(Y))
    return A[r, best], B[r, best], C_GRID[best]


def rho_of(kind, model_id: str) -> float:
    """The kind's correction from its head's error to the trained model's, for embeddings of `model_id`."""
    return 1.0 if kind.forecast_rho is None else float(kind.forecast_rho(model_id))


def _head_at(A, B, c, m):
    """The head's accuracy [..., len(m)] at training sizes m for curve parameters A, B, c [...]."""
    A, B, c = (np.asarray(v)[..., None] for v in (A, B, c))
    return A - B * np.asarray(m, np.float64)[None] ** -c


def _model_acc(head_acc, rho):
    return np.clip(1.0 - rho * (1.0 - np.asarray(head_acc)), 0.0, 1.0)


def _band(curve: dict, labels, now: int):
    """(accuracy, low, high) of the trained model at project label counts `labels` from a fitted curve."""
    labels = np.asarray(labels, np.float64)
    m = curve["share"] * labels
    acc = _model_acc(_head_at(curve["A"], curve["B"], curve["c"], m)[0], curve["rho"])
    boot = _model_acc(_head_at(curve["bA"], curve["bB"], curve["bc"], m), curve["rho"])   # [BOOT, n]
    q10, q90 = np.quantile(boot, [0.1, 0.9], axis=0)
    doublings = np.log2(np.maximum(labels / max(now, 1), 1.0))
    low = acc - WIDEN * np.maximum(acc - q10, 0) - FLOOR * doublings
    high = acc + WIDEN * np.maximum(q90 - acc, 0) + FLOOR * doublings
    return acc, np.clip(low, 0, 1), np.clip(high, 0, 1)


def _labels_for(A, B, c, rho, share, target):
    """Project labels at which the corrected curve reaches `target` (inf where it never does)."""
    A, B, c = (np.asarray(v, np.float64) for v in (A, B, c))
    room = (1.0 - target) / rho - (1.0 - A)        # the head's error must fall to (1 - target) / rho
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where(room > 0, np.where(B > 0, (B / np.maximum(room, 1e-12)) ** (1.0 / c), 0.0), np.inf)
    return m / share


# -- the measurements --------------------------------------------------------------------------------------------------
def _pool(ds, emb, include_valid: bool):
    """Positions in `emb` of the labelled items the forecast may read, and notes saying which it left out."""
    frame = emb.frame
    labelled = frame["label"].notna().to_numpy()
    split = frame["split"].astype(object).to_numpy()
    test = split == "test"
    valid = split == "valid"
    notes = []
    allowed = labelled & ~test & (include_valid | ~valid)
    n_valid = int((labelled & valid).sum())
    if n_valid and include_valid:
        notes.append(f"it read the labels of {n_valid} items in the 'valid' split (include_valid=True): a later "
                     f"run's validation accuracy on them is no longer an independent check of this forecast")
    elif n_valid:
        notes.append(f"the {n_valid} labelled items in the 'valid' split were left out (a later run evaluates on "
                     f"them); include_valid=True reads them too")
    unassigned = int((labelled & ~test & ~valid & pd.isna(frame["split"]).to_numpy()).sum())
    if unassigned:
        notes.append(f"{unassigned} labelled items have no split yet: the forecast read them, and the next "
                     f"nbml.train puts about a fifth of them in 'valid'")
    if (labelled & test).any():
        notes.append(f"the {int((labelled & test).sum())} items of the 'test' split were not read")
    return np.flatnonzero(allowed), int((labelled & ~test).sum()), notes


def _repeats(n: int) -> int:
    """Repeats for n labels (deterministic, not timed): 5 (one pass of 5 folds) up to 300 labels, 3 up to 800, 2
    beyond, so the fits (a text head on 800 labels takes about 0.2 s here) stay under about 2 s for 1,000 labels."""
    return REPEATS if n <= 300 else 3 if n <= 800 else 2


def _measure(ds, emb, pos: np.ndarray, y: np.ndarray, n_classes: int, repeats: int, seed: int):
    """Out-of-sample scores of the kind's head at nested stratified subsets. Returns a long DataFrame: repeat,
    fraction, m (training labels), accuracy, n_scored, and per class (m_c, correct_c, scored_c) as arrays."""
    kind = kinds.of(ds)
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(y == k) for k in range(n_classes)]
    rows, per_class = [], []
    orders = []
    for r in range(repeats):
        if r % FOLDS == 0:
            orders = [rng.permutation(idx) for idx in by_class]
        fold = r % FOLDS
        score, train_parts = [], []
        for order in orders:
            take = np.arange(len(order)) % FOLDS == fold
            if take.sum() == 0 or take.all():      # a class too small for this fold: scored elsewhere
                take = np.zeros(len(order), bool)
                take[fold % len(order)] = len(order) > 1
            score.append(order[take])
            train_parts.append(order[~take])
        score = np.concatenate(score)
        for f in FRACTIONS:
            fit = np.concatenate([part[:max(1, int(math.ceil(f * len(part))))] for part in train_parts])
            probs, _ = kind.fit_and_score(ds, emb, pos[fit], y[fit], pos[score], n_classes)
            right = np.asarray(probs).argmax(1) == y[score]
            rows.append((r, f, len(fit), float(right.mean()), len(score)))
            per_class.append((np.bincount(y[fit], minlength=n_classes),
                              np.bincount(y[score][right], minlength=n_classes),
                              np.bincount(y[score], minlength=n_classes)))
    frame = pd.DataFrame(rows, columns=["repeat", "fraction", "m", "accuracy", "n_scored"])
    return frame, per_class


# -- the forecast ------------------------------------------------------------------------------------------------------
def forecast(ds, model=None, target: float | None = None, *, include_valid: bool = False, seed: int = 0,
             repeats: int | None = None, backbone=None, embeddings=None) -> Forecast:
    """The accuracy `nbml.train(ds)` is expected to reach with the labels there are now, twice and four times as
    many (random labels of the same classes), with 80% intervals; with `target` (a share, 0.9), about how many
    labels reach it; per class, which classes hold the accuracy back and how many more labels each needs. See the
    module docstring for the method and how far to trust it.

    `model`: read the embeddings of this model's body (as `ds.suggest(model)` does); by default the project's
    (pretrained when weights can be had, else the latest trained model's body). The 'valid' split's labels are
    left out unless `include_valid=True`; 'test' is never read. Deterministic for a given `seed`.
    """
    t0 = time.perf_counter()
    if target is not None and not (0 < float(target) < 1):
        raise ValueError(f"target is a share of items right, between 0 and 1 (0.9 for 90%), not {target!r}")
    from .analysis import _embeddings, _model_embeddings, _require_items, _resolve_model
    _require_items(ds)
    model = _resolve_model(model)
    emb = _model_embeddings(ds, model, backbone, embeddings) if model is not None else \
        _embeddings(ds, backbone, embeddings)
    kind_name = kinds.of(ds).NAME
    pos, n_labels, notes = _pool(ds, emb, include_valid)
    labels = emb.frame["label"].to_numpy(object)[pos]
    counts = pd.Series(labels).value_counts()
    classes = [c for c in ds.classes if c in counts.index]
    counts = counts.reindex(classes)
    method = (f"{kind_name} head ({kinds.of(ds).__name__.rsplit('.', 1)[-1]}.fit_and_score) on embeddings from "
              f"{emb.model_id}")

    def early(why: str) -> Forecast:
        return Forecast(kind_name, n_labels, len(pos), classes, target,
                        pd.DataFrame(columns=["horizon", "labels", "accuracy", "low", "high"]),
                        pd.DataFrame(columns=["labels", "head_labels", "accuracy", "sd", "low", "high", "repeats"]),
                        _counts_only(counts), None, why, notes, method, {}, time.perf_counter() - t0)

    if len(classes) < 2:
        return early("label items of at least two classes (a classifier needs two)")
    if counts.min() < MIN_PER_CLASS:
        short = counts[counts < MIN_PER_CLASS]
        more = int(MIN_PER_CLASS - short.min())
        which = ", ".join(f"{c}: {MIN_PER_CLASS - n}" for c, n in short.items())
        return early(f"label {more} more per class (the forecast needs {MIN_PER_CLASS} labels of every class outside "
                     f"'valid' and 'test'; short: {which})")

    y = pd.Series(labels).map({c: i for i, c in enumerate(classes)}).to_numpy()
    K = len(classes)
    R = repeats or _repeats(len(pos))
    meas, per_class = _measure(ds, emb, pos, y, K, R, seed)
    share = TRAIN_SHARE * len(pos) / max(n_labels, 1)     # head labels per project label: the model trains on 80%
    rho = rho_of(kinds.of(ds), emb.model_id)
    sizes = meas.groupby("fraction")["m"].mean().to_numpy()
    acc_rf = meas.pivot(index="repeat", columns="fraction", values="accuracy").to_numpy()   # [R, J]
    w = meas.groupby("fraction")["n_scored"].sum().to_numpy(np.float64)
    A, B, c = (v[0] for v in fit_power_law(sizes, acc_rf.mean(0), w))
    bA, bB, bc = fit_power_law(sizes, _resampled(acc_rf, meas, seed), w)
    curve = dict(A=float(A), B=float(B), c=float(c), rho=rho, share=share, bA=bA, bB=bB, bc=bc,
                 model_id=emb.model_id)

    # measured points on the project's label scale, carried to the trained model by the same correction
    mean, sd = acc_rf.mean(0), acc_rf.std(0)
    pts_acc = _model_acc(mean, rho)
    points = pd.DataFrame({"labels": sizes / share, "head_labels": sizes, "accuracy": pts_acc,
                           "sd": sd * rho, "low": np.clip(pts_acc - sd * rho, 0, 1),
                           "high": np.clip(pts_acc + sd * rho, 0, 1), "repeats": R})
    horizons = np.array([h * n_labels for h in HORIZONS], np.float64)
    acc, low, high = _band(curve, horizons, n_labels)
    frame = pd.DataFrame({"horizon": list(HORIZONS), "labels": horizons.astype(int), "accuracy": acc,
                          "low": low, "high": high})

    not_yet = None
    chance = float(counts.max() / counts.sum())
    top = float(acc_rf[:, -1].mean())
    rising = float(acc_rf[:, -1].mean() - acc_rf[:, 0].mean())
    per_class_now = int(counts.min())
    if top <= chance + 0.05 or (B == 0 and top <= chance + 0.15):
        not_yet = (f"label {per_class_now} more per class (the head scores {top:.0%} out of sample, "
                   f"{'little' if top > chance + 0.05 else 'no'} better than always answering the largest class "
                   f"({chance:.0%}), and {'falls' if rising < 0 else 'barely rises'} with more labels)")
    elif high[1] - low[1] > MAX_WIDTH:
        not_yet = (f"label {per_class_now} more per class (the 80% interval at twice the labels is "
                   f"{low[1]:.0%}-{high[1]:.0%}, wider than {MAX_WIDTH:.0%})")

    ltt = None
    if target is not None and not not_yet:
        ltt = _target(curve, float(target), n_labels, bA, bB, bc)
    pc = _per_class(classes, counts, per_class, meas, share, rho, target if target is not None else float(acc[-1]))
    return Forecast(kind_name, n_labels, len(pos), classes, None if target is None else float(target), frame, points,
                    pc, ltt, not_yet, notes, method + f"; {R} repeats x {len(FRACTIONS)} sizes", curve,
                    time.perf_counter() - t0)


def _resampled(acc_rf: np.ndarray, meas: pd.DataFrame, seed: int) -> np.ndarray:
    """BOOT draws of the mean accuracy at each size [BOOT, J]: the mean plus normal noise of its standard error, the
    larger of the spread between repeats / sqrt(repeats) and the binomial error of all the items scored at that size
    (two repeats alone would say little about their spread)."""
    R = len(acc_rf)
    mean = acc_rf.mean(0)
    scored = meas.groupby("fraction")["n_scored"].sum().to_numpy(np.float64)
    se = np.sqrt(np.maximum(acc_rf.var(0, ddof=1) / R if R > 1 else 0.0,
                            np.clip(mean * (1 - mean), 0.25 / scored, None) / scored))
    z = np.random.default_rng(seed + 1).standard_normal((BOOT, len(mean)))
    return np.clip(mean + z * se, 0.0, 1.0)


def _target(curve: dict, target: float, now: int, bA, bB, bc) -> dict:
    est = float(_labels_for(curve["A"], curve["B"], curve["c"], curve["rho"], curve["share"], target))
    boot = _labels_for(bA, bB, bc, curve["rho"], curve["share"], target)
    lo, hi = np.quantile(np.minimum(boot, 1e15), [0.1, 0.9])   # never reached: beyond any cap
    lo, hi = (v if v < 1e15 else math.inf for v in (lo, hi))
    cap = MAX_LABELS_FACTOR * now
    if est <= now:
        words = f"target {target:.0%}: reached now (about {max(int(est), 1):,} labels)"
        reachable = True
    elif not math.isfinite(est) or est > cap:
        words = (f"target {target:.0%}: not in sight (the curve levels off below it within {MAX_LABELS_FACTOR}x "
                 f"today's labels)")
        reachable = False
    else:
        words = f"target {target:.0%}: about {_round(est):,} labels" + (
            f" (80%: {_round(lo):,}-{_round(hi):,})" if math.isfinite(hi) and hi <= cap else
            f" (80%: {_round(lo):,} to more than {cap:,})")
        reachable = True
    return dict(estimate=est, low=float(lo), high=float(hi), reachable=reachable, words=words)


def _round(n: float) -> int:
    if not math.isfinite(n):
        return -1
    digits = max(0, len(str(int(n))) - 2)
    return int(round(n, -digits))


def _counts_only(counts: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"class": list(counts.index), "labelled": counts.to_numpy(int), "recall": np.nan,
                         "recall_2x": np.nan, "needs": np.nan, "holds_back": False})


def _per_class(classes, counts, per_class, meas, share, rho, target: float) -> pd.DataFrame:
    """Per class: out-of-sample recall at the largest subsets, its forecast at twice the labels, and how many more
    labels of the class its recall needs to reach `target` (the target, or the 4x forecast without one)."""
    K = len(classes)
    fr = meas["fraction"].to_numpy()
    fracs = np.array(FRACTIONS)
    mc = np.zeros((len(fracs), K))
    recall = np.zeros((len(fracs), K))
    for j, f in enumerate(fracs):
        sel = [i for i in range(len(fr)) if fr[i] == f]
        m_c = np.mean([per_class[i][0] for i in sel], 0)
        right = np.sum([per_class[i][1] for i in sel], 0)
        scored = np.sum([per_class[i][2] for i in sel], 0)
        mc[j] = m_c
        recall[j] = right / np.maximum(scored, 1)
    rows = []
    for k, name in enumerate(classes):
        A, B, c = (v[0] for v in fit_power_law(mc[:, k], recall[None, :, k]))
        now_c = int(counts.iloc[k])
        r2 = float(_model_acc(_head_at(A, B, c, [2 * share * now_c])[0, 0], rho))
        need = float(_labels_for(A, B, c, rho, share, target))
        more = 0 if need <= now_c else (math.inf if need > MAX_LABELS_FACTOR * now_c else int(math.ceil(need - now_c)))
        rows.append((name, now_c, float(_model_acc(recall[-1, k], rho)), r2, more))
    out = pd.DataFrame(rows, columns=["class", "labelled", "recall", "recall_2x", "needs"])
    overall = float((out["recall"] * out["labelled"]).sum() / out["labelled"].sum())
    out["holds_back"] = out["recall"] < overall - 0.05
    return out.sort_values(["recall", "class"]).reset_index(drop=True)


def headline(ds, target: float | None = None) -> str:
    """The one line for the label grid's header, the training monitor's summary and `model.summary`: the forecast's
    `summary` with 2 repeats, or "" when there is nothing to say yet (no embeddings, no items, an error). Never
    raises; cheap enough for a background thread (see the module docstring)."""
    try:
        return forecast(ds, target=target, repeats=2).summary
    except Exception:
        return ""
