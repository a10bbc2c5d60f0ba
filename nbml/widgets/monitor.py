"""The live training monitor that `nbml.train` shows in a notebook: it subscribes to the training events."""
from __future__ import annotations

import math

import threading
import time

import traitlets as t

from .. import events as E
from ._base import Widget, bundle
from .chart import inline_spec


def monitor_spec() -> dict:
    """Vega-Lite: smoothed training loss per batch and validation loss per epoch; validation metrics per epoch."""
    import altair as alt
    batches, epochs = alt.Data(name="batches"), alt.Data(name="epochs")
    step = alt.X("step:Q", title="batch")
    train = alt.Chart(batches).mark_line(strokeWidth=1.5).encode(
        step, alt.Y("smooth_loss:Q", title="loss"), color=alt.value("#1976d2"),
        tooltip=["step:Q", "smooth_loss:Q", "lr:Q"])
    valid = alt.Chart(epochs).mark_line(point=True, color="#ef6c00").encode(
        step, alt.Y("valid_loss:Q"), tooltip=["epoch:Q", "valid_loss:Q", "train_loss:Q"])
    metrics = alt.Chart(epochs).transform_fold(["accuracy"], as_=["metric", "value"]).mark_line(point=True).encode(
        alt.X("epoch_number:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
        alt.Y("value:Q", title="validation accuracy", scale=alt.Scale(domain=[0, 1])),
        color=alt.value("#2e7d32"), tooltip=["epoch_number:Q", "value:Q"])
    loss = alt.layer(train, valid).properties(width=360, height=200,
                                              title="loss: training (smoothed, blue) and validation (orange)")
    return inline_spec(alt.hconcat(loss, metrics.properties(width=220, height=200, title="accuracy")))


class TrainingMonitor(Widget):
    """Subscribe it to a TrainingHandle (`handle.subscribe(monitor)`); it throttles rows to the front end.

    `nbml.train(ds)` in a notebook shows one: the live losses, validation accuracy, progress with ETA, a Stop button and
    a summary. `handle`: the TrainingHandle to follow (None: subscribe it later); `interval`: at most one update of the
    front end per this many seconds.

    Raises: nothing of its own.

    Examples:
        >>> handle = nbml.train(ds, background=True, quiet=True)
        >>> nbml.widgets.monitor.TrainingMonitor(handle, interval=0.5)
    """

    _esm = bundle("monitor")
    spec = t.Dict().tag(sync=True)
    status = t.Dict().tag(sync=True)
    summary = t.Dict().tag(sync=True)

    def __init__(self, handle=None, *, interval: float = 0.25):
        super().__init__(spec=monitor_spec(), status={"state": "starting"})
        self.handle, self.interval = handle, interval
        self._lock = threading.Lock()
        self._batches, self._epochs = [], []        # everything, for late front ends ("history")
        self._pending_b, self._pending_e = [], []
        self._last_flush = 0.0
        self._steps_before_epoch: dict[int, int] = {}
        self._step = 0
        if handle is not None:
            handle.subscribe(self)

    def __call__(self, event) -> None:
        status = dict(self.status)
        if isinstance(event, E.TrainStarted):
            status.update(state="running", epochs=event.epochs, run_id=event.run_id, device=event.device)
        elif isinstance(event, E.PhaseStarted):
            status.update(phase=event.phase)
        elif isinstance(event, E.LearningRateFound):
            status.update(lr=event.lr)
        elif isinstance(event, E.BatchEnded):
            self._step += 1
            row = {"step": self._step, "epoch": event.epoch, "loss": event.loss, "smooth_loss": event.smooth_loss,
                   "lr": event.lr}
            with self._lock:
                self._batches.append(row)
                self._pending_b.append(row)
            status.update(epoch=event.epoch, progress=event.progress, eta_s=event.eta_s, elapsed_s=event.elapsed_s,
                          lr=event.lr, loss=event.smooth_loss)
        elif isinstance(event, E.EpochEnded):
            row = {"step": self._step, "epoch": event.epoch, "epoch_number": event.epoch + 1,
                   "train_loss": event.train_loss, "valid_loss": event.valid_loss, **event.metrics}
            # no point for a loss that was not measured (NaN is not JSON: null is, and the charts skip it)
            row = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
            with self._lock:
                self._epochs.append(row)
                self._pending_e.append(row)
            status.update(epoch=event.epoch, eta_s=event.eta_s, elapsed_s=event.elapsed_s)
            if self._batches:        # the status line shows the plotted (smoothed) loss as of the epoch's end
                status["loss"] = self._batches[-1]["smooth_loss"]
        elif isinstance(event, E.TrainEnded):
            status.update(state=event.status, progress=1.0 if event.status == "completed" else status.get("progress"),
                          elapsed_s=event.duration_s)
            self.summary = {"run_id": event.run_id, "status": event.status, "metrics": event.metrics,
                            "duration_s": event.duration_s, "best_epoch": event.best_epoch, "error": event.error,
                            "refit_on_all": event.refit_on_all}
            self._forecast_after(event)
        else:
            return
        now = time.monotonic()
        final = isinstance(event, (E.EpochEnded, E.TrainEnded))
        if final or now - self._last_flush >= self.interval:
            self._last_flush = now
            self._flush()
            self.status = status

    def _forecast_after(self, event) -> None:
        """After a run that ended with a model in a project: how far to trust its accuracy (the count it was measured
        on, a 95% interval, the majority baseline, notes: nbml.scores) and the forecast's line (nbml.forecast) join
        the summary when ready, computed in a background thread so the summary shows at once."""
        model = getattr(self.handle, "model", None) if event.status != "failed" else None
        ds = getattr(model, "dataset", None)
        if ds is None:
            return

        def work():
            from ..forecast import headline
            try:
                trust = model.trust()
            except Exception:        # a summary without it: the run itself is recorded
                trust = None
            if trust:
                self.summary = {**self.summary, "scores": trust}
            line = headline(ds)
            if line:
                self.summary = {**self.summary, "forecast": line}
        threading.Thread(target=work, name="nbml-forecast", daemon=True).start()

    def _flush(self) -> None:
        with self._lock:
            batches, epochs = self._pending_b, self._pending_e
            self._pending_b, self._pending_e = [], []
        if batches or epochs:
            self.send({"type": "rows", "batches": batches, "epochs": epochs})

    def _on_stop(self, content):
        if self.handle is None:
            raise RuntimeError("this monitor is not attached to a training run")
        self.handle.stop()
        return "stopping after the current batch"

    def _on_history(self, content):
        with self._lock:
            batches, epochs = list(self._batches), list(self._epochs)
            self._pending_b, self._pending_e = [], []
        self.send({"type": "rows", "batches": batches, "epochs": epochs})
