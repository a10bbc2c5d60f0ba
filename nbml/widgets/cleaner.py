"""`model.top_losses()`: the items with the highest loss across the splits, to relabel, remove or keep."""
from __future__ import annotations

import traitlets as t

from ._base import bundle
from ._review import ReviewWidget, scores_from_losses


class TopLossesWidget(ReviewWidget):
    """What `model.top_losses()` returns: the items with the highest loss, to relabel (a class's key), remove (`Delete`)
    or keep (`K`). `model`: the Model; `splits`: which splits' items; `n`: at most this many (None: every labelled
    item); `page_size`: items per page; `filter`: 'all', 'label:NAME' or 'split:NAME'.

    Raises:
        RuntimeError: `model` has no dataset attached (`nbml.load(path, dataset=ds)`).
        ValueError: `page_size` is below 1.

    Examples:
        >>> losses = model.top_losses(100, splits=("valid",))
        >>> losses.filter = "label:cat"
    """
    _esm = bundle("cleaner")
    filter = t.Unicode("all").tag(sync=True)
    filter_options = t.List().tag(sync=True)

    def __init__(self, model, *, splits=("train", "valid"), n: int | None = None, page_size: int = 24,
                 filter: str = "all"):
        self.splits, self.n = tuple(splits), n
        super().__init__(model, page_size=page_size, filter=filter)
        self.filter_options = [["all", "all classes"]] + [[f"label:{c}", f"label: {c}"] for c in model.classes] + \
            [[f"split:{s}", f"split: {s}"] for s in self.splits]
        self.observe(self._filter_set, "filter")

    def _score(self):
        losses = self.model.losses(self.splits)
        return scores_from_losses(losses.head(self.n) if self.n else losses)

    def _filter_set(self, change):
        kind = change["new"].split(":", 1)[0]
        if kind not in ("all", "label", "split"):
            raise ValueError(f"unknown filter {change['new']!r}: use 'all', 'label:NAME' or 'split:NAME'")
        self.page = 0
        self.refresh()

    def _ids(self):
        kind, _, value = self.filter.partition(":")
        ids = list(self._scores)   # already highest loss first
        if kind == "label":
            return [i for i in ids if self._scores[i]["label_then"] == value]
        if kind == "split":
            return [i for i in ids if self._scores[i]["split"] == value]
        return ids
