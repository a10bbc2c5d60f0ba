"""The table kind's models: fastai's `TabularModel` (what `tabular_learner` builds: categorical embeddings,
batch-normalised numbers, layers of 200 and 100), LightGBM's gradient-boosted trees and a logistic regression, each
fitted on the train split; the best kept (on up to `CV_MAX_ROWS` labelled rows by 5-fold cross-validation over all of
them, above that by the validation split); the data-centric loop on the standardised rows; a model's inputs. Part of
the table kind (nbml.kinds.table, its face)."""
from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .table_columns import (ARCHS, EMBED_KEY, IMPORTANCE_KEY, MODEL_OF_ARCH, NAME, _native, add_table,  # noqa: F401
                            columns_of, feature_columns, row_sha256)
from .table_encoding import check_row, encode, features, fit_prep, rows_of, tree_probs

# -- the network and the trees ------------------------------------------------------------------------------------
LAYERS = (200, 100)       # tabular_learner's default
EPOCHS = 8
LR = 1e-2
TREES = dict(objective="multiclass", learning_rate=0.05, num_leaves=15, lambda_l2=1.0, feature_fraction=0.9,
             verbose=-1, deterministic=True, force_row_wise=True, seed=0)
ROUNDS = 200


def emb_sizes(prep: dict) -> list[tuple[int, int]]:
    from fastai.tabular.model import emb_sz_rule
    return [(len(c["levels"]) + 1, emb_sz_rule(len(c["levels"]) + 1)) for c in prep["cats"]]


@functools.lru_cache(maxsize=1)
def _table_net():
    import torch
    from torch import nn

    class TableNet(nn.Module):
        """The model of a table project: fastai's TabularModel (`network`), LightGBM's trees (`booster`) or a
        logistic regression (`linear`), with the encoding that turns rows into their inputs (`prep`). `use` says
        which one predicts."""

        def __init__(self, prep: dict, n_classes: int, network: bool = True, layers=LAYERS):
            super().__init__()
            self.prep, self.n_classes, self.layers, self.use = prep, n_classes, list(layers), "network"
            self.booster = None
            self.network = None
            self.linear = None
            if network:
                from fastai.tabular.model import TabularModel
                self.network = TabularModel(emb_sizes(prep), n_conts(prep), n_classes, list(layers))

        def torch_model(self):
            return self.linear if self.use == "linear" else self.network

        def __getitem__(self, i):
            if i == 0:                    # no body: the data-centric loop embeds the standardised rows
                return nn.Identity()
            raise IndexError(i)

        def forward(self, cats, conts):
            if self.use == "lightgbm":
                p = tree_probs(self.booster, features(cats.cpu().numpy(), conts.cpu().numpy()), self.n_classes)
                return torch.from_numpy(np.log(np.clip(p, 1e-12, 1.0))).to(conts.device)
            return self.torch_model()(cats, conts)

    class LinearRows(nn.Module):
        """A multinomial logistic regression on the numbers and the one-hot categories: logits = bias + numbers ·
        W + one weight row per category level (an embedding of n_classes per column)."""

        def __init__(self, cardinalities: list[int], n_cont: int, n_classes: int):
            super().__init__()
            self.levels = nn.ModuleList([nn.Embedding(k, n_classes) for k in cardinalities])
            self.numbers = nn.Linear(max(n_cont, 1), n_classes, bias=False)
            self.bias = nn.Parameter(torch.zeros(n_classes))
            self.n_cont = n_cont

        def forward(self, cats, conts):
            out = self.bias + (self.numbers(conts) if self.n_cont else 0.0)
            for j, table in enumerate(self.levels):
                out = out + table(cats[:, j])
            return out

    return TableNet, LinearRows


def n_conts(prep: dict) -> int:
    return len(prep["conts"]) + sum(c["flag"] for c in prep["conts"])


def new_net(prep: dict, n_classes: int, network: bool = True):
    return _table_net()[0](prep, n_classes, network)


def new_linear(prep: dict, n_classes: int):
    return _table_net()[1]([len(c["levels"]) + 1 for c in prep["cats"]], n_conts(prep), n_classes)


LINEAR_C = 1.0      # scikit-learn's default strength for the logistic regression


def fit_linear(cats, conts, y: np.ndarray, prep: dict, n_classes: int):
    """The logistic regression, fitted in closed form (nbml.head.fit_sparse_linear) and written into a LinearRows."""
    import scipy.sparse as sp
    import torch
    from ..head import fit_sparse_linear
    cards = [len(c["levels"]) + 1 for c in prep["cats"]]
    offsets = np.concatenate([[0], np.cumsum(cards)]).astype(np.int64)
    onehot = sp.csr_matrix((np.ones(cats.size, np.float32), (np.repeat(np.arange(len(cats)), len(cards)),
                                                              (cats + offsets[:-1]).ravel())),
                           shape=(len(cats), int(offsets[-1])))
    X = sp.hstack([sp.csr_matrix(conts), onehot], format="csr")
    W, b = fit_sparse_linear(X, y, n_classes, C=LINEAR_C)
    model = new_linear(prep, n_classes)
    with torch.no_grad():
        if conts.shape[1]:
            model.numbers.weight.copy_(torch.from_numpy(np.ascontiguousarray(W[:, :conts.shape[1]])))
        for j, table in enumerate(model.levels):
            lo = conts.shape[1] + offsets[j]
            table.weight.copy_(torch.from_numpy(np.ascontiguousarray(W[:, lo:lo + cards[j]].T)))
        model.bias.copy_(torch.from_numpy(np.asarray(b, np.float32)))
    return model


def fit_trees(cats, conts, y: np.ndarray, n_classes: int, seed: int | None = None):
    """LightGBM on the encoded rows (categories as LightGBM categories), sized for small data as well as large."""
    import lightgbm as lgb
    n = len(y)
    X = features(cats, conts)
    n_num = conts.shape[1]
    params = dict(TREES, num_class=n_classes, min_data_in_leaf=int(max(2, min(20, n // 25))),
                  min_data_per_group=int(max(1, min(100, n // 25))), cat_smooth=10.0,
                  # one thread below a million cells: OpenMP threads waiting on a busy core cost far more here than
                  # they save (714 rows, 200 rounds: 0.16 s on one thread, 5.4 s on two under load)
                  num_threads=1 if n * X.shape[1] < 1_000_000 else 0,
                  seed=0 if seed is None else int(seed))
    data = lgb.Dataset(X, y, categorical_feature=list(range(n_num, X.shape[1])) or "auto", free_raw_data=False,
                       params={"verbose": -1})
    return snap_thresholds(lgb.train(params, data, num_boost_round=ROUNDS))


def snap_thresholds(booster):
    """The trees with every numeric threshold rounded to float32. ONNX's tree ensembles compare float32 values with
    float32 thresholds, LightGBM in float64: a row whose value lies within a float32 step of a threshold went one
    way in LightGBM and the other in ONNX (0.04 of probability on one Titanic row). Rounded, both decide alike for
    every float32 input, and the trees move by less than one float32 step."""
    import lightgbm as lgb
    lines = [line for line in booster.model_to_string().split("\n") if not line.startswith("tree_sizes=")]
    at = {}                               # the current tree's threshold line
    for i, line in enumerate(lines):
        if line.startswith("Tree="):
            at = {}
        elif line.startswith(("threshold=", "decision_type=")):
            at[line.split("=")[0]] = i
            if len(at) == 2:
                t, d = at["threshold"], at["decision_type"]
                decisions = [int(v) for v in lines[d].split("=", 1)[1].split()]
                values = lines[t].split("=", 1)[1].split()
                lines[t] = "threshold=" + " ".join(v if k & 1 else repr(float(np.float32(float(v))))
                                                   for v, k in zip(values, decisions))
                at = {}
    return lgb.Booster(model_str="\n".join(lines))


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1)).mean()) if len(y) else math.nan


def _importance(booster, prep: dict) -> dict:
    """Each column's share of the trees' total gain (a number's missing flag counts for its column)."""
    gain = booster.feature_importance("gain")
    total = float(gain.sum()) or 1.0
    owners = ([c["name"] for c in prep["conts"]] + [c["name"] for c in prep["conts"] if c["flag"]]
              + [c["name"] for c in prep["cats"]])          # the order of table_encoding.features
    out: dict[str, float] = {}
    for name, g in zip(owners, gain):
        out[name] = out.get(name, 0.0) + float(g) / total
    return out


def plan(ds, frame, classes, *, arch, size, bs, pretrained, weights, epochs, freeze_epochs, augment) -> dict:
    """This kind's part of a training plan: the encoding learnt from the train rows, the two models' settings."""
    arch = arch or "auto"
    if arch not in ARCHS:
        raise ValueError(f"arch for a table is one of {ARCHS} ('auto' trains both and keeps the better), not {arch!r}")
    if weights is not None or pretrained is True:
        raise ValueError("table models train from scratch on the project's rows: there are no pretrained weights "
                         "for them (leave weights= and pretrained= out)")
    cols = feature_columns(ds)
    if not cols:
        raise ValueError("no column to learn from: every column is empty, an identifier or left out; put one in "
                         "with ds.use_columns([...])")
    train = frame[frame["split"] == "train"]
    prep = fit_prep(rows_of(train), cols)
    n_train = len(train)
    return dict(arch=arch, net=new_net(prep, len(classes), network=arch in ("auto", "tabular")), size=len(cols),
                bs=int(bs or _batch_size(n_train)),
                epochs=0 if arch in ("lightgbm", "linear") else (EPOCHS if epochs is None else int(epochs)),
                freeze_epochs=0,
                weights_source="none (trained from scratch on this project)", mean=(), std=(), augment=None,
                default_lr=LR, threads=1 if n_train * len(cols) < 1_000_000 else None)


def _batch_size(n_train: int) -> int:
    return max(16, min(256, n_train // 16))


def make_learner(plan, frame, stop_cb):
    """LightGBM on the train rows first (seconds), then the fastai Learner the shared loop trains the network with."""
    from ..data import ItemBatches
    from ..learner import basic_learner
    net = plan.net
    cats, conts = encode(rows_of(frame), net.prep)
    y = frame["label"].map({c: i for i, c in enumerate(plan.classes)}).to_numpy().astype(np.int64)
    is_train = (frame["split"] == "train").to_numpy()
    net.candidates = {}
    if plan.arch != "tabular":
        t0 = time.perf_counter()
        net.booster = fit_trees(cats[is_train], conts[is_train], y[is_train], len(plan.classes), plan.seed)
        p = tree_probs(net.booster, features(cats[~is_train], conts[~is_train]), len(plan.classes))
        net.candidates["lightgbm"] = dict(accuracy=float((p.argmax(1) == y[~is_train]).mean()),
                                          valid_loss=_log_loss(p, y[~is_train]),
                                          fit_s=round(time.perf_counter() - t0, 3))
    if plan.arch in ("auto", "linear"):
        t0 = time.perf_counter()
        net.linear = fit_linear(cats[is_train], conts[is_train], y[is_train], net.prep, len(plan.classes))
        p = _torch_probs(net.linear, cats[~is_train], conts[~is_train])
        net.candidates["linear"] = dict(accuracy=float((p.argmax(1) == y[~is_train]).mean()),
                                        valid_loss=_log_loss(p, y[~is_train]), fit_s=round(time.perf_counter() - t0, 3))
    net._valid = (cats[~is_train], conts[~is_train], y[~is_train])

    def batches(mask, **kw):
        c, x = cats[mask], conts[mask]
        return ItemBatches(lambda idx: (c[idx], x[idx]), y[mask], **kw)
    train_dl = batches(is_train, bs=plan.bs, device=plan.device, shuffle=True, drop_last=is_train.sum() > plan.bs,
                       seed=plan.seed)
    valid_dl = batches(~is_train, bs=plan.bs * 2, device=plan.device)
    if net.network is None:           # arch="lightgbm" or "linear": the Learner only carries it through the loop
        import torch
        net.network = torch.nn.Linear(1, 1)
        net._placeholder = True
    net = net.to(plan.device)
    learn = basic_learner(plan, train_dl, valid_dl, net, stop_cb, splitter=lambda m: [list(m.network.parameters())])
    return learn, frame, []


CV_MAX_ROWS = 3000      # up to this many labelled rows the model is chosen by cross-validation, not the split
CV_FOLDS = 5


def _fit_network_plain(prep: dict, n_classes: int, cats, conts, y, *, epochs: int, lr: float, bs: int, seed: int,
                       stopping) -> object | None:
    """The network as the shared loop trains it (fastai's Adam with decoupled weight decay and `fit_one_cycle`'s
    schedules: lr/25 up to lr over a quarter of the steps, then down to lr/1e5; momentum 0.95-0.85-0.95), in a plain
    loop on one thread: a cross-validation fold needs no events, no monitor and no Learner (torch.optim would also
    import torch._dynamo, seconds). None when Stop was pressed."""
    import torch
    from fastai.callback.schedule import combined_cos
    from fastai.optimizer import Adam

    from .._threads import torch_threads
    with torch_threads(1), torch.random.fork_rng():
        torch.manual_seed(seed)
        net = new_net(prep, n_classes).network
        n = len(y)
        bs = max(2, min(bs, n))
        per_epoch = max(1, n // bs)
        total = epochs * per_epoch
        opt = Adam(list(net.parameters()), lr=lr / 25)
        lr_at, mom_at = combined_cos(0.25, lr / 25, lr, lr / 1e5), combined_cos(0.25, 0.95, 0.85, 0.95)
        c, x, t = torch.from_numpy(cats), torch.from_numpy(conts), torch.from_numpy(y)
        g = torch.Generator().manual_seed(seed)
        net.train()
        step = 0
        for _ in range(epochs):
            if stopping():
                return None
            order = torch.randperm(n, generator=g)
            for i in range(per_epoch):
                pos = step / total
                opt.set_hyper("lr", lr_at(pos))
                opt.set_hyper("mom", mom_at(pos))
                idx = order[i * bs:(i + 1) * bs]
                loss = torch.nn.functional.cross_entropy(net(c[idx], x[idx]), t[idx])
                loss.backward()
                opt.step()
                opt.zero_grad()
                step += 1
        net.eval()
    return net


def cross_validate(plan, names: list[str]) -> dict | None:
    """Out-of-fold probabilities of each candidate on every labelled row (train and valid), by stratified folds:
    {name: {cv_accuracy, cv_log_loss}}. Each fold learns its own encoding from its own train rows. None when Stop
    was pressed or a class is too small for two folds."""
    from sklearn.model_selection import StratifiedKFold
    from ..head import fold_count
    frame = plan.frame
    rows = rows_of(frame)
    y = frame["label"].map({c: i for i, c in enumerate(plan.classes)}).to_numpy().astype(np.int64)
    n_classes = len(plan.classes)
    try:
        k = fold_count(y, CV_FOLDS)
    except ValueError:
        return None
    handle = plan.handle
    stopping = (lambda: bool(handle.stopping)) if handle is not None else (lambda: False)
    cols = feature_columns(plan.ds)
    seed = 0 if plan.seed is None else int(plan.seed)
    oof = {name: np.zeros((len(y), n_classes), np.float32) for name in names}
    took = dict.fromkeys(names, 0.0)
    for train, test in StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        if stopping():
            return None
        prep = fit_prep([rows[i] for i in train], cols)
        cats, conts = encode(rows, prep)
        for name in names:
            t0 = time.perf_counter()
            if name == "lightgbm":
                booster = fit_trees(cats[train], conts[train], y[train], n_classes, seed)
                p = tree_probs(booster, features(cats[test], conts[test]), n_classes)
            elif name == "linear":
                p = _torch_probs(fit_linear(cats[train], conts[train], y[train], prep, n_classes), cats[test],
                                 conts[test])
            else:
                net = _fit_network_plain(prep, n_classes, cats[train], conts[train], y[train], epochs=plan.epochs,
                                         lr=plan.params.get("lr") or LR,
                                         bs=_batch_size(len(train)), seed=seed, stopping=stopping)
                if net is None:
                    return None
                p = _torch_probs(net, cats[test], conts[test])
            oof[name][test] = p
            took[name] += time.perf_counter() - t0
    return {name: dict(cv_accuracy=float((oof[name].argmax(1) == y).mean()), cv_log_loss=_log_loss(oof[name], y),
                       cv_fit_s=round(took[name], 3)) for name in names}


def _choose(cands: dict, key: str, loss: str, what: str) -> tuple[str, str]:
    """The candidate with the highest `key` (the lower `loss` on a tie), and why, in words."""
    kept = max(cands, key=lambda k: (cands[k][key], -cands[k][loss]))
    others = ", ".join(f"{k} {v[key]:.4f}" for k, v in cands.items() if k != kept)
    ties = [k for k in cands if k != kept and cands[k][key] == cands[kept][key]]
    if not others:
        return kept, "the only model that finished"
    if ties:
        return kept, f"{what} {cands[kept][key]:.4f} shared with {', '.join(ties)}, lower log loss"
    return kept, f"highest {what}, {cands[kept][key]:.4f} (others: {others})"


def finish(plan, learn, metrics: dict) -> dict:
    """After training: score the network on the validation rows, keep the better model, and say why in the run."""
    net = learn.model
    cats, conts, y = net._valid
    cands = dict(net.candidates)
    if not getattr(net, "_placeholder", False) and plan.epochs and metrics:
        net.eval()
        p = _torch_probs(net.network, cats, conts)
        cands["network"] = dict(accuracy=float((p.argmax(1) == y).mean()), valid_loss=_log_loss(p, y))
    if not cands:
        raise RuntimeError("training was stopped before any model could be scored; train again")
    n_rows = len(plan.frame)
    stopped = plan.handle is not None and plan.handle.stopping
    if plan.arch != "auto":
        kept = MODEL_OF_ARCH[plan.arch]
        why = f"arch={plan.arch!r} was asked for"
        plan.params["chosen_by"] = "arch"
    elif len(cands) > 1 and n_rows <= CV_MAX_ROWS and not stopped and (cv := cross_validate(plan, list(cands))):
        # On a small table the validation split is a few dozen rows and its winner is chance: every labelled row
        # scores each candidate once, out of fold. The kept model is still the one fitted on the train split.
        for name, scores in cv.items():
            cands[name].update(scores)
        kept, why = _choose(cands, "cv_accuracy", "cv_log_loss",
                            f"{CV_FOLDS}-fold cross-validated accuracy on the {n_rows} labelled rows")
        plan.params["chosen_by"] = f"{CV_FOLDS}-fold cross-validation"
    else:
        kept, why = _choose(cands, "accuracy", "valid_loss", "validation accuracy")
        if len(cands) > 1 and n_rows <= CV_MAX_ROWS:
            why += " (no cross-validation: " + ("training was stopped)" if stopped else
                                                 "a class has fewer than two rows)")
        plan.params["chosen_by"] = "validation split"
    if net.booster is not None:       # the trees' gain orders the grid's columns, whichever model is kept
        plan.ds._set_meta(IMPORTANCE_KEY, json.dumps(_importance(net.booster, net.prep)))
    net.use = kept
    if kept != "network":
        net.network = None            # only the kept model is saved
    if kept != "lightgbm":
        net.booster = None
    if kept != "linear":
        net.linear = None
    plan.params.update(candidates=cands, kept=kept, kept_because=why)
    out = {"accuracy": cands[kept]["accuracy"], "valid_loss": cands[kept]["valid_loss"]}
    out.update({f"accuracy_{k}": v["accuracy"] for k, v in cands.items()})
    out["kept"] = f"{kept} ({why})"         # which of them the model is, and why: the summary names it
    return out


def _torch_probs(module, cats, conts) -> np.ndarray:
    import torch
    with torch.inference_mode():
        module.eval()
        device = next(module.parameters()).device
        logits = module(torch.from_numpy(cats).to(device), torch.from_numpy(conts).to(device))
        return torch.softmax(logits.float(), 1).cpu().numpy()


def config(plan) -> dict:
    net = plan.net
    return dict(kind=NAME, prep=net.prep, model=net.use, layers=net.layers, candidates=getattr(net, "candidates", {}),
                columns=columns_of(plan.ds), **({"trees": "lightgbm.txt"} if net.use == "lightgbm" else {}))


# -- the data-centric loop: the standardised rows are the embeddings ------------------------------------------------
SURFACE_WORDS = "gradient-boosted trees on the columns"
SURFACE_ONLY = "standardised-row comparison only"
SURFACE_COLUMN = "row_similarity"
SURFACE_THRESHOLD = 0.9999    # cosine of the standardised rows for near duplicates (Titanic: same class, sex, age,
                              # family, fare within pennies; 0.999 also paired passengers 3 years apart)
NEAR_EMBEDDING = SURFACE_THRESHOLD   # the embeddings are the same standardised rows: the same bar
QUERY_WORDS = "or a dict of column values"
EMBED_LEVELS = 20             # categories one-hot encoded in the embeddings (rarer levels share a zero block)


def _embed_prep(ds) -> dict:
    """The statistics of the standardised rows, learnt from every row once and kept, so stored embeddings stay
    comparable as rows are added."""
    text = ds._meta_value(EMBED_KEY)
    if text:
        return json.loads(text)
    frame = pd.DataFrame(ds._item_columns(["content"]))
    prep = fit_prep(rows_of(frame), feature_columns(ds))
    for c in prep["cats"]:
        c["levels"] = c["levels"][:EMBED_LEVELS]
    ds._set_meta(EMBED_KEY, json.dumps(prep))
    return prep


def standardised(rows: list[dict], prep: dict) -> np.ndarray:
    """Numbers z-scored (missing at the mean, with a 0/1 flag), categories one-hot: float32 [N, D]."""
    cats, conts = encode(rows, prep)
    blocks = [conts]
    for j, c in enumerate(prep["cats"]):
        onehot = np.zeros((len(rows), len(c["levels"])), np.float32)
        hit = cats[:, j] > 0
        onehot[np.flatnonzero(hit), cats[hit, j] - 1] = 1.0
        blocks.append(onehot)
    out = np.hstack(blocks).astype(np.float32) if blocks else np.zeros((len(rows), 0), np.float32)
    return out


def pretrained_backbone(device=None, arch=None):
    """No network: the standardised rows are the table's embeddings (always available)."""
    from ..backbone import Backbone
    import torch
    return Backbone("table:standardised", "the standardised columns (numbers z-scored, categories one-hot)",
                    "standardised", 0, (), (), "none", loader=lambda: torch.nn.Identity(), device=device,
                    fresh=True, kind=NAME)


def compute(ds, backbone, todo: pd.DataFrame):
    prep = _embed_prep(ds)
    rows = rows_of(todo)
    return todo, lambda start, stop: standardised(rows[start:stop], prep), []


def query(ds, emb, value):
    if not isinstance(value, dict):
        return None
    vector = standardised([value], _embed_prep(ds))[0]
    same = emb.frame.loc[emb.frame["sha256"] == row_sha256({k: _native(v) for k, v in value.items()}), "id"]
    short = ", ".join(f"{k}={v}" for k, v in list(value.items())[:3])
    return vector, set(int(i) for i in same), f"the row {{{short}}}"


# The trained model's error over the logistic head's, from ds.forecast's backtest of 2026-12-07 (benchmarks/forecast.py,
# fitted on its own cases): LightGBM or the network chosen by cross-validation erred about 1.2x as often as the
# logistic head at 20-80 labels (Titanic, breast cancer, wine).
FORECAST_RHO = 1.2


def forecast_rho(model_id: str) -> float:
    return FORECAST_RHO


def fit_and_score(ds, emb, fit: np.ndarray, y: np.ndarray, score: np.ndarray, n_classes: int):
    from ..head import fit_sparse_linear
    import scipy.sparse as sp
    W, b = fit_sparse_linear(sp.csr_matrix(emb.features[fit]), y, n_classes, C=1.0)
    logits = emb.features[score] @ W.T + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).astype(np.float32), "a logistic head fitted on the standardised columns"


def _frame(ds, ids) -> pd.DataFrame:
    cols = ["id", "content", "sha256", "label", "split", "path"]
    return pd.DataFrame([{c: r.get(c) for c in cols} for r in ds.item_rows(ids) if r.get("content")], columns=cols)


def surface(ds, ids):
    """What `duplicates` compares beside embeddings: unit-length standardised rows, the row hash, the frame."""
    import scipy.sparse as sp
    frame = _frame(ds, ids)
    x = standardised(rows_of(frame), _embed_prep(ds))
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return sp.csr_matrix(x), frame["sha256"].to_numpy(object), frame


def surface_probs(ds, ids: list[int], y: np.ndarray, n_classes: int, folds: int, seed: int):
    """Out-of-sample probabilities of LightGBM cross-validated on the rows (the model family that reads them best)."""
    from ..head import out_of_fold
    frame = _frame(ds, ids)
    rows = rows_of(frame)

    def fit_predict(train, test, yy):
        prep = fit_prep([rows[i] for i in train], feature_columns(ds))
        cats, conts = encode(rows, prep)
        booster = fit_trees(cats[train], conts[train], yy[train], n_classes, seed)
        return tree_probs(booster, features(cats[test], conts[test]), n_classes)
    return out_of_fold(ids, frame["id"], y, n_classes, folds, seed, fit_predict)


def head_model(ds, backbone, X, frame, target, is_train, classes, C=None):
    """mode="head" for tables: the trees alone on the rows (a second or less for 10,000 rows)."""
    rows = rows_of(frame)
    prep = fit_prep([r for r, k in zip(rows, is_train) if k], feature_columns(ds))
    cats, conts = encode(rows, prep)
    net = new_net(prep, len(classes), network=False)
    net.booster = fit_trees(cats[is_train], conts[is_train], target[is_train], len(classes))
    net.use = "lightgbm"
    p = tree_probs(net.booster, features(cats, conts), len(classes))
    ds._set_meta(IMPORTANCE_KEY, json.dumps(_importance(net.booster, prep)))
    extra = dict(kind=NAME, prep=prep, model="lightgbm", layers=list(LAYERS), trees="lightgbm.txt",
                 columns=columns_of(ds), arch="lightgbm", size=len(prep["cats"]) + len(prep["conts"]), mean=[], std=[])
    return net, p[is_train], p[~is_train], extra


# -- a model's inputs -----------------------------------------------------------------------------------------------
def probs(model, rows: list[dict], strict: bool = False) -> np.ndarray:
    net = model.net
    cats, conts = encode(rows, net.prep, strict)
    if net.use == "lightgbm":
        return tree_probs(net.booster, features(cats, conts), len(model.classes))
    return _torch_probs(net.torch_model(), cats, conts)


def predict_probs(model, values) -> np.ndarray:
    rows = [dict(v) if isinstance(v, pd.Series) else v for v in values]
    known = model.net.prep | {"ignored": _ignored(model)}
    for i, row in enumerate(rows):
        check_row(row, known, i, len(rows))
    return probs(model, rows, strict=False)


def _ignored(model) -> list[str]:
    return [c["name"] for c in model.config.get("columns", []) if c["role"] != "feature"]


def item_probs(model, frame: pd.DataFrame, bs: int = 256):
    frame = frame[frame["content"].notna()].reset_index(drop=True)
    return frame, probs(model, rows_of(frame))


def model_probs(model, emb) -> np.ndarray:
    return probs(model, rows_of(emb.frame))


def load_net(folder: Path, config: dict, state: dict):
    net = new_net(config["prep"], len(config["classes"]), network=config.get("model", "network") == "network")
    if config.get("model") == "linear":
        net.linear = new_linear(config["prep"], len(config["classes"]))
        net.use = "linear"
        net.load_state_dict(state)
    elif config.get("model") == "lightgbm":
        import lightgbm as lgb
        net.booster = lgb.Booster(model_str=(Path(folder) / config.get("trees", "lightgbm.txt")).read_text())
        net.use = "lightgbm"
    else:
        net.load_state_dict(state)
    return net


def save_extra(model, folder: Path) -> None:
    """The trees as LightGBM's own text format (no pickle)."""
    if model.net.use == "lightgbm":
        (Path(folder) / "lightgbm.txt").write_text(model.net.booster.model_to_string())
