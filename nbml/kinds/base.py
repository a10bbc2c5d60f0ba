"""What a kind of item provides: the `Kind` interface, written down once. Everything that differs between images,
texts and table rows is a member of a kind's module (`nbml.kinds.get(name)`); the generic layers call these and
nothing else. Optional members are listed in `OPTIONAL`: a kind sets them to None when it has nothing to say, and
generic code tests for None (never `getattr`). `check_kind` holds a module to this when the registry first loads it.

A kind's module may import nbml's lower layers (store, data, learner, nets, backbone, head, pretrained, the
underscore helpers) and its own helper modules, never the generic layers above it (training, model, embeddings,
analysis, export, widgets, serving' server).
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

__all__ = ["Kind", "ServingInputs", "OPTIONAL", "ONNX_OUTPUT", "ExportError", "check_kind", "members"]

ONNX_OUTPUT = "probabilities"    # every exported graph's output: softmax probabilities [N, classes]


class ExportError(RuntimeError):
    """The export could not produce an artifact that predicts what the model predicts."""


class Kind(Protocol):
    # -- identity ------------------------------------------------------------------------------------------------
    NAME: str
    """The kind's name, as the registry and the store's items know it ("image", "text", "table")."""
    UNIT: str
    """What a model's `size` counts ("px", "tokens", "columns")."""
    NOUN: str
    """What one item is called in messages and on screen ("image", "text", "row")."""

    # -- ingest --------------------------------------------------------------------------------------------------
    def add(self, ds, values, labels=None, **kw) -> Any:
        """`ds.add(values, labels)`: turn the user's input into items (each one refused with its reason); an
        IngestReport."""

    def add_logged(self, ds, logged: dict) -> Any:
        """`ds.add_from_log`'s last step: logged inputs ({sha256: bytes}) added as unlabelled items."""

    def usable(self, frame) -> tuple[Any, list[str]]:
        """The store items training and embedding can read, and a note per item left out."""

    # -- display -------------------------------------------------------------------------------------------------
    CARD: str
    """How the grid shows an item: "thumbnail" (an image) or "text" (a card of text)."""
    READ_LIMIT: int | None
    """How much of an item the model reads, in UNIT (texts: tokens); None when it reads all of it."""

    def card_text(self, ds) -> Callable[[str | None], str] | None:
        """The text a card shows of an item's stored content (a row's `column: value` lines); None: the content."""

    def read_chars(self, text: str) -> int:
        """How many leading characters of a card's text the model reads (the grid marks the rest)."""

    # -- features: the embeddings the data-centric loop works on ------------------------------------------------
    def pretrained_backbone(self, device=None, arch=None) -> Any:
        """The label-free Backbone (nbml.backbone) for this kind's items (`arch`: the one asked for, when the kind
        offers several); None: images, where nbml.embeddings chooses a timm body."""

    def recommended_backbones(self) -> list[dict]:
        """The backbones nbml recommends for this kind's items, one dict per row of `nbml.backbones(kind=...)`
        (arch, tier, size, licence, whether it is available here); None: images, whose table is nbml.pretrained's."""

    def compute(self, ds, backbone, todo) -> tuple[Any, Callable[[int, int], np.ndarray], list[str]]:
        """(items kept, features of positions [start, stop) of them, notes): what nbml.embeddings stores."""

    def query(self, ds, emb, value) -> tuple[np.ndarray, set, str] | None:
        """(vector, ids to leave out, words) for a query of `ds.similar` by content; None when `value` is ids."""
    QUERY_WORDS: str
    """What `similar` takes beside ids, in words for its error message."""

    # -- analysis ------------------------------------------------------------------------------------------------
    def fit_and_score(self, ds, emb, fit: np.ndarray, y: np.ndarray, score: np.ndarray,
                      n_classes: int) -> tuple[np.ndarray, str]:
        """(probabilities at positions `score`, words): a head fitted at positions `fit`, what ranks items without
        a model (`suggest`)."""

    def forecast_rho(self, model_id: str) -> float:
        """The error of the model `nbml.train` trains as a multiple of `fit_and_score`'s error at the same labels,
        on embeddings of backbone `model_id` (what `ds.forecast` carries the head's learning curve by, measured by
        its backtest); None: 1 (not measured)."""

    def model_probs(self, model, emb) -> np.ndarray:
        """A model's probabilities for the items of `emb` (its own body's stored embeddings)."""

    def surface(self, ds, ids) -> tuple[Any, np.ndarray, Any]:
        """What `duplicates` compares beside embeddings: (unit rows, a hash of each, the frame of items kept)."""

    def surface_probs(self, ds, ids: list[int], y: np.ndarray, n_classes: int, folds: int,
                      seed: int) -> np.ndarray | None:
        """Out-of-sample probabilities of a head on evidence no label shaped (`label_issues`); None: too few."""
    SURFACE_WORDS: str
    """That evidence, in words."""
    SURFACE_ONLY: str
    """What `duplicates` says when no backbone can embed and it compares the surface alone."""
    SURFACE_COLUMN: str
    """The column `duplicates` gives the surface similarity in."""
    SURFACE_THRESHOLD: float
    """The surface similarity at or above which two items are near duplicates."""
    NEAR_EMBEDDING: float | None
    """The embeddings' similarity for near duplicates; None: nbml's default for pretrained embeddings."""

    def item_stats(self, ds, usable) -> dict:
        """`ds.stats()`'s part of this kind from every usable item (`lengths` of texts, `columns` of a table);
        None: counted in the store only."""

    # -- training ------------------------------------------------------------------------------------------------
    def plan(self, ds, frame, classes, *, arch, size, bs, pretrained, weights, epochs, freeze_epochs,
             augment) -> dict:
        """This kind's part of a training plan (nbml.learner.Plan): network, size, batch, epochs, weights."""

    def make_learner(self, plan, frame, stop_cb) -> tuple[Any, Any, list[str]]:
        """(fastai Learner, the frame it trains on, notes), built with nbml.learner.basic_learner."""

    def config(self, plan) -> dict:
        """What a model's config.json says beyond the shared fields."""

    def head_model(self, ds, backbone, X, frame, target, is_train, classes, C=None) -> tuple:
        """`mode="head"`: (net, train probabilities, valid probabilities, config fields) from embeddings `X`."""

    def finish(self, plan, learn, metrics: dict) -> dict:
        """After training: choose among candidates (tables: network, trees, linear) and return the metrics; None:
        nothing to choose."""

    def refits(self, n_labelled: int, arch: str) -> bool:
        """Whether a validated model is fitted again on every label; None: never."""

    def refit_on_all(self, plan, learn) -> dict:
        """That fit: the validation items' probabilities from before ({item id: probabilities}); None with
        `refits`."""

    # -- a model's inputs and files ------------------------------------------------------------------------------
    def item_probs(self, model, frame, bs: int = 256) -> tuple[Any, np.ndarray]:
        """(items kept, probabilities) for store items; items that cannot be read are dropped."""

    def predict_probs(self, model, values) -> np.ndarray:
        """Probabilities for the user's inputs (`model.predict`): paths or bytes, texts, row dicts."""

    def batch_probs(self, model, batch) -> np.ndarray:
        """Probabilities for a batch as the kind's serving module prepares it (the server's torch runner on a
        GPU); None: served by ONNX Runtime only."""

    def load_net(self, folder, config: dict, state: dict) -> Any:
        """The torch network of a saved model, its weights loaded."""

    def save_extra(self, model, folder) -> None:
        """Files a saved model needs beside the weights (a tokenizer); None: none."""

    def load_extra(self, model, folder) -> None:
        """Read those back onto `model` (anything with `config`, `net`); None: nothing to read."""

    # -- export ------------------------------------------------------------------------------------------------
    def onnx_graph(self, model, net) -> dict:
        """What nbml.export writes as ONNX: the wrapper module, a sample input, input names, dynamic axes,
        exporters to try."""

    def check_feeds(self, model, size: int | None = None) -> tuple[list[dict], str]:
        """Inputs the ONNX graph is compared with torch on at export, and their description."""

    def export_config(self, model) -> dict:
        """What an artifact's config.json adds for the server (preprocessing, tokenizer, encodings)."""

    def quantize(self, model, float_onnx, int8_onnx, **kw) -> dict:
        """int8 of the checked graph and its accuracy record (kept or not); None where QUANTIZE_REFUSED says why
        not."""
    QUANTIZE_REFUSED: str | None
    """Why int8 is not offered for this kind (the ValueError's message); None where it is."""

    def triton_entry(self, config: dict) -> dict[str, str]:
        """Triton's model repository entry: {file name: text}."""

    def card(self, config: dict) -> dict:
        """The model card's kind-specific parts: summary, input, onnx_file, try_it, serving, limits."""
    SERVE_REQUIREMENTS: tuple
    """(package, minimum version) pairs the server needs for this kind beyond nbml's own."""


class ServingInputs(Protocol):
    """The server's half of a kind: `Inputs` in the kind's serving module (`nbml.kinds.serving(name)`), built once
    per server as `Inputs(folder, config, settings)`. It imports no torch, pandas or scikit-learn."""
    kind: str
    """The kind's name, as the server reports it."""
    noun: str
    """What one input is called in messages ("image", "text", "row")."""
    v2: Any
    """The Open Inference Protocol input it takes (nbml.serving.v2.V2Input)."""
    try_it: str
    """curl arguments that send one input, for the printed example."""

    def make_runner(self, folder, config: dict, device: str, threads: int | None) -> Any:
        """What runs the model on a prepared batch (an ONNX Runtime session, or torch on a GPU)."""

    def warm_up_batch(self) -> np.ndarray:
        """A batch of one input to run once before the server says it is ready."""

    def log_budget(self, **settings) -> tuple[int, int]:
        """(inputs the prediction log keeps in all, the largest one kept) from the server's settings."""

    def parse_predict(self, body: bytes, content_type: str) -> tuple[list, bool]:
        """(inputs, whether the request held a single one) from a `/predict` body; HTTPError 400 saying why not."""

    async def prepare(self, service, values: list) -> tuple[np.ndarray, list]:
        """(the runner's batch, each input's content hash or None) from parsed inputs; 400 for a bad one."""

    def digest(self, value) -> str:
        """An input's content hash, as the log keys it."""

    def payload(self, value, unit) -> bytes:
        """What the log keeps of an input."""

    def parse_v2(self, body: bytes, header_length: str | None) -> Any:
        """An Open Inference Protocol request (nbml.serving.v2.InferRequest) from its body."""


OPTIONAL = frozenset({"READ_LIMIT", "card_text", "pretrained_backbone", "recommended_backbones", "NEAR_EMBEDDING",
                      "item_stats", "forecast_rho", "finish", "refits", "refit_on_all", "batch_probs", "quantize",
                      "QUANTIZE_REFUSED", "save_extra", "load_extra"})


def members() -> list[str]:
    """Every member of `Kind`: its functions, then its constants."""
    names = []
    for name, value in vars(Kind).items():
        if name.startswith("_"):
            continue
        if callable(value):
            names.append(name)
    names += [n for n in Kind.__annotations__ if n not in names]
    return names


def check_kind(module, name: str) -> None:
    """Raise TypeError naming what `module` lacks of `Kind` (optional members must be present, maybe None)."""
    missing = [m for m in members() if not hasattr(module, m)]
    empty = [m for m in members() if m not in OPTIONAL and hasattr(module, m) and getattr(module, m) is None]
    if missing or empty or getattr(module, "NAME", None) != name:
        raise TypeError(f"{module.__name__} is registered as the kind {name!r} but does not implement "
                        f"nbml.kinds.base.Kind: " + "; ".join(
                            part for part in (f"missing {missing}" if missing else "",
                                              f"None but required {empty}" if empty else "",
                                              f"NAME is {getattr(module, 'NAME', None)!r}"
                                              if getattr(module, "NAME", None) != name else "") if part))
