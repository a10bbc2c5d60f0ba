"""The fastai Learner every kind trains with, and the plan of a run: below the kinds (which build their Learner
with `basic_learner`) and the training loop (nbml.training_loop), so neither imports the other's layer."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["Plan", "default_bs", "basic_learner", "adamw", "keep_losses_on_device", "learner_cbs", "SCRATCH_LR"]


@dataclass
class Plan:
    ds: object
    arch: str
    frame: object                 # training_items() of train + valid
    classes: list
    size: int
    bs: int
    epochs: int
    freeze_epochs: int
    lr: float | None
    device: object
    net: object
    weights_source: str
    mean: tuple
    std: tuple
    augment: object
    seed: int | None
    save: bool
    params: dict = field(default_factory=dict)
    default_lr: float | None = None   # the kind's learning rate when none is given (else lr_find / SCRATCH_LR)
    dist: object = None               # this process's rank in a distributed run (nbml.distributed), else None
    handle: object = None             # the run's TrainingHandle: a kind's own extra work checks Stop
    threads: int | None = None        # torch's intra-op threads for the run (a kind's small network: 1), else as set
    fit_options: dict = field(default_factory=dict)   # the kind's fit_one_cycle settings (a sentence encoder: SetFit's)


def default_bs(n_train: int) -> int:
    return int(max(2, min(64, 2 ** int(math.log2(max(n_train // 4, 2))))))


def learner_cbs(plan: Plan, stop_cb) -> list:
    """The callbacks every Learner of a run starts with: its own Stop (a fastai callback reads `self.training` from
    the Learner it was last added to, so one instance shared by the head's Learner and the whole network's never
    stopped the unfrozen phase), and in a distributed run the one that wraps the network in DistributedDataParallel
    and gives each process its shard of every epoch."""
    stop = type(stop_cb)()
    return [stop] if plan.dist is None else [stop, plan.dist.callback()]


def basic_learner(plan: Plan, train_dl, valid_dl, net, stop_cb, splitter):
    """The fastai Learner every kind trains with: cross-entropy, accuracy, AdamW, no progress bar, losses kept on
    the device; the kind gives the loaders, the network and how its parameters split into body and head."""
    import fastai.callback.fp16  # noqa: F401  (patches Learner.to_bf16)
    import fastai.callback.schedule  # noqa: F401  (patches Learner.lr_find and fit_one_cycle)
    from fastai.callback.progress import ProgressCallback
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    learn = Learner(DataLoaders(train_dl, valid_dl), net, loss_func=CrossEntropyLossFlat(), metrics=accuracy,
                    opt_func=adamw(plan.device.type == "cuda"), splitter=splitter, path=plan.ds.home / "tmp",
                    model_dir=".", cbs=learner_cbs(plan, stop_cb))
    learn.remove_cb(ProgressCallback)
    learn.logger = lambda *a, **k: None
    keep_losses_on_device(learn)
    return learn


# The learning rate for a network trained from random weights. lr_find's valley is unreliable on an untrained
# network: on generated shapes it chose 2e-4 to 7e-4, and 1e-3 trained better every time (resnet50 on an H100:
# 0.76 against 0.29 accuracy after 4 epochs; resnet18 on 2 CPU cores: 0.35 against 0.31). It also saves the search,
# which costs about an epoch here (every step a full forward and backward pass).
SCRATCH_LR = 1e-3


def keep_losses_on_device(learn) -> None:
    """fastai's Recorder copies the smoothed loss to the CPU after every batch, which makes the host wait for the
    GPU at each step. Here it stays on the device; the recorded losses come to the CPU once, at the end of a fit."""
    import torch
    from fastai.callback.core import Callback
    from fastai.learner import AvgSmoothLoss

    class DeviceSmoothLoss(AvgSmoothLoss):
        def accumulate(self, learn):
            loss = learn.loss.detach().float().mean()
            if self.count == 0 or self.val.device != loss.device:
                self.val = torch.zeros((), device=loss.device)
            self.count += 1
            self.val = torch.lerp(loss, self.val, self.beta)

    class LossesToCpu(Callback):
        order = -10      # before LRFinder reads the losses in its after_fit

        def after_fit(self):
            losses = list(self.recorder.losses)
            if losses and isinstance(losses[0], torch.Tensor) and losses[0].device.type != "cpu":
                self.recorder.losses = list(torch.stack(losses).cpu().unbind(0))

    learn.recorder.smooth_loss = DeviceSmoothLoss(beta=learn.recorder.smooth_loss.beta)
    learn.add_cb(LossesToCpu())


def adamw(cuda: bool):
    """torch's AdamW (fused on CUDA) behind fastai's OptimWrapper, with fastai's Adam defaults (betas 0.9/0.99,
    eps 1e-5, decoupled weight decay 0.01): one kernel per step instead of fastai's per-parameter Python loop."""
    from functools import partial
    import torch
    from fastai.optimizer import OptimWrapper
    extra = {"fused": True} if cuda else {"foreach": True}
    return partial(OptimWrapper, opt=partial(torch.optim.AdamW, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01,
                                             **extra))
