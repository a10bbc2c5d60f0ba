"""`ds.explore()`: the embedding map (a free-hand lasso, or a box, selects items to label in bulk; a click lists
neighbours), the class counts, and the duplicate and label-issue lists, every item fixable in place with the grid's
keys. The front end (js/src/explore.js) resolves a lasso or a box to ids itself and sends them as
`{type: "brush", ids}`."""
from __future__ import annotations

import importlib.util

import traitlets as t

from ._base import GridWidget, bundle
from .chart import inline_spec

MODES = {"selection": "map selection", "similar": "similar to the clicked item", "duplicates": "duplicates",
         "issues": "likely wrong labels"}


PROJECTIONS = ("auto", "umap", "pca")


def check_projection(method) -> None:
    if method not in PROJECTIONS:
        raise ValueError(f"projection must be one of {', '.join(map(repr, PROJECTIONS))}, not {method!r}")


def project_2d(ds, embeddings, method: str = "auto"):
    """id, x, y, label, split of each embedded item: UMAP when installed (or asked for), PCA otherwise."""
    from ..analysis import embedding_map
    frame = embedding_map(ds, embeddings=embeddings)
    use_umap = method == "umap" or (method == "auto" and importlib.util.find_spec("umap") is not None)
    if use_umap and len(frame) > 15:
        import umap
        coords = umap.UMAP(n_components=2, random_state=0).fit_transform(embeddings.vectors)
        frame["x"], frame["y"] = coords[:, 0], coords[:, 1]
        frame.attrs["projection"] = "UMAP"
    else:
        frame.attrs["projection"] = "PCA"
    return frame


HOVER_CHARS = 200   # characters of a text shown when the pointer rests on its point


def hover_texts(ds, ids) -> dict[int, str]:
    """id -> the start of each item's text, control characters escaped, for the map's tooltip."""
    from .. import kinds
    from ._text import shown_text
    out = {}
    ids = [int(i) for i in ids]
    shown = kinds.get(ds.kind).card_text(ds) or (lambda content: content)
    for start in range(0, len(ids), 2000):
        for row in ds.item_rows(ids[start:start + 2000]):
            text = shown(row.get("content")) or ""
            out[row["id"]] = shown_text(text[:HOVER_CHARS]) + ("…" if len(text) > HOVER_CHARS else "")
    return out


def map_spec(points, title: str, texts: dict[int, str] | None = None, classes=None) -> dict:
    """The map; with `texts` (id -> text) a point's tooltip shows its text as well. `classes` (the project's, in
    order) keep each class's colour, unlabelled items grey."""
    import altair as alt

    from .chart import class_scale
    brush = alt.selection_interval(name="brush", encodings=["x", "y"])   # the box tool; the lasso is drawn over it
    values = [{"id": int(p.id), "x": float(p.x), "y": float(p.y), "label": p.label if isinstance(p.label, str)
               else "(unlabelled)", "split": p.split if isinstance(p.split, str) else ""}
              for p in points.itertuples(index=False)]
    tooltip = ["id:Q", "label:N", "split:N"]
    if texts is not None:
        for v in values:
            v["text"] = texts.get(v["id"], "")
        tooltip.append("text:N")
    return inline_spec(alt.Chart(alt.InlineData(values=values)).mark_circle(size=28, opacity=0.75, cursor="pointer").encode(
        alt.X("x:Q", axis=None), alt.Y("y:Q", axis=None), alt.Color("label:N", title="label", scale=alt.Scale(**class_scale(
            classes if classes is not None else sorted({v["label"] for v in values})))),
        tooltip=tooltip).add_params(brush).properties(
        width=420, height=320, title=title))


class ExploreWidget(GridWidget):
    """What `ds.explore()` returns (see `Dataset.explore`). `ds`: the project; `backbone`: whose embeddings to map;
    `projection`: 'auto', 'umap' or 'pca'; `page_size`: items per page of the lists.

    Raises:
        ValueError: the project has no usable items, `projection` is none of 'auto', 'umap', 'pca', or
            `page_size` is below 1.
        nbml.backbone.NoBackboneError: no pretrained weights can be had and the project has no trained model.
        ImportError: `projection='umap'` and umap-learn is not installed (more than 15 items).

    Examples:
        >>> explorer = ds.explore(projection="pca")
    """
    _esm = bundle("explore")
    spec = t.Dict().tag(sync=True)
    classes_spec = t.Dict().tag(sync=True)
    mode = t.Unicode("selection").tag(sync=True)
    mode_options = t.List().tag(sync=True)
    info = t.Unicode("").tag(sync=True)
    points = t.List().tag(sync=True)   # [{id, x, y}], for the front end to resolve a lasso or a box to ids

    def __init__(self, ds, backbone=None, *, projection: str = "auto", page_size: int = 24):
        from ..analysis import stats
        check_projection(projection)          # before embedding, which can take a while
        self._embeddings = ds.embed(backbone)
        self._points = project_2d(ds, self._embeddings, projection)
        self._selected: list[int] = []
        self._similar: dict[int, float] = {}
        self._pairs = None
        self._issues = None
        self._extras: dict[int, dict] = {}
        source = self._embeddings.model_id
        super().__init__(ds, page_size=page_size, mode="selection",
                         mode_options=[[k, v] for k, v in MODES.items()],
                         info=f"embeddings from {source} ({self._points.attrs['projection']} map)")
        texts = hover_texts(ds, self._points["id"]) if self.item_kind == "text" else None
        self.spec = map_spec(self._points, f"{len(self._points)} items, {self._points.attrs['projection']} of "
                                           f"{source} embeddings", texts, ds.classes)
        self.points = [{"id": int(p.id), "x": float(p.x), "y": float(p.y)} for p in self._points.itertuples()]
        self.classes_spec = stats(ds).spec
        self.observe(lambda _: self._mode_set(), "mode")

    def _mode_set(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, not {self.mode!r}")
        self.page = 0
        self.refresh()

    def _ids(self):
        if self.mode == "selection":
            self._extras = {}
            return list(self._selected)
        if self.mode == "similar":
            self._extras = {i: {"caption": f"similarity {s:.2f}"} for i, s in self._similar.items()}
            return list(self._similar)
        if self.mode == "duplicates":
            if self._pairs is None:
                self._pairs = self.ds.duplicates(embeddings=self._embeddings)
            self._extras, ids = {}, []
            for p in self._pairs.itertuples(index=False):
                for a, b in ((p.id_a, p.id_b), (p.id_b, p.id_a)):
                    if a not in self._extras:
                        leak = " · leak across splits" if p.leak else ""
                        self._extras[int(a)] = {"caption": f"{p.kind} duplicate of #{b}{leak}"}
                        ids.append(int(a))
            return ids
        if self._issues is None:
            self._issues = self.ds.label_issues(embeddings=self._embeddings)
        self._extras = {int(r.id): {"suggestion": r.suggested, "confidence": float(r.p_suggested),
                                    "caption": f"label looks wrong: {r.score:.2f}"}
                        for r in self._issues.itertuples(index=False)}
        return list(self._extras)

    def _extra(self, rows):
        return [self._extras.get(r["id"], {}) for r in rows]

    def _suggestion(self, item_id):
        return self._extras.get(item_id, {}).get("suggestion")

    def _on_brush(self, content):
        self._selected = [int(i) for i in content.get("ids") or []]
        self.mode = "selection"
        self.page = 0
        self.refresh()
        return f"{len(self._selected)} items selected on the map: press a class key to label them all"

    def _on_point(self, content):
        from ..analysis import similar
        item = int(content["id"])
        found = similar(self.ds, item, k=self.page_size, embeddings=self._embeddings)
        self._similar = {item: 1.0, **{int(i): float(s) for i, s in zip(found["id"], found["similarity"])}}
        if self.mode != "similar":
            self.mode = "similar"
        self.page = 0
        self.refresh()
        return f"items most like #{item}"
