"""A saved model's folder read back: config.json, the safetensors weights, the kind's own files (a tokenizer).
`nbml.load` wraps what this reads in an `nbml.Model`; the server's torch runner uses it as it is, so serving on a GPU
never imports the Model, its widgets or the training stack. Nothing is unpickled."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from . import kinds

__all__ = ["FORMAT", "read_config", "read_model", "is_model"]

FORMAT = "nbml-model"


def read_config(path: Path) -> dict:
    """config.json of an nbml model folder, checked."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} is not an nbml model folder (no config.json)")
    config = json.loads(config_file.read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{config_file} is not an nbml model config (format {config.get('format')!r})")
    return config


def read_model(path, device=None) -> SimpleNamespace:
    """`net` (on `device`, eval mode), `config`, `device`, `kind` and whatever the kind's `load_extra` adds (a
    text model's tokenizer): what a kind's inference functions read of a model."""
    from safetensors.torch import load_file

    from .nets import pick_device
    path = Path(path).expanduser()
    config = read_config(path)
    kind = kinds.get(config.get("kind"))
    device = pick_device(device)
    net = kind.load_net(path, config, load_file(str(path / "model.safetensors"))).to(device).eval()
    loaded = SimpleNamespace(net=net, config=config, device=device, kind=kind, dataset=None,
                             classes=list(config["classes"]))
    if kind.load_extra is not None:
        kind.load_extra(loaded, path)
    return loaded


def is_model(obj) -> bool:
    """An nbml.Model (or what has its parts: a network, its config, predict), recognised without importing
    nbml.model, which the layers below it (embeddings, analysis) must not."""
    return hasattr(obj, "net") and isinstance(getattr(obj, "config", None), dict) and hasattr(obj, "predict")
