"""The `sequence` kind: items are short sequences of digits, stored as text ("3 1 4"); their features (and
embeddings) are the share of each digit and the length; the model is a linear layer on those features."""
from __future__ import annotations

import hashlib

import numpy as np

from nbml._report import IngestReport
from nbml.kinds.base import ONNX_OUTPUT
from nbml.store import NewItem

NAME = "sequence"
UNIT = "digits"
NOUN = "sequence"
CARD = "text"
READ_LIMIT = None
QUERY_WORDS = "or a list of digits"
SURFACE_WORDS = "the digits' counts"
SURFACE_ONLY = "digit-count comparison only"
SURFACE_COLUMN = "count_similarity"
SURFACE_THRESHOLD = 0.999
NEAR_EMBEDDING = None
recommended_backbones = None
SERVE_REQUIREMENTS = ()
QUANTIZE_REFUSED = "int8 is not offered for sequences: the graph is one small matrix."
DIM = 11
INPUT = "features"
item_stats = forecast_rho = finish = refits = refit_on_all = batch_probs = quantize = save_extra = load_extra = None


def parse(value) -> list[int]:
    digits = value.split() if isinstance(value, str) else list(value)
    out = [int(d) for d in digits]
    if not out or any(d < 0 or d > 9 for d in out):
        raise ValueError(f"a sequence is one or more digits 0-9, not {value!r}")
    return out


def features(seqs) -> np.ndarray:
    out = np.zeros((len(seqs), DIM), np.float32)
    for i, seq in enumerate(seqs):
        out[i, :10] = np.bincount(seq, minlength=10) / len(seq)
        out[i, 10] = len(seq) / 10
    return out


# -- ingest ------------------------------------------------------------------------------------------------------
def add(ds, values, labels=None, **kw):
    ds.check_kind(NAME)
    report = IngestReport()
    labels = list(labels) if labels is not None else [None] * len(values)
    items = []
    for i, (value, label) in enumerate(zip(values, labels)):
        try:
            text = " ".join(map(str, parse(value)))
        except (ValueError, TypeError) as e:
            report.skipped.append((f"sequence {i + 1}", str(e)))
            continue
        items.append(NewItem(hashlib.sha256(text.encode()).hexdigest(), f"sequence {i + 1}", label, None,
                             dict(content=text, size_bytes=len(text))))
    return ds.insert_items(NAME, items, report)


def add_logged(ds, logged: dict):
    return add(ds, [data.decode() for data in logged.values()])


def usable(frame):
    bad = frame["content"].isna()
    return frame[~bad].reset_index(drop=True), [f"item {i} skipped: no digits" for i in frame.loc[bad, "id"]]


def _seqs(frame) -> list[list[int]]:
    return [parse(c) for c in frame["content"]]


# -- display -----------------------------------------------------------------------------------------------------
def card_text(ds):
    return None


def read_chars(text: str) -> int:
    return len(text)


# -- features and analysis ----------------------------------------------------------------------------------------
def pretrained_backbone(device=None, arch=None):
    import torch
    from nbml.backbone import Backbone
    return Backbone("sequence:counts", "the share of each digit and the length", "counts", DIM, (), (), "none",
                    loader=lambda: torch.nn.Identity(), device=device, fresh=True, kind=NAME)


def compute(ds, backbone, todo):
    feats = features(_seqs(todo))
    return todo, lambda start, stop: feats[start:stop], []


def query(ds, emb, value):
    if isinstance(value, (int, np.integer)) or (isinstance(value, list) and value and
                                               all(isinstance(v, (int, np.integer)) and v > 9 for v in value)):
        return None
    return features([parse(value)])[0], set(), "a sequence"


def _softmax(logits: np.ndarray) -> np.ndarray:
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def fit_and_score(ds, emb, fit, y, score, n_classes):
    from nbml.head import fit_linear, linear_probs
    linear = fit_linear(emb.features[fit], y, n_classes, C=1.0)
    return linear_probs(linear, emb.features[score]), "a linear head on the digit counts"


def model_probs(model, emb) -> np.ndarray:
    return probs(model, emb.features)


def surface(ds, ids):
    import pandas as pd
    rows = [r for r in ds.item_rows(ids)]
    frame = pd.DataFrame([{k: r.get(k) for k in ("id", "content", "sha256", "label", "split")} for r in rows])
    v = features(_seqs(frame))
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return v, frame["sha256"].to_numpy(object), frame


def surface_probs(ds, ids, y, n_classes, folds, seed):
    return None


# -- training ------------------------------------------------------------------------------------------------------
def _net(n_classes: int):
    import torch
    return torch.nn.Sequential(torch.nn.Identity(), torch.nn.Linear(DIM, n_classes))


def plan(ds, frame, classes, **kw) -> dict:
    raise NotImplementedError("sequences train with mode='head' only in this toy kind")


def make_learner(plan, frame, stop_cb):
    raise NotImplementedError("sequences train with mode='head' only in this toy kind")


def config(plan) -> dict:
    return {"kind": NAME}


def head_model(ds, backbone, X, frame, target, is_train, classes, C=None):
    from nbml.head import fit_linear, linear_probs
    linear = fit_linear(X[is_train], target[is_train], len(classes), C=1.0 if C is None else C)
    net = _net(len(classes))
    net[1] = linear
    return net, linear_probs(linear, X[is_train]), linear_probs(linear, X[~is_train]), dict(kind=NAME)


# -- a model's inputs and files ------------------------------------------------------------------------------------
def probs(model, feats: np.ndarray) -> np.ndarray:
    import torch
    with torch.inference_mode():
        logits = model.net.eval()(torch.from_numpy(np.asarray(feats, np.float32)).to(model.device))
    return torch.softmax(logits.float(), 1).cpu().numpy()


def item_probs(model, frame, bs: int = 256):
    frame, _ = usable(frame)
    return frame, probs(model, features(_seqs(frame)))


def predict_probs(model, values) -> np.ndarray:
    return probs(model, features([parse(v) for v in values]))


def load_net(folder, config: dict, state: dict):
    net = _net(len(config["classes"]))
    net.load_state_dict(state)
    return net


# -- export ----------------------------------------------------------------------------------------------------------
def onnx_graph(model, net) -> dict:
    import torch

    class Wrapper(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return torch.softmax(self.net(x), 1)

    return dict(wrapper=Wrapper(net).eval(), sample=(torch.zeros(2, DIM),), inputs=[INPUT], output=ONNX_OUTPUT,
                dynamic={INPUT: {0: "batch"}}, exporters=("torchscript",))


def check_feeds(model, size=None):
    sample = features([[1, 2, 3], [9, 9], [0, 5, 5, 5, 1]])
    return [{INPUT: sample[:1]}, {INPUT: sample}], "3 sample sequences"


def export_config(model) -> dict:
    return {"preprocessing": {"features": "share of each digit 0-9, then length / 10"}}


def triton_entry(config: dict) -> dict[str, str]:
    from nbml.kinds.export_parts import triton_arrays_config
    return triton_arrays_config(config, [(INPUT, "TYPE_FP32")])


def card(config: dict) -> dict:
    return dict(summary="A toy classifier of digit sequences.", input=["- a list of digits 0-9"],
                onnx_file="- `model.onnx`: features float32 [N, 11] in", try_it="curl -d '{\"sequence\": [1, 2]}' ...",
                serving=['`POST /predict` takes `{"sequence": [digits]}`.'], limits=["- a toy"])
