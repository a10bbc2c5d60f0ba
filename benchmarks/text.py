"""Benchmark: text projects end to end (TREC-6 and SMS spam, shipped with nbml), offline, on this machine.

Every nbml figure comes from WordLlama's pretrained static embedding (l2_supercat_256, shipped) with nbml's TF-IDF
n-gram layer; the baseline is scikit-learn's TF-IDF (word 1-2 grams + char_wb 2-4 grams, a FeatureUnion) and
LogisticRegression (defaults, max_iter=2000), fitted in the same run on the same labels.
The test texts are never added to the nbml projects: they are scored with `nbml.kinds.text.probs(model, texts)`.

1. Label efficiency on TREC-6 (deduplicated; a stratified 30% test set, the other 70% the pool, added unlabelled).
   Per seed: a random stratified 4 per class is labelled (the same start for every arm); budgets 4, 8, 16, 32, 64 per
   class mean 6*k labels in total (margin picks are not per class). (a) margin: each round trains, then
   `ds.suggest(model, n=..., strategy="margin")` picks the labels up to the next budget, labelled with the truth;
   (a') margin in rounds of 12 labels (a page of suggestions, as a user labelling in the grid would), retrained
   between rounds; (b) nbml on random labels (the start set, then random pool items, nested); (c) the TF-IDF+LR
   baseline on (b)'s labels. The rounds use `nbml.train(ds, mode="head")` (closed-form head, ~1 s); at 16 and 64 per class the
   default fine-tuning path `nbml.train(ds)` is also trained on margin's and random's labels (--finetune-seeds).
   Headline: does margin reach the baseline's 64-per-class accuracy with at most 16 per class?
2. SMS spam (deduplicated, a stratified 30% test set): F1 of spam with 16 random labels per class, per seed, for
   `nbml.train(ds)` (default, fine-tuned), its head mode, and the baseline. Target: nbml default F1 >= 0.85.
3. Label issues on TREC-6: every pool item labelled, 10% of them flipped at random to another class, then
   `nbml.train(ds, mode=...)` and `ds.label_issues(model=model)`; precision and recall against the flipped items,
   beside cleanlab's `find_label_issues` (defaults) on 5-fold `cross_val_predict` probabilities of the baseline.
   Target: precision and recall >= 0.8.
4. Speed: 100,000 distinct texts (TREC + SMS sentences sampled with a random hex suffix): `ds.add_texts`,
   `ds.embed()` (WordLlama), `nbml.kinds.text.encode` throughput (the model's four inputs), `nbml.train(ds,
   mode="head")` on 10,000 labelled texts (median of 3 after a first call), `ds.similar("query")` p50/p99 over the
   100,000 (new query strings, after a first call).

    .venv/bin/python benchmarks/text.py [--quick] [--parts 1234] [--seeds 5] [--finetune-seeds 2]

`--quick`: 2 seeds in parts 1-3, 1 fine-tuning seed, 20,000 texts in part 4. The output is also written to
benchmarks/results/text[-quick]-cpu<N>-<date>.txt.
"""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import datetime
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import percentile, print_machine, print_table  # noqa: E402

TEST_FRACTION = 0.3
BUDGETS = [4, 8, 16, 32, 64]
FINETUNE_AT = [16, 64]
ROUND = 12            # the rounds arm: labels per round of margin suggestions, retrained in between
SMS_PER_CLASS = 16
FLIP = 0.10
TARGET_F1 = 0.85
TARGET_ISSUES = 0.8


class Tee:
    def __init__(self, path: Path):
        self.f = open(path, "w")
        self.out = sys.stdout

    def write(self, s):
        self.out.write(s)
        self.f.write(s)
        self.f.flush()

    def flush(self):
        self.out.flush()
        self.f.flush()


def quiet_warnings() -> None:
    for cat in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.simplefilter("ignore", cat)


def baseline():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline
    return make_pipeline(
        FeatureUnion([("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
                      ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True))]),
        LogisticRegression(max_iter=2000))


def split(df, seed: int):
    from sklearn.model_selection import train_test_split
    return train_test_split(df, test_size=TEST_FRACTION, stratify=df["label"], random_state=seed)


def nbml_predict(model, texts) -> np.ndarray:
    import nbml
    p = nbml.kinds.text.probs(model, list(texts))
    return np.asarray(model.classes)[p.argmax(1)]


def label(ds, ids, truth: dict[int, str]) -> None:
    by: dict[str, list[int]] = {}
    for i in ids:
        by.setdefault(truth[int(i)], []).append(int(i))
    for c, g in by.items():
        ds.set_label(g, c)


def new_project(tmp: Path, name: str):
    import nbml
    return nbml.Dataset(tmp / f"{name}.nbml")


# -- 1. label efficiency ---------------------------------------------------------------------------------------------
def label_efficiency(tmp: Path, seeds: int, ft_seeds: int) -> None:
    import nbml
    from nbml.datasets import trec6
    df = trec6().drop_duplicates("text").reset_index(drop=True)
    k_classes = df["label"].nunique()
    print(f"1. label efficiency on TREC-6: {len(df)} distinct questions, {k_classes} classes, {seeds} seeds, "
          f"{TEST_FRACTION:.0%} stratified test set per seed; inner rounds: nbml.train(ds, mode='head'); "
          f"fine-tuned (nbml.train(ds)) at {FINETUNE_AT} per class on {ft_seeds} seed(s)")
    print("-" * 100)
    arms = ["margin (head)", f"margin, rounds of {ROUND} (head)", "random (head)", "tfidf+LR random"]
    acc = {a: np.full((seeds, len(BUDGETS)), np.nan) for a in arms}
    ft = {a: np.full((seeds, len(FINETUNE_AT)), np.nan) for a in ("margin (default)", "random (default)")}
    t_seed, t_ft = [], []
    for seed in range(seeds):
        t0 = time.perf_counter()
        pool, test = split(df, seed)
        rng = np.random.default_rng(seed)
        start = pool.groupby("label").sample(BUDGETS[0], random_state=seed).index
        rest = pool.index.difference(start).to_numpy()
        random_order = np.concatenate([start.to_numpy(), rng.permutation(rest)])   # nested random label sets
        sets = {}
        for strategy in ("margin", "rounds", "random"):
            ds = new_project(tmp, f"eff-{strategy}-{seed}")
            ds.add_texts(pool["text"].tolist())
            d = ds.df
            id_of = dict(zip(d["content"], d["id"].astype(int)))
            truth = {id_of[t]: lab for t, lab in zip(pool["text"], pool["label"])}
            label(ds, [id_of[t] for t in pool.loc[start, "text"]], truth)
            sets[strategy] = {}
            for j, k in enumerate(BUDGETS):
                total = k_classes * k
                have = int(ds.df["label"].notna().sum())
                if strategy == "random" and have < total:
                    label(ds, [id_of[t] for t in pool.loc[random_order[have:total], "text"]], truth)
                elif strategy == "margin" and have < total:
                    picked = ds.suggest(model, n=total - have, strategy="margin")["id"].astype(int).tolist()
                    assert len(picked) == total - have
                    label(ds, picked, truth)
                while strategy == "rounds" and have < total:    # a page of suggestions at a time, retrained between
                    n = min(ROUND, total - have)
                    label(ds, ds.suggest(model, n=n, strategy="margin")["id"].astype(int).tolist(), truth)
                    have += n
                    if have < total:
                        model = nbml.train(ds, mode="head", quiet=True, seed=seed)
                assert int(ds.df["label"].notna().sum()) == total
                model = nbml.train(ds, mode="head", quiet=True, seed=seed)
                arm = f"margin, rounds of {ROUND} (head)" if strategy == "rounds" else f"{strategy} (head)"
                acc[arm][seed, j] = float((nbml_predict(model, test["text"]) == test["label"]).mean())
                lab = ds.df[ds.df["label"].notna()]
                sets[strategy][k] = (lab["content"].tolist(), lab["label"].tolist())
                if seed < ft_seeds and k in FINETUNE_AT and strategy != "rounds":
                    t = time.perf_counter()
                    full = nbml.train(ds, quiet=True, seed=seed)
                    t_ft.append(time.perf_counter() - t)
                    ft[f"{strategy} (default)"][seed, FINETUNE_AT.index(k)] = \
                        float((nbml_predict(full, test["text"]) == test["label"]).mean())
            ds.close()
        for j, k in enumerate(BUDGETS):
            X, y = sets["random"][k]
            clf = baseline().fit(X, y)
            acc["tfidf+LR random"][seed, j] = float((clf.predict(test["text"]) == test["label"]).mean())
        t_seed.append(time.perf_counter() - t0)
        print(f"  seed {seed}: " + ", ".join(f"{a} @64 {acc[a][seed, -1]:.4f}" for a in arms)
              + f"  ({t_seed[-1]:.0f} s)", flush=True)
    print(f"time per seed (the three nbml arms, fine-tuning included where done): "
          f"{np.mean(t_seed):.0f} s; nbml.train(ds) default fine-tuning runs: "
          f"{'n/a' if not t_ft else f'median {statistics.median(t_ft):.1f} s over {len(t_ft)}'}")
    print()
    rows = []
    for j, k in enumerate(BUDGETS):
        row = [f"{k} ({k * k_classes})"]
        for a in arms:
            row += [f"{acc[a][:, j].mean():.4f} ± {acc[a][:, j].std():.4f}"]
        for a in ft:
            row += [f"{np.nanmean(ft[a][:, FINETUNE_AT.index(k)]):.4f}" if k in FINETUNE_AT and ft_seeds else "-"]
        rows.append(row)
    print_table(["per class (total)"] + arms + [f"{a}, {ft_seeds} seed(s)" for a in ft], rows)
    print()
    base64 = acc["tfidf+LR random"][:, -1].mean()
    m = acc["margin (head)"].mean(0)
    r = acc["random (head)"].mean(0)
    reach = [k for k, a in zip(BUDGETS, m) if a >= base64]
    i16 = BUDGETS.index(16)
    print(f"baseline (TF-IDF+LR, random) at 64 per class: {base64:.4f}")
    print(f"nbml margin (head) at 16 per class: {m[i16]:.4f} = {m[i16] / base64:.3f} x the baseline's 64-per-class "
          f"accuracy; first budget where margin >= it: {reach[0] if reach else 'none up to 64'} per class")
    if ft_seeds:
        f16 = np.nanmean(ft["margin (default)"][:, 0])
        print(f"nbml margin labels + default fine-tuning at 16 per class: {f16:.4f} = {f16 / base64:.3f} x "
              f"(over {ft_seeds} seed(s))")
    print(f"TARGET margin reaches the baseline's 64-per-class accuracy with <= 16 per class: "
          f"{'YES' if reach and reach[0] <= 16 else 'NO'}")
    mr = acc[f"margin, rounds of {ROUND} (head)"].mean(0)
    reach_r = [k for k, a in zip(BUDGETS, mr) if a >= base64]
    print(f"margin in rounds of {ROUND} labels at 16 per class: {mr[i16]:.4f} = {mr[i16] / base64:.3f} x; first budget "
          f"where it >= the baseline's 64: {reach_r[0] if reach_r else 'none up to 64'} per class")
    print(f"nbml random (head) vs baseline at each budget (ratio): "
          + ", ".join(f"{k}: {r[j] / acc['tfidf+LR random'][:, j].mean():.3f}" for j, k in enumerate(BUDGETS)))
    print(f"margin vs random (head) at each budget (difference): "
          + ", ".join(f"{k}: {m[j] - r[j]:+.4f}" for j, k in enumerate(BUDGETS)))
    print()


# -- 2. SMS spam -----------------------------------------------------------------------------------------------------
def sms(tmp: Path, seeds: int) -> None:
    import nbml
    from nbml.datasets import sms_spam
    from sklearn.metrics import f1_score
    df = sms_spam().drop_duplicates("text").reset_index(drop=True)
    print(f"2. SMS spam: {len(df)} distinct messages ({(df['label'] == 'spam').sum()} spam), {seeds} seeds, "
          f"{SMS_PER_CLASS} random labels per class, F1 of spam on a {TEST_FRACTION:.0%} stratified test set")
    print("-" * 100)
    arms = ["nbml default (fine-tuned)", "nbml head", "tfidf+LR"]
    f1 = {a: [] for a in arms}
    t_train = []
    for seed in range(seeds):
        pool, test = split(df, seed)
        lab = pool.groupby("label").sample(SMS_PER_CLASS, random_state=seed)
        ds = new_project(tmp, f"sms-{seed}")
        ds.add_texts(lab["text"].tolist(), labels=lab["label"].tolist())
        ds.add_texts(pool.drop(lab.index)["text"].tolist())          # the rest of the pool, unlabelled
        t = time.perf_counter()
        full = nbml.train(ds, quiet=True, seed=seed)
        t_train.append(time.perf_counter() - t)
        head = nbml.train(ds, mode="head", quiet=True, seed=seed)
        y = (test["label"] == "spam").to_numpy()
        f1[arms[0]].append(f1_score(y, nbml_predict(full, test["text"]) == "spam"))
        f1[arms[1]].append(f1_score(y, nbml_predict(head, test["text"]) == "spam"))
        clf = baseline().fit(lab["text"], lab["label"])
        f1[arms[2]].append(f1_score(y, clf.predict(test["text"]) == "spam"))
        ds.close()
        print(f"  seed {seed}: " + ", ".join(f"{a} {f1[a][-1]:.4f}" for a in arms), flush=True)
    rows = [[a, f"{np.mean(f1[a]):.4f}", f"{np.std(f1[a]):.4f}", f"{min(f1[a]):.4f}"] for a in arms]
    print_table(["arm", "mean F1 (spam)", "std", "min"], rows)
    print(f"nbml default / baseline F1: {np.mean(f1[arms[0]]) / np.mean(f1[arms[2]]):.3f}; "
          f"nbml.train(ds) on {2 * SMS_PER_CLASS} labels (+{len(pool) - 2 * SMS_PER_CLASS} unlabelled in the "
          f"project): median {statistics.median(t_train):.1f} s")
    print(f"TARGET nbml default mean F1 >= {TARGET_F1}: {'YES' if np.mean(f1[arms[0]]) >= TARGET_F1 else 'NO'} "
          f"({np.mean(f1[arms[0]]):.4f})")
    print()


# -- 3. label issues -------------------------------------------------------------------------------------------------
def label_issues(tmp: Path, seeds: int, mode: str) -> None:
    import nbml
    from cleanlab.filter import find_label_issues
    from nbml.datasets import trec6
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    df = trec6().drop_duplicates("text").reset_index(drop=True)
    classes = sorted(df["label"].unique())
    print(f"3. label issues on TREC-6: the 70% pool labelled, {FLIP:.0%} flipped at random to another class, "
          f"{seeds} seeds; nbml.train(ds, mode={mode!r}) then ds.label_issues(model=model)")
    print("-" * 100)
    res = {"nbml label_issues": [], "cleanlab on tfidf+LR 5-fold": []}
    times = {"train": [], "label_issues": [], "baseline": []}
    for seed in range(seeds):
        pool, _ = split(df, seed)
        rng = np.random.default_rng(100 + seed)
        texts, given = pool["text"].tolist(), pool["label"].to_numpy().copy()
        flip = rng.choice(len(given), int(round(FLIP * len(given))), replace=False)
        for i in flip:
            given[i] = rng.choice([c for c in classes if c != given[i]])
        flipped_texts = {texts[i] for i in flip}
        ds = new_project(tmp, f"issues-{seed}")
        ds.add_texts(texts, labels=list(given))
        t = time.perf_counter()
        model = nbml.train(ds, quiet=True, seed=seed) if mode == "finetune" else \
            nbml.train(ds, mode="head", quiet=True, seed=seed)
        times["train"].append(time.perf_counter() - t)
        t = time.perf_counter()
        issues = ds.label_issues(model=model)
        times["label_issues"].append(time.perf_counter() - t)
        content = dict(zip(ds.df["id"].astype(int), ds.df["content"]))
        found = {content[int(i)] for i in issues["id"]}
        res["nbml label_issues"].append(_pr(found, flipped_texts))
        ds.close()
        t = time.perf_counter()
        y = np.array([classes.index(c) for c in given])
        probs = cross_val_predict(baseline(), texts, y, cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                                  method="predict_proba")
        mask = find_label_issues(y, probs)
        times["baseline"].append(time.perf_counter() - t)
        res["cleanlab on tfidf+LR 5-fold"].append(_pr({texts[i] for i in np.flatnonzero(mask)}, flipped_texts))
        print(f"  seed {seed}: {len(flip)} flipped of {len(texts)}; "
              + ", ".join(f"{a} P {v[-1][0]:.3f} R {v[-1][1]:.3f} (n={v[-1][2]})" for a, v in res.items()),
              flush=True)
    rows = [[a, f"{np.mean([x[0] for x in v]):.4f}", f"{np.mean([x[1] for x in v]):.4f}",
             f"{np.mean([x[2] for x in v]):.0f}"] for a, v in res.items()]
    print_table(["method", "precision", "recall", "flagged"], rows)
    print(f"seconds (median): nbml.train(mode={mode!r}) {statistics.median(times['train']):.1f}, "
          f"ds.label_issues {statistics.median(times['label_issues']):.1f}, baseline 5-fold + cleanlab "
          f"{statistics.median(times['baseline']):.1f}")
    p = np.mean([x[0] for x in res["nbml label_issues"]])
    r = np.mean([x[1] for x in res["nbml label_issues"]])
    print(f"TARGET nbml precision and recall >= {TARGET_ISSUES}: "
          f"{'YES' if p >= TARGET_ISSUES and r >= TARGET_ISSUES else 'NO'} (P {p:.4f}, R {r:.4f})")
    print()


def _pr(found: set, truth: set) -> tuple[float, float, int]:
    hit = len(found & truth)
    return (hit / len(found) if found else float("nan"), hit / len(truth), len(found))


# -- 4. speed ----------------------------------------------------------------------------------------------------------
def speed(tmp: Path, n: int, head_items: int, queries: int) -> None:
    import nbml
    from nbml.datasets import sms_spam, trec6
    rng = np.random.default_rng(0)
    trec, spam = trec6().drop_duplicates("text"), sms_spam().drop_duplicates("text")
    src = np.concatenate([trec["text"].to_numpy(), spam["text"].to_numpy()])
    src_lab = np.concatenate([trec["label"].to_numpy(), spam["label"].to_numpy()])
    pick = rng.integers(0, len(src), n)
    texts = [f"{src[i]} #{j:x}{rng.integers(1 << 30):x}" for j, i in enumerate(pick)]
    assert len(set(texts)) == n
    print(f"4. speed: {n:,} distinct texts (TREC + SMS with a random suffix; mean {np.mean([len(t) for t in texts]):.0f} "
          f"chars), {os.cpu_count()} cores (shared: load average {os.getloadavg()[0]:.1f} at the start)")
    print("-" * 100)
    ds = new_project(tmp, "speed")
    t = time.perf_counter()
    rep = ds.add_texts(texts)
    t_add = time.perf_counter() - t
    print(f"ds.add_texts: {t_add:.1f} s = {n / t_add:,.0f} texts/s ({str(rep).replace(chr(10), ' ')})")
    t = time.perf_counter()
    ds.embed(ids=[int(ds.df["id"].iloc[0])], progress=False)      # loads WordLlama: timed apart
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    emb = ds.embed(progress=False)
    t_emb = time.perf_counter() - t
    print(f"ds.embed(ids=[one item]) first (loads the backbone): {t_load:.1f} s")
    print(f"ds.embed(): {t_emb:.1f} s = {(n - 1) / t_emb:,.0f} texts/s ({len(emb.ids):,} x {emb.vectors.shape[1]}, "
          f"{emb.source})")
    m = min(n, 20_000)
    nbml.kinds.text.encode(texts[:256])
    t = time.perf_counter()
    for i in range(0, m, 256):
        nbml.kinds.text.encode(texts[i:i + 256])
    t_enc = time.perf_counter() - t
    print(f"nbml.kinds.text.encode (batches of 256, {m:,} texts): {m / t_enc:,.0f} texts/s")
    t = time.perf_counter()
    nbml.kinds.text_encoding.gram_counts(texts[:m])
    t_g = time.perf_counter() - t
    print(f"nbml.kinds.text_encoding.gram_counts ({m:,} texts at once): {m / t_g:,.0f} texts/s")
    d = ds.df
    id_of = dict(zip(d["content"], d["id"].astype(int)))
    truth = {id_of[texts[j]]: src_lab[pick[j]] for j in range(head_items)}
    label(ds, list(truth), truth)
    times = []
    for _ in range(4):
        t = time.perf_counter()
        nbml.train(ds, mode="head", quiet=True)
        times.append(time.perf_counter() - t)
    print(f"nbml.train(ds, mode='head') on {head_items:,} labelled texts ({len(set(truth.values()))} classes): "
          f"first {times[0]:.2f} s, then median of 3 {statistics.median(times[1:]):.2f} s")
    # another session: the project opened again in a process that has hashed nothing (the n-grams' document
    # frequencies and the last head solution are read from the project's folder; the labelled texts' n-grams are
    # hashed, the head fitted from that solution)
    path = ds.path
    ds.close()
    nbml.kinds.text._GRAMS.clear()
    ds = nbml.Dataset(path)
    emb_cached = ds.embed(progress=False)
    t = time.perf_counter()
    nbml.train(ds, mode="head", quiet=True)
    print(f"  the same in a new session (project opened again, nothing hashed in the process, embeddings cached: "
          f"{len(emb_cached.ids):,}): first {time.perf_counter() - t:.2f} s")
    qs = [f"{src[i]}" for i in rng.integers(0, len(src), queries + 1)]
    t = time.perf_counter()
    ds.similar(qs[0], k=20)
    first = time.perf_counter() - t
    lat = []
    for q in qs[1:]:
        t = time.perf_counter()
        ds.similar(q, k=20)
        lat.append(time.perf_counter() - t)
    print(f"ds.similar(query string, k=20) over {n:,}: first {first * 1e3:.0f} ms, then {queries} new queries "
          f"p50 {percentile(lat, 50) * 1e3:.1f} ms, p99 {percentile(lat, 99) * 1e3:.1f} ms")
    ds.close()
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--finetune-seeds", type=int, default=2)
    ap.add_argument("--issues-mode", choices=["head", "finetune"], default="head")
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--head-items", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--parts", default="1234")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None, help="results file (default benchmarks/results/text[-quick]-cpuN-date.txt)")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.finetune_seeds, args.items = 2, min(args.finetune_seeds, 1), 20_000
    date = datetime.date.today().isoformat()
    out = Path(args.out or Path(__file__).parent / "results" /
               f"text{'-quick' if args.quick else ''}-cpu{os.cpu_count()}-{date}.txt")
    sys.stdout = Tee(out)
    print_machine("text: label efficiency, SMS spam, label issues, speed (offline, CPU)")
    print(f"arguments: {' '.join(sys.argv[1:]) or '(none)'}; load average at start {os.getloadavg()}")
    print()
    quiet_warnings()
    import nbml  # noqa: F401
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nbml-bench-text-") as tmp:
        tmp = Path(tmp)
        if "1" in args.parts:
            label_efficiency(tmp, args.seeds, args.finetune_seeds)
        if "2" in args.parts:
            sms(tmp, args.seeds)
        if "3" in args.parts:
            label_issues(tmp, args.seeds, args.issues_mode)
        if "4" in args.parts:
            speed(tmp, args.items, args.head_items, args.queries)
    print(f"total {time.perf_counter() - t0:.0f} s; load average at end {os.getloadavg()}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
