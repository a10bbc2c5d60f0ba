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
from torch import nn

from .nets import build_net, make_head, pick_device  # noqa: F401  (re-exported: old imports)

__all__ = ["Model", "Prediction", "Evaluation", "load", "build_net", "make_head", "pick_device"]

HOLDOUT_FILE = "holdout.json"   # a model fitted again on every label: its validation items' probabilities from before


class Prediction(NamedTuple):
    """What `Model.predict` returns: the predicted `label` and `probabilities`, a dict of class name to probability.

    Raises: nothing of its own.

    Examples:
        >>> pred = model.predict("photo.jpg")
        >>> pred.label, pred.probabilities["cat"]
    """
    label: str
    probabilities: dict


@dataclass
class Evaluation:
    """Accuracy, per-class precision/recall, and the confusion matrix (rows: actual, columns: predicted).

    `split`: where it was measured ('valid' by default); `n`: how many items; `accuracy`: the share predicted right;
    `per_class`: precision, recall, f1 and support per class; `confusion`: counts of actual (rows) against predicted
    (columns); `scores`: the accuracy's 95% interval, the majority baseline, balanced accuracy and notes
    (nbml.scores).

    Raises: nothing of its own.

    Examples:
        >>> ev = model.evaluate("valid")
        >>> ev.accuracy, ev.per_class, ev.confusion
    """
    split: str
    n: int
    accuracy: float
    per_class: pd.DataFrame
    confusion: pd.DataFrame
    scores: dict = None       # nbml.scores.Scored: the 95% interval, the majority baseline, balanced accuracy, notes

    def __repr__(self) -> str:
        head = f"Evaluation({self.split}: accuracy {self.accuracy:.4f} on {self.n} items)"
        if self.scores:
            head += "\n" + self.scores.line.replace("validation items", f"{self.split} items")
            head += "".join(f"\nnote: {n}" for n in self.scores["notes"])
        return f"{head}\n{self.per_class}"


class Model:
    """A trained classifier of images, texts or table rows. `nbml.train` returns one; `nbml.load` reads one back.

    `nbml.train` and `nbml.load` make it: `net` is the torch network, `config` its settings as JSON-ready data (kind,
    arch, classes, size, normalisation, run id, metrics), `dataset` the project it reads items from (evaluate, losses
    and the widgets need one), `learner` the fastai Learner that trained it (None once loaded), `device` where it
    runs (default: CUDA, then MPS, then CPU).

    Raises:
        ValueError: `config` names a kind of item nbml does not know.

    Examples:
        >>> model = nbml.train(ds, epochs=3)
        >>> model = nbml.load("models/pets", dataset=ds)
    """

    def __init__(self, net: nn.Module, config: dict, dataset=None, learner=None, device=None):
        from . import kinds
        self.net, self.config, self.dataset, self.learner = net, config, dataset, learner
        self.kind = kinds.get(config.get("kind"))
        param = next(net.parameters(), None) if device is None and learner is not None else None
        self.device = param.device if param is not None else pick_device(device)
        self.net.to(self.device)
        # {item id: class probabilities} of the validation items, from the model before it was fitted again on every
        # label (nbml.training): evaluate, losses and the widgets read these, so they stay out-of-sample.
        self.holdout: dict[int, np.ndarray] = {}

    @property
    def classes(self) -> list[str]:
        """The class names, in the order of its outputs.

        Raises: nothing of its own.

        Examples:
            >>> model.classes
        """
        return list(self.config["classes"])

    @property
    def arch(self) -> str:
        """The architecture it was trained with (a timm name, ...).

        Raises: nothing of its own.

        Examples:
            >>> model.arch
        """
        return self.config["arch"]

    @property
    def size(self) -> int:
        """Input size: pixels, or tokens read per text.

        Raises: nothing of its own.

        Examples:
            >>> model.size
        """
        return int(self.config["size"])

    @property
    def run_id(self) -> int | None:
        """The run that trained it (`ds.runs()`), or None.

        Raises: nothing of its own.

        Examples:
            >>> ds.runs().set_index("id").loc[model.run_id]
        """
        return self.config.get("run_id")

    def __repr__(self) -> str:
        mets = self.config.get("metrics") or {}
        acc = f", valid accuracy {mets['accuracy']:.4f}" if "accuracy" in mets else ""
        unit = self.kind.UNIT if self.kind.UNIT == "px" else f" {self.kind.UNIT}"
        return f"Model({self.arch}, {len(self.classes)} classes, {self.size}{unit}, run {self.run_id}{acc})"

    # -- inference ----------------------------------------------------------------------------------------
    def predict(self, item) -> Prediction:
        """Label and class probabilities for one image (a path, encoded bytes or a Pillow image), one text, or one
        table row (a dict of column: value).

        `item`: the image, text or row.

        Raises:
            nbml.ImageError: an image cannot be read: a missing file, not an image, truncated, or over the pixel
                limit.
            TypeError: a text model is given something other than a string.
            ValueError: a text is empty, or a table row misses a column, has one the model does not know, or a value of
                the wrong type (`nbml.kinds.table_encoding.ColumnError`, a ValueError).

        Examples:
            >>> model.predict("photo.jpg")
            >>> model.predict("Free prize! Call now").label
            >>> model.predict({"Age": 29, "Sex": "female", "Pclass": 1})
        """
        probs = self.kind.predict_probs(self, [item])[0]
        return Prediction(self.classes[int(probs.argmax())], {c: float(p) for c, p in zip(self.classes, probs)})

    def predict_many(self, items: Sequence, bs: int = 64) -> pd.DataFrame:
        """One row per image, text or table row (a DataFrame gives one per row): `label`, `confidence`, then one
        probability column per class.

        `items`: a list of images, texts or rows, or a DataFrame of rows; `bs`: how many go through the network at
        once.

        Raises:
            nbml.ImageError: an image cannot be read: a missing file, not an image, truncated, or over the pixel
                limit.
            TypeError: a text model is given something other than a string.
            ValueError: a text is empty, or a table row misses a column, has one the model does not know, or a value of
                the wrong type (`nbml.kinds.table_encoding.ColumnError`, a ValueError).

        Examples:
            >>> model.predict_many(["a.jpg", "b.jpg"], bs=32)
            >>> model.predict_many(test_df)
        """
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
        """Class probabilities for every usable labelled item in the splits (columns: id, label, split, classes).

        Raises:
            RuntimeError: the model has no dataset attached (`nbml.load(path, dataset=ds)`).

        Examples:
            >>> model.item_probabilities(splits=("valid",))
        """
        frame, probs = self._item_probs(self._need_dataset().training_items(splits))
        out = frame[["id", "label", "split"]].copy()
        return pd.concat([out, pd.DataFrame(probs, columns=self.classes)], axis=1)

    def evaluate(self, split: str = "valid") -> Evaluation:
        """Accuracy, per-class precision and recall, and the confusion matrix on a split of the dataset.

        Raises:
            RuntimeError: the model has no dataset attached (`nbml.load(path, dataset=ds)`).
            ValueError: the split has no labelled item of a class the model knows.

        Examples:
            >>> model.evaluate()
            >>> model.evaluate("test").accuracy
        """
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
        from .scores import scored
        score = scored(frame["label"].to_numpy(object), np.asarray([classes[i] for i in probs.argmax(1)], object))
        return Evaluation(split, len(frame), float(tp.sum() / max(len(frame), 1)), per_class, confusion, score)

    def losses(self, splits: Sequence[str] = ("train", "valid", "test")) -> pd.DataFrame:
        """Every labelled item's cross-entropy loss, highest first, with the label's and prediction's probability.

        Items whose label this model does not know get a NaN loss and come last.

        `splits`: which splits' labelled items.

        Raises:
            RuntimeError: the model has no dataset attached (`nbml.load(path, dataset=ds)`).

        Examples:
            >>> model.losses(splits=("valid",)).head(20)
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

        `ids`: the item ids.

        Raises:
            RuntimeError: the model has no dataset attached (`nbml.load(path, dataset=ds)`).

        Examples:
            >>> model.probabilities(ds.query_ids(labelled=False, limit=100))
        """
        rows = self._need_dataset().item_rows(ids)
        columns = ["id", "path", "path_raw", "content", "sha256", "size_bytes", "mtime", "label", "split"]
        frame, probs = self._item_probs(pd.DataFrame([{k: r.get(k) for k in columns} for r in rows], columns=columns))
        out = pd.DataFrame({"id": frame["id"].astype(int),
                            "predicted": [self.classes[i] for i in probs.argmax(1)] if len(probs) else [],
                            "confidence": probs.max(1) if len(probs) else []})
        return pd.concat([out, pd.DataFrame(probs, columns=self.classes)], axis=1)

    @property
    def summary(self) -> str:
        """What this model is and how far to trust it, in a few lines: its architecture and data, the validation
        accuracy with the number of items, a 95% interval and what always answering the most frequent class would
        score, a note when the validation set is small or the model overfits, and (with its project) the forecast
        of the accuracy with more labels (`ds.forecast()`).

        Raises: nothing of its own.

        Examples:
            >>> print(model.summary)
        """
        cfg = self.config
        lines = [f"{self.kind.NAME} classifier {self.arch}, {len(self.classes)} classes ({', '.join(self.classes[:8])}"
                 f"{', ...' if len(self.classes) > 8 else ''}), run {self.run_id}"]
        if self.dataset is not None:
            trust = self.trust()
            if trust:
                lines += [trust["line"], *(f"note: {n}" for n in trust["notes"])]
            from .forecast import headline
            line = headline(self.dataset)
            if line:
                lines.append(line)
        elif "accuracy" in (cfg.get("metrics") or {}):
            lines.append(f"validation accuracy {cfg['metrics']['accuracy']:.3f} when trained (attach its project "
                         f"with nbml.load(path, dataset=ds) for the details)")
        if cfg.get("advice"):          # what would do better, in one line (a text model without its encoder)
            lines.append(f"note: {cfg['advice']}")
        return "\n".join(lines)

    def trust(self) -> dict | None:
        """How far to trust the validation accuracy (what `summary` and the monitor's summary show): `line`, the
        accuracy with its count, 95% interval and majority baseline, and `notes` (a small validation set,
        unbalanced classes, the run's training loss far below its validation loss); None without validation items
        of a class it knows.

        Raises:
            RuntimeError: the model has no dataset attached (`nbml.load(path, dataset=ds)`).

        Examples:
            >>> model.trust()["line"]
        """
        from .scores import overfit_note
        try:
            scores = self.evaluate().scores
        except ValueError:
            return None
        notes = list(scores["notes"])
        runs = self.dataset.runs() if self.run_id is not None else None
        row = runs[runs["id"] == self.run_id] if runs is not None and len(runs) else None
        history = row.iloc[0]["history"] if row is not None and len(row) else None
        if isinstance(history, list) and history:
            note = overfit_note(history[-1].get("train_loss"), history[-1].get("valid_loss"))
            if note:
                notes.append(note)
        return {"line": scores.line, "notes": notes}

    # -- widgets ----------------------------------------------------------------------------------------------
    def confusion(self, split: str = "valid", normalize: bool = False):
        """The confusion matrix as a heatmap; click a cell to see its items and relabel or remove them.

        `split`: the split it is measured on ('valid'); `normalize`: shares of each actual class instead of counts.

        Raises:
            RuntimeError: the model has no dataset attached (`nbml.load(path, dataset=ds)`).
            ValueError: the split has no labelled item of a class the model knows.

        Examples:
            >>> model.confusion()
            >>> model.confusion("test", normalize=True)
        """
        from .widgets.confusion import ConfusionWidget
        return ConfusionWidget(self, split=split, normalize=normalize)

    def top_losses(self, n: int | None = None, splits=("train", "valid")):
        """The items with the highest loss, with label, prediction and both probabilities, to fix by key.

        `n`: at most this many items (None: every labelled one); `splits`: which splits' items.

        Raises:
            RuntimeError: the model has no dataset attached (`nbml.load(path, dataset=ds)`).

        Examples:
            >>> model.top_losses(50)
            >>> model.top_losses(splits=("valid",))
        """
        from .widgets.cleaner import TopLossesWidget
        return TopLossesWidget(self, n=n, splits=splits)

    # -- persistence --------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, holdout: bool = True) -> Path:
        """Write `model.safetensors` and `config.json` into a folder; `nbml.load(folder)` reads it back. With
        `holdout` (and a model fitted again on every label) also `holdout.json`: the validation items'
        probabilities from before that fit, which `evaluate`, `losses` and the widgets use.

        `path`: the folder (created when missing); returns it.

        Raises: nothing of its own.

        Examples:
            >>> model.save("models/pets")
        """
        from safetensors.torch import save_file
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(path / "model.safetensors"))
        if self.kind.save_extra is not None:
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

        `**kw` goes to nbml.export.export: `name=` (the model's name in the server and Triton), `opset=`, `atol=` (the
        check against torch), `calibration_items=`, `max_accuracy_drop=`, `quiet=`.

        Raises:
            ValueError: `quantize` is not None or 'int8', or the model's kind refuses int8 (texts).
            nbml.kinds.base.ExportError: the ONNX graph's probabilities differ from torch's by more than `atol`.

        Examples:
            >>> model.export("export/pets")
            >>> model.export("export/pets-int8", quantize="int8")
        """
        from .export import export
        return export(self, path, quantize=quantize, **kw)

    def serve(self, path: str | os.PathLike | None = None, *, quantize: str | None = None, **kw):
        """Export (to `path`, or beside the project; `quantize="int8"` as in `export`) and serve this model in the
        background; see `nbml.serve`.

        `**kw` goes to `nbml.serve` (`port=`, `token=`, `log_images=`, ...).

        Raises:
            ValueError: `quantize` is not None or 'int8', or the model's kind refuses int8 (texts).
            nbml.kinds.base.ExportError: the ONNX graph's probabilities differ from torch's by more than `atol`.
            OSError: the port asked for is in use or cannot be listened on.
            RuntimeError: the server did not start within 60 s.

        Examples:
            >>> server = model.serve()
            >>> server = model.serve("export/pets", port=0, token="s3cret")
        """
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

    `path`: the folder `save` or `export` wrote. `dataset`: the project the model's items come from (evaluate, losses
    and the widgets need one). `device`: where it runs (default: CUDA, then MPS, then CPU).

    Raises:
        ValueError: `path` is a pickle and `trust` is not True, or its config.json is not an nbml model's.
        FileNotFoundError: `path` holds no config.json.

    Examples:
        >>> model = nbml.load("models/pets", dataset=ds)
        >>> model = nbml.load("export/pets", device="cpu")
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
    from .model_files import read_model
    loaded = read_model(path, device)
    model = Model(loaded.net, loaded.config, dataset=dataset, device=loaded.device)
    if loaded.kind.load_extra is not None:
        loaded.kind.load_extra(model, path)
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
    from .model_files import FORMAT
    return {"format": FORMAT, "created": time.time(), **values}
