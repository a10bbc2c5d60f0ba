"""Texts through a Hugging Face transformer encoder: `nbml.train(ds, arch="hf:<repo id>")` fine-tunes an encoder
(for example `sentence-transformers/all-MiniLM-L6-v2` or `BAAI/bge-small-en-v1.5`) with `transformers` and
`tokenizers`.

The weights, configuration and tokenizer come only from the local Hugging Face cache (`HF_HUB_CACHE`, else
`$HF_HOME/hub`, else `~/.cache/huggingface/hub`) or from a folder (`arch="hf:/path/to/folder"`, as written by
`save_pretrained`): training never downloads, so `HF_HUB_OFFLINE` is honoured by construction. When the encoder is
not there, `pretrained="auto"` warns once (`PretrainedWeightsWarning`, with how to put it in the cache) and trains
the default text model instead; `pretrained=True` raises.

The network: the encoder, the mean of its last hidden states over the attention mask (the body, `net[0]`, with
`num_features`), and a linear head (`net[1]`). As on the default text path the head starts from a logistic
regression fitted in closed form on the train texts' pooled features, then fastai fine-tunes the whole at a
transformer's learning rate.

A saved model's folder holds the encoder's `config.json` and the tokenizer files under `hf/` (`save_extra`), so
`nbml.load` rebuilds the network without the cache (`load_net`).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

PREFIX = "hf:"
EPOCHS = 3               # fine-tuning epochs after the closed-form head
LR = 3e-5                # the usual range for fine-tuning BERT-sized encoders is 2e-5 to 5e-5
MAX_TOKENS = 256         # default tokens read per text (less when the encoder reads fewer)
HEAD_C = 1.0             # inverse regularisation of the closed-form head
EXTRA_DIR = "hf"         # where a saved model keeps the encoder's config.json and the tokenizer files
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")


# -- where the encoder is ----------------------------------------------------------------------------------------
def hub_cache() -> Path:
    """The Hugging Face hub cache, read from the environment now (not when huggingface_hub was imported)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _spec(arch: str) -> str:
    if not isinstance(arch, str) or not arch.startswith(PREFIX) or not arch[len(PREFIX):].strip():
        raise ValueError(f"a Hugging Face encoder is named arch='hf:<repo id>' (for example "
                         f"'hf:sentence-transformers/all-MiniLM-L6-v2') or arch='hf:/path/to/folder', not {arch!r}")
    return arch[len(PREFIX):].strip()


def resolve(arch: str) -> tuple[Path, str, str]:
    """(folder holding config.json, weights and tokenizer; repo id or folder; revision) for `hf:<repo>[@rev]` or
    `hf:<folder>`, from local files only; LookupError when the encoder is not there."""
    spec = _spec(arch)
    folder = Path(spec).expanduser()
    if folder.is_dir():
        folder = folder.resolve()
        repo, revision = str(folder), "local"
    else:
        from huggingface_hub import try_to_load_from_cache
        repo, _, revision = spec.partition("@")
        if repo.count("/") > 1 or repo.startswith(("/", ".", "~")):
            raise LookupError(f"{spec} is neither a folder nor a Hugging Face repo id")
        try:
            found = try_to_load_from_cache(repo, "config.json", cache_dir=str(hub_cache()),
                                           revision=revision or None)
        except Exception as e:          # a malformed repo id
            raise LookupError(f"{repo}: {e}") from None
        if not isinstance(found, str):
            raise LookupError(f"{repo} is not in the local Hugging Face cache ({hub_cache()})")
        folder = Path(found).parent
        revision = folder.name
    if not (folder / "config.json").is_file():
        raise LookupError(f"{folder} has no config.json")
    if not any((folder / f).is_file() for f in _WEIGHT_FILES):
        raise LookupError(f"{repo} has no weights ({' or '.join(_WEIGHT_FILES[::2])}) in {folder}")
    return folder, repo, revision


def _not_cached_message(arch: str, reason: str) -> str:
    repo = _spec(arch).partition("@")[0]
    offline = " HF_HUB_OFFLINE is set." if hub_offline() else ""
    return (f"No weights for {arch} could be loaded ({reason}).{offline} nbml reads Hugging Face encoders only from "
            f"the local cache and never downloads while training. To use it: on a machine with network access run "
            f"`hf download {repo}` (or in Python `huggingface_hub.snapshot_download('{repo}')`), then copy that "
            f"machine's cache folder (~/.cache/huggingface, or wherever HF_HOME points) here and set HF_HOME to it "
            f"(or HF_HUB_CACHE to its hub/ folder); or save the model with `save_pretrained` and pass "
            f"arch='hf:/path/to/that/folder'.")


# -- the network ------------------------------------------------------------------------------------------------------
class HFBody(nn.Module):
    """The encoder, then the mean of its last hidden states over the attention mask: [batch, num_features]. The
    tokenizer rides along as a plain attribute (`body.tokenizer`), so the body alone can embed texts."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.num_features = int(encoder.config.hidden_size)

    def forward(self, ids, mask):
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class HFNet(nn.Module):
    """logits = head(body(ids, mask)); `net[0]` is the body, `net[1]` the head. The tokenizer rides along as a
    plain attribute (`net.tokenizer`), with the repo and revision it came from."""
    is_hf = True

    def __init__(self, encoder, n_classes: int):
        super().__init__()
        self.body = HFBody(encoder)
        self.head = nn.Linear(self.body.num_features, n_classes)

    def __getitem__(self, i):
        return (self.body, self.head)[i]

    def forward(self, ids, mask):
        return self.head(self.body(ids, mask))


def _max_tokens(tok, encoder_config) -> int:
    """The longest input the encoder reads: the tokenizer's limit when it states one, else the position table's."""
    limit = getattr(tok, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return limit
    positions = getattr(encoder_config, "max_position_embeddings", None)
    return int(positions) if positions else 512


class _quiet_loading:
    """No transformers progress bar ("Loading weights") while nbml loads an encoder: training shows its own."""

    def __enter__(self):
        from transformers.utils import logging
        self.was = logging.is_progress_bar_enabled()
        logging.disable_progress_bar()

    def __exit__(self, *exc):
        from transformers.utils import logging
        if self.was:
            logging.enable_progress_bar()


def new_net(arch: str, n_classes: int) -> HFNet:
    """An HFNet with the encoder's pretrained weights and tokenizer, from local files only (LookupError if absent)."""
    from transformers import AutoModel, AutoTokenizer
    folder, repo, revision = resolve(arch)
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    with _quiet_loading():
        encoder = AutoModel.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    net = HFNet(encoder, n_classes)
    net.tokenizer = net.body.tokenizer = tok
    net.hf_repo, net.hf_revision = repo, revision
    return net


# -- the training plan --------------------------------------------------------------------------------------------
def plan(ds, frame, classes, *, arch, size, bs, pretrained, weights, epochs, freeze_epochs) -> dict:
    """The text kind's part of a training plan for `arch="hf:<repo>"`; falls back to the default text model, with
    one warning, when the encoder is not in the local cache and `pretrained="auto"`."""
    from ..pretrained import PretrainedWeightsWarning
    _spec(arch)
    if weights is not None:
        raise ValueError("weights= is for image backbones; for a Hugging Face encoder saved in a folder pass "
                         "arch='hf:/path/to/folder'")
    if pretrained is False:
        raise ValueError(f"{arch} is fine-tuned from its pretrained weights; pretrained=False is not offered for "
                         f"Hugging Face encoders")
    try:
        net = new_net(arch, len(classes))
    except (LookupError, OSError) as e:
        reason = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        if pretrained is True:
            raise RuntimeError(_not_cached_message(arch, reason)) from None
        warnings.warn(_not_cached_message(arch, reason) + " Training goes on with nbml's default text model "
                      "(WordLlama embedding + TF-IDF).", PretrainedWeightsWarning, stacklevel=4)
        from . import text
        return text.plan(ds, frame, classes, arch=None, size=size, bs=bs, pretrained="auto", weights=None,
                         epochs=epochs, freeze_epochs=freeze_epochs, augment=None)
    limit = _max_tokens(net.tokenizer, net.body.encoder.config)
    n_train = int((frame["split"] == "train").sum())
    return dict(arch=arch, net=net, size=int(min(int(size or MAX_TOKENS), limit)),
                bs=int(bs or max(8, min(32, n_train // 8 or 8))), epochs=EPOCHS if epochs is None else int(epochs),
                freeze_epochs=0, weights_source=f"hf:{net.hf_repo}@{net.hf_revision}", mean=(), std=(),
                augment=None, default_lr=LR)


# -- tokens and batches ----------------------------------------------------------------------------------------------
def token_ids(tok, texts: list[str], max_tokens: int) -> list[list[int]]:
    """Each text's token ids with the encoder's special tokens, cut to `max_tokens`."""
    if not texts:
        return []
    return tok(list(texts), truncation=True, max_length=int(max_tokens))["input_ids"]


def pad_id(tok) -> int:
    return int(tok.pad_token_id) if tok.pad_token_id is not None else 0


def padded(seqs: list, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """[B, L] ids padded with the tokenizer's pad id, and the int64 attention mask; L >= 1."""
    width = max(1, max((len(s) for s in seqs), default=1))
    ids = np.full((len(seqs), width), pad, np.int64)
    mask = np.zeros((len(seqs), width), np.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = s
        mask[i, :len(s)] = 1
    return ids, mask


def pooled_features(body, seqs: list, pad: int, device, bs: int = 64) -> np.ndarray:
    """The body's pooled features, float32 [n, num_features], in eval mode, longest texts batched together."""
    order = np.argsort([len(s) for s in seqs], kind="stable")
    out = np.zeros((len(seqs), body.num_features), np.float32)
    was_training = body.training
    body.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(seqs), bs):
                idx = order[start:start + bs]
                ids, mask = padded([seqs[i] for i in idx], pad)
                feats = body(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
                out[idx] = feats.float().cpu().numpy()
    finally:
        body.train(was_training)
    return out


def features(body, texts: list[str], max_tokens: int, bs: int = 64) -> np.ndarray:
    """An HFBody's pooled features for texts, float32 [n, num_features] (the body carries its tokenizer), for the
    data-centric loop (`nbml.kinds.text.features` on the body of an hf model)."""
    tok = getattr(body, "tokenizer", None)
    if tok is None:
        raise ValueError("this Hugging Face body has no tokenizer attached; load its model with nbml.load")
    device = next(body.parameters()).device
    return pooled_features(body, token_ids(tok, list(texts), max_tokens), pad_id(tok), device, bs)


def fit_head(net, feats: np.ndarray, y: np.ndarray, n_classes: int, C: float = HEAD_C) -> None:
    """Write a multinomial logistic regression on the pooled features (standardised inside, folded back into the
    weights) into the linear head."""
    from sklearn.linear_model import LogisticRegression
    present = np.unique(y)
    if len(present) < 2:
        return
    mu, sd = feats.mean(0), feats.std(0) + 1e-6
    lr = LogisticRegression(C=C, max_iter=1000).fit((feats - mu) / sd, y)
    coef = np.zeros((n_classes, feats.shape[1]), np.float64)
    bias = np.zeros(n_classes, np.float64)
    if len(present) == 2:          # one score for the second class: split it, so softmax gives the sigmoid
        coef[present[1]], coef[present[0]] = lr.coef_[0] / 2, -lr.coef_[0] / 2
        bias[present[1]], bias[present[0]] = lr.intercept_[0] / 2, -lr.intercept_[0] / 2
    else:
        coef[present], bias[present] = lr.coef_, lr.intercept_
    bias[np.setdiff1d(np.arange(n_classes), present)] = -20.0   # a class with no train item is never predicted
    w = coef / sd
    b = bias - w @ mu
    with torch.no_grad():
        net.head.weight.copy_(torch.from_numpy(w.astype(np.float32)))
        net.head.bias.copy_(torch.from_numpy(b.astype(np.float32)))


def make_learner(plan, frame, stop_cb):
    """The closed-form head on the train texts' pooled features, then a fastai Learner to fine-tune it all."""
    from ..training import basic_learner
    net = plan.net.to(plan.device)
    tok = net.tokenizer
    pad = pad_id(tok)
    seqs = token_ids(tok, frame["content"].tolist(), plan.size)
    targets = frame["label"].map({c: i for i, c in enumerate(plan.classes)}).to_numpy().astype(np.int64)
    is_train = (frame["split"] == "train").to_numpy()
    train_seqs = [s for s, k in zip(seqs, is_train) if k]
    fit_head(net, pooled_features(net.body, train_seqs, pad, plan.device, bs=plan.bs * 2), targets[is_train],
             len(plan.classes))
    from ..data import ItemBatches

    def batches(items, y, **kw):
        return ItemBatches(lambda idx: padded([items[i] for i in idx], pad), y, **kw)
    train_dl = batches(train_seqs, targets[is_train], bs=plan.bs, device=plan.device, shuffle=True,
                       drop_last=bool(is_train.sum() > plan.bs), seed=plan.seed)
    valid_dl = batches([s for s, k in zip(seqs, ~is_train) if k], targets[~is_train], bs=plan.bs * 2,
                       device=plan.device)
    notes = []
    cut = sum(len(s) >= plan.size for s in seqs)
    if cut:
        notes.append(f"{cut} of {len(seqs)} texts are longer than the {plan.size} tokens {plan.arch} reads here: "
                     f"the model sees their beginning only (size= sets how many tokens it reads)")
    learn = basic_learner(plan, train_dl, valid_dl, net, stop_cb,
                          splitter=lambda m: [list(m.body.parameters()), list(m.head.parameters())])
    return learn, frame, notes


def config(plan) -> dict:
    """What an hf text model's config.json says beyond the shared fields (`arch` among them, from the plan)."""
    net = plan.net
    return dict(kind="text", hf_repo=net.hf_repo, hf_revision=net.hf_revision, max_tokens=int(plan.size),
                dim=int(net.body.num_features), pooling="mean", encoder=f"{EXTRA_DIR}/config.json",
                tokenizer=f"{EXTRA_DIR}/tokenizer.json", head={"type": "linear"})


# -- a model's inputs --------------------------------------------------------------------------------------------------
def model_tokenizer(model):
    tok = getattr(model, "_hf_tokenizer", None) or getattr(model.net, "tokenizer", None)
    if tok is None:
        raise RuntimeError(f"{model!r} has no tokenizer: load it with nbml.load(folder), which reads "
                           f"{EXTRA_DIR}/tokenizer.json")
    return tok


def probs(model, texts: list[str], bs: int = 256) -> np.ndarray:
    """Class probabilities for texts, float32 [n, classes]."""
    net = model.net.eval()
    tok = model_tokenizer(model)
    pad = pad_id(tok)
    seqs = token_ids(tok, list(texts), model.size)
    order = np.argsort([len(s) for s in seqs], kind="stable")
    out = np.zeros((len(seqs), len(model.classes)), np.float32)
    with torch.inference_mode():
        for start in range(0, len(seqs), bs):
            idx = order[start:start + bs]
            ids, mask = padded([seqs[i] for i in idx], pad)
            logits = net(torch.from_numpy(ids).to(model.device), torch.from_numpy(mask).to(model.device))
            out[idx] = torch.softmax(logits.float(), 1).cpu().numpy()
    return out


# -- saving and loading --------------------------------------------------------------------------------------------
def save_extra(model, folder: Path) -> None:
    """A saved hf model's folder also holds the encoder's config.json and the tokenizer files, under hf/."""
    extra = Path(folder) / EXTRA_DIR
    extra.mkdir(parents=True, exist_ok=True)
    model.net.body.encoder.config.save_pretrained(str(extra))
    model_tokenizer(model).save_pretrained(str(extra))


def load_extra(model, folder: Path) -> None:
    """The tokenizer, when `load_net` did not already put it on the network."""
    if getattr(model.net, "tokenizer", None) is None and (Path(folder) / EXTRA_DIR).is_dir():
        from transformers import AutoTokenizer
        model._hf_tokenizer = AutoTokenizer.from_pretrained(str(Path(folder) / EXTRA_DIR), local_files_only=True)


def load_net(folder: Path, config: dict, state: dict) -> HFNet:
    """The network of a saved hf model, from its folder alone (no cache): the encoder rebuilt from hf/config.json,
    the weights from `state`, the tokenizer from hf/."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    extra = Path(folder) / EXTRA_DIR
    if not (extra / "config.json").is_file():
        raise FileNotFoundError(f"{folder} holds a Hugging Face text model but not its encoder's configuration "
                                f"({EXTRA_DIR}/config.json)")
    encoder = AutoModel.from_config(AutoConfig.from_pretrained(str(extra), local_files_only=True))
    net = HFNet(encoder, len(config["classes"]))
    net.load_state_dict(state)
    net.tokenizer = net.body.tokenizer = AutoTokenizer.from_pretrained(str(extra), local_files_only=True)
    net.hf_repo, net.hf_revision = config.get("hf_repo"), config.get("hf_revision")
    return net
