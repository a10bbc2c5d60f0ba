"""Serving an exported model: `nbml.serve(folder)`, `model.serve()`, `nbml serve DIR`.

    server.py   serve(), the background ServerHandle, the foreground run for the CLI
    app.py      the Starlette application: /predict, the Open Inference Protocol, /metrics, limits, token
    v2.py       the Open Inference Protocol (KServe v2) wire format, Triton's binary tensor extension included
    batcher.py  dynamic batching of concurrent requests
    runners.py  ONNX Runtime on the CPU, torch on a GPU
    decode_image.py, decode_text.py
                the kind's half, picked by the artifact's kind (app.inputs_for): request bodies, preparing a
                batch (decoding images; checking texts, which the runner tokenises), what the log keeps
    metrics.py  Prometheus counters
"""
from .runners import choose_runner
from .server import ServerHandle, run_foreground, serve

__all__ = ["serve", "ServerHandle", "run_foreground", "choose_runner"]
