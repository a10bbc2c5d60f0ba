"""Serving an exported model: `nbml.serve(folder)`, `model.serve()`, `nbml serve DIR`.

    server.py   serve(), the background ServerHandle, the foreground run for the CLI
    app.py      the Starlette application: /predict, the Open Inference Protocol, /metrics, limits, token
    v2.py       the Open Inference Protocol (KServe v2) wire format, Triton's binary tensor extension included
    batcher.py  dynamic batching of concurrent requests
    runners.py  ONNX Runtime on the CPU, torch on a GPU
    registry.py the running servers, for the Jupyter extension
    metrics.py  Prometheus counters

The kind's half of the server (request bodies, preparing a batch, what the log keeps) is the kind's serving module,
found through the registry (`nbml.kinds.serving(kind)`: nbml/kinds/<kind>_serving.py for nbml's own kinds).

The names below load on first use, so `import nbml.serving.v2` (say) does not start the server's imports.
"""
from __future__ import annotations

import importlib

_EXPORTS = {"serve": "server", "ServerHandle": "server", "run_foreground": "server", "choose_runner": "runners"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nbml.serving' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"nbml.serving.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
