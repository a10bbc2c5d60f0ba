"""`Model.export(dir)`: a self-contained artifact to serve the model anywhere, without pickle.

    dir/
      config.json          arch, classes, input size, preprocessing, ONNX check (nbml.load reads it)
      model.safetensors    the weights
      tokenizer.json       text models: the tokenizer, as JSON
      model.onnx           what follows decoding (images: uint8 RGB NHWC [N, size, size, 3]) or tokenisation (texts:
                           the four arrays of nbml.kinds.text_encoding.encode) in, softmax probabilities [N, classes]
                           out; float32, or for images int8 with `quantize="int8"` when it keeps the validation
                           accuracy (nbml._quantization)
      README.md            the model card: data snapshot, metrics, run, dates, limits
      requirements.txt     what `nbml serve dir` needs
      triton/<name>/       a Triton Inference Server model repository (config.pbtxt, labels.txt, 1/model.onnx)

What differs by kind of item comes from the kind (`onnx_graph`, `check_feeds`, `export_config`, `card`,
`triton_entry`, `quantize`, `SERVE_REQUIREMENTS` at the end of nbml/kinds/<kind>.py). At export, ONNX Runtime's
output is compared with torch's (sample images; a text model's validation texts) and the export fails if they differ.
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

from . import kinds
from .kinds.base import ExportError
from .notices import NbmlWarning

__all__ = ["export", "ExportError", "QuantizationWarning", "check_feeds", "model_card"]

ONNX_FILE = "model.onnx"
class QuantizationWarning(NbmlWarning):
    """int8 was asked for and not kept: the artifact holds the float32 graph; the message says why."""


def safe_name(name: str) -> str:
    """A model name usable in a URL path and as a Triton model folder."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-.")
    return cleaned or "model"


def _export_onnx(graph: dict, path: Path, opset: int) -> str:
    """Write the ONNX file with the kind's dynamic axes (batch, and a text's length); returns the exporter used.
    The kind says which exporter to try first (`graph["exporters"]`: names of torch's, or a function of the kind's
    own, such as onnxmltools for trees); the others are the fallbacks."""
    errors = []
    for exporter in graph["exporters"]:
        fn = exporter if callable(exporter) else _EXPORTERS[exporter]
        exporter = fn.__name__ if callable(exporter) else exporter
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn(graph, path, opset)
            return exporter
        except Exception as e:   # some timm models do not trace under torch.export; TorchScript is the fallback
            errors.append(f"{exporter}: {e}")
    raise ExportError(f"this model could not be converted to ONNX ({'; '.join(errors)}). Try another backbone, or "
                      f"report the architecture to nbml.") from None


def _torch_export(graph: dict, path: Path, opset: int) -> None:
    import torch
    dims: dict = {}
    shapes = {name: {axis: dims.setdefault(d, torch.export.Dim(d, min=1, max=2 ** 16))
                     for axis, d in graph["dynamic"].get(name, {}).items()} for name in graph["inputs"]}
    program = torch.onnx.export(graph["wrapper"], graph["sample"], input_names=graph["inputs"],
                                output_names=[graph["output"]], opset_version=opset, dynamic_shapes=shapes,
                                dynamo=True, verbose=False)
    program.save(str(path))


def _torchscript_export(graph: dict, path: Path, opset: int) -> None:
    import torch
    axes = {**graph["dynamic"], graph["output"]: {0: "batch"}}
    torch.onnx.export(graph["wrapper"], graph["sample"], str(path), input_names=graph["inputs"],
                      output_names=[graph["output"]], dynamic_axes=axes, opset_version=opset, dynamo=False)


_EXPORTERS = {"torch.export": _torch_export, "torchscript": _torchscript_export}


def check_feeds(wrapper, path: Path, feeds: list[dict], output: str, atol: float, described: str) -> dict:
    """Run ONNX Runtime and torch on the same inputs (`feeds`: dicts of input name to array, in the graph's input
    order); raise ExportError if they differ by more than `atol`."""
    import onnxruntime as ort
    import torch
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for feed in feeds:
        got = session.run([output], feed)[0]
        with torch.inference_mode():
            want = wrapper(*[torch.from_numpy(v) for v in feed.values()]).numpy()
        if got.shape != want.shape:
            raise ExportError(f"the ONNX model returned shape {got.shape} where torch returns {want.shape}")
        worst = max(worst, float(np.abs(got - want).max()))
    if not np.isfinite(worst) or worst > atol:
        raise ExportError(f"ONNX Runtime's probabilities differ from torch's by up to {worst:.2e} on {described} "
                          f"(tolerance {atol:.0e}); the exported model would not predict what this model predicts. "
                          f"Try another backbone or opset, or report it to nbml.")
    sizes = [len(next(iter(f.values()))) for f in feeds]
    return {"max_abs_diff": worst, "tolerance": atol, "samples": max(sizes) if len(sizes) == 2 else sum(sizes[1:]),
            "batch_sizes": sizes, "described": described}


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


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _requirements(kind) -> str:
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__
    lines = ["# What `nbml serve <this folder>` needs: ONNX Runtime runs the model on the CPU; no torch, no fastai.",
             "#   pip install -r requirements.txt",
             f"#   pip install --no-deps nbml=={__version__}    (nbml's server code without its training stack)"]
    for pkg, floor in (("onnxruntime", "1.18"), ("numpy", "1.24"), *kind.SERVE_REQUIREMENTS, ("starlette", "0.40"),
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
    """README.md of the artifact: what the model is, what it was trained on, how well it did, how to serve it; the
    kind of item writes its own parts (`card(config)` in nbml/kinds/<kind>.py)."""
    from . import __version__
    name, classes = config["name"], config["classes"]
    part = kinds.get(config.get("kind")).card(config)
    when = lambda t: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) if t else "unknown"  # noqa: E731
    data = config.get("training_data")
    metrics = config.get("metrics") or {}
    lines = [f"# {name}", "", part["summary"], "",
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
    valid = (data or {}).get("class_counts_by_split", {}).get("valid") or {}
    if "accuracy" in metrics and valid:
        from .scores import interval_text
        n, top = sum(valid.values()), max(valid, key=valid.get)
        lines += [f"- measured on {n} validation items: the 95% interval of the accuracy is "
                  f"{interval_text(metrics['accuracy'], n).split(' (')[0]}; always answering `{top}` would score "
                  f"{valid[top] / n:.4f}"]
    lines += _quantization_lines(config["onnx"].get("quantization"))
    lines += ["", "## Input and preprocessing", "",
              f"Classes, in output order: {', '.join(f'`{c}`' for c in classes)}.", ""]
    lines += part["input"]
    lines += ["", "## Files", "",
              "- `model.safetensors` + `config.json`: `nbml.load(folder)` (no pickle is ever read)",
              *part.get("extra_files", []), part["onnx_file"],
              f"- `triton/{name}/`: a Triton Inference Server model repository entry (`config.pbtxt`, `labels.txt`, "
              f"`1/model.onnx`)",
              "- `requirements.txt`: what serving needs", "",
              "## Serving", "",
              "```bash",
              "pip install -r requirements.txt",
              f"pip install --no-deps nbml=={__version__}   # the server without torch and fastai",
              "nbml serve . --host 127.0.0.1 --port 8000",
              part["try_it"],
              "```", "", *part["serving"], "",
              "## Limits", "", *part["limits"]]
    if data and min(data["class_counts"].values(), default=0) < 20:
        lines.append("- Some classes had fewer than 20 labelled items: treat their predictions with care.")
    return "\n".join(lines) + "\n"


QUANTIZE = (None, "int8")
CALIBRATION_ITEMS = 256      # training images that set int8's activation ranges (calibration time grows with it)
MAX_ACCURACY_DROP = 0.5      # accuracy points int8 may lose against float32 on the validation items


def _int8_in_place(model, kind, onnx_tmp: Path, **kw) -> dict:
    """Quantise the checked float32 graph at `onnx_tmp`; the int8 graph replaces it only if the record keeps it."""
    int8_tmp = onnx_tmp.with_name("model.int8.onnx.tmp")
    try:
        record = kind.quantize(model, onnx_tmp, int8_tmp, **kw)
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
    QuantizationWarning says why and the float32 graph is exported. The safetensors weights stay float32. Text
    models refuse int8 (ValueError).
    """
    from . import __version__
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be None or 'int8', not {quantize!r}")
    kind = kinds.of(model)
    if quantize and kind.QUANTIZE_REFUSED:
        raise ValueError(kind.QUANTIZE_REFUSED)
    path = Path(path).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    name = safe_name(name or path.name)
    net = copy.deepcopy(model.net).to("cpu").float().eval()
    graph = kind.onnx_graph(model, net)
    onnx_tmp = path / (ONNX_FILE + ".tmp")
    exporter = _export_onnx(graph, onnx_tmp, opset)
    try:
        feeds, described = kind.check_feeds(model)
        check = check_feeds(graph.get("reference", graph["wrapper"]), onnx_tmp, feeds, graph["output"], atol, described)
        quantization = quantize and _int8_in_place(model, kind, onnx_tmp, calibration_items=calibration_items,
                                                   max_accuracy_drop=max_accuracy_drop)
    except Exception:
        onnx_tmp.unlink(missing_ok=True)
        raise
    os.replace(onnx_tmp, path / ONNX_FILE)

    model.save(path, holdout=False)   # model.safetensors (+ the kind's files) and its own config.json, extended below
    inputs = graph["inputs"]
    config = {**model.config, "name": name, **kind.export_config(model), "exported": time.time(),
              "exported_with": __version__,
              "onnx": {"file": ONNX_FILE, "input": inputs[0], "inputs": inputs, "output": graph["output"],
                       "opset": opset, "exporter": exporter, "check": check,
                       "precision": "int8" if quantization and quantization["kept"] else "float32"}}
    if quantization:
        config["onnx"]["quantization"] = quantization
    data = _training_data(model)
    if data:
        config["training_data"] = data
    _write_text(path / "config.json", json.dumps(config, indent=2, default=str))
    _write_text(path / "README.md", model_card(config))
    _write_text(path / "requirements.txt", _requirements(kind))
    from .serving.ray_engine import write_serve_config
    write_serve_config(path, config)     # serve_config.yaml: Ray Serve's `serve deploy` takes it as it is

    triton = path / "triton"
    if triton.exists():
        shutil.rmtree(triton)   # one model per artifact: a renamed export must not leave the old entry behind
    entry = triton / name
    _link_or_copy(path / ONNX_FILE, entry / "1" / ONNX_FILE)
    for file, text in kind.triton_entry(config).items():
        _write_text(entry / file, text)
    if quantization:
        _report_quantization(quantization, quiet)
    return path
