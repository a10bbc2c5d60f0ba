"""The default text model whenever a sentence encoder can be had: the encoder fine-tuned on pairs of the labelled
texts (SetFit's method, nbml.kinds.text_encoder), then a logistic-regression head on its embeddings. Part of the text
kind (nbml.kinds.text, its face); text_model dispatches here for `arch=None` (all-MiniLM-L6-v2) and `arch="hf:..."`.

In `nbml.train` the pair phase is the run's epochs: `EPOCHS` parts of one pair schedule, each ending with the pair
loss on pairs of the validation texts, so the monitor draws the pair loss, Stop ends the phase and keep-the-best
keeps the part with the lowest validation pair loss. `finish` then embeds the labelled texts with the fine-tuned
encoder, fits the head on the train texts and reports its validation accuracy (the run's accuracy); `refit_on_all`
fits the head again on every label (the encoder is not trained again: its validation figures stay honest through
Model.holdout). The network (`EncoderNet`) is the encoder (`net[0]`, with its tokenizer) and a linear head
(`net[1]`); a saved model's folder holds the encoder's config.json and tokenizer.json under `encoder/`.
"""
from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import numpy as np

from . import text_encoder as te
from .text_encoder_runtime import TOKENIZER_FILE, LinearHead, load_tokenizer, pad_id, token_ids

PREFIX = "hf:"
EPOCHS = 4               # parts of the pair phase: Stop and keep-the-best act between them
PAIRS_PER_TEXT = 40      # pairs per labelled train text, SetFit's default (20 each way), at most MAX_PAIRS in all
MIN_PAIRS = 256
# The cap sets the cost: about a minute on 2 cores for 2,304 pairs of short texts (the encoder's products in bfloat16
# where faster). With 16 pairs per text, SMS spam at 16 labels per class got 416 pairs and F1 0.841 (3 seeds), below
# the static model's 0.878. TREC-6 at 16 per class (96 labels), 5 seeds, quiet: 0.838 / 0.846 / 0.848 at 2,048 /
# 2,304 / 2,560 pairs, the pair phase's median 47 / 61 / 65 s (benchmarks/results/text-encoder-bf16-*-2026-12-07.txt)
MAX_PAIRS = 2304
EXTRA_DIR = "encoder"    # in a saved model's folder: the encoder's config.json and tokenizer.json
REFIT_MAX = 20_000       # labelled texts up to which the head is fitted again on every label after validation


ENV = "NBML_TEXT_ENCODER"   # the default encoder ('hf:<repo>' or 'hf:/folder'), or 'static' for the static model


class EncoderUnavailable(LookupError):
    """No sentence encoder here (not cached, no package, offline), or NBML_TEXT_ENCODER=static (`chosen`):
    nbml.kinds.text trains its static model."""

    def __init__(self, message: str, chosen: bool = False):
        super().__init__(message)
        self.chosen = chosen


def default_arch() -> str | None:
    """The encoder used when no arch is given: $NBML_TEXT_ENCODER, else all-MiniLM-L6-v2 (None); EncoderUnavailable
    when that variable says 'static' (or 'none', 'off')."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in ("static", "none", "off", "wordllama-tfidf"):
        raise EncoderUnavailable(f"{ENV}={value}: the static text model is the default here", chosen=True)
    return value or None


def is_encoder_arch(arch) -> bool:
    return isinstance(arch, str) and arch.startswith(PREFIX)


def is_encoder_config(config: dict) -> bool:
    return "encoder" in config and is_encoder_arch(config.get("arch"))


# -- the network ------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _net_class():
    from torch import nn

    class EncoderNet(nn.Module):
        """logits = head(encoder(ids, mask)); `net[0]` is the SentenceEncoder (its tokenizer rides along as
        `net.tokenizer` and `net[0].tokenizer`), `net[1]` the head."""
        is_encoder = True

        def __init__(self, encoder, n_classes: int):
            super().__init__()
            self.body = encoder
            self.head = nn.Linear(encoder.num_features, n_classes)

        def __getitem__(self, i):
            return (self.body, self.head)[i]

        def forward(self, input_ids, attention_mask):
            return self.head(self.body(input_ids, attention_mask))
    return EncoderNet


def new_net(encoder, tok, n_classes: int):
    net = _net_class()(encoder, n_classes)
    net.tokenizer = encoder.tokenizer = tok
    return net


def set_head(net, head: LinearHead) -> None:
    """Write a LinearHead (all classes of the net, in its order) into the net's linear layer."""
    import torch
    coef, bias = head.coef, head.intercept
    if coef.shape[0] == 1:          # one score for the second class: split it, so softmax gives the sigmoid
        coef, bias = np.stack([-coef[0] / 2, coef[0] / 2]), np.array([-bias[0] / 2, bias[0] / 2])
    with torch.no_grad():
        net.head.weight.copy_(torch.from_numpy(np.asarray(coef, np.float32)))
        net.head.bias.copy_(torch.from_numpy(np.asarray(bias, np.float32)))


def net_head(net, classes) -> LinearHead:
    return LinearHead(classes, net.head.weight.detach().float().cpu().numpy(),
                      net.head.bias.detach().float().cpu().numpy())


# -- the training plan --------------------------------------------------------------------------------------------
def pair_count(n_train: int) -> int:
    """Pairs in the pair phase: PAIRS_PER_TEXT per train text, between MIN_PAIRS and MAX_PAIRS."""
    return int(min(MAX_PAIRS, max(MIN_PAIRS, PAIRS_PER_TEXT * n_train)))


def plan(ds, frame, classes, *, arch, size, bs, pretrained, weights, epochs, freeze_epochs) -> dict:
    """The text kind's plan for a sentence encoder (`arch` None: all-MiniLM-L6-v2; 'hf:<repo>' or 'hf:/folder').
    EncoderUnavailable when none can be had and the caller may fall back to the static model."""
    if weights is not None:
        raise ValueError("weights= is for image backbones; for a sentence encoder saved in a folder pass "
                         "arch='hf:/path/to/folder'")
    if pretrained is False:
        raise ValueError("a sentence encoder is fine-tuned from its pretrained weights; pretrained=False is not "
                         "offered for texts")
    try:
        files = te.resolve_encoder(default_arch() if arch is None else arch, download="auto")
    except te.EncoderNotAvailable as e:
        raise EncoderUnavailable(str(e)) from None
    encoder, tok = te.load_encoder(files)
    net = new_net(encoder, tok, len(classes))
    n_train = int((frame["split"] == "train").sum())
    net.pairs = pair_count(n_train)
    net.pair_tokens = te.MAX_TOKENS
    return dict(arch=f"{PREFIX}{files.repo}", net=net, size=int(min(int(size or encoder.max_tokens),
                                                                    encoder.max_tokens)),
                bs=int(bs or te.BATCH), epochs=EPOCHS if epochs is None else max(1, int(epochs)), freeze_epochs=0,
                weights_source=f"{PREFIX}{files.repo} ({files.source}; sha256 {files.sha256[:12]})", mean=(), std=(),
                augment=None, default_lr=te.LR, fit_options=dict(te.FIT_OPTIONS))


def _labels(frame) -> np.ndarray:
    return frame["label"].astype(str).to_numpy()


def make_learner(plan, frame, stop_cb):
    """The pair learner (te.pair_learner) on the train texts, its valid loss on pairs of the validation texts."""
    from ..learner import learner_cbs
    net = plan.net.to(plan.device)
    is_train = (frame["split"] == "train").to_numpy()
    texts, labels = frame["content"].tolist(), _labels(frame)
    per_epoch = max(1, -(-net.pairs // plan.epochs))
    learn = te.pair_learner(net.body, net.tokenizer, [t for t, k in zip(texts, is_train) if k], labels[is_train],
                            valid_texts=[t for t, k in zip(texts, ~is_train) if k], valid_labels=labels[~is_train],
                            pairs=per_epoch, max_tokens=net.pair_tokens, bs=plan.bs, seed=plan.seed or 0,
                            device=plan.device, cbs=learner_cbs(plan, stop_cb), path=plan.ds.home / "tmp")
    plan.params.update(pairs=per_epoch * plan.epochs, pair_tokens=net.pair_tokens, encoder=net.body.repo,
                       encoder_source=net.body.source, encoder_sha256=net.body.sha256)
    net.t0 = time.perf_counter()
    notes = []
    cut = sum(len(s) >= plan.size for s in token_ids(net.tokenizer, texts, plan.size))
    if cut:
        notes.append(f"{cut} of {len(texts)} texts are longer than the {plan.size} tokens the encoder reads: the "
                     f"model sees their beginning only")
    return learn, frame, notes


def _embed(plan, texts: list[str]) -> np.ndarray:
    return te.embed(plan.net.body, plan.net.tokenizer, texts, plan.size, device=plan.device)


def _head_on(plan, emb: np.ndarray, labels: np.ndarray) -> LinearHead:
    return te.fit_head(emb, labels, classes=plan.classes)


def finish(plan, learn, metrics: dict) -> dict:
    """After the pair phase: the head on the fine-tuned encoder's embeddings of the train texts, its validation
    accuracy and log loss (the run's metrics; the pair phase's own stay beside them, named pair_*)."""
    from .. import events as E
    net = plan.net
    learn.model = net          # what the run saves: the encoder with its head, not the pair model
    finetune_s = time.perf_counter() - getattr(net, "t0", time.perf_counter())
    frame = plan.frame
    is_train = (frame["split"] == "train").to_numpy()
    labels = _labels(frame)
    emb = _embed(plan, frame["content"].tolist())
    net.frame_embeddings = emb          # refit_on_all fits on the same embeddings (the encoder does not change)
    head = _head_on(plan, emb[is_train], labels[is_train])
    set_head(net, head)
    p = head.probs(emb[~is_train])
    y = np.array([plan.classes.index(c) for c in labels[~is_train]])
    rows = np.arange(len(y))
    out = {f"pair_{k}" if k in ("train_loss", "valid_loss") else k: v for k, v in metrics.items()}
    out.update(accuracy=float((p.argmax(1) == y).mean()) if len(y) else float("nan"),
               valid_loss=float(-np.log(np.clip(p[rows, y], 1e-12, 1)).mean()) if len(y) else float("nan"))
    plan.params.update(finetune_seconds=round(finetune_s, 2))
    if plan.handle is not None:      # the head's accuracy; no loss point: its log loss is not the pair loss drawn
        plan.handle.emit(E.PhaseStarted("head", 0))
        plan.handle.emit(E.EpochEnded("head", plan.epochs, plan.epochs + 1, float("nan"), float("nan"),
                                      {"accuracy": out["accuracy"]}, finetune_s, 0.0))
    return out


def refits(n_labelled: int) -> bool:
    return n_labelled <= REFIT_MAX


def refit_on_all(plan, learn) -> dict[int, np.ndarray]:
    """The validation texts' probabilities from the validated model, then the head fitted on every label."""
    from .. import events as E
    frame = plan.frame
    is_valid = (frame["split"] == "valid").to_numpy()
    emb = getattr(plan.net, "frame_embeddings", None)
    if emb is None or len(emb) != len(frame):
        emb = _embed(plan, frame["content"].tolist())
    plan.net.frame_embeddings = None
    validated = net_head(plan.net, plan.classes)
    holdout = dict(zip(frame.loc[is_valid, "id"].astype(int).tolist(), validated.probs(emb[is_valid])))
    plan.handle.emit(E.PhaseStarted("refit", 0))
    set_head(plan.net, _head_on(plan, emb, _labels(frame)))
    return holdout


def _encoder_fields(encoder, tok, max_tokens: int) -> dict:
    """The config.json fields that describe a model's encoder and head (fine-tuned or mode="head" alike)."""
    return dict(kind="text", encoder=encoder.repo, encoder_source=encoder.source, encoder_sha256=encoder.sha256,
                max_tokens=int(max_tokens), dim=int(encoder.num_features), pooling=encoder.pooling,
                normalize=encoder.normalize, pad_id=pad_id(tok), encoder_config=f"{EXTRA_DIR}/config.json",
                tokenizer=f"{EXTRA_DIR}/{TOKENIZER_FILE}", head={"type": "linear"})


def config(plan) -> dict:
    """What an encoder text model's config.json says beyond the shared fields."""
    net = plan.net
    return dict(_encoder_fields(net.body, net.tokenizer, plan.size), pairs=int(plan.params.get("pairs", net.pairs)),
                pair_tokens=int(net.pair_tokens), finetune_seconds=plan.params.get("finetune_seconds"))


# -- mode="head" and the data-centric loop ------------------------------------------------------------------------
BACKBONE_PREFIX = "encoder:"     # the pretrained encoder's backbone id: encoder:<repo>@<sha256[:12]>@<tokens>
# ds.forecast: the fine-tuned model's error as a multiple of the error of the head on the pretrained encoder's
# embeddings and TF-IDF (text_model.fit_and_score) at the same labels. Backtest of 2026-12-07/08 (benchmarks/
# forecast.py, TREC-6 and SMS spam, 10 and 20 labels per class): geometric mean 0.57 over 33 horizons of seeds 0-2
# (the static model's 1.0 left the forecast 13 points short on TREC-6); seed 3, run after, MAE 3.6 / 3.6 points at
# 2x / 4x the labels; each of 4 seeds corrected by the other seeds' factor, 3.2 / 3.3 (docs/forecast.md).
FORECAST_RHO = 0.57


def is_encoder_backbone(model_id: str) -> bool:
    return str(model_id).startswith(BACKBONE_PREFIX)


def backbone(device=None, download: bool | str = "auto"):
    """The pretrained encoder as the data-centric loop's backbone; EncoderUnavailable when there is none."""
    from ..backbone import Backbone
    try:
        files = te.resolve_encoder(default_arch(), download=download)
    except te.EncoderNotAvailable as e:
        raise EncoderUnavailable(str(e)) from None

    tokens = te.max_tokens_of(files.folder)
    model_id = f"{BACKBONE_PREFIX}{files.repo}@{files.sha256[:12]}@{tokens}"

    def loader():
        encoder, tok = te.load_encoder(files)
        encoder.tokenizer = tok
        if model_id not in _RUNTIME:
            _RUNTIME[model_id] = _runtime_encoder(files, encoder, tok, tokens)
        return encoder
    return Backbone(model_id,
                    f"{files.repo} (pretrained sentence encoder, {files.source})", f"{PREFIX}{files.repo}", tokens,
                    (), (), f"{PREFIX}{files.repo}", loader=loader, device=device, fresh=True, kind="text")


# The pretrained encoder in ONNX Runtime, by backbone id: what embeds a project's texts for the data-centric loop
# (all-MiniLM-L6-v2 on 2 cores: 120 texts/s against torch's 55, measured with benchmarks/text_encoder.py). float32,
# within 1e-4 of torch: a head fitted on these embeddings (mode="head") predicts the same through torch.
_RUNTIME: dict = {}


def _runtime_encoder(files, encoder, tok, tokens: int):
    """The encoder exported once into nbml's cache (encoders/onnx-<sha>/) and opened in ONNX Runtime; None when
    it cannot be (torch embeds instead)."""
    import shutil
    import uuid
    import warnings
    from .text_encoder_runtime import ENCODER_CONFIG_FILE, OnnxSentenceEncoder
    folder = te.encoders_cache() / f"onnx-{files.sha256[:16]}-{tokens}"
    try:
        if not (folder / ENCODER_CONFIG_FILE).is_file():
            tmp = folder.with_name(f"{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
            te.export_onnx(encoder, tok, tmp, max_tokens=tokens, quantize=False,
                           exporters=("torchscript", "torch.export"))
            try:
                os.replace(tmp, folder)
            except OSError:           # another process finished first: theirs is as good
                shutil.rmtree(tmp, ignore_errors=True)
        return OnnxSentenceEncoder(folder, "float32")
    except Exception as e:      # an encoder the exporters cannot trace: torch embeds, slower
        warnings.warn(f"the sentence encoder could not run in ONNX Runtime ({type(e).__name__}: {e}); torch embeds "
                      f"the project's texts instead", stacklevel=2)
        return None


def is_encoder_body(body) -> bool:
    return isinstance(body, te.SentenceEncoder)


def features(body, texts: list[str], max_tokens: int, model_id: str | None = None) -> np.ndarray:
    """Embeddings of texts by an encoder body: through ONNX Runtime for the pretrained backbone `model_id`, else
    torch."""
    runtime = _RUNTIME.get(model_id)
    if runtime is not None and runtime.max_tokens == int(max_tokens):
        return runtime.embed(list(texts))
    tok = getattr(body, "tokenizer", None)
    if tok is None:
        raise ValueError("this encoder has no tokenizer attached; load its model with nbml.load")
    return te.embed(body, tok, list(texts), max_tokens)


def head_model(ds, backbone, X: np.ndarray, frame, target: np.ndarray, is_train: np.ndarray, classes: list[str],
               C: float | None = None):
    """mode="head" on an encoder: SetFit's head (logistic regression) on the cached embeddings, in an EncoderNet
    whose body is the backbone's. Returns (net, train probabilities, valid probabilities, config fields)."""
    # the backbone's own module, not a copy: a head model never trains its encoder, and copying 22M parameters
    # twice a run (validation, then every label) took 0.8 of a refit's 1.3 s
    body = backbone.body()
    net = new_net(body, body.tokenizer, len(classes))
    # the grid refits after every few labels, and a run fits twice (validation, then every label): L-BFGS starts
    # from this session's last solution on the same embeddings (10,000 texts: 1.0 s a fit from zero)
    key = (backbone.model_id, te.HEAD_C if C is None else C)
    held = ds.__dict__.get("_encoder_head_solution")
    head = te.fit_head(X[is_train], np.asarray(classes)[target[is_train]], C=te.HEAD_C if C is None else C,
                       classes=classes, init=held[1] if held is not None and held[0] == key else None)
    ds.__dict__["_encoder_head_solution"] = (key, head.solution)
    set_head(net, head)
    p = head.probs(X)
    net.pairs, net.pair_tokens = 0, 0
    extra = dict(_encoder_fields(body, body.tokenizer, backbone.size), pairs=0, pair_tokens=0, arch=backbone.arch,
                 size=int(backbone.size), mean=[], std=[])
    return net, p[is_train], p[~is_train], extra


# -- a model's inputs ---------------------------------------------------------------------------------------------
def probs(model, texts: list[str], bs: int = 64) -> np.ndarray:
    """Class probabilities for texts, float32 [n, classes]: the encoder's embeddings, then the head."""
    net = model.net.eval()
    emb = te.embed(net.body, net.tokenizer, list(texts), model.size, bs=bs, device=model.device)
    return net_head(net, model.classes).probs(emb)


def model_probs(model, features: np.ndarray) -> np.ndarray:
    """The head on embeddings of the model's own encoder (stored ones: no encoder pass)."""
    return net_head(model.net, model.classes).probs(features)


# -- saving and loading --------------------------------------------------------------------------------------------
def save_extra(model, folder: Path) -> None:
    """A saved encoder model's folder also holds the encoder's config.json and tokenizer.json, under encoder/."""
    extra = Path(folder) / EXTRA_DIR
    extra.mkdir(parents=True, exist_ok=True)
    model.net.body.model.config.save_pretrained(str(extra))
    model.net.tokenizer.save(str(extra / TOKENIZER_FILE))


def load_extra(model, folder: Path) -> None:
    pass      # load_net puts the tokenizer on the network


def load_net(folder: Path, config: dict, state: dict):
    """The network of a saved encoder model from its folder alone: the encoder rebuilt from encoder/config.json,
    the weights from `state`, the tokenizer from encoder/tokenizer.json."""
    extra = Path(folder) / EXTRA_DIR
    if not (extra / "config.json").is_file() or not (extra / TOKENIZER_FILE).is_file():
        raise FileNotFoundError(f"{folder} holds a sentence-encoder text model but not its encoder's configuration "
                                f"and tokenizer ({EXTRA_DIR}/config.json, {EXTRA_DIR}/{TOKENIZER_FILE})")
    with te.TRANSFORMERS_LOCK:
        from transformers import AutoConfig, AutoModel
        model = AutoModel.from_config(AutoConfig.from_pretrained(str(extra), local_files_only=True))
    encoder = te.SentenceEncoder(model, config.get("pooling", "mean"), bool(config.get("normalize", True)))
    encoder.repo, encoder.source, encoder.sha256 = (config.get("encoder", ""), config.get("encoder_source", ""),
                                                    config.get("encoder_sha256", ""))
    encoder.max_tokens = int(config.get("max_tokens", te.EMBED_TOKENS))
    net = new_net(encoder, load_tokenizer(extra / TOKENIZER_FILE), len(config["classes"]))
    net.load_state_dict(state)
    net.pairs, net.pair_tokens = int(config.get("pairs", 0)), int(config.get("pair_tokens", 0))
    return net.eval()


__all__ = ["EncoderUnavailable", "plan", "make_learner", "finish", "refits", "refit_on_all", "config", "backbone",
           "features", "head_model", "probs", "model_probs", "save_extra", "load_extra", "load_net", "set_head",
           "net_head", "pair_count", "is_encoder_arch", "is_encoder_config", "is_encoder_body"]
