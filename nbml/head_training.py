"""`nbml.train(ds, mode="head")`: a head fitted on the cached embeddings of the labelled items, behind the
embeddings' backbone, recorded as a run like any other (the fit itself is the kind's `head_model`, on the linear
algebra of nbml.head)."""
from __future__ import annotations

import re
import threading
import time
import warnings

import numpy as np

from . import events as E
from .head import _log_loss

__all__ = ["train_head"]


def train_head(ds, arch: str = "resnet18", epochs=None, size=None, bs=None, lr=None, pretrained="auto",
               background=None, *, weights=None, freeze_epochs=None, valid_pct: float = 0.2, seed=None,
               device=None, augment="auto", on_event=None, quiet: bool = False, save: bool = True,
               C: float | None = None):
    """Fit a linear head on the cached embeddings of the labelled train items; returns an `nbml.Model`.

    The body is the embeddings' backbone (pretrained `arch` when weights can be had, else the body of the latest
    trained model; never a random one), so the model predicts from images. `epochs`, `lr`, `freeze_epochs` and
    `augment` have no meaning here (L-BFGS fits the head to convergence) and are ignored with a warning.
    """
    from .store import Store
    from .training_loop import TrainingHandle
    if not isinstance(ds, Store):
        raise TypeError(f"train() takes an nbml.Dataset, not {type(ds).__name__}")
    ignored = [name for name, value, default in (("epochs", epochs, None), ("lr", lr, None),
                                                 ("freeze_epochs", freeze_epochs, None), ("augment", augment, "auto"))
               if value != default]
    if ignored:
        warnings.warn(f"{', '.join(ignored)} ignored with mode='head': the head is fitted to convergence on the "
                      f"embeddings", stacklevel=3)
    ds.assign_validation_split(valid_pct, seed=42 if seed is None else seed)
    frame = ds.training_items(("train", "valid"))
    if frame.empty:
        raise ValueError("no labelled items to train on: label some first (ds.set_label or ds.label())")
    if frame["label"].nunique() < 2:
        raise ValueError(f"training needs at least two classes with labelled items; found only "
                         f"{sorted(frame['label'].unique())}")
    if not (frame["split"] == "valid").any():
        raise ValueError("the validation split is empty: label at least 4 items per class, or put some items in "
                         "'valid' with ds.set_split(ids, 'valid')")
    from .embeddings import embed, resolve_backbone
    backbone = resolve_backbone(ds, None, arch=arch, size=size, weights=weights, pretrained=pretrained,
                                device=device)
    progress = None if not quiet else False
    if ds._embedding_cache.holds(backbone.model_id):
        # loaded already (by similar, suggest, the grid...): bring them up to date and take the labelled items
        cached = ds._embedding_cache.get(backbone, bs=bs, progress=progress)
        have, wanted = set(cached.ids.tolist()), set(frame["id"].tolist())
        emb = cached.take([i for i in frame["id"].tolist() if i in have])
        emb.warnings = [w for w in cached.warnings                    # only those about the labelled items
                        if (m := re.match(r"item (\d+) ", w)) is None or int(m.group(1)) in wanted]
    else:
        emb = embed(ds, backbone, ids=frame["id"].tolist(), bs=bs, progress=progress)
    handle = TrainingHandle()
    subscribers = on_event if isinstance(on_event, (list, tuple)) else [on_event] if on_event else []
    if not subscribers and not quiet:
        subscribers = [E.ConsolePrinter()]
    for fn in subscribers:
        handle.subscribe(fn)
    if not background:
        return _fit(ds, emb, frame, handle, valid_pct, seed, pretrained, C, save, device)

    def target():
        try:
            _fit(ds, emb, frame, handle, valid_pct, seed, pretrained, C, save, device)
        except BaseException:
            pass   # kept on the handle; wait() raises it

    handle.thread = threading.Thread(target=target, name="nbml-train-head", daemon=True)
    handle.thread.start()
    return handle


def _fit(ds, emb, frame, handle, valid_pct, seed, pretrained, C, save, device):
    from .model import Model, new_config
    from .nets import pick_device
    from .training_loop import record_failure, record_success, refits_on_all, run_name, versions
    t0 = time.perf_counter()
    bb = emb.backbone
    frame = frame.set_index("id").loc[emb.ids].reset_index()      # items without an embedding are left out
    notes = list(emb.warnings)
    counts = frame["label"].value_counts()
    classes = [c for c in ds.classes if c in counts.index]
    target = frame["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    is_train = (frame["split"] == "train").to_numpy()
    if not is_train.any() or is_train.all():
        raise ValueError("after skipping unreadable items, the train or valid split is empty")
    tiny = counts[counts < 2]
    if len(tiny):
        notes.append(f"classes with a single labelled item cannot be learnt well: {list(tiny.index)}")
    snapshot = ds.snapshot(frame)
    params = dict(mode="head", arch=bb.arch, embeddings=bb.model_id, backbone=bb.source, weights=bb.weights,
                  size=bb.size, C=C, pretrained=pretrained, seed=seed, valid_pct=valid_pct,
                  n_train=int(is_train.sum()), n_valid=int((~is_train).sum()), classes=classes)
    run_device = pick_device(device)
    run_id = ds._start_run(bb.arch, params, snapshot, str(run_device), versions())
    handle.run_id, handle.status = run_id, "running"
    try:
        for note in notes:
            warnings.warn(note)
            handle.emit(E.TrainWarning(note))
        from . import kinds
        handle.emit(E.TrainStarted(run_id, bb.arch, str(run_device), bb.model_id, classes, int(is_train.sum()),
                                   int((~is_train).sum()), 1, bb.size, len(frame),
                                   unit=kinds.get(bb.kind).UNIT))
        X = emb.features
        t_fit = time.perf_counter()
        kind = kinds.get(bb.kind)
        net, p_train, p_valid, extra = kind.head_model(ds, bb, X, frame, target, is_train, classes, C)
        holdout = None
        if refits_on_all(kind, len(frame), bb.arch):
            # few labels: once validated, fitted again on every label (see nbml.kinds.text.refit_on_all)
            holdout = dict(zip(frame.loc[~is_train, "id"].astype(int).tolist(), p_valid))
            net, _, _, extra = kind.head_model(ds, bb, X, frame, target, np.ones(len(frame), bool), classes, C)
            params["refit_on_all"] = len(frame)
            extra = {**extra, "refit_on_all": len(frame)}
            ds._update_run(run_id, params=params)
        fit_s = time.perf_counter() - t_fit
        accuracy = float((p_valid.argmax(1) == target[~is_train]).mean())
        metrics = {"accuracy": accuracy}
        elapsed = time.perf_counter() - t0
        history = [dict(epoch=0, phase="head", train_loss=_log_loss(p_train, target[is_train]),
                        valid_loss=_log_loss(p_valid, target[~is_train]), accuracy=accuracy, elapsed_s=elapsed,
                        fit_s=fit_s)]
        handle.emit(E.EpochEnded("head", 0, 1, history[0]["train_loss"], history[0]["valid_loss"], metrics,
                                 elapsed, 0.0))
        fields = dict(arch=bb.arch, size=bb.size, mean=list(bb.mean), std=list(bb.std), head={"type": "linear"})
        fields.update(extra)
        config = new_config(name=run_name(ds, run_id), classes=classes, weights=bb.weights, body=bb.model_id,
                            body_source=bb.source, body_weights=bb.weights, mode="head", run_id=run_id,
                            snapshot_id=snapshot, metrics=metrics, versions=versions(), **fields)
        model = Model(net, config, dataset=ds, device=run_device)
        model.holdout = holdout or {}
        record_success(ds, handle, model, run_id, "completed", metrics, time.perf_counter() - t0, 0, save,
                       history=history)
        return model
    except BaseException as e:
        record_failure(ds, handle, run_id, t0, e)
        raise
    finally:
        handle._done.set()
