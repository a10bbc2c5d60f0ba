"""`ds.label()`: label items by keyboard in a paged thumbnail grid, with model suggestions when given a model.

The unlabelled and suggestion queues are shared by everyone on the project: the items on screen are leased to this
person (nbml.leases), so nobody else is shown them until they are labelled, paged past, or the grid closes."""
from __future__ import annotations

import traitlets as t

from ..leases import LEASE_TTL, LeaseHolder
from ._base import GridWidget, bundle

import threading

FILTERS_HELP = "'unlabelled', 'all', 'label:NAME', 'predicted:NAME', 'low_confidence', 'queue' or 'review'"
LEASED = ("unlabelled", "queue")   # filters whose items are leased while shown


class LabelWidget(GridWidget):
    """The keyboard labelling grid that `ds.label()` returns (see `Dataset.label` for its keys and filters). `ds`: the
    project; `model`: a Model whose suggestions and confidences the cards show (and the model filters need);
    `filter`: the items shown; `page_size`: cards per page; `low_confidence`: the 'low_confidence' filter's
    threshold; `thumb_size`: thumbnail pixels; `strategy` and `rerank_every`: how the 'queue' filter ranks what to
    label next and how often it ranks again; `lease_ttl`: seconds the items on screen are held for you in a team
    project.

    Raises:
        ValueError: `filter` is unknown or needs a model that is not given, or `page_size` is below 1.

    Examples:
        >>> grid = ds.label(model)
        >>> grid.filter = "low_confidence"
    """
    _esm = bundle("label")
    filter = t.Unicode("unlabelled").tag(sync=True)
    filter_options = t.List().tag(sync=True)
    queue_source = t.Unicode("").tag(sync=True)   # the backbone whose embeddings ranked the queue
    forecast = t.Unicode("").tag(sync=True)       # one line: the accuracy expected with more labels (nbml.forecast)
    error = t.Unicode("").tag(sync=True)

    def __init__(self, ds, model=None, *, filter: str = "unlabelled", page_size: int = 48,
                 low_confidence: float = 0.6, thumb_size: int = 128, strategy: str = "margin",
                 rerank_every: int = 10, lease_ttl: float = LEASE_TTL):
        self.model = model
        self.low_confidence = float(low_confidence)
        self.strategy, self.rerank_every = strategy, int(rerank_every)
        self._queue: list[int] | None = None      # suggested ids, best first ('queue' filter)
        self._queue_info: dict = {}               # id -> (predicted, confidence) from the last ranking
        self._since_rank = 0
        self._ranking = threading.Lock()
        self._predictions = None       # id -> (label, confidence), for the filters that need every item
        self._page_predictions = {}
        self._leases = LeaseHolder(ds, lease_ttl)
        self._forecasting = threading.Lock()
        self._forecast_stale = False
        self._check_filter(filter)
        super().__init__(ds, page_size=page_size, thumb_size=thumb_size, filter=filter)
        self.observe(self._filter_set, "filter")
        if self.comm is not None:   # the front end went away (cell cleared, notebook closed): free the items
            self.comm.on_close(lambda _msg: self._leases.close())
        self._forecast_soon()

    def close(self) -> None:
        """Close the widget and release the items it held for you in a team project.

        Raises: nothing of its own.

        Examples:
            >>> grid.close()
        """
        self._leases.close()
        super().close()

    def _check_filter(self, value: str) -> None:
        kind = value.split(":", 1)[0]
        if kind not in ("unlabelled", "all", "label", "predicted", "low_confidence", "queue", "review"):
            raise ValueError(f"unknown filter {value!r}: use {FILTERS_HELP}")
        if kind in ("predicted", "low_confidence") and self.model is None:
            raise ValueError(f"the filter {value!r} needs a model: ds.label(model=m)")

    def _filter_set(self, change) -> None:
        self._check_filter(change["new"])
        self.page = 0
        self.refresh()

    def _all_predictions(self) -> dict:
        if self._predictions is None:
            probs = self.model.probabilities(self.ds.query_ids())
            self._predictions = dict(zip(probs["id"], zip(probs["predicted"], probs["confidence"])))
        return self._predictions

    def _store_filter(self) -> dict | None:
        kind, _, value = self.filter.partition(":")
        return {"unlabelled": dict(to_label_by=self.ds.user), "all": {},
                "label": dict(label=value)}.get(kind)

    def _page_ids(self, offset, limit):
        where = self._store_filter()
        if where is None:
            ids, total = super()._page_ids(offset, limit)
        else:
            key = self.filter    # the filter's pager remembers where pages start: no OFFSET walk to a deep page
            if getattr(self, "_pager", (None, None))[0] != key:
                self._pager = (key, self.ds.pager(**where))
            ids, total = self._pager[1].page(offset, limit)
        if self.filter in LEASED:
            ids = self._leases.hold(ids)   # an item someone else took meanwhile is left out
        elif self._leases.held:
            self._leases.hold([])
        return ids, total

    # -- the 'queue' filter: what ds.suggest ranks first, re-ranked as labels come in ----------------------------
    def rank(self) -> None:
        """Rank the unlabelled items again (a head refitted on the labels so far when there is no model).

        Raises:
            ValueError: the strategy needs labelled items of two classes, or none of the unlabelled items has an
                embedding (see `Dataset.suggest`).
            nbml.backbone.NoBackboneError: no pretrained weights can be had and the project has no trained model.

        Examples:
            >>> grid.rank()
        """
        page = max(self.page_size * 4, 100)
        ranked = self.ds.suggest(self.model, n=page, strategy=self.strategy)
        self._queue = [int(i) for i in ranked["id"]]
        self._queue_info = {int(r.id): (r.predicted, r.confidence) for r in ranked.itertuples(index=False)}
        self._since_rank = 0
        self.queue_source = ranked.attrs.get("backbone") or ranked.attrs.get("embeddings") or ""

    def _rank_in_background(self) -> None:
        def work():
            if not self._ranking.acquire(blocking=False):
                return
            try:
                self.rank()
                self.refresh()
            except Exception as e:      # keep labelling: the old order stays
                self.error = f"re-ranking failed: {e}"
            finally:
                self._ranking.release()
        threading.Thread(target=work, name="nbml-rerank", daemon=True).start()

    def _forecast_soon(self) -> None:
        """Bring the header's forecast line up to date in a background thread (one at a time; labels given while
        it runs start another pass when it ends), so a key press never waits for it."""
        self._forecast_stale = True
        if not self._forecasting.acquire(blocking=False):
            return

        def work():
            from ..forecast import headline
            try:
                while self._forecast_stale:
                    self._forecast_stale = False
                    self.forecast = headline(self.ds)
            finally:
                self._forecasting.release()
            if self._forecast_stale:          # a label came between the last pass and the release
                self._forecast_soon()
        threading.Thread(target=work, name="nbml-forecast", daemon=True).start()

    def _after_decision(self, n: int) -> None:
        self._forecast_soon()
        if self.filter == "queue":
            self._since_rank += n
            if self._since_rank >= self.rerank_every:
                self._rank_in_background()

    def _on_label(self, content):
        if self.filter == "review":   # a reviewer's label settles the disagreement (training takes it)
            self.ds.set_label(self._targets(content), content["label"], source="review")
            self._refresh_pending = True
            return
        super()._on_label(content)
        self._after_decision(len(content.get("ids") or []))

    def _on_accept(self, content):
        super()._on_accept(content)
        self._after_decision(len(content.get("ids") or []))

    def _on_undo(self, content):
        message = super()._on_undo(content)
        self._forecast_soon()
        return message

    def _ids(self) -> list[int]:
        kind, _, value = self.filter.partition(":")
        if kind == "queue":
            if self._queue is None:
                self.rank()
            mine = set(self.ds.query_ids(to_label_by=self.ds.user))   # unlabelled, not held by anyone else
            return [i for i in self._queue if i in mine]
        if kind == "unlabelled":
            return self.ds.query_ids(to_label_by=self.ds.user)
        if kind == "review":
            return self.ds.disagreements()["id"].tolist()
        if kind == "label":
            return self.ds.query_ids(label=value)
        if kind == "all":
            return self.ds.query_ids()
        unlabelled = set(self.ds.query_ids(labelled=False, usable_only=True))
        preds = self._all_predictions()
        if kind == "predicted":
            return [i for i in preds if preds[i][0] == value and i in unlabelled]
        ranked = sorted((conf, i) for i, (_, conf) in preds.items() if conf < self.low_confidence and i in unlabelled)
        return [i for _, i in ranked]

    def _extra(self, rows):
        extra = self._suggestions(rows)
        if self.filter in LEASED and self._overlap > 1:   # independent labels: nobody sees the others' first
            extra = [{**e, "label": None} for e in extra]
        if self.filter == "review":
            labels = self.ds.disagreements().set_index("id")["labels"].to_dict()
            extra = [{**e, "note": ", ".join(f"{a}: {v}" for a, v in labels.get(r["id"], {}).items())}
                     for e, r in zip(extra, rows)]
        return extra

    def _suggestions(self, rows):
        if self.filter == "queue":
            self._page_predictions = {r["id"]: self._queue_info.get(r["id"]) for r in rows}
            return [{"suggestion": p[0], "confidence": float(p[1])} if p and p[0] is not None else {}
                    for p in self._page_predictions.values()]
        if self.model is None:
            return [{} for _ in rows]
        if self._predictions is not None:
            preds = {r["id"]: self._predictions.get(r["id"]) for r in rows}
        else:
            probs = self.model.probabilities([r["id"] for r in rows])
            preds = dict(zip(probs["id"], zip(probs["predicted"], probs["confidence"])))
        self._page_predictions = preds
        return [{"suggestion": p[0], "confidence": float(p[1])} if p else {}
                for p in (preds.get(r["id"]) for r in rows)]

    def _suggestion(self, item_id):
        pred = self._page_predictions.get(item_id)
        return pred[0] if pred else None

    def refresh(self) -> None:
        """Read the page, the counts and the filters from the store again (the grid does it after each change).

        Raises: nothing of its own.

        Examples:
            >>> grid.refresh()
        """
        self._overlap = self.ds.overlap
        self.filter_options = self._filter_options()
        self.drops_decided = self.filter.split(":", 1)[0] in ("unlabelled", "predicted", "low_confidence", "queue",
                                                              "review")
        super().refresh()

    def _filter_options(self) -> list:
        options = [["unlabelled", "unlabelled"], ["queue", f"what to label next ({self.strategy})"],
                   ["all", "all items"]]
        options += [[f"label:{c}", f"label: {c}"] for c in self.ds.classes]
        if self._overlap > 1 or self.filter == "review":
            options.append(["review", "review: labels that disagree"])
        if self.model is not None:
            options += [[f"predicted:{c}", f"predicted: {c}"] for c in self.model.classes]
            options.append(["low_confidence", f"model confidence < {self.low_confidence:.0%}"])
        return options
