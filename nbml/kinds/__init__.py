"""The registry of kinds of item: a name to the module that implements `nbml.kinds.base.Kind` and the light module
that holds its half of the server, both as import paths loaded on first use (as transformers' Auto mappings do).

Generic code (the store's façade, training, embeddings, analysis, export, widgets, serving) reaches a kind only
through `get(name)`, `of(project_or_model)` and `serving(name)`; it never imports a concrete kind. A new kind is one
`register(...)` call and its modules: see the README's Development section.
"""
from __future__ import annotations

import importlib
import threading

__all__ = ["KINDS", "register", "get", "of", "serving", "registered"]

# name -> (the kind's module, its server half: request decoding and runners; no torch, pandas or scikit-learn)
_REGISTRY: dict[str, tuple[str, str]] = {
    "image": ("nbml.kinds.image", "nbml.kinds.image_serving"),
    "text": ("nbml.kinds.text", "nbml.kinds.text_serving"),
    "table": ("nbml.kinds.table", "nbml.kinds.table_serving"),
}
KINDS = ("image", "text", "table")     # the built-in kinds
_CHECKED: set[str] = set()
_LOCK = threading.Lock()


def register(name: str, module: str, serving_module: str) -> None:
    """Add a kind of item: `module` implements `nbml.kinds.base.Kind` (its `NAME` is `name`), `serving_module` holds
    the server's `Inputs` for its artifacts. Both are import paths, imported on first use."""
    if not name or not name.isidentifier():
        raise ValueError(f"a kind's name must be a Python identifier, not {name!r}")
    if name in KINDS and _REGISTRY[name] != (module, serving_module):
        raise ValueError(f"{name!r} is one of nbml's own kinds and cannot be replaced")
    with _LOCK:
        _REGISTRY[name] = (module, serving_module)
        _CHECKED.discard(name)


def registered() -> list[str]:
    """The names of every kind nbml knows now, built-in first."""
    return list(_REGISTRY)


def _entry(name: str | None) -> tuple[str, tuple[str, str]]:
    name = name or "image"
    if name not in _REGISTRY:
        raise ValueError(f"unknown kind of item {name!r}; nbml knows {registered()} (a new kind is added with "
                         f"nbml.kinds.register)")
    return name, _REGISTRY[name]


def get(name: str | None):
    """The module of a kind of item ('image' when None: projects and models from before kinds were named), checked
    once against `nbml.kinds.base.Kind`."""
    name, (module, _) = _entry(name)
    mod = importlib.import_module(module)
    if name not in _CHECKED:
        from .base import check_kind
        check_kind(mod, name)
        _CHECKED.add(name)
    return mod


def serving(name: str | None):
    """The server's half of a kind (its `Inputs`): imported without the kind's own module."""
    _, (_, module) = _entry(name)
    return importlib.import_module(module)


def of(obj):
    """The kind module of a project (its items) or a model (its config)."""
    config = getattr(obj, "config", None)
    if isinstance(config, dict):
        return get(config.get("kind"))
    return get(obj.kind)
