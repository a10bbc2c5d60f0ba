"""A Vega-Lite chart drawn by nbml's bundled vega-embed (`ds.stats().chart`, `nbml.monitor(...)`).

altair's own renderers load vega from a CDN in JupyterLab, so offline they show an error; this widget fetches
nothing, whatever altair's renderer or data transformer settings: its spec carries its data inline.
"""
from __future__ import annotations

import copy

import anywidget
import traitlets as t

from ._base import bundle


# Colours that keep one meaning across nbml's charts: splits one palette (purples), classes another (Tableau's 20),
# and unlabelled items always grey, unlike every class.
UNLABELLED = "(unlabelled)"
UNLABELLED_COLOUR = "#b0b0b0"
SPLIT_COLOURS = {"train": "#54278f", "valid": "#8c6bb1", "test": "#bcbddc", "unassigned": "#dadaeb",
                 "unlabelled": UNLABELLED_COLOUR}
CLASS_COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                 "#9c755f", "#2f4b7c", "#a0cbe8", "#ffbe7d", "#ff9d9a", "#86bcb6", "#8cd17d", "#f1ce63",
                 "#d4a6c8", "#fabfd2", "#d7b5a6", "#665191"]


def class_scale(classes) -> dict:
    """A Vega-Lite colour scale giving each class its own colour, and UNLABELLED grey."""
    classes = [c for c in classes if c != UNLABELLED]
    return {"domain": classes + [UNLABELLED],
            "range": [CLASS_COLOURS[i % len(CLASS_COLOURS)] for i in range(len(classes))] + [UNLABELLED_COLOUR]}


def split_scale(splits=tuple(SPLIT_COLOURS)) -> dict:
    """A Vega-Lite colour scale for the splits (and the unlabelled items), apart from the classes' colours."""
    return {"domain": list(splits), "range": [SPLIT_COLOURS[s] for s in splits]}


def inline_spec(chart) -> dict:
    """The Vega-Lite spec of an altair chart (or a spec dict) with every dataset inline and no URL to fetch."""
    if isinstance(chart, dict):
        spec = copy.deepcopy(chart)
    else:
        import altair as alt
        with alt.data_transformers.enable("default", max_rows=None):   # not "json"/"csv" files, nor vegafusion
            spec = chart.to_dict()
    spec.pop("$schema", None)   # a schema URL (vega-embed is told the mode instead)
    urls = list(_data_urls(spec))
    if urls:
        raise ValueError(f"a chart's data must be inline, but this spec loads {urls[0]!r}: pass the rows themselves "
                         f"(a DataFrame to altair, or {{'values': [...]}})")
    return spec


def _data_urls(node):
    if isinstance(node, dict):
        if isinstance(node.get("url"), str):
            yield node["url"]
        for value in node.values():
            yield from _data_urls(value)
    elif isinstance(node, list):
        for value in node:
            yield from _data_urls(value)


class Chart(anywidget.AnyWidget):
    """`Chart(altair_chart_or_spec)`; `.spec` (or `.to_dict()`) is the Vega-Lite spec it draws.

    `chart`: an altair chart or a Vega-Lite spec as a dict (data from a URL is refused); `**traits` are passed to the
    widget. `ds.stats()` and `nbml.monitor()` return one.

    Raises:
        ValueError: the spec loads data from a URL instead of holding it inline.

    Examples:
        >>> chart = Chart(alt.Chart(frame).mark_bar().encode(x="label", y="count()"))
        >>> ds.stats().chart.to_dict()
    """

    _esm = bundle("chart")
    spec = t.Dict().tag(sync=True)

    def __init__(self, chart, **traits):
        super().__init__(spec=inline_spec(chart), **traits)

    def __repr__(self) -> str:
        title = self.spec.get("title")
        return f"Chart({(title.get('text') if isinstance(title, dict) else title) or 'Vega-Lite'!r})"

    def to_dict(self) -> dict:
        """A copy of the spec, as altair's `Chart.to_dict()` gives.

        Raises: nothing of its own.

        Examples:
            >>> ds.stats().chart.to_dict()["mark"]
        """
        return copy.deepcopy(self.spec)
