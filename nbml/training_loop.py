"""The training loop: one run of a kind's fastai Learner on a Dataset, with events, Stop, the best epoch and the
run's record in the store. `nbml.train` (nbml.training) chooses the mode and the processes and calls `run`; a
distributed run (nbml.distributed) calls it in each worker. The loop knows nothing of widgets: it emits the plain
events of `nbml.events` to subscribers.
"""
from __future__ import annotations

import math
import platform
import threading
import time
import warnings
from typing import Callable


from . import events as E
from ._threads import set_torch_threads
from .learner import SCRATCH_LR, Plan, adamw, keep_losses_on_device, learner_cbs

__all__ = ["TrainingHandle", "prepare", "run", "record_success", "record_failure", "refits_on_all", "run_name",
           "versions"]


class TrainingHandle:
    """What `train(..., background=True)` returns at once: `stop()`, `wait()`, `done`, `status`, `events`.

    Raises: nothing of its own.

    Examples:
        >>> handle = nbml.train(ds, background=True)
        >>> model = handle.wait()
    """

    def __init__(self):
        self._stop = threading.Event()
        self._done = threading.Event()
        self._subscribers: list[Callable] = []
        self._lock = threading.Lock()
        self.events: list = []
        self.model = None
        self.error: BaseException | None = None
        self.run_id: int | None = None
        self.status = "starting"
        self.thread: threading.Thread | None = None

    def subscribe(self, fn: Callable) -> None:
        """Call `fn(event)` for every event from now on.

        Raises: nothing of its own.

        Examples:
            >>> handle.subscribe(lambda event: print(nbml.events.as_dict(event)))
        """
        with self._lock:
            self._subscribers.append(fn)

    def emit(self, event) -> None:
        """Hand `event` to every subscriber (the training core calls it); a subscriber that raises is dropped with a
        warning, and training goes on.

        Raises: nothing of its own.

        Examples:
            >>> handle.emit(nbml.events.TrainWarning("a note for the subscribers"))
        """
        with self._lock:
            self.events.append(event)
            subscribers = list(self._subscribers)
        for fn in subscribers:
            try:
                fn(event)
            except Exception as e:   # a broken display must never stop training
                warnings.warn(f"an nbml event subscriber failed and was dropped: {e!r}")
                with self._lock:
                    self._subscribers.remove(fn)

    def stop(self) -> None:
        """End training after the current batch; the best epoch's weights are kept.

        Raises: nothing of its own.

        Examples:
            >>> handle.stop()
        """
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether Stop was asked for (`stop()` or the monitor's button).

        Raises: nothing of its own.

        Examples:
            >>> handle.stopping
        """
        return self._stop.is_set()

    @property
    def done(self) -> bool:
        """Whether training has ended, whatever the way.

        Raises: nothing of its own.

        Examples:
            >>> handle.done
        """
        return self._done.is_set()

    def wait(self, timeout: float | None = None):
        """Block until training ends; returns the Model, or raises what made training fail.

        `timeout`: seconds to wait at most (None: as long as it takes); a TimeoutError says training is still
        running.

        Raises:
            TimeoutError: training is still running after `timeout` seconds.
            Exception: whatever made training fail, raised again here.

        Examples:
            >>> model = handle.wait()
            >>> model = handle.wait(timeout=600)
        """
        if not self._done.wait(timeout):
            raise TimeoutError(f"training still running after {timeout}s")
        if self.error is not None:
            raise self.error
        return self.model

    def __repr__(self) -> str:
        return f"TrainingHandle(run {self.run_id}, {self.status})"

    def __getattr__(self, name: str):
        """Model methods on the handle wait for training to end: `handle.evaluate()` is `handle.wait().evaluate()`."""
        if name.startswith("_"):
            raise AttributeError(name)
        from .model import Model
        if not hasattr(Model, name):
            raise AttributeError(f"'TrainingHandle' object has no attribute {name!r}")
        return getattr(self.wait(), name)


def versions() -> dict:
    """Package versions recorded with a run; fastai's and timm's from their metadata, so head mode need not import
    fastai (seconds)."""
    from importlib.metadata import PackageNotFoundError, version
    import torch
    from . import __version__
    out = {"nbml": __version__, "torch": torch.__version__}
    for name in ("fastai", "timm"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    out["python"] = platform.python_version()
    return out


def run_name(ds, run_id: int) -> str:
    """The name a run's model gets: `<project>-run<id>`."""
    return f"{ds.path.stem if ds.path else 'nbml'}-run{run_id}"


def prepare(ds, arch, epochs, size, bs, lr, pretrained, weights, freeze_epochs, valid_pct, seed, device,
             augment, save) -> tuple[Plan, list[str]]:
    from .nets import pick_device
    from .store import Store
    from . import kinds
    if not isinstance(ds, Store):
        raise TypeError(f"train() takes an nbml.Dataset, not {type(ds).__name__}")
    if pretrained not in ("auto", True, False):
        raise ValueError(f"pretrained must be 'auto', True or False, not {pretrained!r}")
    kind = kinds.of(ds)
    ds.assign_validation_split(valid_pct, seed=42 if seed is None else seed)
    frame, notes = kind.usable(ds.training_items(("train", "valid")))
    if frame.empty:
        raise ValueError("no labelled items to train on: label some first (ds.set_label or ds.label())")
    counts = frame["label"].value_counts()
    if len(counts) < 2:
        raise ValueError(f"training needs at least two classes with labelled items; found only {list(counts.index)}")
    n_valid = int((frame["split"] == "valid").sum())
    if n_valid == 0:
        raise ValueError("the validation split is empty: label at least 4 items per class, or put some items in "
                         "'valid' with ds.set_split(ids, 'valid')")
    tiny = counts[counts < 2]
    if len(tiny):
        notes.append(f"classes with a single labelled item cannot be learnt well: {list(tiny.index)}")
    classes = [c for c in ds.classes if c in counts.index]
    parts = kind.plan(ds, frame, classes, arch=arch, size=size, bs=bs, pretrained=pretrained, weights=weights,
                      epochs=epochs, freeze_epochs=freeze_epochs, augment=augment)
    plan = Plan(ds=ds, frame=frame, classes=classes, lr=lr, device=pick_device(device), seed=seed, save=save,
                 **parts)
    n_train = int((frame["split"] == "train").sum())
    plan.params = dict(kind=kind.NAME, arch=plan.arch, epochs=plan.epochs, freeze_epochs=plan.freeze_epochs,
                       size=plan.size, bs=plan.bs, lr=lr, pretrained=pretrained, weights=plan.weights_source,
                       augment=vars(plan.augment) if plan.augment else None, seed=seed, mode="finetune",
                       valid_pct=valid_pct, n_train=n_train, n_valid=n_valid, classes=classes)
    return plan, notes


def _find_lr(learn, handle: TrainingHandle, num_it: int = 100) -> float:
    """fastai's lr_find (valley) over `num_it` batches, or 1e-3 when it finds nothing usable."""
    handle.emit(E.PhaseStarted("lr_find", 0))
    try:
        lr = float(learn.lr_find(num_it=num_it, show_plot=False).valley)
    except (IndexError, ValueError):       # the search stopped too early to suggest anything
        lr = math.nan
    if not math.isfinite(lr) or lr <= 0:
        lr = 1e-3
    handle.emit(E.LearningRateFound(lr))
    return lr


def _head_learner(plan: Plan, learn, stop_cb):
    """A Learner for the head alone, fed the frozen body's features computed once (train items unaugmented)."""
    import torch
    from fastai.callback.progress import ProgressCallback
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    from .data import TensorLoader
    body, head = learn.model[0], learn.model[1]
    loaders = learn.nbml_loaders
    body.eval()
    feats = []
    with torch.inference_mode():
        for dl in loaders:
            xs, ys = [], []
            for x, y in dl:
                if plan.device.type == "cuda":
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        xs.append(body(x).float())
                else:
                    xs.append(body(x))
                ys.append(y)
            feats.append((torch.cat(xs).clone(), torch.cat(ys).clone()))
    (xt, yt), (xv, yv) = feats
    train = TensorLoader(xt, yt, plan.bs, shuffle=True, drop_last=len(yt) > plan.bs, seed=plan.seed)
    valid = TensorLoader(xv, yv, plan.bs * 2)
    head_learn = Learner(DataLoaders(train, valid), head, loss_func=CrossEntropyLossFlat(), metrics=accuracy,
                         opt_func=adamw(plan.device.type == "cuda"), path=plan.ds.home / "tmp", model_dir=".",
                         cbs=learner_cbs(plan, stop_cb))
    head_learn.remove_cb(ProgressCallback)
    head_learn.logger = lambda *a, **k: None
    keep_losses_on_device(head_learn)
    return head_learn


def _callbacks(plan: Plan, handle: TrainingHandle, run_id: int, t0: float):
    """The fastai callbacks: one that stops on request, one that turns Learner state into nbml events."""
    import torch
    from fastai.callback.core import Callback, CancelFitException

    class StopOnRequest(Callback):
        order = 0

        def after_batch(self):
            if handle.stopping and self.training:
                raise CancelFitException()

    class EmitEvents(Callback):
        order = 70   # after Recorder, so its smoothed loss and epoch values are ready
        total = plan.freeze_epochs + plan.epochs

        def __init__(self):
            self.phase, self.offset, self.last_emit = "frozen", 0, -1.0
            self.pending = []      # (losses, copy-done event, event fields) not yet emitted
            self.history, self.best, self.best_state, self.best_epoch = [], math.inf, None, None

        def start_phase(self, phase, offset):
            self.phase, self.offset = phase, offset

        def _progress(self):
            done = self.offset + self.epoch + (self.iter + 1) / max(self.n_iter, 1)
            return min(done / self.total, 1.0)

        def after_batch(self):
            if not self.training:
                return
            elapsed = time.perf_counter() - t0
            last = self.iter + 1 == self.n_iter
            # at most every 0.1 s, and on each epoch's last batch
            if not last and elapsed - self.last_emit < 0.1:
                self._flush(block=False)
                return
            self.last_emit = elapsed
            progress = self._progress()
            eta = elapsed * (1 - progress) / progress if progress > 0 else None
            meta = (self.phase, self.offset + self.epoch, self.iter, self.n_iter, float(self.opt.hypers[-1]["lr"]),
                    progress, elapsed, eta)
            loss = self.learn.loss.detach().float().reshape(())
            losses = torch.stack([loss, torch.as_tensor(self.learn.smooth_loss, device=loss.device).float().reshape(())])
            if losses.is_cuda:
                # read the losses without making the host wait for the GPU: a copy that lands later
                host = torch.empty(2, pin_memory=True)
                host.copy_(losses, non_blocking=True)
                done = torch.cuda.Event()
                done.record()
                self.pending.append((host, done, meta))
            else:
                self.pending.append((losses, None, meta))
            self._flush(block=last)

        def after_fit(self):
            self._flush(block=True)       # a Stop mid-epoch leaves losses in flight

        def _flush(self, block: bool):
            while self.pending and (block or self.pending[0][1] is None or self.pending[0][1].query()):
                host, done, (phase, epoch, it, n_iter, lr, progress, elapsed, eta) = self.pending.pop(0)
                if done is not None:
                    done.synchronize()
                loss, smooth = host.tolist()
                handle.emit(E.BatchEnded(phase, epoch, it, n_iter, loss, smooth, lr, progress, elapsed, eta))

        def after_epoch(self):
            names = self.recorder.metric_names[1:-1]
            values = dict(zip(names, self.recorder.values[-1]))
            epoch = self.offset + self.epoch
            train_loss, valid_loss = float(values.pop("train_loss")), float(values.pop("valid_loss", math.nan))
            metrics = {k: float(v) for k, v in values.items()}
            elapsed = time.perf_counter() - t0
            progress = (epoch + 1) / self.total
            self.history.append(dict(epoch=epoch, phase=self.phase, train_loss=train_loss, valid_loss=valid_loss,
                                     elapsed_s=elapsed, **metrics))
            plan.ds._update_run(run_id, history=self.history)
            if valid_loss < self.best:
                self.best, self.best_epoch = valid_loss, epoch
                # the whole network, also while only the head is being trained on cached features
                self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in plan.net.state_dict().items()}
            handle.emit(E.EpochEnded(self.phase, epoch, self.total, train_loss, valid_loss, metrics, elapsed,
                                     elapsed * (1 - progress) / progress))

        def restore_best(self, model):
            if self.best_state is not None:
                with torch.no_grad():
                    model.load_state_dict(self.best_state)
                return True
            return False

    return StopOnRequest(), EmitEvents()


def run(plan: Plan, handle: TrainingHandle, notes: list[str]):
    from .model import Model, new_config
    ds = plan.ds
    t0 = time.perf_counter()
    snapshot = ds.snapshot(plan.frame)
    run_id = ds._start_run(plan.arch, plan.params, snapshot, str(plan.device), versions())
    handle.run_id, handle.status = run_id, "running"
    plan.handle = handle
    stop_cb, events_cb = _callbacks(plan, handle, run_id, t0)
    restore_threads = set_torch_threads(plan.threads)
    try:
        from . import kinds
        kind = kinds.of(ds)
        learn, frame, more_notes = kind.make_learner(plan, plan.frame, stop_cb)
        for note in notes + more_notes:
            warnings.warn(note)
            handle.emit(E.TrainWarning(note))
        n_train = int((frame["split"] == "train").sum())
        handle.emit(E.TrainStarted(run_id, plan.arch, str(plan.device), plan.weights_source, plan.classes, n_train,
                                   len(frame) - n_train, plan.freeze_epochs + plan.epochs, plan.size, plan.bs,
                                   unit=kind.UNIT))
        lr = plan.lr
        if plan.freeze_epochs:
            # While the body is frozen its output does not change: one pass caches it, and the learning-rate
            # search and the frozen epochs train the head on those features (no body pass per step).
            head_learn = _head_learner(plan, learn, stop_cb)
            if lr is None:
                lr = _find_lr(head_learn, handle)
            plan.params["lr"] = lr
            ds._update_run(run_id, params=plan.params)
            if not handle.stopping:
                handle.emit(E.PhaseStarted("frozen", plan.freeze_epochs))
                events_cb.start_phase("frozen", 0)
                head_learn.fit_one_cycle(plan.freeze_epochs, lr, pct_start=0.99, cbs=[events_cb])
            lr /= 2
        else:
            if lr is None and plan.default_lr is not None:
                lr = plan.default_lr
            elif lr is None and plan.weights_source == "random":
                lr = SCRATCH_LR
            elif lr is None:
                # every step of the search is a full forward and backward pass here: about one epoch's worth
                lr = _find_lr(learn, handle, num_it=int(min(100, max(20, len(learn.dls.train)))))
            plan.params["lr"] = lr
            ds._update_run(run_id, params=plan.params)
        if plan.epochs and not handle.stopping:
            handle.emit(E.PhaseStarted("unfrozen", plan.epochs))
            learn.unfreeze()
            events_cb.start_phase("unfrozen", plan.freeze_epochs)
            if plan.freeze_epochs:
                learn.fit_one_cycle(plan.epochs, slice(lr / 100, lr), pct_start=0.3, div=5.0, cbs=[events_cb])
            else:
                learn.fit_one_cycle(plan.epochs, lr, cbs=[events_cb], **plan.fit_options)
        status = "stopped" if handle.stopping else "completed"
        best_epoch = None
        if status == "stopped" and events_cb.restore_best(plan.net):
            best_epoch = events_cb.best_epoch
        history = events_cb.history
        final = (history[best_epoch] if best_epoch is not None else history[-1]) if history else {}
        metrics = {k: v for k, v in final.items() if k not in ("epoch", "phase", "elapsed_s")}
        if kind.finish is not None:   # a kind that trained two candidates keeps the better (tables: network, trees)
            metrics = kind.finish(plan, learn, metrics)
            ds._update_run(run_id, params=plan.params)
        holdout = _refit_on_all(kind, plan, learn, handle) if status == "completed" else None
        config = new_config(name=run_name(ds, run_id), arch=plan.arch,
                            classes=plan.classes, size=plan.size, mean=list(plan.mean), std=list(plan.std),
                            weights=plan.weights_source, run_id=run_id, snapshot_id=snapshot, metrics=metrics,
                            versions=versions(), **kind.config(plan),
                            **({"refit_on_all": plan.params["refit_on_all"]} if holdout is not None else {}))
        model = Model(learn.model, config, dataset=ds, learner=learn)
        model.holdout = holdout or {}
        duration = time.perf_counter() - t0
        record_success(ds, handle, model, run_id, status, metrics, duration, best_epoch, plan.save)
        return model
    except BaseException as e:
        record_failure(ds, handle, run_id, t0, e)
        raise
    finally:
        restore_threads()
        handle._done.set()


def refits_on_all(kind, n_labelled: int, arch: str) -> bool:
    """Whether a run of `arch` on `n_labelled` items of this kind trains again on every label once validated (the
    kind decides: `kind.refits`; texts, up to a size)."""
    return kind.refits is not None and kind.refits(n_labelled, arch)


def _refit_on_all(kind, plan: Plan, learn, handle: TrainingHandle) -> dict | None:
    """A kind with few labels trains again on every label once validated (`kind.refit_on_all`, texts): returns the
    validation items' probabilities from before, or None when it did not. Stop during that fit keeps the validated
    weights."""
    if plan.dist is not None or not refits_on_all(kind, len(plan.frame), plan.arch):
        return None
    validated = {k: v.detach().clone() for k, v in learn.model.state_dict().items()}
    holdout = kind.refit_on_all(plan, learn)
    if handle.stopping:
        learn.model.load_state_dict(validated)
        return None
    plan.params["refit_on_all"] = len(plan.frame)
    plan.ds._update_run(handle.run_id, params=plan.params)
    return holdout


def record_success(ds, handle: TrainingHandle, model, run_id: int, status: str, metrics: dict, duration: float,
                   best_epoch: int | None, save: bool, **run_values) -> None:
    """Save the run's model beside the project, close the run in the store, and tell the subscribers."""
    model_path = str(model.save(ds.home / "models" / f"run-{run_id}")) if save else None
    ds._update_run(run_id, status=status, finished_at=time.time(), duration_s=duration, metrics=metrics,
                   model_path=model_path, **run_values)
    handle.model, handle.status = model, status
    handle.emit(E.TrainEnded(run_id, status, metrics, duration, best_epoch,
                             refit_on_all=model.config.get("refit_on_all")))


def record_failure(ds, handle: TrainingHandle, run_id: int, t0: float, error: BaseException) -> None:
    """Mark the run failed in the store and on the handle, and tell the subscribers."""
    duration = time.perf_counter() - t0
    message = f"{type(error).__name__}: {error}"
    ds._update_run(run_id, status="failed", finished_at=time.time(), duration_s=duration, error=message)
    handle.status, handle.error = "failed", error
    handle.emit(E.TrainEnded(run_id, "failed", {}, duration, None, message))
