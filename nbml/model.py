"""`nbml.Model`: a trained classifier (an image or text network, see nbml.kinds) with predict, evaluate, losses, save; and `nbml.load`.

Saved models are safetensors plus JSON: loading one never unpickles anything.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._imaging import open_rgb
from .data import ImageCache, normalize, to_square

__all__ = ["Model", "Prediction", "Evaluation", "load", "build_net", "make_head", "pick_device"]

FORMAT = "nbml-model"
HOLDOUT_FILE = "holdout.json"   # a model fitted again on every label: its validation items' probabilities from before


def pick_device(device=None) -> torch.device:
    """CUDA, then Apple MPS, then CPU, unless one is named."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def make_head(n_features: int, n_classes: int, hidden: int = 512, p: float = 0.5, type: str = "fastai") -> nn.Module:
    """fastai's default head on pooled features: BN, dropout, linear, ReLU, BN, dropout, linear.

    `type="linear"` gives one `nn.Linear` instead (the head `nbml.train(ds, mode="head")` fits on embeddings).
    """
    if type == "linear":
        return nn.Linear(n_features, n_classes)
    if type != "fastai":
        raise ValueError(f"unknown head type {type!r}; expected 'fastai' or 'linear'")
    return nn.Sequential(
        nn.BatchNorm1d(n_features), nn.Dropout(p / 2), nn.Linear(n_features, hidden, bias=False),
        nn.ReLU(inplace=True),
        nn.BatchNorm1d(hidden), nn.Dropout(p), nn.Linear(hidden, n_classes, bias=False))


def build_net(arch: str, n_classes: int, pretrained="auto", weights=None, head: dict | None = None):
    """Sequential(body, head): the body returns pooled features, so embeddings are `net[0](x)`."""
    from .pretrained import create_body
    body, source = create_body(arch, pretrained=pretrained, weights=weights)
    head = head or {"hidden": 512, "p": 0.5}
    return nn.Sequential(body, make_head(body.num_features, n_classes, **head)), source, head


class Prediction(NamedTuple):
    label: str
    probabilities: dict


@dataclass
class Evaluation:
    """Accuracy, per-class precision/recall, and the confusion matrix (rows: actual, columns: predicted)."""
    split: str
    n: int
    accuracy: float
    per_class: pd.DataFrame
    confusion: pd.DataFrame

    def __repr__(self) -> str:
        return f"Evaluation({self.split}: accuracy {self.accuracy:.4f} on {self.n} items)\n{self.per_class}"


class Model:
    """A trained image classifier. `nbml.train` returns one; `nbml.load` reads one back."""

    def __init__(self, net: nn.Module, config: dict, dataset=None, learner=None, device=None):
        from . import kinds
        self.net, self.config, self.dataset, self.learner = net, config, dataset, learner
        self.kind = kinds.get(config.get("kind"))
        param = next(net.parameters(), None) if device is None and learner is not None else None
        self.device = param.device if param is not None else pick_device(device)
        self.net.to(self.device)
        self._mean = torch.tensor(config.get("mean") or [], dtype=torch.float32, device=self.device)
        self._std = torch.tensor(config.get("std") or [], dtype=torch.float32, device=self.device)
        # {item id: class probabilities} of the validation items, from the model before it was fitted again on every
        # label (nbml.training): evaluate, losses and the widgets read these, so they stay out-of-sample.
        self.holdout: dict[int, np.ndarray] = {}

    classes = property(lambda self: list(self.config["classes"]))
    arch = property(lambda self: self.config["arch"])
    size = property(lambda self: int(self.config["size"]))
    run_id = property(lambda self: self.config.get("run_id"))

    def __repr__(self) -> str:
        mets = self.config.get("metrics") or {}
        acc = f", valid accuracy {mets['accuracy']:.4f}" if "accuracy" in mets else ""
        unit = self.kind.UNIT if self.kind.UNIT == "px" else f" {self.kind.UNIT}"
        return f"Model({self.arch}, {len(self.classes)} classes, {self.size}{unit}, run {self.run_id}{acc})"

    # -- inference ----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def _probs_u8(self, batch: np.ndarray) -> np.ndarray:
        self.net.eval()
        x = normalize(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device), self._mean, self._std)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = self.net(x)
        else:
            logits = self.net(x.contiguous())
        return torch.softmax(logits.float(), 1).cpu().numpy()

    def _square(self, image) -> np.ndarray:
        max_pixels = self.dataset.max_pixels if self.dataset is not None else None
        img = open_rgb(image) if max_pixels is None else open_rgb(image, max_pixels)
        return to_square(img, self.size)

    def predict(self, item) -> Prediction:
        """Label and class probabilities for one image (a path, encoded bytes or a Pillow image), one text, or one
        table row (a dict of column: value)."""
        probs = self.kind.predict_probs(self, [item])[0]
        return Prediction(self.classes[int(probs.argmax())], {c: float(p) for c, p in zip(self.classes, probs)})

    def predict_many(self, items: Sequence, bs: int = 64) -> pd.DataFrame:
        """One row per image, text or table row (a DataFrame gives one per row): `label`, `confidence`, then one
        probability column per class."""
        items = items.to_dict("records") if isinstance(items, pd.DataFrame) else list(items)
        out = []
        for i in range(0, len(items), bs):
            out.append(self.kind.predict_probs(self, items[i:i + bs]))
        probs = np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)
        frame = pd.DataFrame(probs, columns=self.classes)
        frame.insert(0, "confidence", probs.max(1) if len(probs) else [])
        frame.insert(0, "label", [self.classes[i] for i in probs.argmax(1)] if len(probs) else [])
        return frame

    def _need_dataset(self):
        if self.dataset is None:
            raise RuntimeError("this model has no dataset attached; use nbml.load(path, dataset=ds)")
        return self.dataset

    def _item_probs(self, frame: pd.DataFrame, bs: int = 256) -> tuple[pd.DataFrame, np.ndarray]:
        """Probabilities for store items, through their kind; items that cannot be read are dropped. Items in
        `holdout` get their probabilities from before the final fit on every label."""
        frame, probs = self.kind.item_probs(self, frame, bs)
        if self.holdout and len(frame):
            rows = [(i, self.holdout[int(x)]) for i, x in enumerate(frame["id"]) if int(x) in self.holdout]
            if rows:
                probs = np.array(probs, copy=True)
                probs[[i for i, _ in rows]] = np.stack([p for _, p in rows])
        return frame, probs

    def item_probabilities(self, splits: Sequence[str] = ("train", "valid", "test")) -> pd.DataFrame:
        """Class probabilities for every usable labelled item in the splits (columns: id, label, split, classes)."""
        frame, probs = self._item_probs(self._need_dataset().training_items(splits))
        out = frame[["id", "label", "split"]].copy()
        return pd.concat([out, pd.DataFrame(probs, columns=self.classes)], axis=1)

    def evaluate(self, split: str = "valid") -> Evaluation:
        """Accuracy, per-class precision and recall, and the confusion matrix on a split of the dataset."""
        frame, probs = self._item_probs(self._need_dataset().training_items([split]))
        known = frame["label"].isin(self.classes).to_numpy()
        if not known.any():
            raise ValueError(f"no labelled items in the {split!r} split with a class this model knows")
        frame, probs = frame[known].reset_index(drop=True), probs[known]
        classes = self.classes
        actual = pd.Categorical(frame["label"], categories=classes)
        predicted = pd.Categorical([classes[i] for i in probs.argmax(1)], categories=classes)
        confusion = pd.crosstab(actual, predicted, dropna=False).reindex(index=classes, columns=classes, fill_value=0)
        confusion.index.name, confusion.columns.name = "actual", "predicted"
        tp = np.diag(confusion.to_numpy()).astype(float)
        support = confusion.sum(axis=1).to_numpy()
        n_pred = confusion.sum(axis=0).to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(n_pred > 0, tp / n_pred, np.nan)
            recall = np.where(support > 0, tp / support, np.nan)
            f1 = 2 * precision * recall / (precision + recall)
        per_class = pd.DataFrame({"precision": precision, "recall": recall, "f1": f1, "support": support},
                                 index=pd.Index(classes, name="class"))
        return Evaluation(split, len(frame), float(tp.sum() / max(len(frame), 1)), per_class, confusion)

    def losses(self, splits: Sequence[str] = ("train", "valid", "test")) -> pd.DataFrame:
        """Every labelled item's cross-entropy loss, highest first, with the label's and prediction's probability.

        Items whose label this model does not know get a NaN loss and come last.
        """
        frame, probs = self._item_probs(self._need_dataset().training_items(splits))
        index = {c: i for i, c in enumerate(self.classes)}
        label_idx = frame["label"].map(index)
        known = label_idx.notna().to_numpy()
        p_label = np.full(len(frame), np.nan)
        p_label[known] = probs[known, label_idx[known].astype(int).to_numpy()]
        pred = probs.argmax(1) if len(probs) else np.zeros(0, int)
        out = pd.DataFrame({
            "id": frame["id"], "label": frame["label"],
            "predicted": [self.classes[i] for i in pred],
            "loss": -np.log(np.clip(p_label, 1e-12, 1.0)),
            "p_label": p_label, "p_predicted": probs.max(1) if len(probs) else [],
            "split": frame["split"]})
        return out.sort_values("loss", ascending=False, na_position="last", kind="stable").reset_index(drop=True)

    def probabilities(self, ids) -> pd.DataFrame:
        """For store items by id, whatever their label: `id`, `predicted`, `confidence`, one column per class.

        Items that cannot be read (a missing file, no text) are left out.
        """
        rows = self._need_dataset().item_rows(ids)
        columns = ["id", "path", "path_raw", "content", "sha256", "size_bytes", "mtime", "label", "split"]
        frame, probs = self._item_probs(pd.DataFrame([{k: r.get(k) for k in columns} for r in rows], columns=columns))
        out = pd.DataFrame({"id": frame["id"].astype(int),
                            "predicted": [self.classes[i] for i in probs.argmax(1)] if len(probs) else [],
                            "confidence": probs.max(1) if len(probs) else []})
        return pd.concat([out, pd.DataFrame(probs, columns=self.classes)], axis=1)

    # -- widgets ----------------------------------------------------------------------------------------------
    def confusion(self, split: str = "valid", normalize: bool = False):
        """The confusion matrix as a heatmap; click a cell to see its items and relabel or remove them."""
        from .widgets.confusion import ConfusionWidget
        return ConfusionWidget(self, split=split, normalize=normalize)

    def top_losses(self, n: int | None = None, splits=("train", "valid")):
        """The items with the highest loss, with label, prediction and both probabilities, to fix by key."""
        from .widgets.cleaner import TopLossesWidget
        return TopLossesWidget(self, n=n, splits=splits)

    # -- persistence --------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, holdout: bool = True) -> Path:
        """Write `model.safetensors` and `config.json` into a folder; `nbml.load(folder)` reads it back. With
        `holdout` (and a model fitted again on every label) also `holdout.json`: the validation items'
        probabilities from before that fit, which `evaluate`, `losses` and the widgets use."""
        from safetensors.torch import save_file
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(path / "model.safetensors"))
        self.kind.save_extra(self, path)
        if holdout and self.holdout:
            ids = sorted(self.holdout)
            _write_json(path / HOLDOUT_FILE, {"ids": ids, "probs": [self.holdout[i].tolist() for i in ids]})
        else:
            (path / HOLDOUT_FILE).unlink(missing_ok=True)      # another model's, saved here before
        _write_json(path / "config.json", self.config, indent=2)
        return path

    # -- shipping -----------------------------------------------------------------------------------------------
    def export(self, path: str | os.PathLike, *, quantize: str | None = None, **kw) -> Path:
        """Write a self-contained artifact: weights, config, a checked ONNX graph, a model card, requirements and a
        Triton model repository (see `nbml.export.export`). `nbml.load(path)` and `nbml.serve(path)` read it.

        `quantize="int8"`: the ONNX graph in int8, calibrated on this project's training images and kept only if its
        validation accuracy is within `max_accuracy_drop` (0.5) points of float32's; a warning says when it is not.
        """
        from .export import export
        return export(self, path, quantize=quantize, **kw)

    def serve(self, path: str | os.PathLike | None = None, *, quantize: str | None = None, **kw):
        """Export (to `path`, or beside the project; `quantize="int8"` as in `export`) and serve this model in the
        background; see `nbml.serve`."""
        from .serving import serve
        if path is None:
            name = self.config.get("name") or f"model-run{self.run_id}"
            if self.dataset is not None:
                path = Path(self.dataset.home) / "exports" / name
            else:
                import tempfile
                path = Path(tempfile.mkdtemp(prefix="nbml-")) / name
        return serve(self.export(path, quantize=quantize), dataset=kw.pop("dataset", self.dataset), **kw)


def load(path: str | os.PathLike, dataset=None, *, trust: bool = False, device=None):
    """Read a model saved by `Model.save` (safetensors + JSON, no pickle).

    A fastai `.pkl` export is refused unless `trust=True`, because unpickling runs arbitrary code.
    """
    path = Path(path).expanduser()
    if path.suffix == ".pkl":
        if not trust:
            raise ValueError(f"{path} is a pickle, and loading a pickle runs whatever code it holds. Pass "
                             f"trust=True only if you made this file yourself.")
        from ._thirdparty import import_fastai
        import_fastai()
        from fastai.learner import load_learner
        return load_learner(path, cpu=device in (None, "cpu"))
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} is not an nbml model folder (no config.json)")
    config = json.loads(config_file.read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{config_file} is not an nbml model config (format {config.get('format')!r})")
    from safetensors.torch import load_file
    from . import kinds
    kind = kinds.get(config.get("kind"))
    net = kind.load_net(path, config, load_file(str(path / "model.safetensors")))
    model = Model(net, config, dataset=dataset, device=device or pick_device())
    kind.load_extra(model, path)
    if (path / HOLDOUT_FILE).is_file():
        held = json.loads((path / HOLDOUT_FILE).read_text())
        model.holdout = {int(i): np.asarray(p, np.float32) for i, p in zip(held["ids"], held["probs"])}
    return model


def _write_json(path: Path, value, **kw) -> None:
    """Write JSON whole or not at all (a temporary file, then renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, default=str, **kw))
    os.replace(tmp, path)


def new_config(**values) -> dict:
    return {"format": FORMAT, "created": time.time(), **values}
