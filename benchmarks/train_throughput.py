"""Stock fastai against nbml.train on the same generated JPEG folder, same backbone, size and batch size.

Stock fastai: `ImageDataLoaders.from_folder` (Resize + aug_transforms), `vision_learner`, `fine_tune(epochs)` with its
default learning rate. nbml: `nbml.train` with its defaults (from random weights: lr 1e-3, no frozen phase). Both
use the same train/valid folders and start from random weights. Prints images per second over the epochs that train
the whole network (validation included), end-to-end time, accuracy per epoch, the time nbml takes to reach stock
fastai's final accuracy, the ratios, and with --raw a bare PyTorch step on device tensors as the ceiling.

    python benchmarks/train_throughput.py --raw               # CPU: resnet18 at 128 px
    python benchmarks/train_throughput.py --arch resnet50 --size 224 --bs 128 --n 8192 --raw   # on a GPU
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import print_machine, print_table  # noqa: E402


def make_folder(root: Path, n: int, size: int, n_classes: int = 10, seed: int = 0) -> tuple[int, int]:
    """Class folders of JPEGs: each class is a shape x colour family drawn at a random place, size and angle
    over a noisy background, so a network has something real to learn. 80% train, 20% valid."""
    import numpy as np
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(seed)
    shapes = ["ellipse", "rectangle", "triangle", "cross", "ring"]
    hues = [(210, 60, 50), (50, 90, 200)]
    counts = {"train": 0, "valid": 0}
    for i in range(n):
        cls = i % n_classes
        split = "valid" if (i // n_classes) % 5 == 0 else "train"
        shape, (r, g, b) = shapes[cls % 5], hues[cls // 5 % 2]
        bg = rng.integers(90, 170, (size, size, 3), dtype=np.uint8)
        img = Image.fromarray(bg)
        d = ImageDraw.Draw(img)
        s = rng.integers(size // 4, size // 2)
        x, y = rng.integers(0, size - s, 2)
        jitter = rng.integers(-40, 40, 3)
        colour = tuple(int(v) for v in np.clip(np.array([r, g, b]) + jitter, 0, 255))
        box = [int(x), int(y), int(x + s), int(y + s)]
        if shape == "ellipse":
            d.ellipse(box, fill=colour)
        elif shape == "rectangle":
            d.rectangle(box, fill=colour)
        elif shape == "triangle":
            d.polygon([(box[0], box[3]), ((box[0] + box[2]) // 2, box[1]), (box[2], box[3])], fill=colour)
        elif shape == "cross":
            w = max(2, s // 5)
            d.rectangle([box[0], y + s // 2 - w, box[2], y + s // 2 + w], fill=colour)
            d.rectangle([x + s // 2 - w, box[1], x + s // 2 + w, box[3]], fill=colour)
        else:
            d.ellipse(box, outline=colour, width=max(2, s // 6))
        out = root / split / f"c{cls}" / f"{i:06d}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        img.save(out, quality=90)
        counts[split] += 1
    return counts["train"], counts["valid"]


def raw_step_rate(arch: str, size: int, bs: int, n_classes: int = 10, steps: int = 30) -> float:
    """Images/s of a bare PyTorch training step on tensors already on the device (bf16 autocast and channels_last
    on CUDA, fused AdamW): the ceiling the data path and the Learner are measured against."""
    import timm
    import torch
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    model = timm.create_model(arch, pretrained=False, num_classes=n_classes).to(dev)
    x = torch.randn(bs, 3, size, size, device=dev)
    if cuda:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, n_classes, (bs,), device=dev)
    opt = torch.optim.AdamW(model.parameters(), 1e-4, **({"fused": True} if cuda else {"foreach": True}))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return steps * bs / (time.perf_counter() - t)


def write_weights(path: Path, arch: str, seed: int = 0) -> Path:
    """A timm checkpoint for `arch` (random weights, seeded) that both sides load as their 'pretrained' start."""
    import timm
    import torch
    from safetensors.torch import save_file
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def run_stock(folder: Path, arch: str, size: int, bs: int, epochs: int, workers: int | None,
              weights: Path | None = None) -> dict:
    from fastai.callback.core import Callback
    from fastai.vision.all import ImageDataLoaders, Resize, accuracy, aug_transforms, vision_learner

    class Clock(Callback):
        order = 90

        def before_fit(self):
            fits.append(time.perf_counter())

        def before_epoch(self):
            self.t_epoch = time.perf_counter()

        def after_epoch(self):
            now = time.perf_counter()
            phase = "frozen" if len(fits) == 1 else "unfrozen"
            rows.append((now - t0, float(self.recorder.values[-1][2]), phase, now - self.t_epoch))

    rows: list[tuple[float, float, str, float]] = []     # (elapsed, accuracy, phase, epoch seconds)
    fits: list[float] = []
    t0 = time.perf_counter()
    extra = {} if workers is None else {"num_workers": workers}
    dls = ImageDataLoaders.from_folder(folder, train="train", valid="valid", item_tfms=Resize(size),
                                       batch_tfms=aug_transforms(), bs=bs, **extra)
    learn = vision_learner(dls, arch, pretrained=False, metrics=accuracy, cbs=[Clock()])
    if weights is not None:      # what pretrained=True would load, from the local file (no download here)
        from safetensors.torch import load_file
        learn.model[0].model.load_state_dict(load_file(str(weights)), strict=False)
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(epochs)
    t1 = time.perf_counter()
    return {"total_s": t1 - t0, "epochs": rows, "n_train": len(dls.train_ds), "device": str(dls.device)}


def run_nbml(folder: Path, arch: str, size: int, bs: int, epochs: int, work: Path, weights: Path | None = None) -> dict:
    import nbml
    from nbml import events as E
    rows: list[tuple[float, float, str, float]] = []
    seen = {"mark": None}
    t0 = time.perf_counter()
    ds = nbml.Dataset(work / "bench.nbml")
    for split in ("train", "valid"):
        report = ds.add_images(folder / split)
        ds.set_split(report.added, split)

    def on_event(e):
        now = time.perf_counter()
        if isinstance(e, E.PhaseStarted):
            seen["mark"] = now
        elif isinstance(e, E.EpochEnded):
            rows.append((now - t0, e.metrics.get("accuracy", float("nan")), e.phase, now - seen["mark"]))
            seen["mark"] = now
        elif isinstance(e, E.TrainStarted):
            seen["n_train"], seen["device"] = e.n_train, e.device

    start = {"weights": weights} if weights is not None else {"pretrained": False}
    nbml.train(ds, arch=arch, size=size, bs=bs, epochs=epochs, on_event=on_event, save=False, **start)
    t1 = time.perf_counter()
    params = ds.runs().iloc[-1]["params"]
    return {"total_s": t1 - t0, "epochs": rows, "n_train": seen["n_train"], "device": seen["device"],
            "freeze_epochs": params["freeze_epochs"], "lr": params["lr"]}


def full_rate(r: dict) -> float:
    """Images/s over the epochs that train the whole network (their validation included)."""
    full = [secs for _, _, phase, secs in r["epochs"] if phase == "unfrozen"]
    return r["n_train"] * len(full) / sum(full)


def time_to(rows, target: float) -> float | None:
    return next((t for t, acc, _, _ in rows if acc >= target), None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--n", type=int, default=1000, help="images generated (80%% train)")
    p.add_argument("--epochs", type=int, default=4, help="fine_tune(epochs) for stock; the same for nbml")
    p.add_argument("--workers", type=int, default=None, help="stock fastai DataLoader workers (default: fastai's)")
    p.add_argument("--raw", action="store_true", help="also time a bare PyTorch step on tensors on the device")
    p.add_argument("--weights", action="store_true",
                   help="both sides start from the same local checkpoint treated as pretrained weights (random values: "
                        "no weights can be downloaded here), so both run fine-tuning's frozen phase")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    print_machine(f"training throughput: stock fastai vs nbml.train ({args.arch}, {args.size}px, batch {args.bs})")
    from fastai.torch_core import defaults
    workers = args.workers
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        n_train, n_valid = make_folder(tmp / "data", args.n, max(args.size, 160))
        print(f"generated {n_train} train + {n_valid} valid JPEGs in {time.perf_counter() - t:.1f}s; "
              f"torch threads {torch.get_num_threads()}, stock DataLoader workers "
              f"{workers if workers is not None else defaults.cpus}\n")
        weights = write_weights(tmp / f"{args.arch}.safetensors", args.arch) if args.weights else None
        stock = run_stock(tmp / "data", args.arch, args.size, args.bs, args.epochs, workers, weights)
        ours = run_nbml(tmp / "data", args.arch, args.size, args.bs, args.epochs, tmp, weights)
    raw = raw_step_rate(args.arch, args.size, args.bs) if args.raw else None
    target = stock["epochs"][-1][1]
    reach = time_to(ours["epochs"], target)
    rows = []
    for name, r in (("stock fastai fine_tune", stock), ("nbml.train defaults", ours)):
        rows.append([name, r["device"], f"{full_rate(r):.1f}", f"{r['total_s']:.1f}", f"{r['epochs'][-1][1]:.4f}",
                     " ".join(f"{acc:.2f}{'f' if phase == 'frozen' else ''}" for _, acc, phase, _ in r["epochs"])])
    print_table(["run", "device", "img/s (full-network epochs)", "end-to-end s", "final acc",
                 "accuracy per epoch (f: body frozen)"], rows)
    start = ("the same local checkpoint, loaded as pretrained weights" if args.weights else
             "random initialisation (no pretrained weights)")
    print(f"\nnbml: lr {ours['lr']:.2e}, frozen epochs {ours['freeze_epochs']}; both sides started from {start}")
    print(f"img/s ratio nbml / stock: {full_rate(ours) / full_rate(stock):.2f}x")
    if raw:
        print(f"bare PyTorch step on device tensors: {raw:.1f} img/s; stock {full_rate(stock) / raw:.0%} of it, "
              f"nbml {full_rate(ours) / raw:.0%} (epochs include validation)")
    print(f"end-to-end ratio stock / nbml: {stock['total_s'] / ours['total_s']:.2f}x")
    if reach is None:
        print(f"nbml did not reach stock fastai's final accuracy {target:.4f}")
    else:
        print(f"time to stock's final accuracy {target:.4f}: stock {stock['total_s']:.1f}s, nbml {reach:.1f}s "
              f"-> {stock['total_s'] / reach:.2f}x")


if __name__ == "__main__":
    main()
