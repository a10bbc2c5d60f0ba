"""`ds.compare_runs()`: every run's curves overlaid, with a table of parameters and final metrics."""
from __future__ import annotations

import traitlets as t

from ._base import Widget, bundle
from .chart import inline_spec

PARAMS = ("arch", "epochs", "freeze_epochs", "size", "bs", "lr", "weights", "n_train", "n_valid")


def runs_table(runs) -> tuple[list, list]:
    from ..scores import interval_text
    columns = ["run", "status", *PARAMS, "accuracy", "accuracy 95%", "valid_loss", "duration_s", "started"]
    rows = []
    for r in runs.itertuples(index=False):
        params, metrics = r.params or {}, r.metrics or {}
        rows.append({"run": int(r.id), "status": r.status, **{p: params.get(p) for p in PARAMS},
                     "accuracy": metrics.get("accuracy"),
                     "accuracy 95%": interval_text(metrics.get("accuracy"), params.get("n_valid")),
                     "valid_loss": metrics.get("valid_loss"),
                     "duration_s": None if r.duration_s != r.duration_s else r.duration_s,
                     "started": str(r.started_at)[:19]})
    return columns, rows


def runs_spec(runs) -> dict:
    import altair as alt
    import pandas as pd
    points = [{"run": f"run {int(r.id)}", "epoch": h["epoch"] + 1, "metric": m, "value": h.get(m)}
              for r in runs.itertuples(index=False) for h in (r.history or [])
              for m in ("valid_loss", "accuracy") if h.get(m) is not None]
    frame = pd.DataFrame(points, columns=["run", "epoch", "metric", "value"])
    line = alt.Chart(frame).mark_line(point=True).encode(
        alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1)), alt.Y("value:Q", title=None), alt.Color("run:N"),
        tooltip=["run:N", "epoch:Q", "value:Q"]).properties(width=260, height=180)
    return inline_spec(line.facet(column=alt.Column("metric:N", title=None)).resolve_scale(y="independent"))


class RunsWidget(Widget):
    """What `ds.compare_runs()` returns: every run's validation loss and accuracy curves overlaid, and a table of
    parameters and final metrics. `ds`: the project whose runs to show.

    Raises: nothing of its own.

    Examples:
        >>> runs = ds.compare_runs()
    """
    _esm = bundle("runs")
    spec = t.Dict().tag(sync=True)
    columns = t.List().tag(sync=True)
    rows = t.List().tag(sync=True)

    def __init__(self, ds):
        self.ds = ds
        super().__init__()
        self.refresh()

    def refresh(self) -> None:
        """Read the runs from the project again (a run trained since shows up).

        Raises: nothing of its own.

        Examples:
            >>> runs.refresh()
        """
        runs = self.ds.runs()
        columns, rows = runs_table(runs) if not runs.empty else ([], [])
        with self.hold_sync():
            self.spec = runs_spec(runs) if not runs.empty else {}
            self.columns, self.rows = columns, rows
