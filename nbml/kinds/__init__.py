"""One module per kind of item. Everything that differs between images and texts lives behind the same small set
of functions in `nbml.kinds.<kind>`; the store, training loop, analysis, widgets, export and server ask the kind:

- ingest: `add(ds, ...)` turns the user's input into `NewItem`s with a reason for each one refused;
- `preview(ds, rows, size)`: what the grid shows for each item (a thumbnail, a text snippet);
- features: `pretrained_backbone(...)`, `model_backbone(config, body)` and `encode(ds, backbone, frame, bs)` give
  the embeddings the data-centric loop works on;
- training: `plan(ds, frame, ...)` (network and defaults) and `make_learner(plan, frame, stop_cb)` (the fastai
  Learner with this kind's loaders); the loop itself (events, Stop, best epoch, runs) is shared;
- a model's inputs: `item_probs(model, frame)`, `predict_inputs(model, values)`, `build_net(config)`;
- `export(model, folder, ...)` and the server's `decode_request` / `runner` pieces.
"""
from __future__ import annotations

import importlib

__all__ = ["KINDS", "get", "of"]

KINDS = ("image", "text", "table")


def get(name: str | None):
    """The module of a kind of item ('image' when None: projects and models from before kinds were named)."""
    name = name or "image"
    if name not in KINDS:
        raise ValueError(f"unknown kind of item {name!r}; nbml knows {list(KINDS)}")
    return importlib.import_module(f"nbml.kinds.{name}")


def of(obj):
    """The kind module of a project (its items) or a model (its config)."""
    config = getattr(obj, "config", None)
    if isinstance(config, dict):
        return get(config.get("kind"))
    return get(obj.kind)
