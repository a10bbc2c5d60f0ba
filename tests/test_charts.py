"""Every chart nbml returns is its own widget whose spec carries its data inline: nothing for a browser to fetch,
whatever altair's settings (tests/test_browser_charts.py checks the drawing, offline, in JupyterLab)."""
import time

import altair as alt
import pandas as pd
import pytest

import nbml
from nbml.predlog import PredictionLog
from nbml.widgets.chart import Chart

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def log_predictions(ds, n=40, model="colours"):
    """n predictions in the project's log, written as `nbml serve` writes them, over the last ten minutes."""
    log = PredictionLog(ds, model=model, flush_s=60)
    start = time.time() - 600
    for i in range(n):
        log.record(start + i * 600 / n, 4.0 + i % 7, ("red", "green", "blue")[i % 3], 0.35 + 0.06 * (i % 11),
                   f"{i:064x}")
    log.close()


def strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


def mimebundle(obj) -> dict:
    bundle = obj._repr_mimebundle_()
    return bundle[0] if isinstance(bundle, tuple) else bundle


def offline_spec(chart) -> dict:
    """The chart's spec, once checked to be nbml's widget (never altair's renderers) with every row inline."""
    assert isinstance(chart, Chart), type(chart)
    bundle = mimebundle(chart)
    assert WIDGET_VIEW in bundle and not any("vega" in mime for mime in bundle), list(bundle)
    spec = chart.spec
    assert spec == chart.to_dict()
    assert [s for s in strings(spec) if "://" in s or s == "url"] == []
    assert spec["datasets"] and all(rows for rows in spec["datasets"].values())
    return spec


def rows(spec) -> list[dict]:
    return [row for rows in spec["datasets"].values() for row in rows]


def test_stats_chart_is_offline(ds):
    stats = ds.stats()
    spec = offline_spec(stats.chart)
    assert sum(r["items"] for r in rows(spec)) == len(ds) and spec["mark"]["type"] == "bar"
    bundle = mimebundle(stats)
    assert WIDGET_VIEW in bundle and bundle["text/plain"] == repr(stats)


def test_monitor_charts_are_offline(ds):
    empty = offline_spec(nbml.monitor(ds))
    assert "no predictions logged yet" in str(rows(empty))
    log_predictions(ds)
    spec = offline_spec(nbml.monitor(ds))
    assert len(spec["vconcat"]) == 2 and "40 predictions" in spec["title"]
    assert "served" in {r.get("data") for r in rows(spec)}


def test_data_stays_inline_whatever_altair_is_set_to(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frame = pd.DataFrame({"x": range(6000)})          # over altair's default max_rows too
    with alt.data_transformers.enable("json"):         # altair would write a file and point to it by URL
        spec = offline_spec(Chart(alt.Chart(frame).mark_tick().encode(x="x:Q")))
    assert len(rows(spec)) == 6000 and list(tmp_path.iterdir()) == []


def test_a_spec_that_fetches_data_is_refused():
    with pytest.raises(ValueError, match="inline"):
        Chart({"data": {"url": "https://example.com/rows.csv"}, "mark": "bar"})


def test_widget_specs_stay_inline_whatever_altair_is_set_to(tmp_path, monkeypatch):
    """The training monitor and the run comparison build their specs with altair: with altair set to write data
    files, their specs still carry the rows (a file URL would be fetched by the browser, and fail offline)."""
    from nbml.widgets.monitor import monitor_spec
    from nbml.widgets.runs import runs_spec
    monkeypatch.chdir(tmp_path)
    runs = pd.DataFrame({"id": [1], "history": [[{"epoch": 0, "valid_loss": 0.5, "accuracy": 0.8}]]})
    with alt.data_transformers.enable("json"):
        specs = [monitor_spec(), runs_spec(runs)]
    for spec in specs:
        assert [s for s in strings(spec) if "://" in s or s == "url"] == []
    assert {"valid_loss", "accuracy"} <= {r["metric"] for r in rows(specs[1])}
    assert list(tmp_path.iterdir()) == []


def test_grid_widget_specs_stay_inline(ds, tmp_path, monkeypatch):
    """The confusion matrix, the explorer's map and its class counts: rows inline with altair set to write files."""
    import numpy as np
    from nbml.widgets.confusion import confusion_spec
    from nbml.widgets.explore import map_spec
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    confusion = pd.DataFrame([[3, 1], [0, 4]], index=["a", "b"], columns=["a", "b"])
    points = pd.DataFrame({"id": [1, 2], "x": [0.0, 1.0], "y": [1.0, 0.0], "label": ["a", np.nan], "split": ["", ""]})
    with alt.data_transformers.enable("json"):
        specs = [confusion_spec(confusion, False), map_spec(points, "map"), ds.stats().spec]
    for spec in specs:
        assert [s for s in strings(spec) if "://" in s or s == "url"] == []
    assert list(work.iterdir()) == []


def marks(node) -> list[str]:
    """Every mark type in a spec, however deep its layers and concatenations."""
    out = []
    if isinstance(node, dict):
        mark = node.get("mark")
        if mark is not None:
            out.append(mark["type"] if isinstance(mark, dict) else mark)
        for value in node.values():
            out += marks(value)
    elif isinstance(node, list):
        for value in node:
            out += marks(value)
    return out


def test_monitor_after_one_request_draws_a_point_and_its_count(ds):
    log_predictions(ds, n=1)
    spec = offline_spec(nbml.monitor(ds))
    volume, latency = spec["vconcat"][0]["hconcat"]
    assert marks(volume) == ["point", "text"] and marks(latency) == ["point", "text"]   # not a block, not a lone dot
    axis = volume["layer"][0]["encoding"]["x"]["axis"]
    assert axis["format"] == "%H:%M:%S" and volume["layer"][0]["encoding"]["x"]["title"].startswith("time (UTC")
    heat = spec["vconcat"][1]["hconcat"][0]
    assert heat["encoding"]["color"]["legend"]["format"] == "d"        # counts, not 1.000000
    assert marks(heat) == ["circle"]                                    # a point per band, not a chart-wide band
    log_predictions(ds, n=40)
    busy = offline_spec(nbml.monitor(ds))
    assert marks(busy["vconcat"][0]["hconcat"][0]) == ["bar"] and marks(busy["vconcat"][1]["hconcat"][0]) == ["rect"]


def test_colours_keep_one_meaning_and_unlabelled_is_grey():
    from nbml.widgets.chart import UNLABELLED, UNLABELLED_COLOUR, class_scale, split_scale
    from nbml.widgets.explore import map_spec
    classes = [str(d) for d in range(10)]
    points = pd.DataFrame({"id": range(11), "x": range(11), "y": range(11),
                           "label": classes + [None], "split": ["train"] * 10 + [None]})
    scale = map_spec(points, "map", classes=classes)["encoding"]["color"]["scale"]
    colour = dict(zip(scale["domain"], scale["range"]))
    assert colour[UNLABELLED] == UNLABELLED_COLOUR and colour["9"] != UNLABELLED_COLOUR
    assert len(set(colour.values())) == 11                       # every class its own colour
    splits = split_scale()
    assert not set(splits["range"][:4]) & set(class_scale(classes)["range"])   # splits and classes never share one
    assert dict(zip(splits["domain"], splits["range"]))["unlabelled"] == UNLABELLED_COLOUR
