"""`model.confusion()`: a heatmap of the confusion matrix; clicking a cell lists its items to fix in place."""
from __future__ import annotations

import traitlets as t

from ._base import bundle
from .chart import inline_spec
from ._review import ReviewWidget, scores_from_losses


def confusion_spec(confusion, normalize: bool) -> dict:
    import altair as alt
    long = confusion.stack().rename("count").reset_index()
    long.columns = ["actual", "predicted", "count"]
    totals = long.groupby("actual")["count"].transform("sum")
    long["rate"] = (long["count"] / totals.where(totals > 0, 1)).round(4)
    value = "rate" if normalize else "count"
    order = list(confusion.index)
    base = alt.Chart(long).encode(
        alt.X("predicted:N", sort=order, title="predicted"), alt.Y("actual:N", sort=order, title="actual"))
    heat = base.mark_rect(cursor="pointer").encode(
        alt.Color(f"{value}:Q", scale=alt.Scale(scheme="blues"), title=value),
        tooltip=["actual:N", "predicted:N", "count:Q", alt.Tooltip("rate:Q", format=".1%")])
    text = base.mark_text(fontSize=11, cursor="pointer").encode(
        alt.Text(f"{value}:Q", format=".0%" if normalize else "d"),
        color=alt.condition(f"datum.{value} > {long[value].max() / 2}", alt.value("white"), alt.value("black")))
    size = max(160, min(28 * len(order), 480))
    return inline_spec((heat + text).properties(width=size, height=size))


class ConfusionWidget(ReviewWidget):
    """What `model.confusion()` returns: the confusion matrix as a heatmap; a click on a cell lists its items to relabel
    or remove with the grid's keys. `model`: the Model; `split`: the split it is measured on; `normalize`: rows as
    shares instead of counts (a toggle too); `page_size`: items listed per page.

    Raises:
        RuntimeError: `model` has no dataset attached (`nbml.load(path, dataset=ds)`).
        ValueError: `split` has no labelled item of a class the model knows, or `page_size` is below 1.

    Examples:
        >>> cm = model.confusion("valid", normalize=True)
    """
    _esm = bundle("confusion")
    spec = t.Dict().tag(sync=True)
    normalize = t.Bool(False).tag(sync=True)
    cell = t.List().tag(sync=True)

    def __init__(self, model, *, split: str = "valid", normalize: bool = False, page_size: int = 24):
        self.split = split
        super().__init__(model, page_size=page_size)
        self.evaluation = model.evaluate(split)
        self.normalize = normalize
        self.spec = confusion_spec(self.evaluation.confusion, normalize)
        self.observe(lambda change: setattr(self, "spec", confusion_spec(self.evaluation.confusion, change["new"])),
                     "normalize")

    def _score(self):
        return scores_from_losses(self.model.losses([self.split]))

    def _ids(self):
        if self.cell:
            actual, predicted = self.cell
            chosen = [(s["confidence"], i) for i, s in self._scores.items()
                      if s["label_then"] == actual and s["suggestion"] == predicted]
        else:   # every mistake, most confident first
            chosen = [(s["confidence"], i) for i, s in self._scores.items() if s["label_then"] != s["suggestion"]]
        return [i for _, i in sorted(chosen, reverse=True)]

    def _on_cell(self, content):
        actual, predicted = str(content["actual"]), str(content["predicted"])
        classes = self.model.classes
        if actual not in classes or predicted not in classes:
            raise ValueError(f"no cell ({actual!r}, {predicted!r}) in this matrix")
        self.cell = [actual, predicted]
        self.page = 0
        self.refresh()
        return f"{self.n_total} items"
