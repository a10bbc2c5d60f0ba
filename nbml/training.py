"""`nbml.train`: fine-tune a network on a Dataset with defaults for people new to ML, or fit a head on its cached
embeddings (`mode="head"`), in this process or several (`devices=`), with a live monitor in a notebook.

This module chooses; the loop itself is nbml.training_loop, the head nbml.head_training, the processes
nbml.distributed.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from . import events as E
from .learner import SCRATCH_LR  # noqa: F401  (re-exported: old imports)
from .training_loop import TrainingHandle, prepare, run as _run

__all__ = ["train", "TrainingHandle"]


def train(ds, arch: str | None = None, epochs: int | None = None, size: int | None = None, bs: int | None = None,
          lr: float | None = None, pretrained="auto", background: bool | None = None, *, weights=None,
          freeze_epochs: int | None = None, valid_pct: float = 0.2, seed: int | None = None, device=None,
          augment="auto", on_event: Callable | list | None = None, quiet: bool = False, save: bool = True,
          mode: str = "finetune", devices=None):
    """Fine-tune a network on the labelled items of `ds`; returns an `nbml.Model`.

    Images: `arch` is a timm name (default resnet18). Texts: a sentence encoder (all-MiniLM-L6-v2, or
    `arch="hf:<repo or folder>"`) fine-tuned on pairs of the labelled texts, then a logistic head; without one,
    `arch="wordllama-tfidf"`, nbml's static model (see nbml.kinds.text_setfit).

    `mode="head"` instead fits only a linear head on the cached embeddings (pretrained `arch`, else the body of
    the latest trained model): about a second once the embeddings exist; see `nbml.head_training.train_head`.

    Defaults: a stratified validation split when none is set; with pretrained weights, one frozen epoch (the
    body's features computed once, the learning rate from fastai's `lr_find` on them) then `epochs` unfrozen ones;
    from random weights no frozen phase and a learning rate of 1e-3 (`SCRATCH_LR`); image size and augmentation
    from the images; CUDA then MPS then CPU, with bf16, channels_last and the decoded images held in GPU memory
    when they fit on CUDA.
    `pretrained="auto"` goes on from random initialisation, with one warning, when no weights can be had;
    `weights="file.safetensors"` loads a local checkpoint. With `background=True` training runs in a thread
    and a `TrainingHandle` comes back at once. Each run is recorded in the store (`ds.runs()`).

    In a notebook (unless `quiet` or `on_event` is given) a live monitor with a Stop button is shown and
    training runs in the background; the handle returned acts as the model once training ends
    (`handle.evaluate()` waits for it). Elsewhere a line per epoch is printed and the Model is returned.

    `devices=N` (or `"all"` GPUs) trains in N worker processes started by torchrun, with DistributedDataParallel:
    `bs` is per process, events, Stop and the run record work as in one process (see `nbml.distributed`).

    Parameters not named above: `lr` (None: chosen as said above), `freeze_epochs` (epochs with the body frozen; None: 1
    with pretrained weights, else 0), `valid_pct` (the share of each class put in `valid` when the labelled items have
    no split yet), `seed` (makes the split, the order and the initialisation repeatable), `device` ('cuda', 'mps',
    'cpu'; None: the best there is), `augment` (images: 'auto' picks from the images' size, None or False for none),
    `save` (keep the run's model beside the project so `ds.load_run()` finds it).

    Raises:
        TypeError: `ds` is not an nbml.Dataset.
        ValueError: `mode` or `pretrained` is not one of its values, no item is labelled, fewer than two classes are,
            the validation split is empty, or `devices` asks for what this machine lacks (or is given with mode='head').
        nbml.DistributedTrainingError: with `devices=N`, a worker failed or died.

    Examples:
        >>> model = nbml.train(ds, epochs=3)
        >>> handle = nbml.train(ds, arch="convnext_tiny", background=True)
        >>> model = nbml.train(ds, mode="head")
    """
    if mode == "head":
        if devices not in (None, 1):
            raise ValueError("mode='head' fits a linear head in one process in about a second; devices= is for "
                             "mode='finetune'")
        from .head_training import train_head
        return train_head(ds, arch or "resnet18", epochs, size, bs, lr, pretrained, background, weights=weights,
                          freeze_epochs=freeze_epochs, valid_pct=valid_pct, seed=seed, device=device, augment=augment,
                          on_event=on_event, quiet=quiet, save=save)
    if mode != "finetune":
        raise ValueError(f"mode must be 'finetune' (the default: train the whole network) or 'head' (fit a head on "
                         f"the cached embeddings), not {mode!r}")
    run = _run
    if devices not in (None, 1):
        from .distributed import launcher
        run, seed = launcher(devices, dict(arch=arch, epochs=epochs, size=size, bs=bs, lr=lr, pretrained=pretrained,
                                           weights=weights, freeze_epochs=freeze_epochs, valid_pct=valid_pct,
                                           seed=seed, device=device, augment=augment, save=save))
    from ._thirdparty import import_fastai
    import_fastai()
    if seed is not None:
        import random
        import torch
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
    plan, notes = prepare(ds, arch, epochs, size, bs, lr, pretrained, weights, freeze_epochs, valid_pct, seed,
                           device, augment, save)
    handle = TrainingHandle()
    subscribers = on_event if isinstance(on_event, (list, tuple)) else [on_event] if on_event else []
    if not subscribers and not quiet:
        from ._notebook import in_notebook
        if in_notebook():
            from IPython.display import display
            from .widgets.monitor import TrainingMonitor
            display(TrainingMonitor(handle))
            background = True if background is None else background
        else:
            subscribers = [E.ConsolePrinter()]
    for fn in subscribers:
        handle.subscribe(fn)
    if not background:
        return run(plan, handle, notes)

    def target():
        try:
            run(plan, handle, notes)
        except BaseException:
            pass   # kept on the handle; wait() raises it

    handle.thread = threading.Thread(target=target, name="nbml-train", daemon=True)
    handle.thread.start()
    return handle
