"""`Model.export(dir)`: a self-contained artifact to serve the model anywhere, without pickle.

    dir/
      config.json          backbone, classes, input size, normalisation, preprocessing, ONNX check (nbml.load reads it)
      model.safetensors    the weights
      model.onnx           uint8 RGB NHWC [N, size, size, 3] in, softmax probabilities [N, classes] out; float32, or
                           int8 with `quantize="int8"` when it keeps the validation accuracy (nbml._quantization)
      README.md            the model card: data snapshot, metrics, run, dates, limits
      requirements.txt     what `nbml serve dir` needs
      triton/<name>/       a Triton Inference Server model repository (config.pbtxt, labels.txt, 1/model.onnx)

The ONNX graph does the normalisation and softmax itself, so a server only decodes and resizes. At export, ONNX
Runtime's output is compared with torch's on sample images and the export fails if they differ.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

__all__ = ["export", "ExportError", "QuantizationWarning", "onnx_wrapper", "check_onnx", "model_card",
           "triton_config"]

ONNX_FILE, ONNX_INPUT, ONNX_OUTPUT = "model.onnx", "pixels", "probabilities"
TRITON_MAX_BATCH = 64
PREPROCESSING = {
    "decode": "RGB; EXIF orientation applied; first frame of animations; alpha over white; 16-bit scaled to 8-bit",
    "resize": "shorter side to `size` (bilinear), then centre crop to size x size",
    "input": "uint8 RGB, NHWC [N, size, size, 3]",
    "normalise": "inside the ONNX graph: (pixel / 255 - mean) / std",
    "output": "softmax probabilities [N, len(classes)], in the order of `classes`",
}


class ExportError(RuntimeError):
    """The export could not produce an artifact that predicts what the model predicts."""


class QuantizationWarning(UserWarning):
    """int8 was asked for and not kept: the artifact holds the float32 graph; the message says why."""


def onnx_wrapper(net, mean, std):
    import torch
    from torch import nn

    class OnnxWrapper(nn.Module):
        """uint8 NHWC in, probabilities out: normalisation and softmax inside the graph."""

        def __init__(self):
            super().__init__()
            self.net = net
            self.register_buffer("mean255", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255)
            self.register_buffer("std255", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255)

        def forward(self, pixels):
            x = pixels.permute(0, 3, 1, 2).float()
            return torch.softmax(self.net((x - self.mean255) / self.std255), dim=1)

    return OnnxWrapper().eval()



def safe_name(name: str) -> str:
    """A model name usable in a URL path and as a Triton model folder."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-.")
    return cleaned or "model"


def _export_onnx(wrapper, size: int, path: Path, opset: int) -> str:
    """Write the ONNX file with a dynamic batch axis; returns the exporter used."""
    import torch
    sample = torch.zeros(2, size, size, 3, dtype=torch.uint8)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper, (sample,), input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT], opset_version=opset,
                dynamic_shapes={"pixels": {0: torch.export.Dim("batch", min=1, max=4096)}}, dynamo=True,
                verbose=False)
            program.save(str(path))
        return "torch.export"
    except Exception as dynamo_error:   # some timm models do not trace under torch.export: the TorchScript exporter
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(wrapper, (sample,), str(path), input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                                  dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
                                  opset_version=opset, dynamo=False)
            return "torchscript"
        except Exception as e:
            raise ExportError(f"this model could not be converted to ONNX (torch.export: {dynamo_error}; "
                              f"TorchScript: {e}). Try another backbone, or report the architecture to nbml.") from None


def _sample_images(size: int, n: int = 4, seed: int = 0) -> np.ndarray:
    """Random noise, flat grey and a gradient: inputs that exercise the whole range of pixel values."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    grey = np.full((1, size, size, 3), 128, np.uint8)
    ramp = np.broadcast_to(np.linspace(0, 255, size, dtype=np.uint8)[None, None, :, None], (1, size, size, 3))
    return np.concatenate([noise, grey, ramp])


def check_onnx(wrapper, path: Path, size: int, atol: float) -> dict:
    """Run ONNX Runtime and torch on the same sample images (batches of 1 and of several); raise if they differ."""
    import onnxruntime as ort
    import torch
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = _sample_images(size)
    worst = 0.0
    for batch in (images[:1], images):
        got = session.run([ONNX_OUTPUT], {ONNX_INPUT: batch})[0]
        with torch.inference_mode():
            want = wrapper(torch.from_numpy(batch)).numpy()
        if got.shape != want.shape:
            raise ExportError(f"the ONNX model returned shape {got.shape} where torch returns {want.shape}")
        worst = max(worst, float(np.abs(got - want).max()))
    if not np.isfinite(worst) or worst > atol:
        raise ExportError(f"ONNX Runtime's probabilities differ from torch's by up to {worst:.2e} on sample images "
                          f"(tolerance {atol:.0e}); the exported model would not predict what this model predicts. "
                          f"Try another backbone or opset, or report it to nbml.")
    return {"max_abs_diff": worst, "tolerance": atol, "samples": len(images), "batch_sizes": [1, len(images)]}


def _training_data(model) -> dict | None:
    """The data snapshot the model was trained on: id, item count and class counts per split."""
    snap = model.config.get("snapshot_id")
    if model.dataset is None or not snap:
        return None
    try:
        items = model.dataset.snapshot_items(snap)
    except KeyError:
        return None
    counts = {split: {str(k): int(v) for k, v in group["label"].value_counts().sort_index().items()}
              for split, group in items.groupby("split")}
    total = {str(k): int(v) for k, v in items["label"].value_counts().sort_index().items()}
    return {"snapshot_id": snap, "n_items": int(len(items)), "class_counts": total, "class_counts_by_split": counts}


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def triton_config(name: str, size: int, n_classes: int, max_batch: int = TRITON_MAX_BATCH) -> str:
    """config.pbtxt for Triton's ONNX Runtime backend. Triton feeds tensors, not encoded images: clients (or an
    ensemble with a decoding step) must send uint8 [N, size, size, 3] already resized as `PREPROCESSING` says."""
    return f"""name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch}
input [
  {{
    name: "{ONNX_INPUT}"
    data_type: TYPE_UINT8
    dims: [ {size}, {size}, 3 ]
  }}
]
output [
  {{
    name: "{ONNX_OUTPUT}"
    data_type: TYPE_FP32
    dims: [ {n_classes} ]
    label_filename: "labels.txt"
  }}
]
dynamic_batching {{
  max_queue_delay_microseconds: 2000
}}
version_policy: {{ latest: {{ num_versions: 1 }} }}
"""


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _requirements() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__
    lines = ["# What `nbml serve <this folder>` needs: ONNX Runtime runs the model on the CPU; no torch, no fastai.",
             "#   pip install -r requirements.txt",
             f"#   pip install --no-deps nbml=={__version__}    (nbml's server code without its training stack)"]
    for pkg, floor in (("onnxruntime", "1.18"), ("numpy", "1.24"), ("pillow", "10.0"), ("starlette", "0.40"),
                       ("uvicorn", "0.30"), ("sqlalchemy", "2.0"), ("pandas", "2.0")):
        try:
            lines.append(f"{pkg}>={floor}  # exported with {version(pkg)}")
        except PackageNotFoundError:
            lines.append(f"{pkg}>={floor}")
    return "\n".join(lines) + "\n"


def _fmt_metric(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _quantization_lines(record: dict | None) -> list[str]:
    """The model card's int8 paragraph: what was measured and which graph `model.onnx` holds."""
    if not record:
        return []
    from ._quantization import describe
    lines = ["", "### int8", "", describe(record), "",
             f"Method: {record['method']}. The accuracies are ONNX Runtime's, on the validation items of the project "
             f"at export time."]
    if record["kept"]:
        lines.append("`model.onnx` is the int8 graph (nbml's server and Triton run it on the CPU); the safetensors "
                     "weights, and the torch runner on a GPU, stay float32.")
    return lines


def model_card(config: dict) -> str:
    """README.md of the artifact: what the model is, what it was trained on, how well it did, how to serve it."""
    from . import __version__
    name, classes, size = config["name"], config["classes"], config["size"]
    when = lambda t: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) if t else "unknown"  # noqa: E731
    data = config.get("training_data")
    metrics = config.get("metrics") or {}
    check = config["onnx"]["check"]
    lines = [f"# {name}", "",
             f"An image classifier made with nbml {config['exported_with']}: a `{config['arch']}` backbone "
             f"(timm) with a fastai head, {len(classes)} classes, {size}x{size} px input.", "",
             "## Training", "",
             f"- run id: {config.get('run_id', 'unknown')}",
             f"- trained: {when(config.get('created'))}; exported: {when(config.get('exported'))}",
             f"- backbone weights before training: {config.get('weights', 'unknown')}"]
    if data:
        lines.append(f"- data snapshot: `{data['snapshot_id']}` ({data['n_items']} labelled items)")
        lines += ["", "| class | " + " | ".join(sorted(data["class_counts_by_split"])) + " |",
                  "|---|" + "---|" * len(data["class_counts_by_split"])]
        for c in classes:
            lines.append(f"| {c} | " + " | ".join(str(data["class_counts_by_split"][s].get(c, 0))
                                                  for s in sorted(data["class_counts_by_split"])) + " |")
    else:
        lines.append(f"- data snapshot: `{config.get('snapshot_id') or 'unknown'}` (class counts unavailable: the "
                     f"model was exported without its project)")
    lines += ["", "## Metrics (validation split)", ""]
    lines += [f"- {k}: {_fmt_metric(v)}" for k, v in metrics.items()] or ["- none recorded"]
    lines += _quantization_lines(config["onnx"].get("quantization"))
    lines += ["", "## Input and preprocessing", "",
              f"Classes, in output order: {', '.join(f'`{c}`' for c in classes)}.", ""]
    lines += [f"- {k}: {v}" for k, v in config["preprocessing"].items()]
    lines += [f"- mean {config['mean']}, std {config['std']}", "",
              "## Files", "",
              "- `model.safetensors` + `config.json`: `nbml.load(folder)` (no pickle is ever read)",
              f"- `model.onnx` ({config['onnx'].get('precision', 'float32')}): input `{ONNX_INPUT}` uint8 "
              f"[N, {size}, {size}, 3], output `{ONNX_OUTPUT}` float32 [N, {len(classes)}]; the float32 graph was "
              f"checked at export against torch (largest difference {check['max_abs_diff']:.1e}, tolerance "
              f"{check['tolerance']:.0e}, {check['samples']} sample images)",
              f"- `triton/{name}/`: a Triton Inference Server model repository entry (`config.pbtxt`, `labels.txt`, "
              f"`1/model.onnx`)",
              "- `requirements.txt`: what serving needs", "",
              "## Serving", "",
              "```bash",
              "pip install -r requirements.txt",
              f"pip install --no-deps nbml=={__version__}   # the server without torch and fastai",
              "nbml serve . --host 127.0.0.1 --port 8000",
              "curl -F file=@photo.jpg http://127.0.0.1:8000/predict",
              "```", "",
              "nbml's server takes encoded images (JPEG, PNG, ...) on `POST /predict` and on the Open Inference "
              f"Protocol (`POST /v2/models/{name}/infer`, input `image` BYTES), and decodes and resizes them itself.",
              "",
              "Triton (or KServe with the Triton runtime) runs the ONNX model, which takes tensors, not encoded "
              f"images: point it at `triton/` and send uint8 [N, {size}, {size}, 3] pixels resized as above "
              "(decode in the client, or add a decoding model in front as a Triton ensemble). Its output "
              f"`{ONNX_OUTPUT}` is already softmaxed.", "",
              "## Limits", "",
              f"- The model always answers one of its {len(classes)} classes, even for a picture of something else; "
              "a low confidence is the only sign. Look at low-confidence inputs (`nbml.monitor`, "
              "`ds.add_from_log`).",
              "- It knows only what its training data showed: other cameras, lighting or backgrounds can lower "
              "accuracy without warning. The metrics above come from the validation split of the same data.",
              ]
    if data and min(data["class_counts"].values(), default=0) < 20:
        lines.append("- Some classes had fewer than 20 labelled items: treat their predictions with care.")
    return "\n".join(lines) + "\n"


QUANTIZE = (None, "int8")
CALIBRATION_ITEMS = 256      # training images that set int8's activation ranges (calibration time grows with it)
MAX_ACCURACY_DROP = 0.5      # accuracy points int8 may lose against float32 on the validation items


def _int8_in_place(model, onnx_tmp: Path, **kw) -> dict:
    """Quantise the checked float32 graph at `onnx_tmp`; the int8 graph replaces it only if the record keeps it."""
    from ._quantization import quantize_checked
    int8_tmp = onnx_tmp.with_name("model.int8.onnx.tmp")
    try:
        record = quantize_checked(model, onnx_tmp, int8_tmp, ONNX_INPUT, **kw)
        if record["kept"]:
            os.replace(int8_tmp, onnx_tmp)
        return record
    finally:
        int8_tmp.unlink(missing_ok=True)


def _report_quantization(record: dict, quiet: bool) -> None:
    from ._quantization import describe
    if not record["kept"]:
        warnings.warn(describe(record), QuantizationWarning, stacklevel=4)   # the user's model.export(...) line
    elif not quiet:
        print(f"nbml export: {describe(record)}", flush=True)


def export(model, path: str | os.PathLike, *, name: str | None = None, opset: int = 18, atol: float = 1e-4,
           quantize: str | None = None, calibration_items: int = CALIBRATION_ITEMS,
           max_accuracy_drop: float = MAX_ACCURACY_DROP, quiet: bool = False) -> Path:
    """Write the model as a self-contained artifact folder (see the module docstring); returns the folder.

    `name` is the name the server answers to (`/v2/models/{name}`); by default the folder's name.

    `quantize="int8"`: ONNX Runtime static int8 quantisation of the ONNX graph, calibrated on up to
    `calibration_items` of the project's training images, kept only when its accuracy on the validation items is
    within `max_accuracy_drop` points of the float32 graph's. Both accuracies go into config.json
    (`onnx.quantization`) and the model card, and a line is printed (`quiet=True`: none); when int8 is not kept, a
    QuantizationWarning says why and the float32 graph is exported. The safetensors weights stay float32.
    """
    from . import __version__
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be None or 'int8', not {quantize!r}")
    path = Path(path).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    name = safe_name(name or path.name)
    size = int(model.config["size"])
    net = copy.deepcopy(model.net).to("cpu").float().eval()
    wrapper = onnx_wrapper(net, model.config["mean"], model.config["std"])
    onnx_tmp = path / (ONNX_FILE + ".tmp")
    exporter = _export_onnx(wrapper, size, onnx_tmp, opset)
    try:
        check = check_onnx(wrapper, onnx_tmp, size, atol)
        quantization = quantize and _int8_in_place(model, onnx_tmp, calibration_items=calibration_items,
                                                   max_accuracy_drop=max_accuracy_drop)
    except Exception:
        onnx_tmp.unlink(missing_ok=True)
        raise
    os.replace(onnx_tmp, path / ONNX_FILE)

    model.save(path)   # model.safetensors + the model's own config.json, extended below
    config = {**model.config, "name": name, "preprocessing": PREPROCESSING, "exported": time.time(),
              "exported_with": __version__,
              "onnx": {"file": ONNX_FILE, "input": ONNX_INPUT, "output": ONNX_OUTPUT, "opset": opset,
                       "exporter": exporter, "check": check,
                       "precision": "int8" if quantization and quantization["kept"] else "float32"}}
    if quantization:
        config["onnx"]["quantization"] = quantization
    data = _training_data(model)
    if data:
        config["training_data"] = data
    _write_text(path / "config.json", json.dumps(config, indent=2, default=str))
    _write_text(path / "README.md", model_card(config))
    _write_text(path / "requirements.txt", _requirements())

    triton = path / "triton"
    if triton.exists():
        shutil.rmtree(triton)   # one model per artifact: a renamed export must not leave the old entry behind
    entry = triton / name
    _link_or_copy(path / ONNX_FILE, entry / "1" / ONNX_FILE)
    _write_text(entry / "config.pbtxt", triton_config(name, size, len(model.classes)))
    _write_text(entry / "labels.txt", "\n".join(model.classes) + "\n")
    if quantization:
        _report_quantization(quantization, quiet)
    return path
