"""nbml: label, train, inspect, fix and serve classifiers of images, texts and table rows from a Jupyter notebook.

`import nbml` stays light: torch, fastai and timm load on first use of the names that need them.
"""
from __future__ import annotations

import importlib

from .notices import install as _install_notices

__version__ = "0.1.0"

# public name -> (module that defines it, attribute; None for the module itself)
_EXPORTS = {
    "Dataset": ("nbml.dataset", "Dataset"),
    "UndoConflictError": ("nbml.store", "UndoConflictError"),
    "Agreement": ("nbml.agreement", "Agreement"),
    "IngestReport": ("nbml._report", "IngestReport"),
    "ImageError": ("nbml._imaging", "ImageError"),
    "NoBackboneError": ("nbml.backbone", "NoBackboneError"),
    "train": ("nbml.training", "train"),
    "TrainingHandle": ("nbml.training", "TrainingHandle"),
    "DistributedTrainingError": ("nbml.distributed", "DistributedTrainingError"),
    "Model": ("nbml.model", "Model"),
    "Evaluation": ("nbml.model", "Evaluation"),
    "Prediction": ("nbml.model", "Prediction"),
    "load": ("nbml.model", "load"),
    "backbones": ("nbml.pretrained", "backbones"),
    "PretrainedWeightsWarning": ("nbml.pretrained", "PretrainedWeightsWarning"),
    "NbmlWarning": ("nbml.notices", "NbmlWarning"),
    "hardware_report": ("nbml.hardware", "hardware_report"),
    "events": ("nbml.events", None),
    "datasets": ("nbml.datasets", None),
    "ExportError": ("nbml.kinds.base", "ExportError"),
    "serve": ("nbml.serving", "serve"),
    "predict_files": ("nbml.batch_predict", "predict_files"),
    "monitor": ("nbml.monitoring", "monitor"),
}

__all__ = ["__version__", *_EXPORTS]

_install_notices()     # nbml's warnings as one line, without a file and source line


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nbml' has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
