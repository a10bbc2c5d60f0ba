"""What the confusion-matrix and top-loss widgets share: items judged by a model, and each one's decision,
read back from the store so choices survive filters, re-renders and kernel restarts."""
from __future__ import annotations

import math

from ._base import GridWidget


class ReviewWidget(GridWidget):
    """Items scored by `model`; `self._scores` maps id -> {label_then, suggestion, confidence, p_label, loss, split}."""

    def __init__(self, model, **kwargs):
        if model.dataset is None:
            raise RuntimeError("this model has no dataset attached; use nbml.load(path, dataset=ds)")
        self.model = model
        self._scores = self._score()
        self._labels_seen_by_model()
        super().__init__(model.dataset, **kwargs)

    def _labels_seen_by_model(self) -> None:
        """Decisions are judged against the labels the model trained on (its data snapshot), so a label fixed
        before this widget opened still shows as fixed."""
        snapshot = self.model.config.get("snapshot_id")
        if not snapshot:
            return
        try:
            seen = self.model.dataset.snapshot_items(snapshot)
        except KeyError:
            return
        for item_id, label in zip(seen["id"], seen["label"]):
            if int(item_id) in self._scores:
                self._scores[int(item_id)]["label_then"] = label

    def _score(self) -> dict:
        raise NotImplementedError

    def _decision(self, row: dict) -> str | None:
        if row["status"] in ("removed", "unusable"):
            return row["status"]
        then = self._scores[row["id"]]["label_then"]
        if row["label"] != then:
            return f"→ {row['label']}" if row["label"] is not None else "cleared"
        if row["label_source"] == "human" and (row["label_time"] or 0) > self.model.config.get("created", math.inf):
            return "kept"
        return None

    def _extra(self, rows):
        out = []
        for row in rows:
            s = self._scores[row["id"]]
            out.append({"suggestion": s["suggestion"], "confidence": s["confidence"], "p_label": s["p_label"],
                        "loss": s.get("loss"), "decision": self._decision(row)})
        return out

    def _suggestion(self, item_id):
        return self._scores.get(item_id, {}).get("suggestion")


def scores_from_losses(losses) -> dict:
    """`Model.losses()` rows as review scores."""
    out = {}
    for r in losses.itertuples(index=False):
        loss = None if r.loss != r.loss else float(r.loss)
        p_label = None if r.p_label != r.p_label else float(r.p_label)
        out[int(r.id)] = {"label_then": r.label, "suggestion": r.predicted, "confidence": float(r.p_predicted),
                          "p_label": p_label, "loss": loss, "split": r.split}
    return out
