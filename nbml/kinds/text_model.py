"""The text kind's own network and the data-centric loop on it: a token table that starts from WordLlama's pretrained
static embedding (shipped inside the `wordllama` wheel, MIT) plus a TF-IDF-weighted n-gram layer; its head fitted in
closed form (the frozen phase, mode="head", the grid's background retraining), then fine-tuned in a fastai Learner;
the embeddings, n-grams and idf the loop reads; a model's inputs. Part of the text kind (nbml.kinds.text, its face).

Why both: measured on TREC-6 with a logistic regression (16 labels per class), TF-IDF of words and character
n-grams gave 0.565 accuracy, the static embedding 0.521, both together 0.602; neither alone is the best default.
Neither sees where a word stands: a third block of n-grams holds how the text opens (`text_encoding.opening_words`).
The network computes both from token ids and hashed n-gram ids (what follows tokenisation is one ONNX graph).
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .text_encoding import (CHAR_BUCKETS, GRAM_BUCKETS, INPUT_NAMES, MAX_TOKENS, TEXT_BUCKETS,  # noqa: F401
                            WORD_BUCKETS, WORDLLAMA, buckets_of, encode, gram_config, gram_counts, idf_from_df,
                            padded, tfidf, token_ids, tokenizer, tokenizer_json, wordllama_files,
                            wordllama_table)
from .text_ingest import NAME, check_input, text_sha256


# -- the network ---------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _torch_modules():
    import torch
    from torch import nn

    class TextBody(nn.Module):
        """Token table, mean over the text's tokens, unit length: the embedding the data-centric loop uses."""

        def __init__(self, vocab: int, dim: int):
            super().__init__()
            # no random init: the table is always loaded (WordLlama's, or a saved model's)
            self.embed = nn.Embedding(vocab, dim, _weight=torch.empty(vocab, dim))
            self.num_features = dim

        def forward(self, ids, mask):
            e = self.embed(ids) * mask.unsqueeze(-1)
            pooled = e.sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
            return pooled / pooled.norm(dim=1, keepdim=True).clamp(min=1e-6)

    class TextNet(nn.Module):
        """logits = head(body(tokens)) + n-gram weights · TF-IDF(n-grams); `net[0]` is the body, `net[1]` the head."""

        def __init__(self, vocab: int, dim: int, n_classes: int, buckets: int = GRAM_BUCKETS):
            super().__init__()
            self.body = TextBody(vocab, dim)
            self.head = nn.Linear(dim, n_classes)
            self.grams = nn.Embedding(buckets, n_classes, _weight=torch.zeros(buckets, n_classes))
            self.register_buffer("idf", torch.ones(buckets))

        def __getitem__(self, i):
            return (self.body, self.head)[i]

        def gram_logits(self, gram_ids, gram_counts):
            """TF-IDF, each block (words, characters, opening words) unit length, times the n-grams' weights."""
            w = gram_counts * self.idf[gram_ids]
            is_word = (gram_ids < WORD_BUCKETS).to(w.dtype)
            is_open = (gram_ids >= TEXT_BUCKETS).to(w.dtype)
            is_char = 1 - is_word - is_open
            sq = w * w
            norm = 0
            for block in (is_word, is_char, is_open):
                norm = norm + block * (sq * block).sum(1, keepdim=True).sqrt().clamp(min=1e-12)
            return ((w / norm).unsqueeze(-1) * self.grams(gram_ids)).sum(1)

        def forward(self, ids, mask, gram_ids, gram_counts):
            return self.head(self.body(ids, mask)) + self.gram_logits(gram_ids, gram_counts)

    return TextBody, TextNet


def new_net(n_classes: int, pretrained: bool = True):
    """A TextNet whose token table is WordLlama's pretrained embedding (or zeros to be loaded into)."""
    import torch
    _, TextNet = _torch_modules()
    table = wordllama_table()
    net = TextNet(table.shape[0], table.shape[1], n_classes)
    if pretrained:
        with torch.no_grad():
            net.body.embed.weight.copy_(torch.from_numpy(table))
    return net


def build_net(config: dict):
    """The network of a saved text model, to load its weights into."""
    _, TextNet = _torch_modules()
    return TextNet(int(config["vocab"]), int(config["dim"]), len(config["classes"]), buckets_of(config))


def net_features(body, texts: list[str], max_tokens: int = MAX_TOKENS, bs: int = 512, tok=None) -> np.ndarray:
    """The body's pooled unit-length features, float32 [n, dim], without padding (one embedding_bag per batch)."""
    import torch
    import torch.nn.functional as F
    weight = body.embed.weight
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), bs):
            seqs = token_ids(texts[start:start + bs], max_tokens, tok)
            lengths = np.array([len(s) for s in seqs])
            flat = torch.from_numpy(np.concatenate(seqs) if lengths.sum() else np.zeros(0, np.int64))
            offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64))
            pooled = F.embedding_bag(flat.to(weight.device), weight, offsets.to(weight.device), mode="sum")
            pooled = pooled / torch.from_numpy(np.maximum(lengths, 1)).to(pooled).unsqueeze(1)
            pooled = pooled / pooled.norm(dim=1, keepdim=True).clamp(min=1e-6)
            out.append(pooled.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, weight.shape[1]), np.float32)


# -- fitting the head in closed form (the frozen phase, and mode="head") ----------------------------------------
# Inverse regularisation of the closed-form head. Accuracy hardly moves with it (TREC-6, 16 labels per class, 3 seeds:
# 0.574 / 0.571 / 0.571 at C = 1 / 10 / 100; SMS spam F1 0.861 / 0.864 / 0.864) but confidence does: at C=1 the mean
# top probability was 0.26 for 57% accuracy (every text looked uncertain, which misleads margin sampling and the
# top-loss list), at C=100 0.47 (64 per class: 0.67 for 68% accuracy).
HEAD_C = 100.0
# The embedding's share of the head's L2 penalty: the unit-length mean embedding enters the fit multiplied by this,
# so its weights are penalised (1/EMBED_SCALE)^2 times more than the n-grams'. Measured offline (5 seeds, every label
# used): SMS spam F1 with 16 labels per class 0.848 at 1.0, 0.872 at 0.7, 0.877 at 0.5; TREC-6 at 16 random labels per
# class 0.581 / 0.592 / 0.587, at 64 0.697 / 0.709 / 0.715; margin sampling at 16 per class 0.565 / 0.546 / 0.520.
EMBED_SCALE = 0.7
# The opening words' share, the same way: their block enters the fit multiplied by this. TREC-6 at 16 random labels
# per class (5 seeds, offline, every label used) 0.593 / 0.588 at 0.7 / 0.5, SMS spam F1 (20 seeds) 0.848 / 0.855.
OPEN_SCALE = 0.5
# Few labels: the head also learns from the project's unlabelled texts (self-training). Fitted on the labels, it
# labels the SELF_TRAIN_TOP unlabelled texts it is surest of in each class it predicts, and is fitted again on both,
# those texts weighed SELF_TRAIN_WEIGHT. Chosen offline on other seeds than the benchmark's (TREC-6 margin rounds to
# 16 per class, seeds 5-24: 0.608 without, 0.631 / 0.647 / 0.653 with 100 / 150 / 200; SMS spam F1 with 16 per class,
# 20 seeds: 0.855 without, 0.884 with 200, 0.70 with 400 per class, where "spam" took in ham).
SELF_TRAIN_TOP = 200
SELF_TRAIN_WEIGHT = 0.3
SELF_TRAIN_MAX = 2000     # labelled texts up to which the head self-trains (beyond, the labels say enough)
SELF_TRAIN_POOL = 5000    # unlabelled texts it looks at: a fixed sample of a larger project's


def _softmax(logits: np.ndarray) -> np.ndarray:
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def _fit_used(X, y: np.ndarray, n_classes: int, C: float, init=None, sample_weight=None):
    """fit_sparse_linear on the columns X uses (the optimum is zero on the others: n-gram buckets no train text
    has), with the weights put back in all columns: (W [n_classes, X's columns], b). `init` is in all columns too."""
    from ..head import fit_sparse_linear
    used = np.flatnonzero(np.bincount(X.indices, minlength=X.shape[1]))
    start = None if init is None else (init[0][:, used], init[1])
    W, b = fit_sparse_linear(X[:, used], y, n_classes, C=C, init=start, sample_weight=sample_weight)
    full = np.zeros((n_classes, X.shape[1]), np.float32)
    full[:, used] = W
    return full, b


def _scaled_opening(grams):
    """TF-IDF rows with the opening words' block multiplied by OPEN_SCALE (a copy)."""
    grams = grams.tocsr(copy=True)
    grams.data[grams.indices >= TEXT_BUCKETS] *= np.float32(OPEN_SCALE)
    return grams


def head_features(dense: np.ndarray, grams):
    """What the closed-form head is fitted on: [the embedding x EMBED_SCALE | TF-IDF n-grams, the opening words'
    x OPEN_SCALE], sparse. A solution on these gives the network's weights through `_network_weights`."""
    import scipy.sparse as sp
    return sp.hstack([sp.csr_matrix(dense * np.float32(EMBED_SCALE)), _scaled_opening(grams)], format="csr")


def _network_weights(coef: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(head weights [n_classes, dim], n-gram weights [buckets, n_classes]) of the network that computes what a
    solution `coef` on `head_features` does from the unscaled embedding and TF-IDF."""
    grams = np.ascontiguousarray(coef[:, dim:].T)
    grams[TEXT_BUCKETS:] *= np.float32(OPEN_SCALE)
    return coef[:, :dim] * np.float32(EMBED_SCALE), grams


def _self_trained(X, y: np.ndarray, n_classes: int, C: float, solution, unlabelled):
    """(the solution fitted again with SELF_TRAIN_TOP of the unlabelled rows per predicted class (those it is surest
    of), labelled with its predictions and weighed SELF_TRAIN_WEIGHT; how many rows it took)."""
    import scipy.sparse as sp
    p = _softmax(np.asarray(unlabelled @ solution[0].T) + solution[1])
    guess, sure = p.argmax(1), p.max(1)
    pick = np.concatenate([np.flatnonzero(guess == c)[np.argsort(-sure[guess == c], kind="stable")[:SELF_TRAIN_TOP]]
                           for c in range(n_classes)]).astype(np.int64)
    if not len(pick):
        return solution, 0
    weights = np.concatenate([np.ones(len(y)), np.full(len(pick), SELF_TRAIN_WEIGHT)])
    return _fit_used(sp.vstack([X, unlabelled[pick]], format="csr"), np.concatenate([y, guess[pick]]), n_classes, C,
                     solution, weights), len(pick)


def fit_head(net, dense: np.ndarray, texts: list[str] | None, y: np.ndarray, n_classes: int, C: float = HEAD_C,
             counts=None, init=None, grams=None, unlabelled=None):
    """Fit the head and the n-gram weights of `net` jointly, as one multinomial logistic regression on [body
    features | TF-IDF n-grams] (nbml.head.fit_sparse_linear), and write them into the network. Returns the solution
    (weights [n_classes, dim + buckets], biases), from which `init=` starts a later fit. The n-grams come from
    `texts`, their `counts`, or their TF-IDF rows (`grams`). `unlabelled`: (body features, TF-IDF rows) of
    unlabelled texts to self-train on (`unlabelled_features`), or None."""
    import torch
    if grams is None:
        grams = tfidf(gram_counts(texts) if counts is None else counts, net.idf.cpu().numpy())
    X = head_features(dense, grams)
    dim = dense.shape[1]
    usable_init = init is not None and init[0].shape == (n_classes, X.shape[1])
    coef, bias = _fit_used(X, y, n_classes, C, init if usable_init else None)
    net.self_trained = 0                   # unlabelled texts the head learnt from (config.json, the model card)
    if unlabelled is not None:
        (coef, bias), net.self_trained = _self_trained(X, y, n_classes, C, (coef, bias), head_features(*unlabelled))
    head_w, grams_w = _network_weights(coef, dim)
    with torch.no_grad():
        net.head.weight.copy_(torch.from_numpy(head_w))
        net.head.bias.copy_(torch.from_numpy(bias))
        net.grams.weight.copy_(torch.from_numpy(grams_w))
    return coef, bias                      # where a next fit on similar labels can start



# -- training ---------------------------------------------------------------------------------------------------------
ARCH = "wordllama-tfidf"
EPOCHS = 4          # fine-tuning epochs after the closed-form head
LR = 2e-3


def encoded_items(texts: list[str], max_tokens: int = MAX_TOKENS, tok=None) -> list[tuple]:
    """Per text: (token ids, n-gram ids, n-gram counts), for loaders that pad per batch."""
    ids = token_ids(texts, max_tokens, tok)
    counts = gram_counts(texts)
    return [(ids[i], counts.indices[counts.indptr[i]:counts.indptr[i + 1]].astype(np.int64),
             counts.data[counts.indptr[i]:counts.indptr[i + 1]]) for i in range(len(texts))]


def plan(ds, frame, classes, *, arch, size, bs, pretrained, weights, epochs, freeze_epochs, augment) -> dict:
    """This kind's part of a training plan: a sentence encoder fine-tuned on pairs (text_setfit) whenever one can be
    had (`arch` None or 'hf:...'), else nbml's static model (`arch="wordllama-tfidf"`, or the fallback: with
    `pretrained="auto"` the run says in one line why an encoder would do better and how to get one)."""
    from . import text_setfit
    advice = None
    if arch in (None, "resnet18") or text_setfit.is_encoder_arch(arch):
        try:
            return text_setfit.plan(ds, frame, classes, arch=None if arch == "resnet18" else arch, size=size, bs=bs,
                                    pretrained=pretrained, weights=weights, epochs=epochs,
                                    freeze_epochs=freeze_epochs)
        except text_setfit.EncoderUnavailable as e:
            if pretrained is True or arch not in (None, "resnet18"):
                raise RuntimeError(f"{e} (pretrained='auto' and no arch= train nbml's static text model instead)") \
                    from None
            from .text_encoder import not_available_note
            advice = None if e.chosen else not_available_note(e)
    elif arch != ARCH:
        raise ValueError(f"a text model's arch is None (a sentence encoder, all-MiniLM-L6-v2), 'hf:<repo id>' or "
                         f"'hf:/path/to/folder' (another encoder), or {ARCH!r} (nbml's static model), not {arch!r}")
    if weights is not None:
        raise ValueError("weights= is for image backbones; a text model starts from a sentence encoder or "
                         "WordLlama's embedding")
    if pretrained is False:
        raise ValueError("text models always start from pretrained weights (a sentence encoder, or WordLlama's "
                         "embedding, which ships with nbml); pretrained=False is not offered")
    n_train = int((frame["split"] == "train").sum())
    net = new_net(len(classes))
    net.advice = advice
    return dict(arch=ARCH, net=net, size=int(size or MAX_TOKENS),
                bs=int(bs or max(8, min(64, n_train // 8 or 8))), epochs=EPOCHS if epochs is None else int(epochs),
                freeze_epochs=0, weights_source=f"wordllama:{WORDLLAMA}", mean=(), std=(), augment=None,
                default_lr=LR)


def _is_encoder(net) -> bool:
    return getattr(net, "is_encoder", False)


def _encoder_model(model) -> bool:
    from .text_setfit import is_encoder_config
    return is_encoder_config(model.config)


def _targets(plan, frame) -> np.ndarray:
    return frame["label"].map({c: i for i, c in enumerate(plan.classes)}).to_numpy().astype(np.int64)


def _batches(plan, encoded: list[tuple], targets: np.ndarray, mask: np.ndarray, train: bool):
    """A loader over the texts at `mask` (shuffled for training), padded per batch."""
    from ..data import ItemBatches
    items = [e for e, k in zip(encoded, mask) if k]

    def make(idx):
        ids, att = padded([items[i][0] for i in idx])
        return ids, att, padded([items[i][1] for i in idx])[0], padded([items[i][2] for i in idx], np.float32)[0]
    if train:
        return ItemBatches(make, targets[mask], bs=plan.bs, device=plan.device, shuffle=True,
                           drop_last=mask.sum() > plan.bs, seed=plan.seed)
    return ItemBatches(make, targets[mask], bs=plan.bs * 2, device=plan.device)


def _start_from_closed_form(plan, texts: list[str], targets: np.ndarray, mask: np.ndarray) -> None:
    """The project's idf, and the closed-form head on the texts at `mask` (on WordLlama's token table, which the
    network has here), self-trained on the project's unlabelled texts while labels are few."""
    import torch
    net = plan.net
    idf = project_idf(plan.ds)
    with torch.no_grad():
        net.idf.copy_(torch.from_numpy(idf))     # idf from every text of the project
    fit_texts = [t for t, k in zip(texts, mask) if k]
    unlabelled = unlabelled_features(plan.ds, len(fit_texts), f"wordllama:{WORDLLAMA}@{plan.size}",
                                     lambda t: net_features(net.body, t, plan.size), idf)
    fit_head(net, net_features(net.body, fit_texts, plan.size), fit_texts, targets[mask], len(plan.classes),
             unlabelled=unlabelled)
    net.to(plan.device)


def make_learner(plan, frame, stop_cb):
    """The closed-form head on the train texts (the frozen phase), then a fastai Learner to fine-tune it all."""
    if _is_encoder(plan.net):
        from . import text_setfit
        return text_setfit.make_learner(plan, frame, stop_cb)
    from ..learner import basic_learner
    texts = frame["content"].tolist()
    targets = _targets(plan, frame)
    is_train = (frame["split"] == "train").to_numpy()
    _start_from_closed_form(plan, texts, targets, is_train)
    encoded = encoded_items(texts, plan.size)
    learn = basic_learner(plan, _batches(plan, encoded, targets, is_train, True),
                          _batches(plan, encoded, targets, ~is_train, False), plan.net, stop_cb,
                          splitter=lambda m: [list(m.body.parameters()), list(m.head.parameters()) +
                                              list(m.grams.parameters())])
    return learn, frame, [plan.net.advice] if getattr(plan.net, "advice", None) else []


def finish(plan, learn, metrics: dict) -> dict:
    """An encoder's head after its pair phase (text_setfit.finish); nothing to do for the static model."""
    if _is_encoder(plan.net):
        from . import text_setfit
        return text_setfit.finish(plan, learn, metrics)
    return metrics


# -- after validation, the same recipe on every label ----------------------------------------------------------
# With few labels the 20% held out for validation is much of what there is to learn from: SMS spam with 16 labels per
# class, nbml.train(ds) gave F1 0.80 on the 26 train texts and 0.85 with 30 of the 32 (5 seeds, measured here). Up to
# REFIT_MAX labelled texts, once the validation figures are taken the model is trained again, the same way, on every
# label; the validation texts keep the probabilities of the model that had not seen them (Model.holdout), so the
# confusion matrix, the top losses and evaluate() stay out-of-sample.
REFIT_MAX = 2000


def refits(n_labelled: int, arch: str) -> bool:
    """Whether a model of `arch` on `n_labelled` texts is fitted again on every label after validation."""
    from . import text_setfit
    if text_setfit.is_encoder_arch(arch):
        return text_setfit.refits(n_labelled)
    return n_labelled <= REFIT_MAX


def refit_on_all(plan, learn) -> dict[int, np.ndarray]:
    """Where `refits` says so (nbml.training asks): the validation texts' probabilities ({item id: probabilities}),
    then the network trained again from WordLlama's table on every labelled text: the closed-form head, then
    `plan.epochs` of fine-tuning at the run's learning rate. An encoder's: its head fitted again."""
    if _is_encoder(plan.net):
        from . import text_setfit
        return text_setfit.refit_on_all(plan, learn)
    from .. import events as E
    frame = plan.frame
    texts = frame["content"].tolist()
    targets = _targets(plan, frame)
    is_valid = (frame["split"] == "valid").to_numpy()
    holdout = dict(zip(frame.loc[is_valid, "id"].astype(int).tolist(),
                       net_probs(plan.net, [t for t, k in zip(texts, is_valid) if k], plan.size, plan.device)))
    plan.handle.emit(E.PhaseStarted("refit", plan.epochs))
    import torch
    with torch.no_grad():                   # fine-tuning changed the token table: back to WordLlama's
        plan.net.body.embed.weight.copy_(torch.from_numpy(wordllama_table()))
    every = np.ones(len(frame), bool)
    _start_from_closed_form(plan, texts, targets, every)
    if plan.epochs:
        from fastai.data.core import DataLoaders
        encoded = encoded_items(texts, plan.size)
        learn.dls = DataLoaders(_batches(plan, encoded, targets, every, True), learn.dls.valid)
        learn.fit_one_cycle(plan.epochs, plan.params["lr"], reset_opt=True)
    return holdout


def config(plan) -> dict:
    """What a text model's config.json says beyond the shared fields."""
    if _is_encoder(plan.net):
        from . import text_setfit
        return text_setfit.config(plan)
    advice = getattr(plan.net, "advice", None)
    return dict(kind=NAME, **({"advice": advice} if advice else {}), vocab=int(plan.net.body.embed.num_embeddings), dim=int(plan.net.body.num_features),
                max_tokens=int(plan.size), tokenizer="tokenizer.json", head={"type": "linear+grams"},
                self_trained=int(getattr(plan.net, "self_trained", 0)), **gram_config())


# -- the data-centric loop: embeddings and what is specific to texts in nbml.analysis -------------------------------
# the evidence no label shaped, beside the embeddings: label_issues' second head reads it (the model's n-gram features);
# duplicates compare the n-grams alone
SURFACE_WORDS = "TF-IDF of words and character n-grams, and the opening words"
SURFACE_ONLY = "TF-IDF comparison only"   # what duplicates() says when no backbone can embed
SURFACE_COLUMN = "text_similarity"
SURFACE_THRESHOLD = 0.9    # TF-IDF cosine for near-duplicate texts
SURFACE_C = 1.0            # inverse regularisation of label_issues' TF-IDF head
QUERY_WORDS = "or a text to search for"


def pretrained_backbone(device=None, arch=None):
    """The pretrained sentence encoder when one can be had (text_setfit.backbone), else (and for
    `arch="wordllama-tfidf"`) WordLlama's pretrained embedding (ships with the wordllama package: always available,
    never downloaded)."""
    from . import text_setfit
    if arch == ARCH:
        return static_backbone(device)
    try:
        return text_setfit.backbone(device)
    except text_setfit.EncoderUnavailable:
        return static_backbone(device)


STATIC_ROW = dict(arch=ARCH, tier="fallback", languages="English (any, less well)", max_tokens=MAX_TOKENS, dim=256,
                  params_m=8.2, size_mb=None, licence="MIT",
                  pretraining="WordLlama l2_supercat_256: a static token embedding distilled from LLM token tables, "
                              "plus TF-IDF n-grams learnt on your labels", package="wordllama")


def recommended_backbones() -> list[dict]:
    """The sentence encoders nbml recommends (text_encoder.ENCODERS, with whether each is here), then the static
    model, which always is (it ships inside the wordllama package)."""
    from .text_encoder import recommended_encoders
    return recommended_encoders() + [dict(STATIC_ROW, available=True, weights="inside the wordllama package")]


def static_backbone(device=None):
    """WordLlama's pretrained embedding, the static model's body."""
    from ..backbone import Backbone
    TextBody, _ = _torch_modules()

    def loader():
        import torch
        table = wordllama_table()
        body = TextBody(table.shape[0], table.shape[1])
        with torch.no_grad():
            body.embed.weight.copy_(torch.from_numpy(table))
        return body
    return Backbone(f"wordllama:{WORDLLAMA}@{MAX_TOKENS}", f"WordLlama {WORDLLAMA} (pretrained static token "
                    f"embedding, mean of the first {MAX_TOKENS} tokens)", ARCH, MAX_TOKENS, (), (),
                    f"wordllama:{WORDLLAMA}", loader=loader, device=device, fresh=True, kind=NAME)


def features(backbone, texts: list[str]) -> np.ndarray:
    """A backbone's features for texts, float32 [n, dim]."""
    from . import text_setfit
    body = backbone.body()
    if text_setfit.is_encoder_body(body):
        return text_setfit.features(body, list(texts), backbone.size, backbone.model_id)
    if not hasattr(body, "embed"):
        raise ValueError(f"{backbone.source} cannot embed project texts here; use the default backbone "
                         f"(ds.embed() with no backbone: WordLlama's)")
    return net_features(body, list(texts), backbone.size)


def compute(ds, backbone, todo: pd.DataFrame):
    """(items kept, a function giving the features of positions [start, stop) of them, notes). The items come back
    shortest text first: the caller embeds them in chunks, and a batch is padded to its longest text (10,000 SMS and
    TREC-6 texts in the order added went at 57 texts/s through the encoder)."""
    todo = todo.iloc[np.argsort(todo["content"].fillna("").str.len().to_numpy(), kind="stable")]
    texts = todo["content"].fillna("").tolist()
    return todo, lambda start, stop: features(backbone, texts[start:stop]), []


def query(ds, emb, value):
    """(vector, ids to leave out, words) for a text query of `similar`; None when `value` is item ids."""
    if not isinstance(value, str) or value.strip().lstrip("-").isdigit():
        return None
    if not value.strip():
        raise ValueError("the query text is empty")
    same = emb.frame.loc[emb.frame["sha256"] == text_sha256(value), "id"]
    short = value if len(value) <= 40 else value[:37] + "..."
    return features(emb.backbone, [value])[0], set(int(i) for i in same), f"the text {short!r}"


def _surface_frame(ds, ids) -> pd.DataFrame:
    cols = ["id", "content", "sha256", "label", "split", "path"]
    return pd.DataFrame([{c: r.get(c) for c in cols} for r in ds.item_rows(ids) if r.get("content")], columns=cols)


def _project_tfidf(ds, frame: pd.DataFrame):
    """TF-IDF rows (every block) of the frame's texts with the project's idf: n-grams cached per text, document
    frequencies kept in the project's folder, so nothing is hashed twice."""
    return tfidf(gram_rows(frame["sha256"].tolist(), frame["content"].tolist()), project_idf(ds))


def surface(ds, ids):
    """What `duplicates` compares beside embeddings: (unit TF-IDF rows, sparse; the normalised-text hash; frame)."""
    frame = _surface_frame(ds, ids)
    x = _project_tfidf(ds, frame)[:, :TEXT_BUCKETS]          # the text's own n-grams, not how it opens
    # the two blocks are unit length each: scale so a row is unit length and a dot product is a cosine
    return x * (1 / np.sqrt(2)), frame["sha256"].to_numpy(object), frame


def surface_probs(ds, ids: list[int], y: np.ndarray, n_classes: int, folds: int, seed: int):
    """Out-of-sample probabilities of a logistic regression cross-validated on TF-IDF n-grams and the opening words
    (NaN rows for items without text); None when a class has too few items for the folds."""
    from ..head import fit_sparse_linear, out_of_fold
    frame = _surface_frame(ds, ids)
    # the model's n-gram features: TF-IDF of the text, and how it opens (weighed as in the closed-form head)
    x = _scaled_opening(_project_tfidf(ds, frame)) * (1 / np.sqrt(2))

    def fit_predict(train, test, yy):
        W, b = fit_sparse_linear(x[train], yy[train], n_classes, C=SURFACE_C)
        return _softmax(np.asarray(x[test] @ W.T) + b)
    return out_of_fold(ids, frame["id"], y, n_classes, folds, seed, fit_predict)


# -- cached n-grams and idf (head mode and the grid's background retraining refit often) ---------------------------
_GRAMS: dict = {}          # sha256 -> (n-gram ids, counts) of a stored text
_GRAMS_MAX = 500_000


def gram_rows(shas: list[str], texts: list[str]):
    """gram_counts for stored texts, hashing only those not seen before in this process (CSR)."""
    import scipy.sparse as sp
    todo = [i for i, h in enumerate(shas) if h not in _GRAMS]
    if todo:
        counts = gram_counts([texts[i] for i in todo])
        if len(_GRAMS) + len(todo) > _GRAMS_MAX:
            _GRAMS.clear()
        for k, i in enumerate(todo):
            lo, hi = counts.indptr[k], counts.indptr[k + 1]
            _GRAMS[shas[i]] = (counts.indices[lo:hi], counts.data[lo:hi])
    parts = [_GRAMS[h] for h in shas]
    indptr = np.concatenate([[0], np.cumsum([len(p[0]) for p in parts])])
    indices = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int32)
    data = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(shas), GRAM_BUCKETS))


def unlabelled_features(ds, n_labelled: int, key: str, embed, idf: np.ndarray):
    """(body features, TF-IDF rows) of the project's unlabelled texts, at most SELF_TRAIN_POOL of them (a fixed
    sample), for a head fitted on `n_labelled` texts to self-train on; None above SELF_TRAIN_MAX labels or when every
    text is labelled. `embed(texts)` gives the body's features, kept per text under `key` (the body) for the
    session: the grid refits after every few labels."""
    ids = ds.query_ids(labelled=False, usable_only=True) if n_labelled <= SELF_TRAIN_MAX else []
    if not ids:
        return None
    if len(ids) > SELF_TRAIN_POOL:
        ids = np.sort(np.random.default_rng(0).choice(np.asarray(ids), SELF_TRAIN_POOL, replace=False)).tolist()
    cols = ds._item_columns(["sha256", "content"], ids)
    pairs = [(h, t) for h, t in zip(cols["sha256"], cols["content"]) if t]
    if not pairs:
        return None
    held = ds.__dict__.setdefault("_text_unlabelled", {}).setdefault(key, {})
    todo = [(h, t) for h, t in pairs if h not in held]
    if todo:
        if len(held) + len(todo) > 4 * SELF_TRAIN_POOL:
            held.clear()
            todo = pairs
        held.update(zip([h for h, _ in todo], embed([t for _, t in todo])))
    shas = [h for h, _ in pairs]
    return (np.stack([held[h] for h in shas]).astype(np.float32),
            tfidf(gram_rows(shas, [t for _, t in pairs]), idf))


DF_FILE = "ngram-df.npz"   # in the project's embeddings folder: the n-grams' document frequencies, and for which items


def project_idf(ds) -> np.ndarray:
    """The idf of every text in the project, recomputed only when items were added or removed. The document
    frequencies are kept in the project's folder, so a new session does not hash every text again (100,000 texts:
    about 20 s here)."""
    from ..store import ITEMS_VERSION
    token = json.dumps([ds._meta_value(ITEMS_VERSION), len(ds)])
    held = ds.__dict__.get("_text_idf")
    if held is not None and held[0] == token:
        return held[1]
    file = Path(ds.home) / "embeddings" / DF_FILE
    df, n = _saved_df(file, token)
    if df is None:
        cols = ds._item_columns(["sha256", "content"])
        pairs = [(h, t) for h, t in zip(cols["sha256"], cols["content"]) if t]
        counts = gram_rows([h for h, _ in pairs], [t for _, t in pairs])
        df, n = np.bincount(counts.indices, minlength=counts.shape[1]), len(pairs)
        _save_npz(file, token=np.array(token), df=df.astype(np.int32), n=np.array(n))
    idf = idf_from_df(df, n)
    ds.__dict__["_text_idf"] = (token, idf)
    return idf


def _saved_df(file: Path, token: str):
    """(document frequencies, number of texts) saved for these items, or (None, 0)."""
    try:
        with np.load(file) as saved:
            if str(saved["token"]) == token and saved["df"].shape == (GRAM_BUCKETS,):
                return saved["df"], int(saved["n"])
    except (OSError, ValueError, KeyError):
        pass               # none yet, or unreadable: computed again
    return None, 0


def _save_npz(file: Path, **arrays) -> None:
    """Whole or not at all: what is kept here only saves a later session time, so a folder that cannot be written
    costs nothing else."""
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, file)
    except OSError:
        pass


HEAD_FILE = "text-head.npz"   # in the embeddings folder: the last closed-form head, where a new session's fit starts


def _last_solution(ds, key: tuple):
    """The last closed-form solution for these classes and backbone (this session's, or the one kept in the
    project's folder), or None."""
    held = ds.__dict__.get("_text_head_solution")
    if held is None:
        held = ds.__dict__["_text_head_solution"] = _saved_solution(Path(ds.home) / "embeddings" / HEAD_FILE)
    return held[1] if held is not None and held[0] == key else None


def _saved_solution(file: Path):
    """(key, (W, b)) kept by `_keep_solution`, or None (none yet, unreadable, or for other n-gram buckets)."""
    try:
        with np.load(file) as saved:
            classes, model_id = json.loads(str(saved["key"]))
            width, cols = int(saved["width"]), saved["cols"]
            if width != int(saved["dim"]) + GRAM_BUCKETS:
                return None
            W = np.zeros((len(classes), width), np.float32)
            W[:, cols] = saved["W"]
            return (tuple(classes), model_id), (W, saved["b"].astype(np.float32))
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _keep_solution(ds, key: tuple, solution, dim: int) -> None:
    """This session's last solution, and in the project's folder its non-zero columns (4.3 MB for the benchmark's 10,000
    labelled texts), so that the next session's first fit starts from it: 10,000 texts took 8.5 s from zero."""
    ds.__dict__["_text_head_solution"] = (key, solution)
    W, b = solution
    cols = np.flatnonzero(np.any(W != 0, axis=0)).astype(np.int32)
    _save_npz(Path(ds.home) / "embeddings" / HEAD_FILE, key=np.array(json.dumps([list(key[0]), key[1]])),
              width=np.array(W.shape[1]), dim=np.array(dim), cols=cols, W=W[:, cols], b=b)


# The static model's error over the closed-form head's (both on WordLlama + TF-IDF), from ds.forecast's backtest of
# 2026-12-07 on TREC-6 (benchmarks/forecast.py): about 1.0. A fine-tuned encoder's is text_setfit.FORECAST_RHO.
STATIC_FORECAST_RHO = 1.0


def forecast_rho(model_id: str) -> float:
    """ds.forecast's correction (Kind.forecast_rho): a fine-tuned encoder errs far less often than the head on its
    pretrained embeddings; the static model about as often as its head."""
    from . import text_setfit
    return text_setfit.FORECAST_RHO if text_setfit.is_encoder_backbone(model_id) else STATIC_FORECAST_RHO


def fit_and_score(ds, emb, fit: np.ndarray, y: np.ndarray, score: np.ndarray, n_classes: int):
    """What ranks items without a model: the closed-form head on [embeddings | TF-IDF n-grams] fitted at positions
    `fit` (targets y), giving probabilities at positions `score`: the features a text model is made of."""
    texts = emb.frame["content"].fillna("").tolist()
    shas = emb.frame["sha256"].tolist()
    idf = project_idf(ds)

    def features(pos):
        grams = tfidf(gram_rows([shas[i] for i in pos], [texts[i] for i in pos]), idf)
        return head_features(emb.features[pos], grams)
    full, b = _fit_used(features(fit), y, n_classes, HEAD_C)
    out = [_softmax(np.asarray(features(score[i:i + 8192]) @ full.T) + b) for i in range(0, len(score), 8192)]
    probs = np.concatenate(out) if out else np.zeros((0, n_classes), np.float32)
    return probs, "a logistic head fitted on the embeddings and TF-IDF n-grams"


def head_model(ds, backbone, X: np.ndarray, frame: pd.DataFrame, target: np.ndarray, is_train: np.ndarray,
               classes: list[str], C: float | None = None):
    """mode="head" for texts: the closed-form head on [cached embeddings | TF-IDF n-grams] in a TextNet whose
    body is the backbone's (an encoder's: text_setfit.head_model). Returns (net, train probabilities, valid
    probabilities, config fields)."""
    import torch
    from . import text_setfit
    if text_setfit.is_encoder_body(backbone.body()):
        return text_setfit.head_model(ds, backbone, X, frame, target, is_train, classes, C)
    net = new_net(len(classes), pretrained=False)
    net.body = backbone.body_copy()
    with torch.no_grad():
        net.idf.copy_(torch.from_numpy(project_idf(ds)))
    grams = gram_rows(frame["sha256"].tolist(), frame["content"].tolist())   # training_items carries both
    # the grid refits after every few labels: start from the last solution for the same classes and backbone
    key = (tuple(classes), backbone.model_id)
    init = _last_solution(ds, key)
    tf = tfidf(grams, net.idf.numpy())
    unlabelled = unlabelled_features(ds, int(is_train.sum()), backbone.model_id, lambda t: features(backbone, t),
                                     net.idf.numpy())
    solution = fit_head(net, X[is_train], None, target[is_train], len(classes), C=HEAD_C if C is None else C,
                        grams=tf[is_train], init=init, unlabelled=unlabelled)
    _keep_solution(ds, key, solution, X.shape[1])
    logits = (X @ net.head.weight.detach().numpy().T + net.head.bias.detach().numpy()
              + tf @ net.grams.weight.detach().numpy())
    p = _softmax(logits)
    extra = dict(kind=NAME, vocab=int(net.body.embed.num_embeddings), dim=int(net.body.num_features),
                 max_tokens=int(backbone.size), tokenizer="tokenizer.json", head={"type": "linear+grams"},
                 arch=ARCH, size=int(backbone.size), mean=[], std=[], self_trained=int(net.self_trained),
                 **gram_config())
    return net, p[is_train], p[~is_train], extra


# -- a model's inputs ---------------------------------------------------------------------------------------------
def model_tokenizer(model):
    json_text = getattr(model, "_tokenizer_json", None)
    return tokenizer(json_text) if json_text else tokenizer()


def probs(model, texts: list[str], bs: int = 256) -> np.ndarray:
    """Class probabilities for texts, float32 [n, classes]."""
    if _encoder_model(model):
        from . import text_setfit
        return text_setfit.probs(model, texts)
    return net_probs(model.net, texts, model.size, model.device, model_tokenizer(model), bs)


def net_probs(net, texts: list[str], size: int, device, tok=None, bs: int = 256) -> np.ndarray:
    """A TextNet's class probabilities for texts, float32 [n, classes]."""
    import torch
    net.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), bs):
            inputs = encode(texts[start:start + bs], size, tok, net.grams.num_embeddings)
            logits = net(*[torch.from_numpy(inputs[k]).to(device) for k in INPUT_NAMES])
            out.append(torch.softmax(logits.float(), 1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, net.head.out_features), np.float32)


def model_probs(model, emb) -> np.ndarray:
    """The model's probabilities for the items of `emb` (its own body's stored embeddings): the head on those plus
    the n-gram weights on TF-IDF of the stored texts (n-gram counts cached per text), the same as the whole network
    to float16 rounding, without running the token table again."""
    if _encoder_model(model):
        from . import text_setfit
        return text_setfit.model_probs(model, emb.features)
    texts = emb.frame["content"].fillna("").tolist()
    net = model.net
    head_w = net.head.weight.detach().float().cpu().numpy()
    head_b = net.head.bias.detach().float().cpu().numpy()
    grams_w = net.grams.weight.detach().float().cpu().numpy()
    idf = net.idf.detach().float().cpu().numpy()
    shas = emb.frame["sha256"].tolist()
    out = []
    for i in range(0, len(texts), 8192):
        tf = tfidf(gram_rows(shas[i:i + 8192], texts[i:i + 8192])[:, :len(idf)], idf)      # a model's buckets
        out.append(_softmax(emb.features[i:i + 8192] @ head_w.T + head_b + np.asarray(tf @ grams_w)))
    return np.concatenate(out) if out else np.zeros((0, len(model.classes)), np.float32)


def item_probs(model, frame: pd.DataFrame, bs: int = 256):
    """Probabilities for store items (their stored text)."""
    frame = frame[frame["content"].notna()].reset_index(drop=True)
    return frame, probs(model, frame["content"].tolist(), bs)


def predict_probs(model, values) -> np.ndarray:
    return probs(model, [check_input(v) for v in values])


def load_net(folder: Path, config: dict, state: dict):
    from . import text_setfit
    if text_setfit.is_encoder_config(config):
        return text_setfit.load_net(folder, config, state)
    net = build_net(config)
    net.load_state_dict(state)
    return net


def save_extra(model, folder: Path) -> None:
    """A text model's folder also holds its tokenizer, as JSON."""
    if _encoder_model(model):
        from . import text_setfit
        return text_setfit.save_extra(model, folder)
    json_text = getattr(model, "_tokenizer_json", None) or tokenizer_json()
    (folder / "tokenizer.json").write_text(json_text, encoding="utf-8")


def load_extra(model, folder: Path) -> None:
    if _encoder_model(model):
        return
    f = folder / "tokenizer.json"
    if f.is_file():
        model._tokenizer_json = f.read_text(encoding="utf-8")
