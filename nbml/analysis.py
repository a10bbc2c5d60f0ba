"""What the embeddings show about a dataset: what to label next, items that look alike, duplicates and leaks,
outliers, labels that look wrong, and counts per class and split.

Every DataFrame returned says in `attrs` which backbone its embeddings came from (`attrs["embeddings"]`, the model
id, and `attrs["backbone"]`, the same in words) and how it was scored. The widgets build on these functions:
`embedding_map` (a 2-D PCA map), `suggest` (the labelling queue) and `similar` (items like an id).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import kinds, vector_index
from .embeddings import Embeddings, embed, resolve_backbone, tag
from .notices import NbmlWarning

__all__ = ["STRATEGIES", "suggest", "similar", "duplicates", "outliers", "label_issues", "stats", "DataStats",
           "embedding_map", "uncertainty"]

STRATEGIES = ("margin", "entropy", "least_confident", "random", "diverse")
MIN_PER_CLASS = 5          # fewer labelled items than this: too few to learn (and to validate on)
PIXEL_SLACK = 0.1          # the pixel head joins when it agrees with the labels at most this much less than embeddings
_NEAR_PRETRAINED = 0.97    # default embedding cosine for near duplicates with a pretrained backbone


# -- helpers ------------------------------------------------------------------------------------------------------
def _require_items(ds) -> None:
    if not ds.query_ids(limit=1):
        raise ValueError("this project has no items yet; add images with ds.add_images(folder) or texts with "
                         "ds.add_texts(texts)")


def _embeddings(ds, backbone, embeddings: Embeddings | None, ids=None) -> Embeddings:
    if embeddings is not None:
        if ids is None:
            return embeddings
        have = set(embeddings.ids.tolist())
        return embeddings.take([i for i in ids if i in have])
    if ids is not None:
        return embed(ds, backbone, ids=ids, progress=False)
    return ds.embed(backbone, progress=False)    # loaded once, reused while the store says they are current


def uncertainty(probs: np.ndarray, strategy: str) -> np.ndarray:
    """Higher is more uncertain: 1 - (p1 - p2) for margin, normalised entropy, 1 - p1 for least_confident."""
    probs = np.asarray(probs, np.float64)
    if probs.shape[0] == 0:
        return np.zeros(0)
    if strategy == "entropy":
        ent = -(probs * np.log(np.clip(probs, 1e-12, 1))).sum(1)
        return ent / np.log(max(probs.shape[1], 2))
    top = np.sort(probs, 1)[:, ::-1]
    if strategy == "least_confident":
        return 1 - top[:, 0]
    second = top[:, 1] if probs.shape[1] > 1 else np.zeros(len(probs))
    return 1 - (top[:, 0] - second)


def _model_embeddings(ds, model, backbone, embeddings: Embeddings | None) -> Embeddings:
    """The embeddings a model's head reads: its own body's (so `backbone` cannot be another one)."""
    if backbone is not None:
        raise ValueError("give a model or a backbone, not both: a model's scores come from its own body")
    own = resolve_backbone(ds, model)
    if embeddings is not None and embeddings.model_id == own.model_id:
        return embeddings
    return ds.embed(own, progress=False)


def _model_probs(model, emb: Embeddings) -> np.ndarray:
    """The model's probabilities for the items of `emb` (its own body's embeddings), through the model's kind."""
    return model.kind.model_probs(model, emb)


def _check_model(model, ds) -> None:
    from .model_files import is_model
    if hasattr(model, "wait") and hasattr(model, "run_id") and not is_model(model):
        raise TypeError("pass the model, not the training handle: model = handle.wait()")
    if not is_model(model):
        raise TypeError(f"model must be an nbml.Model (from nbml.train or nbml.load), not {type(model).__name__}")


def _resolve_model(model):
    if hasattr(model, "wait") and hasattr(model, "run_id"):     # a TrainingHandle: wait for its model
        return model.wait()
    return model


def _classes_unknown_to(model, labels) -> list[str]:
    return sorted(set(labels) - set(model.classes))


# -- what to label next --------------------------------------------------------------------------------------------
def suggest(ds, model=None, n: int = 20, strategy: str = "margin", *, backbone=None,
            embeddings: Embeddings | None = None, pool: int = 5, seed: int | None = 0) -> pd.DataFrame:
    """The `n` unlabelled items most worth labelling next, best first: `id`, `score`, `predicted`, `confidence`,
    `path` (and `distance` for 'diverse').

    strategy: 'margin' (smallest gap between the two likeliest classes), 'entropy', 'least_confident', 'random',
    or 'diverse': the `pool * n` most uncertain by margin, then a spread-out subset by greedy k-center in embedding
    space (far from the labelled items and from each other), in the order picked; its `score` is the margin
    uncertainty and `distance` the cosine distance to the nearest labelled or earlier pick. With fewer than two
    labelled classes, 'diverse' picks by spread alone. Scores come from `model` (its head on its own body's
    embeddings), or without one from a linear head fitted on the embeddings of the labelled items (`backbone`
    picks those embeddings; see nbml.embeddings.resolve_backbone). `attrs` say which.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive whole number, not {n!r}")
    _require_items(ds)
    model = _resolve_model(model)
    if model is not None:
        _check_model(model, ds)
    columns = ["id", "score", "predicted", "confidence", "path"] + (["distance"] if strategy == "diverse" else [])
    unlabelled = ds.query_ids(labelled=False, usable_only=True)
    if not unlabelled:
        out = pd.DataFrame(columns=columns)
        out.attrs.update(strategy=strategy, message="every usable item is labelled; add images to label more")
        return out
    rng = np.random.default_rng(seed)
    if strategy == "random" and model is None:
        pick = rng.permutation(len(unlabelled))[:n]
        rows = {r["id"]: r for r in ds.item_rows([unlabelled[i] for i in pick])}
        out = pd.DataFrame({"id": [unlabelled[i] for i in pick], "score": np.nan, "predicted": None,
                            "confidence": np.nan})
        out["path"] = [rows[i]["path"] for i in out["id"]]
        out.attrs.update(strategy="random", scored_by="nothing: a random sample", embeddings=None, backbone=None)
        return out

    emb = _model_embeddings(ds, model, backbone, embeddings) if model is not None else \
        _embeddings(ds, backbone, embeddings)
    labelled_mask = emb.frame["label"].notna().to_numpy()
    unl = np.flatnonzero(~labelled_mask)
    if len(unl) == 0:
        raise ValueError(f"none of the {len(unlabelled)} unlabelled items has an embedding (their files could not "
                         f"be read): {emb.warnings[:3]}")
    probs, predicted, scored_by = None, None, None
    if model is not None:
        unknown = _classes_unknown_to(model, emb.frame.loc[labelled_mask, "label"])
        if unknown:
            warnings.warn(f"the model does not know the classes {unknown} (the project labelled them after it was "
                          f"trained), so its uncertainty cannot point to them; retrain with nbml.train(ds)",
                          stacklevel=2)
        probs = _model_probs(model, emb.take(emb.ids[unl]))
        classes = model.classes
        scored_by = f"model of run {model.run_id} ({model.arch})"
    else:
        fit_mask = labelled_mask & (emb.frame["split"].to_numpy() != "test")   # the test split stays unseen
        labels = emb.frame.loc[fit_mask, "label"]
        classes = [c for c in ds.classes if c in set(labels)]
        if len(classes) >= 2:
            y = labels.map({c: i for i, c in enumerate(classes)}).to_numpy()
            probs, words = kinds.of(ds).fit_and_score(ds, emb, np.flatnonzero(fit_mask), y, unl, len(classes))
            scored_by = f"{words} of {int(fit_mask.sum())} labelled items"
        elif strategy != "diverse":
            raise ValueError(f"'{strategy}' needs labelled items of at least two classes to judge what the model is "
                             f"unsure of (labelled classes: {classes}); label a few of each, or use "
                             f"strategy='diverse' (spread out in embedding space) or 'random'")
    if probs is not None:
        predicted = [classes[i] for i in probs.argmax(1)]
        unc = uncertainty(probs, "margin" if strategy in ("diverse", "random") else strategy)
    else:
        unc = np.zeros(len(unl))
        scored_by = "spread in embedding space only (fewer than two labelled classes)"
    distance = None
    if strategy == "random":
        order = rng.permutation(len(unl))[:n]
    elif strategy == "diverse":
        labelled_pos = np.flatnonzero(labelled_mask)
        order, distance = _diverse(emb.vectors[unl], emb.vectors[labelled_pos], unc, n,
                                   pool if probs is not None else None,
                                   lambda q: vector_index.nearest_distance(ds, emb, q, labelled_pos))
    else:
        order = np.argsort(-unc, kind="stable")[:n]
    out = pd.DataFrame({"id": emb.ids[unl][order], "score": unc[order] if probs is not None else distance,
                        "predicted": [predicted[i] for i in order] if predicted else None,
                        "confidence": probs[order].max(1) if probs is not None else np.nan,
                        "path": emb.frame["path"].to_numpy()[unl][order]})
    if distance is not None:
        out["distance"] = distance
    out.attrs.update(strategy=strategy, scored_by=scored_by)
    return _shown(ds, out, emb, SUGGEST_COLUMNS)


SHOWN_CHARS = 200     # characters of a text a frame shows (the grid and ds.item(id) have the whole text)
SUGGEST_COLUMNS = {
    "score": "how unsure the scorer is of this item (0 to 1, higher first: the gap between its two likeliest classes, "
             "turned round; for 'diverse' picked by spread, the distance)",
    "predicted": "the class the scorer would give it",
    "confidence": "the scorer's probability of that class (0 to 1)",
    "distance": "cosine distance to the nearest labelled item or earlier pick (diverse only)",
}
ISSUE_COLUMNS = {
    "score": "how likely the label is wrong: 1 - the out-of-sample probability of the given label (0 to 1, higher "
             "first)",
    "suggested": "the class the cross-validated heads find likeliest",
    "p_label": "their probability of the given label",
    "p_suggested": "their probability of the suggested class",
}


def _shown(ds, out: pd.DataFrame, emb, docs: dict | None = None) -> pd.DataFrame:
    """`out` as a user reads it: which backbone (attrs); for items shown as text (texts, table rows), the item itself
    (`text` / `row`, and `_a` / `_b` for pairs: the start of a text, a row's `column: value` pairs) in place of a
    file path they never had, read from the embeddings' frame; and a line per scored column (`attrs["columns"]`)."""
    out = tag(out, emb)
    kind = kinds.of(ds)
    if kind.CARD == "text" and "content" in emb.frame:
        card = kind.card_text(ds)        # a row's `column: value` lines, on one line; a text's start
        show = (lambda c: card(c).replace("\n", "; ")) if card is not None else _start
        for suffix in ("", "_a", "_b"):
            col, name = f"id{suffix}", f"{kind.NOUN}{suffix}"
            if col in out.columns and name not in out.columns:
                ids = out[col].to_numpy(np.int64)
                known = np.isin(ids, emb.ids)
                contents = np.full(len(ids), None, object)
                if known.any():
                    contents[known] = emb.frame["content"].iloc[emb.positions(ids[known])].to_numpy(object)
                out[name] = [show(c) if isinstance(c, str) else None for c in contents]
        out = out.drop(columns=[c for c in ("path", "path_a", "path_b") if c in out.columns])
    if docs:
        out.attrs["columns"] = {k: v for k, v in docs.items() if k in out.columns}
    return out


def _start(text: str) -> str:
    """A frame a page tall at most: the first SHOWN_CHARS characters of a text."""
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def _diverse(cand: np.ndarray, labelled: np.ndarray, unc: np.ndarray, n: int, pool: int | None,
             nearest_labelled=None):
    """Greedy k-center among the `pool * n` most uncertain candidates (all when `pool` is None): each pick is the
    one farthest (cosine distance) from the labelled items and from the picks so far. `nearest_labelled(vectors)`
    may give each candidate's distance to the nearest labelled item (a large project's vector index), or None.
    Returns (positions in cand, distance of each at its pick)."""
    size = len(cand) if pool is None else min(len(cand), max(n, pool * n))
    pool_idx = np.argsort(-unc, kind="stable")[:size]
    vecs = cand[pool_idx]
    dmin = nearest_labelled(vecs) if nearest_labelled is not None and pool is not None and len(labelled) else None
    if dmin is None:
        dmin = np.full(size, np.inf)
        for i in range(0, len(labelled), 4096):
            dmin = np.minimum(dmin, (1 - vecs @ labelled[i:i + 4096].T).min(1))
    picks, dists = [], []
    for _ in range(min(n, size)):
        j = int(np.argmax(dmin)) if np.isfinite(dmin).any() else 0   # nothing labelled yet: most uncertain first
        picks.append(j)
        dists.append(float(dmin[j]) if np.isfinite(dmin[j]) else np.nan)
        dmin = np.minimum(dmin, 1 - vecs @ vecs[j])
        dmin[j] = -np.inf
    return pool_idx[picks], np.asarray(dists)


# -- looking alike ---------------------------------------------------------------------------------------------------
def similar(ds, item_or_image, k: int = 20, *, labelled: bool | None = None, label: str | None = None,
            backbone=None, embeddings: Embeddings | None = None) -> pd.DataFrame:
    """The `k` items most like the query by cosine similarity of embeddings, most alike first:
    `id`, `similarity`, `label`, `split`, `path`.

    The query is an item id, a list of ids (the mean of their vectors: give a few examples of a rare class to find
    more of it), an image path, encoded bytes or a Pillow image (embedded on the fly by the same backbone). The
    query items themselves are left out. `labelled=False` searches only unlabelled items, `label=` one class.
    Without `embeddings=`, the project's are loaded on the first call and reused while they are current
    (`Dataset.embed`), with the labels and splits the store has now, so a repeated query costs milliseconds.
    """
    _require_items(ds)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive whole number, not {k!r}")
    emb = _embeddings(ds, backbone, embeddings)
    exclude: set[int] = set()
    found = kinds.of(ds).query(ds, emb, item_or_image)     # content (an image, a text), or None for ids
    if found is not None:
        query, exclude, what = found
    else:
        ids = [item_or_image] if np.ndim(item_or_image) == 0 else list(item_or_image)
        if not ids:
            raise ValueError("give at least one item id (or an image) to search for")
        try:
            ids = [int(i) for i in ids]
        except (TypeError, ValueError):
            raise TypeError(f"similar() takes an item id, a list of ids, {kinds.of(ds).QUERY_WORDS}, "
                            f"not {item_or_image!r}") from None
        pos = emb.positions(ids)
        query = emb.vectors[pos].mean(0)
        exclude = set(ids)
        what = f"item {ids[0]}" if len(ids) == 1 else f"the mean of {len(ids)} items"
    query = (query / max(float(np.linalg.norm(query)), 1e-12)).astype(np.float32)
    keep = None
    if labelled is not None:
        keep = emb.frame["label"].notna().to_numpy() == bool(labelled)
    if label is not None:
        keep = (emb.frame["label"] == label).to_numpy() & (True if keep is None else keep)
    hit = vector_index.search(ds, emb, query, k + len(exclude), keep)    # a large project: its vector index
    if hit is not None:
        idx, sims = hit
        if exclude:
            sel = ~np.isin(emb.ids[idx], list(exclude))
            idx, sims = idx[sel], sims[sel]
        idx, sims = idx[:k], sims[:k]
    else:
        idx, sims = _exact_nearest(emb, query, k, keep, exclude)
    out = pd.DataFrame({"id": emb.ids[idx], "similarity": sims})
    for col in ("label", "split", "path"):
        out[col] = emb.frame[col].iloc[idx].to_numpy()
    out.attrs["query"] = what
    return _shown(ds, out, emb, {"similarity": "cosine similarity of the embeddings to the query (1 is the same)"})


def _exact_nearest(emb: Embeddings, query: np.ndarray, k: int, keep: np.ndarray | None, exclude: set):
    """(positions, similarities) of the `k` vectors most like `query` among those kept, compared with every one."""
    sims = emb.vectors @ query
    keep = np.ones(len(emb.ids), bool) if keep is None else keep.copy()
    if exclude:
        keep &= ~np.isin(emb.ids, list(exclude))
    idx = np.flatnonzero(keep)
    scores = sims[idx]
    if len(idx) > k:     # the k best without sorting everything; ties keep the store's order, as a stable sort would
        cut = np.partition(scores, len(scores) - k)[len(scores) - k]
        sel = np.flatnonzero(scores >= cut)
        idx, scores = idx[sel], scores[sel]
    idx = idx[np.argsort(-scores, kind="stable")[:k]]
    return idx, sims[idx]


def _row_dots(v, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Dot products of rows ia[k] and ib[k] of a dense array or a sparse matrix."""
    if hasattr(v, "multiply"):
        return np.asarray(v[ia].multiply(v[ib]).sum(1)).ravel() if len(ia) else np.zeros(0)
    return (v[ia] * v[ib]).sum(1)


def _pairs_above(v, threshold: float, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j) whose dot product is >= threshold, found block by block (dense arrays or sparse rows)."""
    if hasattr(v, "tocsr"):
        return _sparse_pairs_above(v.tocsr(), threshold, limit)
    a, b, s = [], [], []
    total = 0
    for i0 in range(0, len(v), 1024):
        block = v[i0:i0 + 1024] @ v.T
        ii, jj = np.nonzero(block >= threshold)
        ii = ii + i0
        keep = jj > ii
        a.append(ii[keep]), b.append(jj[keep]), s.append(block[ii[keep] - i0, jj[keep]])
        total += int(keep.sum())
        if total > limit:
            break
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
    return cat(a, np.int64), cat(b, np.int64), cat(s, np.float32)


def duplicates(ds, threshold: float | None = None, *, pixel_threshold: float | None = None, backbone=None,
               embeddings: Embeddings | None = None, max_pairs: int = 100_000) -> pd.DataFrame:
    """Pairs of items that are the same picture (or text), most alike first: `id_a`, `id_b`, `kind`,
    `similarity`, `pixel_similarity` (texts: `text_similarity`), `label_a`, `label_b`, `split_a`, `split_b`, `leak`,
    `conflict`.

    Texts: 'exact' is the same text after Unicode normalisation and whitespace folding; 'near' is TF-IDF cosine
    (words and character n-grams) >= `pixel_threshold` (default 0.9 for texts) or embeddings >= `threshold`.

    kind 'exact': the same file content (sha256) or the same decoded pixels. kind 'near': the same picture
    re-encoded, resized or lightly edited (correlation of 16x16 thumbnails >= `pixel_threshold`), or embeddings
    with cosine similarity >= `threshold` (default 0.97 with a pretrained backbone; with the body of a model trained
    on this project there is no default, since such a body maps every item of a class close together). `leak`: the
    two are in different splits (train/valid/test), so validation scores are inflated. `conflict`: both labelled,
    differently. Without any backbone, the pixel comparison alone runs (and `attrs` say so).
    """
    from .embeddings import NoBackboneError
    _require_items(ds)
    kind = kinds.of(ds)
    thumbs, pixel_hash, frame = kind.surface(ds, ds.query_ids(usable_only=True))
    try:
        emb = _embeddings(ds, backbone, embeddings)
    except NoBackboneError as e:
        if threshold is not None:
            raise
        emb, why = None, str(e).split(". ")[0]
    vec = np.zeros((len(frame), 1), np.float32)
    if emb is not None:
        have = frame["id"].isin(set(emb.ids)).to_numpy()
        vec = np.zeros((len(frame), emb.dim), np.float32)
        vec[have] = emb.vectors[emb.positions(frame.loc[have, "id"])]
    if threshold is None and emb is not None and emb.backbone.pretrained:
        threshold = kind.NEAR_EMBEDDING or _NEAR_PRETRAINED   # tables: their embeddings are the rows
    found: dict[tuple[int, int], str] = {}
    for key in (frame["sha256"].to_numpy(object), pixel_hash):      # exact: same bytes, or same pixels
        groups = pd.Series(np.arange(len(frame))).groupby(key).agg(list)
        for members in groups[groups.map(len) > 1]:
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    found[(members[x], members[y])] = "exact"
    a, b, _ = _pairs_above(thumbs, kind.SURFACE_THRESHOLD if pixel_threshold is None else pixel_threshold,
                           max_pairs)
    for i, j in zip(a.tolist(), b.tolist()):
        found.setdefault((i, j), "near")
    if threshold is not None and emb is not None:
        rows = np.flatnonzero(have)         # a large project: each item's nearest from its vector index
        near = vector_index.pairs_above(ds, emb, emb.positions(frame["id"].to_numpy()[rows]), threshold, max_pairs)
        a, b, _ = _pairs_above(vec, threshold, max_pairs) if near is None else (rows[near[0]], rows[near[1]], None)
        for i, j in zip(a.tolist(), b.tolist()):
            found.setdefault((i, j), "near")
    if len(found) > max_pairs:
        warnings.warn(f"more than {max_pairs} pairs found; only the first {max_pairs} are listed. Raise the "
                      f"threshold", stacklevel=2)
    pairs = list(found.items())[:max_pairs]
    ia = np.array([p[0][0] for p in pairs], np.int64)
    ib = np.array([p[0][1] for p in pairs], np.int64)
    split_a, split_b = frame["split"].to_numpy(object)[ia], frame["split"].to_numpy(object)[ib]
    label_a, label_b = frame["label"].to_numpy(object)[ia], frame["label"].to_numpy(object)[ib]
    out = pd.DataFrame({
        "id_a": frame["id"].to_numpy(np.int64)[ia], "id_b": frame["id"].to_numpy(np.int64)[ib],
        "kind": [p[1] for p in pairs],
        "similarity": (vec[ia] * vec[ib]).sum(1) if emb is not None else np.nan,
        kind.SURFACE_COLUMN: _row_dots(thumbs, ia, ib),
        "label_a": label_a, "label_b": label_b, "split_a": split_a, "split_b": split_b,
        "leak": [isinstance(sa, str) and isinstance(sb, str) and sa != sb for sa, sb in zip(split_a, split_b)],
        "conflict": [isinstance(la, str) and isinstance(lb, str) and la != lb for la, lb in zip(label_a, label_b)],
        "path_a": frame["path"].to_numpy(object)[ia], "path_b": frame["path"].to_numpy(object)[ib]})
    if emb is not None and len(out):
        out.loc[~frame["id"].isin(set(emb.ids)).to_numpy()[ia] | ~frame["id"].isin(set(emb.ids)).to_numpy()[ib],
                "similarity"] = np.nan
    out["_rank"] = out["kind"].map({"exact": 0, "near": 1})
    out = out.sort_values(["_rank", kind.SURFACE_COLUMN], ascending=[True, False], kind="stable")
    out = out.drop(columns="_rank").reset_index(drop=True)
    out.attrs.update(threshold=threshold, pixel_threshold=pixel_threshold)
    if emb is None:
        out.attrs.update(embeddings=None, backbone=f"none ({why}): {kind.SURFACE_ONLY}")
        return out
    if threshold is None:
        out.attrs["note"] = (f"near duplicates by pixels only: {emb.model_id} is the body of a model trained on "
                             f"this project, whose similarity says 'same class' more than 'same picture'; pass "
                             f"threshold= to also compare embeddings")
    return _shown(ds, out, emb)


def outliers(ds, n: int | None = None, *, k: int = 10, backbone=None, embeddings: Embeddings | None = None,
             labelled: bool | None = None) -> pd.DataFrame:
    """Items that sit far from everything else, most isolated first: `id`, `score` (mean cosine distance to the
    `k` nearest other items), `nearest` (the closest item's id), `label`, `split`, `path`."""
    _require_items(ds)
    emb = _embeddings(ds, backbone, embeddings)
    if len(emb) < 2:
        raise ValueError(f"outliers need at least 2 items with embeddings; this project has {len(emb)}")
    v = emb.vectors
    k = int(max(1, min(k, len(v) - 1)))
    score = np.zeros(len(v))
    nearest = np.zeros(len(v), np.int64)
    for i0 in range(0, len(v), 1024):
        dist = 1 - v[i0:i0 + 1024] @ v.T
        dist[np.arange(len(dist)), np.arange(i0, i0 + len(dist))] = np.inf
        part = np.partition(dist, k - 1, axis=1)[:, :k]
        score[i0:i0 + len(dist)] = part.mean(1)
        nearest[i0:i0 + len(dist)] = emb.ids[dist.argmin(1)]
    out = pd.DataFrame({"id": emb.ids, "score": score, "nearest": nearest})
    for col in ("label", "split", "path"):
        out[col] = emb.frame[col].to_numpy()
    if labelled is not None:
        out = out[out["label"].notna() == bool(labelled)]
    out = out.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    if n is not None:
        out = out.head(int(n))
    out.attrs["k"] = k
    return _shown(ds, out, emb)


def _sparse_pairs_above(v, threshold: float, limit: int):
    a, b, s = [], [], []
    total = 0
    for i0 in range(0, v.shape[0], 1024):
        block = (v[i0:i0 + 1024] @ v.T).tocoo()
        keep = (block.data >= threshold) & (block.col > block.row + i0)
        a.append(block.row[keep] + i0)
        b.append(block.col[keep])
        s.append(block.data[keep])
        total += int(keep.sum())
        if total > limit:
            break
    cat = lambda parts, t: np.concatenate(parts).astype(t) if parts else np.zeros(0, t)   # noqa: E731
    return cat(a, np.int64), cat(b, np.int64), cat(s, np.float32)


# -- what looks wrong -------------------------------------------------------------------------------------------------
def label_issues(ds, model=None, *, folds: int = 5, backbone=None, embeddings: Embeddings | None = None,
                 seed: int = 0, C: float = 0.1) -> pd.DataFrame:
    """Labelled items whose label is likely wrong, most likely first: `id`, `label`, `suggested`, `score`,
    `p_label`, `p_suggested`, `split`, and the item (`path`; the text of a text, the values of a table row).
    `score` is how likely the label is wrong: 1 - the out-of-sample probability of the given label
    (`attrs["columns"]` says what each column means).

    When the heads cannot tell (they agree with the labels no more clearly than always answering the most frequent
    class would: `attrs["agreement"]`), nothing is flagged and a warning and `attrs["note"]` say so and what would
    help: a wrong label cannot be told from a right one by a model that has not learnt the classes.

    Confident learning (cleanlab's `find_label_issues`) on an out-of-sample probability for every labelled item,
    whether or not a model trained on it: two logistic heads cross-validated over `folds` stratified folds, one on
    the embeddings (of `model`'s body when given, else of `backbone`), one on 16x16 pixel thumbnails, which no
    label shaped; their probabilities are multiplied (a product of experts) and renormalised. The pixel head is
    left out where it agrees with the labels far less often than the embedding head (photos, say). A model's own
    probabilities are not used: for the items it trained on they are in-sample and hide the errors it learnt.
    Classes with a single labelled item cannot be checked and are listed in `attrs["unchecked"]`; `attrs["method"]`
    says what was used. Offline the embeddings come from a body trained on these very labels, which can absorb
    errors over long runs; the pixel head cannot, but it only helps where pixels tell the classes apart.
    """
    _require_items(ds)
    model = _resolve_model(model)
    if model is not None:
        _check_model(model, ds)
    emb = _model_embeddings(ds, model, backbone, embeddings) if model is not None else \
        _embeddings(ds, backbone, embeddings)
    lab = emb.frame["label"].notna().to_numpy()
    if not lab.any():
        raise ValueError("no labelled items to check; label some first (ds.set_label or ds.label())")
    frame, feats = emb.frame[lab].reset_index(drop=True), emb.features[lab]
    counts = frame["label"].value_counts()
    if len(counts) < 2:
        raise ValueError(f"label_issues needs labelled items of at least two classes (found only "
                         f"{list(counts.index)}): with one class no label can look wrong")
    if model is not None and (unknown := _classes_unknown_to(model, frame["label"])):
        raise ValueError(f"the model does not know the classes {unknown}, which items here are labelled with "
                         f"(it knows {model.classes}); retrain it (nbml.train(ds)) or call ds.label_issues() "
                         f"without a model")
    single = counts[counts < 2].index.tolist()
    unchecked = frame.loc[frame["label"].isin(single), "id"].astype(int).tolist()
    if single:
        warnings.warn(f"classes with a single labelled item cannot be checked (nothing to compare it with): "
                      f"{single}; label more of them", stacklevel=2)
    keep = ~frame["label"].isin(single).to_numpy()
    frame, feats = frame[keep].reset_index(drop=True), feats[keep]
    classes = [c for c in ds.classes if c in set(frame["label"])]
    if len(classes) < 2:
        raise ValueError("label_issues needs at least two classes with two or more labelled items each")
    from .head import cross_val_probs, fold_count
    y = frame["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    probs = cross_val_probs(feats, y, len(classes), folds=folds, seed=seed, C=C)
    kind = kinds.of(ds)
    pixels = kind.surface_probs(ds, frame["id"].tolist(), y, len(classes), folds, seed)
    why_not = _why_not_pixels(probs, pixels, y, kind.SURFACE_WORDS)
    body = f"the body of the model of run {model.run_id}" if model is not None else emb.model_id
    why_not_embeddings = None if why_not else _why_not_pixels(pixels, probs, y, "the embeddings",
                                                              kind.SURFACE_WORDS)
    if why_not_embeddings and not np.isnan(pixels).any():
        # the other way round: WordLlama's static embedding on TREC questions agreed with the labels far less than
        # TF-IDF did, and multiplying it in halved precision (0.41 against 0.61 at the same recall)
        probs = np.asarray(pixels, np.float64)
        method = (f"{fold_count(y, folds)}-fold cross-validated logistic head on {kind.SURFACE_WORDS} alone (no "
                  f"embedding head ({body}): {why_not_embeddings})")
    else:
        probs, with_pixels = _product_of_experts(probs, None if why_not else pixels)
        method = (f"{fold_count(y, folds)}-fold cross-validated logistic heads on the embeddings ({body})"
                  + (f" and on {kind.SURFACE_WORDS}, probabilities multiplied ({with_pixels} of {len(y)} items had "
                     f"them)" if with_pixels else f" alone (no {kind.SURFACE_WORDS} head: {why_not})"))
    cannot_tell = _cannot_tell(probs, y, classes)
    ranked = _find_issues(y, probs) if cannot_tell is None else np.zeros(0, np.int64)
    p_label = probs[np.arange(len(y)), y]
    out = pd.DataFrame({"id": frame["id"].to_numpy(np.int64)[ranked], "label": frame["label"].to_numpy()[ranked],
                        "suggested": [classes[i] for i in probs[ranked].argmax(1)] if len(ranked) else [],
                        "score": 1 - p_label[ranked], "p_label": p_label[ranked],
                        "p_suggested": probs[ranked].max(1) if len(ranked) else [],
                        "split": frame["split"].to_numpy()[ranked], "path": frame["path"].to_numpy()[ranked]})
    out.attrs.update(method=method, n_checked=len(frame), unchecked=unchecked, agreement=_agreement(probs, y))
    if cannot_tell is not None:
        out.attrs["note"] = cannot_tell
        warnings.warn(cannot_tell, NbmlWarning, stacklevel=2)
    return _shown(ds, out, emb, ISSUE_COLUMNS)


def _agreement(probs: np.ndarray, y: np.ndarray) -> float:
    return float((probs.argmax(1) == y).mean()) if len(y) else float("nan")


def _cannot_tell(probs: np.ndarray, y: np.ndarray, classes: list[str]) -> str | None:
    """Why no label can be called wrong, or None: the out-of-sample heads must agree with the labels clearly more
    often than always answering the most frequent class would (the lower end of a 95% interval above it), else
    whatever they flag is chance (on 80 short reviews of two classes they agreed 44-55% of the time and flagged
    36 labels, all of them right)."""
    from .scores import wilson
    n = len(y)
    agree = int((probs.argmax(1) == y).sum())
    baseline = float(np.bincount(y, minlength=len(classes)).max() / n)
    low, _ = wilson(agree, n)
    if low > baseline:
        return None
    return (f"label_issues flagged nothing: the cross-validated heads agreed with the labels on {agree / n:.0%} of "
            f"the {n} labelled items, not clearly more than always answering the most frequent class would "
            f"({baseline:.0%}), so they cannot tell a wrong label from a right one. Label more items, or give a "
            f"stronger model's body: ds.label_issues(model=nbml.train(ds)).")


def _why_not_pixels(probs: np.ndarray, pixels: np.ndarray | None, y: np.ndarray,
                    words: str = "pixels", reference: str = "the embeddings") -> str | None:
    """Why the pixel head should be left out, or None to use it. A product of experts assumes each is competent: a
    pixel head that agrees with the given labels far less often than the embedding head (photos seen through a
    pretrained backbone, say) would mostly add noise. On digits the two agree with the labels equally (0.85-0.88)."""
    if pixels is None:
        return "too few items to cross-validate on"
    has = ~np.isnan(pixels).any(1)
    agree = lambda p: float((p[has].argmax(1) == y[has]).mean())     # noqa: E731
    if agree(pixels) < agree(probs) - PIXEL_SLACK:
        return (f"it agrees with the labels on {agree(pixels):.0%} of items, {reference} on {agree(probs):.0%}: "
                f"{words} do not tell these classes apart")
    return None


def _product_of_experts(probs: np.ndarray, others: np.ndarray | None) -> tuple[np.ndarray, int]:
    """The two heads as independent evidence: probabilities multiplied and renormalised, where an item has both
    (`probs` alone elsewhere). Sharper than their mean, which on digits raised recall from 0.89 to 0.95 at the same
    precision (seeds 100-104). Returns (probabilities, how many items had both)."""
    if others is None:
        return probs, 0
    both = ~np.isnan(others).any(1)
    out = np.asarray(probs, np.float64).copy()
    joint = out[both] * others[both]
    out[both] = joint / joint.sum(1, keepdims=True)
    return out, int(both.sum())


def _find_issues(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    from cleanlab.filter import find_label_issues
    probs = np.clip(np.asarray(probs, np.float64), 1e-9, 1)
    probs /= probs.sum(1, keepdims=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # n_jobs=1: cleanlab's pool forks this process, whose other threads (torch's, joblib's) can hold a lock
            # at the fork; the child then waits on it for ever (seen once in a full test run). The result is the same.
            return np.asarray(find_label_issues(np.asarray(y, np.int64), probs, n_jobs=1,
                                                return_indices_ranked_by="self_confidence"), np.int64)
    except Exception as e:   # cleanlab's own checks, in words a user can act on
        raise ValueError(f"could not look for label issues on {len(y)} items ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200]}); label more items of each class and try again") from None


# -- seeing the data --------------------------------------------------------------------------------------------------
@dataclass
class DataStats:
    """Counts per class and split (`counts`), labelled / unlabelled / unusable totals, `warnings`, and `chart`."""
    counts: pd.DataFrame
    labelled: int
    unlabelled: int
    unusable: int
    warnings: list = field(default_factory=list)
    lengths: pd.DataFrame | None = None    # texts: one row per usable item (id, label, characters, words)
    agreement: dict | None = None          # several people: nbml.agreement.Agreement (Cohen's / Fleiss' kappa)
    columns: pd.DataFrame | None = None    # tables: each column's type, role, missing fraction and range

    def __repr__(self) -> str:
        head = (f"{self.labelled} labelled, {self.unlabelled} unlabelled" +
                (f", {self.unusable} unusable" if self.unusable else "") + f", {len(self.counts)} classes")
        lines = [head, self.counts.to_string() if len(self.counts) else "(no classes yet)"]
        if self.lengths is not None and len(self.lengths):
            q = self.lengths["characters"].quantile([0.5, 0.9, 1.0]).astype(int).tolist()
            lines.append(f"text length in characters: median {q[0]}, 90th percentile {q[1]}, longest {q[2]}")
        if self.agreement is not None and self.agreement["annotators"] > 1:
            lines.append(repr(self.agreement))
        if self.columns is not None:
            lines.append(self.columns.to_string())
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    @property
    def spec(self) -> dict:
        """The Vega-Lite spec of `chart`, data inline: stacked bars of labelled items per class by split, and the
        unlabelled items."""
        import altair as alt

        from .widgets.chart import class_scale, inline_spec, split_scale
        long = self.counts[["train", "valid", "test", "unassigned"]].reset_index().melt(
            id_vars="class", var_name="split", value_name="items")
        extra = pd.DataFrame({"class": ["(unlabelled)"], "split": ["unlabelled"], "items": [self.unlabelled]})
        data = pd.concat([long, extra], ignore_index=True)
        order = list(self.counts.index) + ["(unlabelled)"]
        bars = alt.Chart(data).mark_bar().encode(
            y=alt.Y("class:N", sort=order, title=None), x=alt.X("sum(items):Q", title="items"),
            color=alt.Color("split:N", sort=["train", "valid", "test", "unassigned", "unlabelled"],
                            scale=alt.Scale(**split_scale())),
            tooltip=["class", "split", "items"]).properties(title="items per class and split", width=400)
        if self.lengths is None or not len(self.lengths):
            return inline_spec(bars)
        # clipped at the 99th percentile, so one very long text does not squeeze every other into the first bar
        top = float(self.lengths["characters"].quantile(0.99))
        lengths = self.lengths.assign(label=self.lengths["label"].fillna("(unlabelled)"),
                                      characters=self.lengths["characters"].clip(upper=top))[["label", "characters"]]
        longer = int((self.lengths["characters"] > top).sum())
        hist = alt.Chart(lengths).mark_bar().encode(
            x=alt.X("characters:Q", bin=alt.Bin(maxbins=40),
                    title="characters per text" + (f" ({longer} longer than {top:.0f} in the last bar)"
                                                   if longer else "")),
            y=alt.Y("count():Q", title="texts"),
            color=alt.Color("label:N", title="label", scale=alt.Scale(**class_scale(list(self.counts.index)))),
            tooltip=["label", "count()"]).properties(title="text length", width=400, height=160)
        return inline_spec(alt.vconcat(bars, hist).resolve_scale(color="independent"))

    @property
    def chart(self):
        """`spec` as a chart widget drawn by nbml's bundled Vega-Lite, offline (`.chart.spec` is the spec)."""
        from .widgets.chart import Chart
        return Chart(self.spec)

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.chart._repr_mimebundle_(include=include, exclude=exclude)
        bundle = bundle[0] if isinstance(bundle, tuple) else bundle
        bundle = dict(bundle or {})
        bundle["text/plain"] = repr(self)
        return bundle

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self._repr_mimebundle_(), raw=True)
        if self.columns is not None:          # a table: each column's type, role, missing fraction and range
            display(self.columns)


def stats(ds) -> DataStats:
    """Counts per class and split, labelled against unlabelled, with a warning for classes too small to learn."""
    kind = kinds.of(ds)
    if kind.item_stats is not None:   # the kind's own statistics read every usable item (texts' lengths, columns)
        df = ds.df
        usable = df[df["status"] == "ok"]
        lab = usable[usable["label"].notna()]
        split_counts = lab.groupby([lab["label"], lab["split"].fillna("unassigned")]).size()
        n_live, n_unlabelled = len(df), int(usable["label"].isna().sum())
        n_unusable = int((df["status"] == "unusable").sum())
    else:                             # counted in the store, no item read (images)
        counts = ds._item_counts()
        n_live = sum(n for (status, _), n in counts.items() if status != "removed")
        n_unlabelled = counts.get(("ok", None), 0)
        n_unusable = sum(n for (status, _), n in counts.items() if status == "unusable")
        rows = ds._labelled_split_counts()
        split_counts = pd.Series({(label, split or "unassigned"): n for label, split, n in rows}, dtype="int64")
    table = _class_split_table(split_counts, ds.classes)
    notes = []
    if n_live == 0:
        notes.append("this project has no items yet; add images with ds.add_images(folder) or texts with "
                     "ds.add_texts(texts)")
    for name, n in table["labelled"].items():
        if n == 0:
            notes.append(f"class {name!r} has no labelled items")
        elif n < MIN_PER_CLASS:
            notes.append(f"class {name!r} has only {n} labelled item{'s' * (n != 1)}: too few to learn and to "
                         f"validate on; label at least {MIN_PER_CLASS} (20 or more is better)")
    classes = list(table.index)
    if len(classes) == 1:
        notes.append(f"only one class ({classes[0]!r}): a classifier needs at least two")
    if len(table) and table["labelled"].max() >= 10 * max(table["labelled"][table["labelled"] > 0].min(), 1) \
            and (table["labelled"] > 0).sum() >= 2:
        notes.append("the classes are very unbalanced (the largest has 10 times the smallest or more); the model "
                     "will favour the large ones")
    parts = kind.item_stats(ds, usable) if kind.item_stats is not None else {}
    lengths, columns = parts.get("lengths"), parts.get("columns")
    return DataStats(table, int(split_counts.sum()), n_unlabelled, n_unusable, notes, lengths, ds.agreement(),
                     columns)


def _class_split_table(split_counts: pd.Series, classes: list[str]) -> pd.DataFrame:
    """Labelled usable items per class (rows: every class, in order) and split (train, valid, test, unassigned),
    plus their sum `labelled`, from counts indexed by (label, split)."""
    splits = ["train", "valid", "test", "unassigned"]
    table = pd.DataFrame(0, index=pd.Index(classes, name="class", dtype="str"), columns=splits, dtype="int64")
    for (label, split), n in split_counts.items():
        if label in table.index and split in splits:
            table.loc[label, split] = int(n)
    table["labelled"] = table.sum(axis=1)
    return table


def embedding_map(ds, backbone=None, *, embeddings: Embeddings | None = None) -> pd.DataFrame:
    """A 2-D PCA map of the items' embeddings: `id`, `x`, `y`, `label`, `split`, `path` (`attrs` say the backbone)."""
    _require_items(ds)
    return _embeddings(ds, backbone, embeddings).pca(2)
