"""The networks' building blocks, below every layer that trains or serves: the device, fastai's head, an image
network (a timm body and a head), and ImageNet's normalisation. Nothing here imports the rest of nbml but
`nbml.pretrained`."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["pick_device", "make_head", "build_net", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def pick_device(device=None) -> torch.device:
    """CUDA, then Apple MPS, then CPU, unless one is named."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def make_head(n_features: int, n_classes: int, hidden: int = 512, p: float = 0.5, type: str = "fastai") -> nn.Module:
    """fastai's default head on pooled features: BN, dropout, linear, ReLU, BN, dropout, linear.

    `type="linear"` gives one `nn.Linear` instead (the head `nbml.train(ds, mode="head")` fits on embeddings).
    """
    if type == "linear":
        return nn.Linear(n_features, n_classes)
    if type != "fastai":
        raise ValueError(f"unknown head type {type!r}; expected 'fastai' or 'linear'")
    return nn.Sequential(
        nn.BatchNorm1d(n_features), nn.Dropout(p / 2), nn.Linear(n_features, hidden, bias=False),
        nn.ReLU(inplace=True),
        nn.BatchNorm1d(hidden), nn.Dropout(p), nn.Linear(hidden, n_classes, bias=False))


def build_net(arch: str, n_classes: int, pretrained="auto", weights=None, head: dict | None = None):
    """Sequential(body, head): the body returns pooled features, so embeddings are `net[0](x)`."""
    from .pretrained import create_body
    body, source = create_body(arch, pretrained=pretrained, weights=weights)
    head = head or {"hidden": 512, "p": 0.5}
    return nn.Sequential(body, make_head(body.num_features, n_classes, **head)), source, head
