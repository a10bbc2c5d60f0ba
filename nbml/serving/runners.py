"""What runs the model: ONNX Runtime on the CPU, torch on a GPU. Both take uint8 [N, S, S, 3] and return float32
probabilities [N, classes]; the server does not know which one it has.

torch is imported only for a torch runner: on a machine without a GPU its import alone would cost the server about
450 MiB and two seconds, for nothing (see `gpu_present`)."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

__all__ = ["cpu_session", "OnnxRunner", "TorchRunner", "choose_runner", "make_runner", "default_threads",
           "gpu_present"]


def default_threads() -> int:
    """ONNX Runtime's intra-op threads: the cores this process may use (decoding shares them; spinning is off)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def cpu_session(path, threads: int | None = None):
    """An ONNX Runtime session on the CPU as nbml runs every graph: `threads` intra-op threads (default: the cores
    this process may use), one inter-op, sequential, every graph optimisation, and no spinning: idle threads spinning
    for work would take the CPU from the threads decoding or tokenising the next inputs."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRunner:
    """`model.onnx` in an ONNX Runtime session on the CPU."""
    kind = "onnxruntime"

    def __init__(self, folder: Path, config: dict, threads: int | None = None):
        onnx = config.get("onnx") or {}
        path = Path(folder) / onnx.get("file", "model.onnx")
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: serve a folder written by model.export(folder)")
        self.session = cpu_session(path, threads)
        self.input, self.output = onnx.get("input", "pixels"), onnx.get("output", "probabilities")
        self.precision = onnx.get("precision", "float32")     # int8 after export(..., quantize="int8")
        self.device = "cpu"
        self.threads = threads or default_threads()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output], {self.input: batch})[0]

    def __repr__(self) -> str:
        return f"OnnxRunner(cpu, {self.precision}, {self.threads} threads)"


class TorchRunner:
    """The safetensors weights in torch (bf16 autocast on CUDA), through the kind's `batch_probs`: batches as the
    kind's serving module prepares them. Reads the folder with nbml.model_files, never the `Model` or its widgets."""
    kind = "torch"

    def __init__(self, folder: Path, config: dict, device: str = "cuda"):
        from ..model_files import read_model
        self.model = read_model(folder, device=device)
        if self.model.kind.batch_probs is None:
            raise ValueError(f"a {self.model.kind.NAME} model is served by ONNX Runtime only: use device='cpu'")
        self.device = str(self.model.device)
        self.precision = "bfloat16 autocast" if self.model.device.type == "cuda" else "float32"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.model.kind.batch_probs(self.model, batch).astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return f"TorchRunner({self.device})"


def _hidden_by_environment() -> bool:
    """CUDA_VISIBLE_DEVICES set to nothing (or -1) hides every GPU from CUDA, torch included."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return visible is not None and visible.strip() in ("", "-1")


def _nvidia_smi_lists_a_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        listing = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return listing.returncode == 0 and "GPU" in listing.stdout


def gpu_present(proc: Path = Path("/proc"), dev: Path = Path("/dev")) -> bool:
    """Whether this machine may have a GPU that torch can use, found without importing torch: the NVIDIA driver's
    entries under /proc (or nvidia-smi where there is no /proc), or ROCm's /dev/kfd; False when
    CUDA_VISIBLE_DEVICES hides every device."""
    if _hidden_by_environment():
        return False
    nvidia = proc / "driver" / "nvidia" / "gpus"
    if nvidia.is_dir() and any(nvidia.iterdir()):
        return True
    if (dev / "kfd").exists():
        return True
    return not proc.is_dir() and _nvidia_smi_lists_a_gpu()


def _cuda_available() -> bool:
    """A GPU torch can use. torch is imported only when a GPU is present and torch is installed."""
    if not gpu_present() or importlib.util.find_spec("torch") is None:
        return False
    import torch
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
