"""`nbml.hardware_report(ds)`: measure, on this machine and at the dataset's image size, how fast each recommended
backbone trains and predicts, and estimate the time per epoch and per 1,000 predictions."""
from __future__ import annotations

import time

__all__ = ["hardware_report"]


def _median_rate(step, batch: int, budget_s: float, warmup: int = 1) -> tuple[float, int]:
    """Images per second of `step()` (median over as many repeats as the budget allows), and the repeats run."""
    for _ in range(warmup):
        step()
    times, start = [], time.perf_counter()
    while not times or (time.perf_counter() - start < budget_s and len(times) < 20):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    times.sort()
    return batch / times[len(times) // 2], len(times)


def _measure(arch: str, size: int, bs: int, device, budget_s: float) -> dict:
    import timm
    import torch
    cuda = device.type == "cuda"
    from .pretrained import model_kwargs
    model = timm.create_model(arch, pretrained=False, num_classes=10, **model_kwargs(arch)).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    x = torch.randn(bs, 3, size, size, device=device)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (bs,), device=device)
    opt = torch.optim.AdamW(model.parameters(), 1e-4, **({"fused": True} if cuda else {}))

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def train_step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()

    def infer_step():
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            model(x)
        sync()

    model.train()
    train_rate, n_train = _median_rate(train_step, bs, budget_s * 0.6)
    model.eval()
    infer_rate, _ = _median_rate(infer_step, bs, budget_s * 0.4)
    return {"train_img_s": train_rate, "infer_img_s": infer_rate, "steps": n_train}


def hardware_report(ds=None, *, size: int | None = None, archs=None, bs: int | None = None, device=None,
                    budget_s: float = 45.0, verbose: bool = True):
    """A table, one row per recommended backbone: training and inference images/s measured here, and the
    estimated time per epoch over `ds`'s labelled items and per 1,000 predictions.

    The size is the one `nbml.train` would pick for `ds` (or `size`). The first backbone is always measured (at
    least one step of each kind); a later one is skipped, with the reason in `error`, once `budget_s` has gone by.
    Weights are random: speed does not depend on them.

    `archs`: the timm names to measure (default: nbml's recommended backbones). `bs`: the batch size (64 on CUDA, 4 on
    the CPU). `device`: as for `nbml.train` (default: CUDA, then MPS, then CPU). `verbose`: print a line per backbone as
    it is measured.

    Raises: nothing of its own.

    Examples:
        >>> nbml.hardware_report(ds)
        >>> nbml.hardware_report(size=224, archs=["resnet18"], budget_s=20)
    """
    import numpy as np
    import pandas as pd
    from .nets import pick_device
    from .pretrained import BACKBONES, fit_size
    device = pick_device(device)
    archs = list(archs or [b["arch"] for b in BACKBONES])
    n_items = 1000
    if ds is not None:
        frame = ds.df
        labelled = frame[frame["label"].notna() & (frame["status"] == "ok")]
        n_items = max(len(labelled), 1)
        if size is None and len(labelled):
            side = float(np.median(np.minimum(labelled["width"], labelled["height"])))
            size = int(min(224, max(64, 32 * np.ceil(side / 32))))
    size = int(size or 224)
    bs = int(bs or (64 if device.type == "cuda" else 4))
    per_arch = budget_s / max(len(archs), 1)
    rows = []
    start = time.perf_counter()
    for arch in archs:
        t = time.perf_counter()
        if rows and t - start > budget_s:
            rows.append({"arch": arch, "size": fit_size(arch, size), "error": f"skipped: over the {budget_s:.0f}s budget"})
            continue
        try:
            m = _measure(arch, fit_size(arch, size), bs, device, per_arch)
        except (RuntimeError, ValueError, AssertionError) as e:   # out of memory, or a size the model refuses
            rows.append({"arch": arch, "size": fit_size(arch, size), "error": str(e).splitlines()[0][:120]})
            continue
        rows.append({"arch": arch, "size": fit_size(arch, size), "train_img_s": m["train_img_s"],
                     "infer_img_s": m["infer_img_s"], "epoch_s": n_items / m["train_img_s"],
                     "per_1000_predictions_s": 1000 / m["infer_img_s"], "measured_s": time.perf_counter() - t})
    table = pd.DataFrame(rows)
    table.attrs.update(device=str(device), size=size, bs=bs, items=n_items)
    if verbose:
        print(f"{device} · {size}px · batch {bs} · epoch = {n_items} labelled items")
        print(table.round(2).to_string(index=False))
    return table
