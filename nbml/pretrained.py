"""The curated table of recommended timm backbones, and loading a backbone's weights (hub cache or local file)."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from .notices import NbmlWarning

__all__ = ["backbones", "create_body", "BACKBONES", "PretrainedWeightsWarning"]

# Kept as data so it is easy to update. `tag` is the timm pretrained tag used when weights are fetched.
BACKBONES = [
    dict(arch="resnet18", tag="a1_in1k", tier="fastest", input_size=224, params_m=11.7,
         pretraining="ImageNet-1k", licence="Apache-2.0"),
    dict(arch="mobilenetv3_large_100", tag="ra_in1k", tier="fastest", input_size=224, params_m=5.5,
         pretraining="ImageNet-1k", licence="Apache-2.0"),
    dict(arch="efficientnet_b0", tag="ra_in1k", tier="fast", input_size=224, params_m=5.3,
         pretraining="ImageNet-1k", licence="Apache-2.0"),
    dict(arch="resnet50", tag="a1_in1k", tier="balanced", input_size=224, params_m=25.6,
         pretraining="ImageNet-1k", licence="Apache-2.0"),
    dict(arch="convnext_tiny", tag="fb_in22k_ft_in1k", tier="balanced", input_size=224, params_m=28.6,
         pretraining="ImageNet-22k, fine-tuned on ImageNet-1k", licence="Apache-2.0"),
    dict(arch="vit_small_patch14_dinov2", tag="lvd142m", tier="accurate", input_size=518, params_m=22.1,
         pretraining="LVD-142M (self-supervised DINOv2)", licence="Apache-2.0"),
]


class PretrainedWeightsWarning(NbmlWarning):
    """Training goes on from random initialisation because no pretrained weights could be had."""


def backbones(kind: str = "image"):
    """A short table of recommended backbones for `kind` ('image': timm; 'text': sentence encoders, then the static
    model): speed tier, input size, pretraining, licence, and where the weights come from (for texts, whether each
    is available here).

    Raises:
        ValueError: `kind` is not a kind nbml knows, or one it recommends no backbones for (tables).

    Examples:
        >>> nbml.backbones()
        >>> nbml.backbones("text")
    """
    import pandas as pd
    from . import kinds
    if kind == "image":
        return pd.DataFrame(BACKBONES)
    if kind not in kinds.registered():
        raise ValueError(f"kind must be one of {sorted(kinds.registered())}, not {kind!r}")
    rows = kinds.get(kind).recommended_backbones
    if rows is None:
        raise ValueError(f"nbml recommends no backbones for {kind}s: they are read by their own features")
    return pd.DataFrame(rows())


def _pretrained_tag(arch: str) -> str:
    if "." in arch:
        return arch
    for row in BACKBONES:
        if row["arch"] == arch:
            return f"{arch}.{row['tag']}"
    return arch


def _read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    if path.suffix == ".pkl":
        raise ValueError(f"{path} is a pickle; give weights as .safetensors or a torch state dict (.pth, .bin)")
    import torch
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    return obj


def load_weights_file(body, path: str | os.PathLike) -> int:
    """Copy the tensors of a checkpoint file into `body` (classifier keys ignored); returns how many matched."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    state = _read_state_dict(path)
    own = body.state_dict()
    matched = {}
    for key, value in state.items():
        for prefix in ("", "module.", "model.", "body.", "0."):
            k = key[len(prefix):] if prefix and key.startswith(prefix) else key
            if k in own and own[k].shape == value.shape:
                matched[k] = value
                break
    if len(matched) < 0.5 * len(own):
        raise ValueError(f"{path} does not look like weights for this backbone: only {len(matched)} of "
                         f"{len(own)} tensors match by name and shape")
    body.load_state_dict(matched, strict=False)
    return len(matched)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """False when HF_HUB_OFFLINE is set or the hub's host does not answer within `timeout` seconds."""
    import socket
    from urllib.parse import urlparse
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _cached_weights(tag: str) -> str:
    """The weights file of a timm pretrained tag in the local huggingface cache, or LookupError."""
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg
    cfg = get_pretrained_cfg(tag)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        raise LookupError(f"timm has no hub weights listed for {tag}")
    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(repo, filename)
        if isinstance(path, str):
            return path
    raise LookupError(f"{repo} is not in the local huggingface cache and the hub cannot be reached")


def model_kwargs(name: str) -> dict:
    """timm keyword arguments so a backbone accepts any input size (vision transformers fix theirs otherwise)."""
    return {"dynamic_img_size": True} if name.startswith(("vit", "deit", "eva", "beit")) else {}


def fit_size(arch: str, size: int) -> int:
    """The nearest input size the backbone accepts (a multiple of the patch size for patch-14 transformers)."""
    import re
    match = re.search(r"patch(\d+)", arch)
    patch = int(match.group(1)) if match else 1
    return max(patch, patch * round(size / patch)) if patch > 1 else size


def create_body(arch: str, pretrained="auto", weights: str | os.PathLike | None = None):
    """A timm backbone returning pooled features [batch, num_features], and where its weights came from.

    pretrained: True (fail without weights), False (random init), "auto" (try, else warn and go on).
    weights: a local .safetensors / .pth file, used instead of the hub.
    """
    import timm
    name = arch.split(".")[0]
    if name not in timm.list_models() and not timm.is_model(name):
        raise ValueError(f"unknown backbone {arch!r}; see nbml.backbones() or timm.list_models()")
    if weights is not None:
        body = timm.create_model(name, pretrained=False, num_classes=0, **model_kwargs(name))
        load_weights_file(body, weights)
        return body, f"file:{Path(weights).expanduser().resolve()}"
    if pretrained in (False, None):
        return timm.create_model(name, pretrained=False, num_classes=0, **model_kwargs(name)), "random"
    tag = _pretrained_tag(arch)
    try:
        if _hub_reachable():
            body = timm.create_model(tag, pretrained=True, num_classes=0, **model_kwargs(name))
        else:   # offline: the huggingface cache only, without minutes of network retries
            body = timm.create_model(tag, pretrained=True, num_classes=0, **model_kwargs(name),
                                     pretrained_cfg_overlay=dict(file=_cached_weights(tag)))
        return body, f"timm:{tag}"
    except Exception as e:   # offline, not cached, hub error: all mean "no weights"
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}" if str(e) else type(e).__name__
        if pretrained is True:
            raise RuntimeError(f"could not load pretrained weights for {tag} ({reason}). Connect once so timm "
                               f"caches them, or pass weights='path/to/file.safetensors'.") from None
    offline = os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0")
    warnings.warn(
        f"No pretrained weights for {tag} could be loaded ({'HF_HUB_OFFLINE is set' if offline else reason}). "
        f"Training starts from random initialisation, which needs more epochs and usually ends far less accurate "
        f"(often tens of points on small datasets). To fix: run once with network access so timm caches the "
        f"weights, or pass weights='path/to/{name}.safetensors'.", PretrainedWeightsWarning, stacklevel=3)
    return timm.create_model(name, pretrained=False, num_classes=0, **model_kwargs(name)), "random"
