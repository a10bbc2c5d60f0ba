"""Plain training events, and the console printer that shows them outside a notebook.

The training core emits these to subscribers (any callable taking one event); it imports no widget code.
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field

__all__ = ["TrainStarted", "PhaseStarted", "LearningRateFound", "BatchEnded", "EpochEnded", "TrainWarning",
           "TrainEnded", "ConsolePrinter", "as_dict"]


@dataclass(frozen=True)
class TrainStarted:
    """Training began: `run_id` (its row in `ds.runs()`), `arch`, `device` (e.g. 'cuda', 'cpu x2'), `weights` (where the
    starting weights came from), `classes`, `n_train` and `n_valid` items, `epochs` over all phases, `size` (pixels,
    or tokens read per text: `unit` says which) and batch size `bs`. `kind` names the event in `as_dict`.

    Raises: nothing of its own.

    Examples:
        >>> [(e.run_id, e.n_train, e.device) for e in handle.events if isinstance(e, nbml.events.TrainStarted)]
    """
    run_id: int
    arch: str
    device: str
    weights: str
    classes: list
    n_train: int
    n_valid: int
    epochs: int            # total epochs over all phases
    size: int              # pixels (images) or tokens read per text
    bs: int
    kind: str = "train_started"
    unit: str = "px"       # what `size` counts: "px" or "tokens"


@dataclass(frozen=True)
class PhaseStarted:
    """A phase began: `phase` is 'lr_find', 'frozen', 'unfrozen', 'head' (a sentence encoder's classification head,
    fitted on its embeddings after the pair phase) or 'refit' (trained again on every label after validation), for
    `epochs` epochs. `kind` names the event.

    Raises: nothing of its own.

    Examples:
        >>> [(e.phase, e.epochs) for e in handle.events if isinstance(e, nbml.events.PhaseStarted)]
    """
    phase: str             # "lr_find" | "frozen" | "unfrozen" | "head" | "refit" (again on every label, after it)
    epochs: int
    kind: str = "phase_started"


@dataclass(frozen=True)
class LearningRateFound:
    """The learning rate `lr` that the search chose. `kind` names the event.

    Raises: nothing of its own.

    Examples:
        >>> [e.lr for e in handle.events if isinstance(e, nbml.events.LearningRateFound)]
    """
    lr: float
    kind: str = "lr_found"


@dataclass(frozen=True)
class BatchEnded:
    """A training batch ended: `phase`, `epoch` (counted over all phases), `batch` of `n_batches`, its `loss`, the
    `smooth_loss` the monitor draws, the learning rate `lr`, `progress` (0 to 1 over the whole training), `elapsed_s`
    and `eta_s` (None until it can be estimated). `kind` names the event.

    Raises: nothing of its own.

    Examples:
        >>> [e.loss for e in handle.events if isinstance(e, nbml.events.BatchEnded)]
    """
    phase: str
    epoch: int             # index over all phases
    batch: int
    n_batches: int
    loss: float
    smooth_loss: float
    lr: float
    progress: float        # 0..1 over the whole training (lr_find excluded)
    elapsed_s: float
    eta_s: float | None
    kind: str = "batch_ended"


@dataclass(frozen=True)
class EpochEnded:
    """An epoch ended: `phase`, `epoch` of `epochs`, `train_loss`, `valid_loss`, `metrics` (validation accuracy and the
    rest), `elapsed_s` and `eta_s`. `kind` names the event.

    Raises: nothing of its own.

    Examples:
        >>> [(e.epoch, e.valid_loss) for e in handle.events if isinstance(e, nbml.events.EpochEnded)]
    """
    phase: str
    epoch: int
    epochs: int
    train_loss: float
    valid_loss: float
    metrics: dict = field(default_factory=dict)
    elapsed_s: float = 0.0
    eta_s: float | None = None
    kind: str = "epoch_ended"


@dataclass(frozen=True)
class TrainWarning:
    """Something the user should know about the run, in one sentence (`message`): no pretrained weights, a file that
    vanished. `kind` names the event.

    Raises: nothing of its own.

    Examples:
        >>> [e.message for e in handle.events if isinstance(e, nbml.events.TrainWarning)]
    """
    message: str
    kind: str = "warning"


@dataclass(frozen=True)
class TrainEnded:
    """Training ended: `run_id`, `status` ('completed', 'stopped' or 'failed'), the final `metrics`, `duration_s`,
    `best_epoch` (whose weights were kept), `error` (why it failed), and `refit_on_all` (trained again on this many
    labelled items after validation; the metrics are from before). `kind` names the event.

    Raises: nothing of its own.

    Examples:
        >>> [(e.status, e.metrics) for e in handle.events if isinstance(e, nbml.events.TrainEnded)]
    """
    run_id: int
    status: str            # "completed" | "stopped" | "failed"
    metrics: dict
    duration_s: float
    best_epoch: int | None = None
    error: str | None = None
    refit_on_all: int | None = None   # then trained again on this many labelled items (the metrics are from before)
    kind: str = "train_ended"


def as_dict(event) -> dict:
    """The `event` as a plain dict of its fields (`kind` included), for JSON or a DataFrame.

    Raises: nothing of its own.

    Examples:
        >>> pd.DataFrame([nbml.events.as_dict(e) for e in handle.events])
    """
    return asdict(event)


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    return f"{s // 60}:{s % 60:02d}"


class ConsolePrinter:
    """Prints one line per phase and per epoch, and a summary at the end.

    `stream`: where to print (default: sys.stdout). Pass it as `on_event`, or let `nbml.train` use it outside a
    notebook.

    Raises: nothing of its own.

    Examples:
        >>> model = nbml.train(ds, on_event=nbml.events.ConsolePrinter(sys.stderr))
    """

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def __call__(self, e) -> None:
        line = None
        if isinstance(e, TrainStarted):
            line = (f"training {e.arch} on {e.device} ({e.weights}): {e.n_train} train / {e.n_valid} valid items, "
                    f"{len(e.classes)} classes, {e.size}{'px' if e.unit == 'px' else ' ' + e.unit}, batch {e.bs}, {e.epochs} epochs")
        elif isinstance(e, PhaseStarted):
            line = {"lr_find": "finding a learning rate...",
                    "frozen": f"training the head with the body frozen ({e.epochs} epoch{'s' * (e.epochs != 1)})",
                    "unfrozen": f"training all layers ({e.epochs} epoch{'s' * (e.epochs != 1)})",
                    "head": "fitting the classification head on the encoder's embeddings",
                    "refit": "training again on every label, validation included (the figures above stay)",
                    }.get(e.phase, f"phase {e.phase}")
        elif isinstance(e, LearningRateFound):
            line = f"learning rate {e.lr:.2e}"
        elif isinstance(e, EpochEnded):
            values = {"train_loss": e.train_loss, "valid_loss": e.valid_loss, **e.metrics}
            mets = "  ".join(f"{k} {v:.4f}" for k, v in values.items() if v == v)     # a NaN was not measured
            line = f"epoch {e.epoch + 1}/{e.epochs}  {mets}  elapsed {_fmt_s(e.elapsed_s)}  eta {_fmt_s(e.eta_s)}"
        elif isinstance(e, TrainWarning):
            line = f"warning: {e.message}"
        elif isinstance(e, TrainEnded):
            mets = "  ".join(f"{k} {v:.4f}" for k, v in e.metrics.items() if isinstance(v, float))
            line = (f"run {e.run_id} {e.status} in {_fmt_s(e.duration_s)}  {mets}" + (f"  ({e.error})" if e.error else "")
                    + (f"  (measured on validation, then trained again on all {e.refit_on_all} labelled items)"
                       if e.refit_on_all else ""))
        if line:
            print(line, file=self.stream, flush=True)
