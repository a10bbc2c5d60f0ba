"""Benchmark: the data-centric loop on real data (scikit-learn's 1,797 8x8 digits), offline, on this machine.

No pretrained weights exist here, so every embedding comes from the body of a resnet18 trained on the project itself
(`pretrained=False`); the backbone behind each figure is printed beside it. Nothing is asserted about speed.

1. Label efficiency, `suggest(strategy="margin")` against `"random"`, 5 seeds. A fixed stratified 30% test set is
   held out; it is in each project but marked unusable (so neither `suggest`, `train` nor the default `embed` ever
   sees it, and it is never labelled); its embeddings are computed by the same body via `ds.embed(ids=test_ids)`.
   Per seed: a stratified warm-up set W of 100 pool items is labelled, a resnet18 body is trained on W alone (32 px,
   10 epochs, lr 3e-3 instead of lr_find to fit the time budget; the other pool labels are hidden in an oracle dict,
   the items are in the store unlabelled), every item is embedded
   with that body; then, for each strategy from the same W, body and embeddings: ask `ds.suggest(n=25)`, reveal
   those labels with `ds.set_label`, fit the linear head mode="head" uses (`nbml.head.fit_linear`, C=0.1) on every
   labelled pool item's embedding, and score it on the test items. Headline: the fewest labels at which margin's
   mean accuracy reaches random's final mean accuracy, as a fraction of random's final label count (target <= 60%).
2. Label issues in the flow people use, per flip seed (default 0-4; the choices were tuned on seeds 100-104):
   10% of the digits' labels flipped at random to another class, `nbml.train(ds, epochs=5, size=32,
   pretrained=False)` on every label, mistakes included (the run's seed is the flip seed), then
   `ds.label_issues(model=model)`; precision and recall against the flipped items, and the seconds each step took.
   Beside it, in the same run: cleanlab's `find_label_issues` (defaults) on 5-fold out-of-sample probabilities of
   scikit-learn's `LogisticRegression` on the 64 raw pixels (scaled to [0, 1]; C=1, its default, and C=0.3, the
   best of 1/0.3/0.1/0.03/0.01 on seeds 100-104), and, from the same body and thumbnails, each of nbml's two heads
   alone (what their product adds).
3. Query speed over 100,000 stored 512-d embeddings: 100,000 distinct jittered copies of the digits, ingested; a
   resnet18 body trained on 1,000 of them (32 px) embeds all 100,000 (timed). `ds.similar` p50/p99 against a
   numpy brute-force cosine top-k on the same matrix: the first call on a freshly opened `Dataset` (it reads the
   embeddings from the store, as every call did before the Dataset kept them), plain repeated calls (the Dataset
   reuses the loaded embeddings; one label is changed between calls, so each also reads that change), and calls
   with the loaded `Embeddings` passed in; and `nbml.train(ds, mode="head")` on 10,000 labelled items with cached
   embeddings, median of 3.
   On a slower machine, `--real-items 10000` embeds only the first 10,000 for real and gives the other items the
   real vector of the same digit plus noise, written through the same float16 store (the query cost does not
   depend on the values).

    .venv/bin/python benchmarks/data_loop.py [--quick] [--parts 2 --issue-seeds 0,1,2,3,4] [--threads 1]

`--quick`: one seed for parts 1 and 2, 10,000 items in part 3. `--threads 1`: one BLAS/OpenMP thread (on a shared
2-core machine the default threads spin against each other: scikit-learn's logistic regression on the digits took
35-72 s instead of 1.4-2 s here).
"""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"      # no pretrained weights can be had here: never try the hub

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import percentile, print_machine, print_table  # noqa: E402

CLASSES = [str(c) for c in range(10)]
TEST_FRACTION = 0.3
WARMUP = 100
ROUND = 25
ROUNDS = 12
TARGET = 0.60
SIZE = 32
BODY_LR = 3e-3        # part 1 bodies: a fixed learning rate instead of lr_find (2/3 of the cost on 80 items)


def quiet_warnings() -> None:
    warnings.simplefilter("ignore", FutureWarning)       # torch.jit deprecation noise from timm
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", UserWarning)          # fastai/torch chatter on tiny CPU runs


def limit_threads(n: int) -> None:
    """n threads in every BLAS and OpenMP pool loaded (numpy, scipy, scikit-learn, torch)."""
    import sklearn.linear_model  # noqa: F401  (loads scikit-learn's OpenMP runtime, so the limit reaches it)
    import torch
    from threadpoolctl import threadpool_limits
    torch.set_num_threads(n)
    threadpool_limits(n)
    print(f"threads: {n} per BLAS/OpenMP pool")


def ids_by_path(ds) -> dict[str, int]:
    df = ds.df
    return dict(zip(df["path"], df["id"].astype(int)))


def reveal(ds, ids, oracle: dict[int, str]) -> None:
    """Label items with their true class: one set_label call per class (each an undoable step)."""
    by_class: dict[str, list[int]] = {}
    for i in ids:
        by_class.setdefault(oracle[int(i)], []).append(int(i))
    for label, group in by_class.items():
        ds.set_label(group, label)


# -- 1. label efficiency --------------------------------------------------------------------------------------------
def label_efficiency(tmp: Path, folder: Path, seeds: int) -> None:
    import nbml
    from nbml.head import fit_linear, linear_probs
    from sklearn.model_selection import train_test_split

    print(f"1. label efficiency on digits: suggest(strategy='margin') vs 'random', {seeds} seeds")
    print("-" * 80)
    files = sorted(str(p) for p in folder.rglob("*.png"))
    truth = {p: Path(p).parent.name for p in files}
    y_all = np.array([truth[p] for p in files])
    pool_files, test_files = train_test_split(files, test_size=TEST_FRACTION, stratify=y_all, random_state=0)
    pool_y = [truth[p] for p in pool_files]
    print(f"{len(files)} digits: fixed stratified test set of {len(test_files)}, pool of {len(pool_files)}; "
          f"warm-up W = {WARMUP} stratified pool items per seed; {ROUNDS} rounds of {ROUND} suggestions; the head is "
          f"nbml.head.fit_linear (C=0.1) on every labelled pool item")
    counts = [WARMUP + ROUND * r for r in range(ROUNDS + 1)]
    acc = {s: np.zeros((seeds, len(counts))) for s in ("margin", "random")}
    sources, body_acc, head_checks, t_body, t_loop = [], [], [], [], []
    for seed in range(seeds):
        ds = nbml.Dataset(tmp / f"efficiency-{seed}.nbml")
        ds.add_images(folder, label_from=None)                 # every digit, unlabelled
        ids = ids_by_path(ds)
        oracle = {ids[p]: truth[p] for p in files}              # the hidden labels
        test_ids = [ids[p] for p in test_files]
        ds.mark_unusable(test_ids)                              # out of suggest, train and the default embed
        warm_files, _ = train_test_split(pool_files, train_size=WARMUP, stratify=pool_y, random_state=seed)
        warm = [ids[p] for p in warm_files]
        reveal(ds, warm, oracle)

        t = time.perf_counter()
        body = nbml.train(ds, arch="resnet18", size=SIZE, pretrained=False, quiet=True, seed=seed,
                          lr=BODY_LR)
        t_body.append(time.perf_counter() - t)
        body_acc.append(body.config["metrics"]["accuracy"])
        trained_on = set(ds.snapshot_items(body.config["snapshot_id"])["id"].astype(int))
        assert trained_on == set(warm), "the body must train on W only"
        emb = ds.embed(progress=False)                          # the latest run's body: trained on W only
        test_emb = ds.embed(ids=test_ids, progress=False)       # same body, same image path, never labelled
        assert len(test_emb) == len(test_ids) and not set(emb.ids) & set(test_ids)
        sources.append(emb.source)
        y_test = np.array([CLASSES.index(oracle[int(i)]) for i in test_emb.ids])
        pos = {int(i): k for k, i in enumerate(emb.ids)}

        def test_accuracy() -> float:
            lab = ds.df[ds.df["label"].notna()]
            assert not set(lab["id"]) & set(test_ids), "a test item was labelled"
            assert all(oracle[int(i)] == lab_ for i, lab_ in zip(lab["id"], lab["label"]))
            rows = [pos[int(i)] for i in lab["id"]]
            head = fit_linear(emb.features[rows], np.array([CLASSES.index(x) for x in lab["label"]]), 10, C=0.1)
            return float((linear_probs(head, test_emb.features).argmax(1) == y_test).mean())

        t = time.perf_counter()
        for strategy in ("margin", "random"):
            revealed: list[int] = []
            acc[strategy][seed, 0] = test_accuracy()
            for r in range(1, ROUNDS + 1):
                picked = ds.suggest(n=ROUND, strategy=strategy, seed=1000 * seed + r)["id"].astype(int).tolist()
                assert len(picked) == ROUND and not set(picked) & set(test_ids)
                reveal(ds, picked, oracle)
                revealed += picked
                acc[strategy][seed, r] = test_accuracy()
            if strategy == "margin":                            # back to W alone for the other strategy
                ds.set_label(revealed, None)
                assert sorted(ds.query_ids(labelled=True)) == sorted(warm)
        t_loop.append(time.perf_counter() - t)

        # the real head mode on random's final labels: which items it fits on, and its test accuracy
        model = nbml.train(ds, mode="head", quiet=True)
        snap = ds.snapshot_items(model.config["snapshot_id"])
        assert not set(snap["id"].astype(int)) & set(test_ids), "head mode trained on a test item"
        assert model.config["body"] == emb.model_id
        with_head = model.net[1]
        import torch
        with torch.no_grad():
            p = torch.softmax(with_head(torch.from_numpy(test_emb.features)), 1).numpy()
        idx = [CLASSES.index(c) for c in model.classes]
        head_checks.append((len(snap), int((snap["split"] == "train").sum()),
                            float((np.array(idx)[p.argmax(1)] == y_test).mean()), acc["random"][seed, -1]))
        ds.close()

    print(f"embeddings: {sources[0].replace('run 1', 'run 1 of each seed project')} "
          f"(model id {emb.model_id}); body validation accuracy on W's 20 valid items: "
          f"mean {np.mean(body_acc):.3f} (min {min(body_acc):.3f})")
    print(f"time per seed: body training {np.mean(t_body):.1f} s, suggest/label/fit loop for both strategies "
          f"{np.mean(t_loop):.1f} s")
    print()
    rows = []
    for j, n in enumerate(counts):
        m, r = acc["margin"][:, j], acc["random"][:, j]
        rows.append([str(n), f"{m.mean():.4f}", f"{m.std():.4f}", f"{r.mean():.4f}", f"{r.std():.4f}",
                     f"{m.mean() - r.mean():+.4f}"])
    print_table(["labels", "margin mean acc", "std", "random mean acc", "std", "margin - random"], rows)
    print()
    final = acc["random"][:, -1].mean()
    means = acc["margin"].mean(0)
    reached = [n for n, a in zip(counts, means) if a >= final]
    if reached:
        frac = reached[0] / counts[-1]
        print(f"headline: margin's mean accuracy reaches random's final mean ({final:.4f} at {counts[-1]} labels) "
              f"at {reached[0]} labels = {frac:.0%} of random's label count (target <= {TARGET:.0%}): "
              f"{'MET' if frac <= TARGET else 'NOT MET'}")
    else:
        print(f"headline: margin's mean accuracy never reaches random's final mean ({final:.4f} at {counts[-1]} "
              f"labels) within {counts[-1]} labels: target NOT MET")
    print(f"nbml.train(ds, mode='head') on random's final {counts[-1]} labels (per seed): fits on "
          f"{head_checks[0][1]} train items of {head_checks[0][0]} (the rest is its validation split; no test item "
          f"in its snapshot); test accuracy mean {np.mean([h[2] for h in head_checks]):.4f} against "
          f"{np.mean([h[3] for h in head_checks]):.4f} for fit_linear on all {counts[-1]} labels")
    print()


# -- 2. label issues -------------------------------------------------------------------------------------------------
def precision_recall(flagged: set, truth: set) -> tuple[float, float]:
    hit = len(flagged & truth)
    return (hit / len(flagged) if flagged else float("nan")), hit / len(truth)


def flip_labels(ds, seed: int, fraction: float = 0.1) -> dict[int, str]:
    """Give `fraction` of the items, drawn at random, another class. Returns {id: true class} of those flipped."""
    df = ds.df
    rng = np.random.default_rng(seed)
    flipped = rng.choice(df["id"].to_numpy(), int(round(fraction * len(df))), replace=False)
    true = dict(zip(df["id"].astype(int), df["label"]))
    noisy = {int(i): str(rng.choice([c for c in CLASSES if c != true[int(i)]])) for i in flipped}
    reveal(ds, list(noisy), noisy)
    return {i: true[i] for i in noisy}


def pixel_lr_probs(ds, C: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The baseline's out-of-sample probabilities: scikit-learn's LogisticRegression on the 64 raw pixels of each
    digit (scaled to [0, 1]), 5-fold cross_val_predict. Returns (ids, given labels, probabilities)."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    df = ds.df.sort_values("id")
    pixels = load_digits().data[[int(Path(p).stem) for p in df["path"]]] / 16    # files are <index>.png
    y = df["label"].map(CLASSES.index).to_numpy()
    probs = cross_val_predict(LogisticRegression(C=C, max_iter=1000), pixels, y, cv=5, method="predict_proba")
    return df["id"].to_numpy(np.int64), y, probs


def head_alone(ds, model, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One of label_issues' two heads alone ('embeddings' or 'pixels'): (ids, given labels, probabilities)."""
    from nbml.kinds.image import surface_probs as _pixel_probs
    from nbml.head import cross_val_probs
    emb = ds.embed(model, progress=False)
    lab = emb.frame["label"].notna().to_numpy()
    ids, y = emb.ids[lab], emb.frame.loc[lab, "label"].map(CLASSES.index).to_numpy()
    if which == "embeddings":
        return ids, y, cross_val_probs(emb.features[lab], y, len(CLASSES))
    return ids, y, _pixel_probs(ds, ids.tolist(), y, len(CLASSES), 5, 0)


def cleanlab_flags(ids, y, probs) -> set[int]:
    from cleanlab.filter import find_label_issues
    return set(ids[find_label_issues(y, probs)].tolist())


def label_issues(tmp: Path, folder: Path, seeds: list[int]) -> None:
    import nbml
    print(f"2. label issues on digits, 10% of labels flipped, flip seeds {seeds}: nbml.train(ds, epochs=5, size=32, "
          f"pretrained=False) on every label, then ds.label_issues(model=model)")
    print("-" * 80)
    scores: dict[str, list] = {}
    for seed in seeds:
        ds = nbml.Dataset(tmp / f"issues-{seed}.nbml")
        ds.add_images(folder)                                   # labels from the class folders
        flipped = set(flip_labels(ds, seed))
        t = time.perf_counter()
        model = nbml.train(ds, epochs=5, size=32, pretrained=False, quiet=True, seed=seed)
        t_train = time.perf_counter() - t
        t = time.perf_counter()
        issues = ds.label_issues(model=model)
        runs = {"nbml: ds.label_issues(model=model)": (set(issues["id"].astype(int)), time.perf_counter() - t)}
        for name, make in (("baseline: cleanlab on pixel LogisticRegression, C=1", lambda: pixel_lr_probs(ds, 1.0)),
                           ("baseline: cleanlab on pixel LogisticRegression, C=0.3", lambda: pixel_lr_probs(ds, 0.3)),
                           ("nbml's embedding head alone", lambda: head_alone(ds, model, "embeddings")),
                           ("nbml's pixel head alone", lambda: head_alone(ds, model, "pixels"))):
            t = time.perf_counter()
            found = cleanlab_flags(*make())
            runs[name] = (found, time.perf_counter() - t)
        for name, (found, seconds) in runs.items():
            p, r = precision_recall(found, flipped)
            scores.setdefault(name, []).append((p, r, seconds, len(found)))
        nb = scores["nbml: ds.label_issues(model=model)"][-1]
        print(f"seed {seed}: {len(flipped)} flipped; trained in {t_train:.1f} s, validation accuracy against the noisy "
              f"labels {model.config['metrics']['accuracy']:.3f}; nbml precision {nb[0]:.3f} recall {nb[1]:.3f}")
        ds.close()
    print(f"method: {issues.attrs['method']}")
    print()
    rows = [[name, f"{np.mean([x[3] for x in v]):.0f}", f"{np.mean([x[0] for x in v]):.3f}",
             f"{np.mean([x[1] for x in v]):.3f}", f"{np.mean([x[2] for x in v]):.2f}",
             " ".join(f"{x[0]:.2f}/{x[1]:.2f}" for x in v)] for name, v in scores.items()]
    print_table(["method", "flagged", "precision", "recall", "seconds", "per seed P/R"], rows)
    print("seconds: label_issues after training (embedding every item with the model's body, both heads, "
          "cleanlab), and each baseline's cross-validated fit plus cleanlab; training is excluded from all")
    print()


# -- 3. query speed --------------------------------------------------------------------------------------------------
def write_jittered_digits(folder: Path, n: int, seed: int = 0) -> dict[str, str]:
    """n distinct 8x8 PNGs: the real digits in turn, each pixel moved by up to +-6 grey levels. {path: class}."""
    from PIL import Image
    from sklearn.datasets import load_digits
    data = load_digits()
    base = data.images * (255 / 16)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    truth = {}
    for i in range(n):
        j = i % len(base)
        pixels = np.clip(base[j] + rng.integers(-6, 7, (8, 8)), 0, 255).astype(np.uint8)
        path = str(folder / f"{i:06d}.png")
        Image.fromarray(pixels, "L").save(path)
        truth[path] = str(data.target[j])
    return truth


def store_replicas(ds, real, n_items: int, seed: int = 0) -> float:
    """Give every item that has no embedding yet one: the real embedding of an earlier jittered copy of the same
    digit plus Gaussian noise with the per-dimension spread real copies of one digit show among themselves, written
    through the float16 store `ds.embed` itself appends to (`nbml.embedding_store.VectorFile`). Returns the seconds taken."""
    from nbml.embedding_store import VectorFile
    t = time.perf_counter()
    feats = real.features
    n_real, n_base = len(feats), 1797
    digit = np.arange(n_real) % n_base                     # item i is a jittered copy of digit i % 1797
    means = np.zeros((n_base, feats.shape[1]), np.float64)
    np.add.at(means, digit, feats)
    means /= np.bincount(digit, minlength=n_base)[:, None]
    spread = (feats - means[digit]).std(0).astype(np.float32)
    frame = ds.df.sort_values("id")
    todo = frame[~frame["id"].isin(set(real.ids))]
    rng = np.random.default_rng(seed)
    store = VectorFile(ds, real.model_id)
    index = store.index()
    first = {int(d): int(np.flatnonzero(digit == d)[0]) for d in range(n_base)}
    for start in range(0, len(todo), 10_000):
        part = todo.iloc[start:start + 10_000]
        src = [first[(int(i) - 1) % n_base] for i in part["id"]]     # ids are 1-based, in file order
        vec = feats[src] + rng.standard_normal((len(part), feats.shape[1])).astype(np.float32) * spread
        store.append(part["sha256"].tolist(), np.maximum(vec, 0), real.backbone, index)   # pooled ReLU: >= 0
    return time.perf_counter() - t


def query_speed(tmp: Path, n_items: int, n_real: int, n_head: int, size: int, cold_queries: int,
                queries: int) -> None:
    import nbml
    from nbml.embeddings import embed

    print(f"3. query speed over {n_items:,} stored 512-d embeddings, and head training on {n_head:,} labelled items")
    print("-" * 80)
    t = time.perf_counter()
    truth = write_jittered_digits(tmp / "jittered", n_items)
    t_write = time.perf_counter() - t
    ds = nbml.Dataset(tmp / "big.nbml")
    t = time.perf_counter()
    report = ds.add_images(tmp / "jittered", label_from=None)
    t_ingest = time.perf_counter() - t
    assert len(report.added) == n_items, report.summary()
    ids = ids_by_path(ds)
    oracle = {ids[p]: c for p, c in truth.items()}
    all_ids = np.array(sorted(oracle))
    assert all(ids[str(tmp / "jittered" / f"{i:06d}.png")] == i + 1 for i in (0, n_items - 1))
    rng = np.random.default_rng(0)
    real_ids = all_ids[:n_real]                         # the first n_real files: embedded for real
    order = rng.permutation(real_ids)
    reveal(ds, order[:1000].tolist(), oracle)
    t = time.perf_counter()
    body = nbml.train(ds, arch="resnet18", size=size, pretrained=False, quiet=True, seed=0, epochs=3, lr=3e-3)
    t_body = time.perf_counter() - t
    t = time.perf_counter()
    real = ds.embed(ids=real_ids.tolist(), progress=False)
    t_embed = time.perf_counter() - t
    assert real.computed == n_real and real.dim == 512
    t_fill = store_replicas(ds, real, n_items) if n_real < n_items else 0.0
    emb = ds.embed(progress=False)
    assert len(emb) == n_items and emb.computed == 0 and emb.model_id == real.model_id
    print(f"{n_items:,} distinct 8x8 PNGs (the real digits in turn, each pixel jittered by up to +-6 grey levels) "
          f"written in {t_write:.1f} s, ingested by ds.add_images in {t_ingest:.1f} s")
    print(f"body: resnet18 from random init trained on 1,000 labelled items at {size} px (3 epochs, lr 3e-3) in "
          f"{t_body:.1f} s, validation accuracy {body.config['metrics']['accuracy']:.3f}")
    print(f"embeddings: {emb.source} (model id {emb.model_id})")
    what = f"all {n_items:,}" if n_real == n_items else f"the first {n_real:,}"
    print(f"ds.embed() of {what} items (decode to the {size} px cache + forward pass + float16 store): "
          f"{t_embed:.1f} s, {n_real / t_embed:,.0f} items/s")
    if n_real < n_items:
        print(f"the other {n_items - n_real:,} stored vectors: each the real embedding of an earlier copy of the same "
              f"digit plus Gaussian noise at the spread real copies show, written through the same float16 store "
              f"(nbml.embedding_store.VectorFile.append) in {t_fill:.1f} s; ds.embed() then finds all {n_items:,} stored")

    # baseline: numpy brute force on the same normalised float32 matrix
    k = 20
    matrix = np.ascontiguousarray(emb.vectors, dtype=np.float32)
    pos = {int(i): j for j, i in enumerate(emb.ids)}
    qs = rng.choice(all_ids, queries, replace=False).tolist()

    def brute(item: int) -> np.ndarray:
        q = matrix[pos[item]]
        sims = matrix @ q
        sims[pos[item]] = -np.inf
        top = np.argpartition(-sims, k)[:k]
        return emb.ids[top[np.argsort(-sims[top])]]

    base_t, base_out = [], {}
    for q in qs:
        t = time.perf_counter()
        base_out[q] = brute(q)
        base_t.append(time.perf_counter() - t)

    cold_t, agree = [], []
    for q in qs[:cold_queries]:
        fresh = nbml.Dataset(ds.path)                   # a new handle: nothing loaded yet
        t = time.perf_counter()
        found = fresh.similar(q, k=k)
        cold_t.append(time.perf_counter() - t)
        fresh.close()
        agree.append(len(set(found["id"]) & set(base_out[q])) / k)
    ds.similar(qs[0], k=k)                 # loaded here (or by ds.embed() above); the rows below time later calls
    spare = ds.query_ids(labelled=False)[-len(qs):]     # labelled one by one between calls, then cleared again
    kept_t, relabel_t = [], []
    for q, item in zip(qs, spare):
        t = time.perf_counter()
        found = ds.similar(q, k=k)
        kept_t.append(time.perf_counter() - t)
        agree.append(len(set(found["id"]) & set(base_out[q])) / k)
        ds.set_label(item, oracle[item])
        t = time.perf_counter()
        ds.similar(q, k=k)
        relabel_t.append(time.perf_counter() - t)
    ds.set_label(spare, None)
    cache = ds._embedding_cache
    assert cache.loads == 1 and cache.updates == 0, (cache.loads, cache.updates)
    t = time.perf_counter()
    loaded = embed(ds, progress=False)                  # the store read the Dataset otherwise keeps
    _ = loaded.vectors
    t_load = time.perf_counter() - t
    warm_t = []
    for q in qs:
        t = time.perf_counter()
        found = ds.similar(q, k=k, embeddings=loaded)
        warm_t.append(time.perf_counter() - t)
        agree.append(len(set(found["id"]) & set(base_out[q])) / k)

    b50, b99 = percentile(base_t, 50), percentile(base_t, 99)
    print()
    rows = [["numpy: normalised float32 matrix @ query, argpartition top-20 (baseline)", str(len(base_t)),
             f"{b50 * 1e3:.2f}", f"{b99 * 1e3:.2f}", "1.0x"],
            [f"ds.similar(id, k=20), first call on a new Dataset (reads the store)", str(len(cold_t)),
             f"{percentile(cold_t, 50) * 1e3:.1f}", f"{percentile(cold_t, 99) * 1e3:.1f}",
             f"{percentile(cold_t, 50) / b50:.0f}x"],
            [f"ds.similar(id, k=20), repeated: embeddings kept by the Dataset", str(len(kept_t)),
             f"{percentile(kept_t, 50) * 1e3:.2f}", f"{percentile(kept_t, 99) * 1e3:.2f}",
             f"{percentile(kept_t, 50) / b50:.1f}x"],
            [f"ds.similar(id, k=20), repeated, one label changed before each call", str(len(relabel_t)),
             f"{percentile(relabel_t, 50) * 1e3:.2f}", f"{percentile(relabel_t, 99) * 1e3:.2f}",
             f"{percentile(relabel_t, 50) / b50:.1f}x"],
            [f"ds.similar(id, k=20, embeddings=emb), emb loaded once", str(len(warm_t)),
             f"{percentile(warm_t, 50) * 1e3:.2f}", f"{percentile(warm_t, 99) * 1e3:.2f}",
             f"{percentile(warm_t, 50) / b50:.1f}x"]]
    print_table(["query", "queries", "p50 ms", "p99 ms", "p50 / baseline"], rows)
    print(f"loading the Embeddings once (nbml.embeddings.embed from the store + unit vectors): {t_load:.2f} s; "
          f"top-20 agreement with the baseline: {np.mean(agree):.1%}")
    print()

    # head training on n_head labelled items (all with real embeddings), embeddings cached
    reveal(ds, order[1000:n_head].tolist(), oracle)
    labelled = ds.query_ids(labelled=True)
    assert len(labelled) == n_head
    assert ds.embed(ids=labelled, progress=False).computed == 0       # cached: no embedding time in the timings
    times, fits = [], []
    for _ in range(3):
        t = time.perf_counter()
        model = nbml.train(ds, mode="head", quiet=True)
        times.append(time.perf_counter() - t)
        run = ds.runs().iloc[-1]
        fits.append(run["history"][0]["fit_s"])
        assert model.config["body"] == emb.model_id
    print(f"nbml.train(ds, mode='head') on {n_head:,} labelled items ({run['params']['n_train']:,} train, "
          f"{run['params']['n_valid']:,} valid) with cached embeddings ({emb.model_id}): median of 3 "
          f"{statistics.median(times):.2f} s (runs: {', '.join(f'{x:.2f}' for x in times)} s), of which the L-BFGS "
          f"fit {statistics.median(fits):.2f} s; validation accuracy {model.config['metrics']['accuracy']:.3f}")
    print(f"embedding time, excluded above: ~{t_embed * n_head / n_real:.1f} s for {n_head:,} items at the rate "
          f"measured above")
    ds.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--real-items", type=int, default=None,
                    help="part 3 items embedded for real (default: all); the rest get noisy copies of real vectors")
    ap.add_argument("--head-items", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=SIZE, help="embedding size in pixels for part 3")
    ap.add_argument("--cold-queries", type=int, default=10)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--parts", default="123")
    ap.add_argument("--issue-seeds", default="0,1,2,3,4", help="part 2 flip seeds (tuned on 100-104: not those)")
    ap.add_argument("--quick", action="store_true", help="one seed in parts 1 and 2, 10,000 items in part 3")
    ap.add_argument("--threads", type=int, default=None, help="BLAS/OpenMP threads (default: the libraries' own)")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.issue_seeds, args.items = 1, args.issue_seeds.split(",")[0], 10_000
    if args.real_items is not None and args.real_items < 1797 and "3" in args.parts:
        ap.error("--real-items must be at least 1797: the stored copies are made from the real embedding of each "
                 "of the 1,797 digits")
    print_machine("data loop: label efficiency, label issues, query speed (offline, CPU)")
    quiet_warnings()
    import nbml
    if args.threads:
        limit_threads(args.threads)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nbml-bench-loop-") as tmp:
        tmp = Path(tmp)
        folder = nbml.datasets.digits(tmp / "digits")
        if "1" in args.parts:
            label_efficiency(tmp, folder, args.seeds)
        if "2" in args.parts:
            label_issues(tmp, folder, [int(x) for x in args.issue_seeds.split(",")])
        if "3" in args.parts:
            query_speed(tmp, args.items, args.real_items or args.items, args.head_items, args.size, args.cold_queries,
                        args.queries)
    print()
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
