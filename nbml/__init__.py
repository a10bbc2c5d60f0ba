"""nbml: label, train, inspect, fix and serve image classifiers from a Jupyter notebook.

`import nbml` stays light: torch, fastai and timm load on first use of the names that need them.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Dataset": "nbml.store",
    "IngestReport": "nbml.ingest",
    "ImageError": "nbml._imaging",
    "train": "nbml.train",
    "TrainingHandle": "nbml.train",
    "Model": "nbml.model",
    "Evaluation": "nbml.model",
    "load": "nbml.model",
    "backbones": "nbml.backbones",
    "events": "nbml.events",
    "datasets": "nbml.datasets",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nbml' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if module.endswith("." + name) else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
