"""Images: files on disk, read through the decoded cache, a timm body and fastai's head, uint8 squares on the wire."""
from __future__ import annotations

import os

from ..ingest import Candidate, Progress, display_path, find_candidates, inspect_files
from ..store import SPLITS, NewItem

NAME = "image"


def _new_item(cand: Candidate, split: str | None = None) -> NewItem:
    shown = display_path(cand.path)
    # the exact bytes of the name are kept only for names that are not valid UTF-8
    return NewItem(cand.sha256, shown, cand.label, split, dict(
        path=shown, path_raw=os.fsencode(cand.path) if shown != cand.path else None, size_bytes=cand.size_bytes,
        mtime=cand.mtime, width=cand.width, height=cand.height))


def ingest(ds, candidates, splits: dict | None = None, progress=None, origin: str = "import"):
    """Read and check candidate files, then insert the good ones; each bad one is skipped with its reason."""
    from .._report import IngestReport
    report = IngestReport()
    pbar = Progress("ingest", enabled=progress)
    splits = splits or {}

    def good():
        for cand in inspect_files(candidates, ds.max_pixels, progress=pbar.update):
            if cand.problem:
                report.skipped.append((display_path(cand.path), cand.problem))
            else:
                yield _new_item(cand, splits.get(cand.path))

    ds.insert_items(NAME, good(), report, origin=origin)
    pbar.close(report.summary())
    return report


def add_images(ds, folder_or_paths, label_from="folder", *, progress=None):
    return ingest(ds, find_candidates(folder_or_paths, label_from), progress=progress)


def add_dataframe(ds, df, path_col="path", label_col="label", split_col=None, *, progress=None):
    for col in (path_col, label_col, split_col):
        if col is not None and col not in df.columns:
            raise KeyError(f"column {col!r} is not in the DataFrame (columns: {list(df.columns)})")
    splits, cands = {}, []
    for _, row in df.iterrows():
        label = row[label_col] if label_col else None
        label = None if label is None or (isinstance(label, float) and label != label) else str(label)
        cands.append(Candidate(os.path.abspath(os.fspath(row[path_col])), label=label))
        if split_col and isinstance(row[split_col], str):
            if row[split_col] not in SPLITS:
                raise ValueError(f"split must be one of {SPLITS}, found {row[split_col]!r}")
            splits[cands[-1].path] = row[split_col]
    return ingest(ds, iter(cands), splits=splits, progress=progress)


# -- training -----------------------------------------------------------------------------------------------------
def usable(frame):
    """The items training can read (files that exist), and a note per item left out."""
    from ..data import check_files
    return check_files(frame)


def _default_size(ds, frame, pretrained: bool) -> int:
    import math
    import numpy as np
    dims = ds.df.set_index("id").loc[frame["id"], ["width", "height"]]
    side = float(np.median(np.minimum(dims["width"], dims["height"]))) if len(dims) else 224
    floor = 64 if pretrained else 32
    return int(min(224, max(floor, 32 * math.ceil(side / 32))))


def plan(ds, frame, classes, *, arch, size, bs, pretrained, weights, epochs, freeze_epochs, augment) -> dict:
    """This kind's part of a training plan: a timm body with fastai's head, image size, batch, augmentation."""
    import numpy as np
    from ..data import Augment
    from ..model import build_net
    from ..pretrained import fit_size
    from ..training import IMAGENET_MEAN, IMAGENET_STD, _default_bs
    arch = arch or "resnet18"
    net, source, _ = build_net(arch, len(classes), pretrained=pretrained, weights=weights)
    is_pretrained = source != "random"
    cfg = getattr(net[0], "pretrained_cfg", None) or {}
    size = fit_size(arch, int(size or _default_size(ds, frame, is_pretrained)))
    n_train = int((frame["split"] == "train").sum())
    if augment == "auto":
        dims = ds.df.set_index("id").loc[frame["id"], ["width", "height"]]
        augment = Augment.for_image_size(float(np.median(np.minimum(dims["width"], dims["height"]))))
    elif augment in (None, False):
        augment = None
    return dict(arch=arch, net=net, size=size, bs=int(bs or _default_bs(n_train)),
                epochs=int(epochs if epochs is not None else 4 if is_pretrained else 10),
                freeze_epochs=int(freeze_epochs if freeze_epochs is not None else 1 if is_pretrained else 0),
                weights_source=source, mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
                std=tuple(cfg.get("std", IMAGENET_STD)), augment=augment)


def make_learner(plan, frame, stop_cb):
    """Decoded images (in GPU memory when they fit), the batch loaders and the Learner."""
    import torch
    from ..data import BatchLoader, ImageCache, to_device_images
    from ..training import basic_learner
    cuda = plan.device.type == "cuda"
    array, rows, kept, notes = ImageCache(plan.ds, plan.size).rows(frame)
    on_device = to_device_images(array, rows, plan.device) if cuda else None
    if on_device is not None:
        array, rows = on_device
    frame = frame.iloc[kept].reset_index(drop=True)
    targets = frame["label"].map({c: i for i, c in enumerate(plan.classes)}).to_numpy()
    is_train = (frame["split"] == "train").to_numpy()
    common = dict(mean=plan.mean, std=plan.std, device=plan.device, channels_last=cuda)
    train_dl = BatchLoader(array, rows[is_train], targets[is_train], plan.bs, shuffle=True,
                           drop_last=is_train.sum() > plan.bs, augment=plan.augment, seed=plan.seed, **common)
    valid_dl = BatchLoader(array, rows[~is_train], targets[~is_train], plan.bs * 2, **common)
    if len(train_dl) == 0 or len(valid_dl) == 0:
        raise ValueError("after skipping unreadable items, the train or valid split is empty")
    net = plan.net.to(plan.device)
    if cuda:
        net = net.to(memory_format=torch.channels_last)
    learn = basic_learner(plan, train_dl, valid_dl, net, stop_cb,
                          splitter=lambda m: [list(m[0].parameters()), list(m[1].parameters())])
    if cuda:
        learn.to_bf16()
    # unaugmented passes over train and valid, for the frozen phase's feature cache
    learn.nbml_loaders = (BatchLoader(array, rows[is_train], targets[is_train], plan.bs * 2, **common), valid_dl)
    return learn, frame, notes


def config(plan) -> dict:
    return dict(kind=NAME, head={"hidden": 512, "p": 0.5})


# -- a model's inputs ---------------------------------------------------------------------------------------------
def predict_probs(model, values) -> "np.ndarray":
    """Class probabilities for images given as paths, encoded bytes or Pillow images."""
    import numpy as np
    return model._probs_u8(np.stack([model._square(v) for v in values]))


def item_probs(model, frame, bs: int = 256):
    """Probabilities for store items (through the decoded cache); items that cannot be read are dropped."""
    import numpy as np
    from ..data import ImageCache, check_files
    frame, _ = check_files(frame)
    if frame.empty:
        return frame, np.zeros((0, len(model.classes)), np.float32)
    array, rows, kept, _ = ImageCache(model._need_dataset(), model.size).rows(frame)
    frame = frame.iloc[kept].reset_index(drop=True)
    probs = [model._probs_u8(array[rows[i:i + bs]]) for i in range(0, len(rows), bs)]
    return frame, np.concatenate(probs)


def load_net(folder, config: dict, state: dict):
    from ..model import build_net
    net, _, _ = build_net(config["arch"], len(config["classes"]), pretrained=False, head=config.get("head"))
    net.load_state_dict(state)
    return net


def save_extra(model, folder) -> None:
    pass


def load_extra(model, folder) -> None:
    pass
