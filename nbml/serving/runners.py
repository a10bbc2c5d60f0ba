"""What runs the model: ONNX Runtime on the CPU, torch on a GPU. Both take uint8 [N, S, S, 3] and return float32
probabilities [N, classes]; the server does not know which one it has."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["OnnxRunner", "TorchRunner", "choose_runner", "make_runner", "default_threads"]


def default_threads() -> int:
    """ONNX Runtime's intra-op threads: the cores this process may use (decoding shares them; spinning is off)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class OnnxRunner:
    """`model.onnx` in an ONNX Runtime session on the CPU."""
    kind = "onnxruntime"

    def __init__(self, folder: Path, config: dict, threads: int | None = None):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads spinning for work would take the CPU from the threads decoding the next images.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        onnx = config.get("onnx") or {}
        path = Path(folder) / onnx.get("file", "model.onnx")
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: serve a folder written by model.export(folder)")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input, self.output = onnx.get("input", "pixels"), onnx.get("output", "probabilities")
        self.device = "cpu"
        self.threads = options.intra_op_num_threads

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output], {self.input: batch})[0]

    def __repr__(self) -> str:
        return f"OnnxRunner(cpu, {self.threads} threads)"


class TorchRunner:
    """The safetensors weights in torch, through `Model`'s own inference path (bf16 autocast on CUDA)."""
    kind = "torch"

    def __init__(self, folder: Path, config: dict, device: str = "cuda"):
        from ..model import load
        self.model = load(folder, device=device)
        self.device = str(self.model.device)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.model._probs_u8(batch).astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return f"TorchRunner({self.device})"


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def choose_runner(device: str = "auto", cuda_available: bool | None = None) -> tuple[str, str]:
    """(runner kind, device) for a `device` setting: "auto" picks torch on CUDA when there is a GPU, else ONNX
    Runtime on the CPU; "cpu" is ONNX Runtime; "cuda", "cuda:1", "mps" are torch; "torch-cpu" is torch on the CPU."""
    device = str(device or "auto").lower()
    if device == "auto":
        if cuda_available is None:
            cuda_available = _cuda_available()
        return ("torch", "cuda") if cuda_available else ("onnxruntime", "cpu")
    if device in ("cpu", "onnx", "onnxruntime"):
        return "onnxruntime", "cpu"
    if device == "torch-cpu":
        return "torch", "cpu"
    if device.startswith(("cuda", "mps")):
        return "torch", device
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N', 'mps' or 'torch-cpu', not {device!r}")


def make_runner(folder: Path, config: dict, device: str = "auto", threads: int | None = None):
    kind, dev = choose_runner(device)
    if kind == "onnxruntime":
        return OnnxRunner(folder, config, threads)
    return TorchRunner(folder, config, dev)
