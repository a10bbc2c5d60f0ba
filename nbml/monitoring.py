"""`nbml.monitor(...)`: charts of what a served model has been doing, from its prediction log.

Request volume, latency, the confidence distribution over time, and the mix of predicted classes against the
training data. The log is aggregated in pandas first, so the charts stay small whatever the log's length.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["monitor"]

_STEPS = [("1s", 1), ("5s", 5), ("10s", 10), ("30s", 30), ("1min", 60), ("5min", 300), ("15min", 900),
          ("1h", 3600), ("6h", 21600), ("1D", 86400), ("7D", 604800)]
WIDTH, HEIGHT = 280, 160   # two charts and their legends side by side fit a notebook


def _source_parts(source):
    """(what read_log takes, training class counts or None, model name or None)."""
    from .predlog import LOG_FILE
    if hasattr(source, "service") and hasattr(source, "stop"):          # a ServerHandle
        if source.log is not None:
            source.log.flush()
            where = source.log.store
        else:
            raise ValueError("this server runs with log=False: there is no prediction log to chart")
        data = source.service.config.get("training_data") or {}
        return where, data.get("class_counts"), source.name
    if hasattr(source, "_write") and hasattr(source, "training_items"):   # a Dataset
        counts = source.training_items(("train", "valid"))["label"].value_counts().to_dict()
        return source, counts or None, None
    if hasattr(source, "dataset") and hasattr(source, "config"):          # a Model
        if source.dataset is None:
            raise ValueError("this model has no project; pass the exported folder or the server handle instead")
        where, counts, _ = _source_parts(source.dataset)
        exported = (source.config.get("training_data") or {}).get("class_counts")
        return where, exported or counts, source.config.get("name")
    path = Path(os.fspath(source)).expanduser()
    folder = path if path.is_dir() else path.parent
    config = folder / "config.json"
    counts = name = None
    if config.is_file():
        cfg = json.loads(config.read_text())
        counts, name = (cfg.get("training_data") or {}).get("class_counts"), cfg.get("name")
    return (folder / LOG_FILE if path.is_dir() else path), counts, name


def _step(span_s: float, bins: int) -> str:
    for freq, seconds in _STEPS:
        if span_s / seconds <= bins:
            return freq
    return _STEPS[-1][0]


# the time axis' labels for each bin size: whole seconds, minutes, hours or days, never ".800" or ":43" alone
_TIME_FORMATS = [(60, "%H:%M:%S"), (86400, "%H:%M"), (None, "%b %d %H:%M")]


def _time_format(freq: str) -> str:
    seconds = dict(_STEPS)[freq]
    return next(fmt for limit, fmt in _TIME_FORMATS if limit is None or seconds < limit)


def _empty(message: str):
    import altair as alt

    from .widgets.chart import Chart
    text = alt.Chart(pd.DataFrame({"text": [message]})).mark_text(size=14).encode(text="text:N")
    return Chart(alt.vconcat(text.properties(width=2 * WIDTH, height=60)))


def monitor(source, model: str | None = None, since=None, bins: int = 48):
    """Charts of served predictions, from a server handle, an exported folder, a project (Dataset) or a Model.

    Returns a chart widget drawn by nbml's bundled Vega-Lite, offline (`.spec` is its spec, data inline): predictions
    per interval, latency p50/p95, the confidence distribution per interval, and the share of each predicted class
    next to its share in the training data. `model` picks one model when a project's log holds several; `since`
    is a time or Timestamp.

    `source`: the server handle, folder, Dataset or Model whose prediction log to read. `bins`: how many time intervals
    the charts split the log into.

    Raises:
        ValueError: `source` is a server running with log=False, or a Model without a project.
        FileNotFoundError: `source` is a folder or file with no prediction log.

    Examples:
        >>> nbml.monitor(server)
        >>> nbml.monitor(ds, since="2024-06-01", bins=24)
    """
    import altair as alt

    from .predlog import read_log
    from .widgets.chart import Chart
    where, training, default_model = _source_parts(source)
    model = model or default_model
    since_s = pd.Timestamp(since).timestamp() if since is not None else None
    log = read_log(where, model=model, since=since_s)
    if log.empty:
        return _empty(f"no predictions logged yet{f' for {model}' if model else ''}")

    span = (log["time"].max() - log["time"].min()).total_seconds()
    freq = _step(max(span, 1.0), bins)
    log["bin"] = log["time"].dt.floor(freq)
    per_bin = log.groupby("bin").agg(predictions=("id", "size"),
                                     p50=("latency_ms", "median"),
                                     p95=("latency_ms", lambda s: float(np.percentile(s, 95)))).reset_index()
    per_bin["bin_end"] = per_bin["bin"] + pd.Timedelta(freq)
    title = f"{model or 'all models'}: {len(log):,} predictions, {log['time'].min():%Y-%m-%d %H:%M} to " \
            f"{log['time'].max():%Y-%m-%d %H:%M} (bins of {freq})"
    fmt = _time_format(freq)
    x = alt.X("bin:T", title=f"time (UTC, bins of {freq})", axis=alt.Axis(format=fmt, labelAngle=0, tickCount=4))
    few = len(per_bin) < 3       # one or two intervals: points with their counts, not bars as wide as the chart

    if few:
        base = alt.Chart(per_bin).encode(x=x, y=alt.Y("predictions:Q", title="predictions",
                                                       scale=alt.Scale(domainMin=0, nice=True)),
                                         tooltip=[alt.Tooltip("bin:T", title="from", format=fmt), "predictions:Q"])
        volume = (base.mark_point(filled=True, size=90) + base.mark_text(dy=-12).encode(text="predictions:Q"))
        volume = volume.properties(title="Request volume", width=WIDTH, height=HEIGHT)
    else:
        volume = alt.Chart(per_bin).mark_bar(stroke="white", strokeWidth=1).encode(
            x=x, x2="bin_end:T", y=alt.Y("predictions:Q", title="predictions"), y2=alt.datum(0),
            tooltip=[alt.Tooltip("bin:T", title="from", format=fmt), "predictions:Q"],
        ).properties(title="Request volume", width=WIDTH, height=HEIGHT)

    latency_long = per_bin.melt(id_vars="bin", value_vars=["p50", "p95"], var_name="quantile", value_name="ms")
    lat = alt.Chart(latency_long).encode(
        x=x, y=alt.Y("ms:Q", title="latency (ms)"), color=alt.Color("quantile:N", title=None),
        tooltip=[alt.Tooltip("bin:T", title="from", format=fmt), "quantile:N", alt.Tooltip("ms:Q", format=".1f")])
    latency = (lat.mark_point(filled=True, size=70) + lat.mark_text(dx=8, align="left").encode(
        text=alt.Text("ms:Q", format=".1f"))) if few else lat.mark_line(point=True)
    latency = latency.properties(title="Latency in the server", width=WIDTH, height=HEIGHT)

    edges = np.linspace(0, 1, 11)
    log["conf_bin"] = pd.cut(log["confidence"].clip(0, 1), edges, include_lowest=True,
                             labels=[f"{a:.1f}" for a in edges[:-1]]).astype(float)
    heat = log.groupby(["bin", "conf_bin"]).size().rename("n").reset_index()
    heat["conf_hi"] = heat["conf_bin"] + 0.1
    heat["bin_end"] = heat["bin"] + pd.Timedelta(freq)
    heat["conf_mid"] = heat["conf_bin"] + 0.05
    colour = alt.Color("n:Q", title="predictions", scale=alt.Scale(scheme="blues", domainMin=0),
                       legend=alt.Legend(format="d", tickMinStep=1))
    tip = [alt.Tooltip("bin:T", title="from", format=fmt), alt.Tooltip("conf_bin:Q", title="confidence from"), "n:Q"]
    conf_y = alt.Y("conf_bin:Q", title="confidence", scale=alt.Scale(domain=[0, 1]))
    if few:       # one or two intervals: a point per confidence band, not a band as wide as the chart
        confidence = alt.Chart(heat).mark_circle(size=120).encode(
            x=x, y=alt.Y("conf_mid:Q", title="confidence", scale=alt.Scale(domain=[0, 1])), color=colour,
            tooltip=tip,
        ).properties(title="Confidence over time", width=WIDTH, height=HEIGHT)
    else:
        confidence = alt.Chart(heat).mark_rect().encode(
            x=x, x2="bin_end:T", y=conf_y, y2="conf_hi:Q", color=colour, tooltip=tip,
        ).properties(title="Confidence over time", width=WIDTH, height=HEIGHT)

    served = log["label"].value_counts(normalize=True)
    rows = [{"class": c, "data": "served", "share": float(v)} for c, v in served.items()]
    if training:
        total = float(sum(training.values())) or 1.0
        rows += [{"class": c, "data": "training", "share": n / total} for c, n in training.items()]
    mix = alt.Chart(pd.DataFrame(rows)).mark_bar().encode(
        x=alt.X("class:N", title=None, sort="ascending"), xOffset="data:N",
        y=alt.Y("share:Q", title="share of items", axis=alt.Axis(format="%")),
        color=alt.Color("data:N", title=None, scale=alt.Scale(domain=["served", "training"])),
        tooltip=["class:N", "data:N", alt.Tooltip("share:Q", format=".1%")],
    ).properties(title="Predicted classes vs training data" if training else "Predicted classes",
                 width=WIDTH, height=HEIGHT)

    return Chart(alt.vconcat(alt.hconcat(volume, latency), alt.hconcat(confidence, mix),
                             title=title).resolve_scale(color="independent"))
