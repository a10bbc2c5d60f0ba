"""Tables, in one run on this machine: nbml's default (fastai's TabularModel, LightGBM and a logistic regression; on a
small table the one kept is chosen by 5-fold cross-validation inside the rows nbml is given, never the benchmark's
test fold) against scikit-learn baselines, label efficiency, label issues, and serving.

- accuracy and macro-F1, 5-fold stratified cross-validation, on scikit-learn's breast cancer and wine and the Titanic
  passengers: nbml's default against `HistGradientBoostingClassifier` (defaults) and `LogisticRegression` (defaults,
  after one-hot encoding of the categories and scaling of the numbers), training time beside each;
- label efficiency on Titanic (30% held out, 5 seeds): accuracy against labels per class for nbml choosing labels by
  `margin` from a random 4 per class, and with random labels;
- label issues on Titanic with 10% of the labels flipped: `ds.label_issues()` (every label given, then ask) against
  cleanlab on the out-of-sample probabilities of the gradient-boosting baseline, precision and recall;
- serving: nbml serve's p50 at concurrency 1 against the bare model call (encode one row + ONNX Runtime, with the
  server's settings), and requests per second at concurrency 8.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cycling_call, print_machine, print_table  # noqa: E402

warnings.filterwarnings("ignore")


def datasets():
    import pandas as pd
    from sklearn.datasets import load_breast_cancer, load_wine
    from nbml.datasets import titanic
    out = {}
    for name, loader in (("breast cancer", load_breast_cancer), ("wine", load_wine)):
        bunch = loader(as_frame=True)
        frame = bunch.frame.rename(columns={"target": "label"})
        frame["label"] = frame["label"].map(dict(enumerate(bunch.target_names)))
        out[name] = frame
    passengers = titanic().drop(columns=["name"]).rename(columns={"survived": "label"})
    # without names some passengers are the same row (an nbml project keeps one of each): once each, everywhere
    out["titanic"] = passengers.drop_duplicates([c for c in passengers.columns if c != "label"]).reset_index(drop=True)
    return out


def baselines():
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    cats = make_column_selector(dtype_include=["object", "string", "category"])
    nums = make_column_selector(dtype_exclude=["object", "string", "category"])
    logistic = make_pipeline(ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler()), nums),
        ("cat", OneHotEncoder(handle_unknown="ignore"), cats)]), LogisticRegression(max_iter=1000))
    hgb = make_pipeline(ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), cats)],
                                          remainder="passthrough"), HistGradientBoostingClassifier(random_state=0))
    return {"HistGradientBoosting": hgb, "LogisticRegression": logistic}


def nbml_fold(frame, train_idx, test_idx, home, arch=None):
    import nbml
    ds = nbml.Dataset(os.path.join(home, f"fold-{time.perf_counter_ns()}.nbml"))
    ds.add_table(frame.iloc[train_idx], label_col="label", progress=False)
    t = time.perf_counter()
    model = nbml.train(ds, quiet=True, seed=0, arch=arch)
    took = time.perf_counter() - t
    pred = model.predict_many(frame.iloc[test_idx].drop(columns=["label"]))["label"].to_numpy()
    kept = ds.runs().iloc[-1]["params"]["kept"]
    ds.close()
    return pred, took, kept


def accuracy_table(data: dict, home: str, folds: int) -> None:
    import numpy as np
    from sklearn.base import clone
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold
    rows, worst_gap = [], {}
    for name, frame in data.items():
        y = frame["label"].to_numpy()
        X = frame.drop(columns=["label"])
        scores = {}
        splits = list(StratifiedKFold(folds, shuffle=True, random_state=0).split(X, y))
        kept = []
        for method in ["nbml (default)", *baselines()]:
            accs, f1s, took = [], [], 0.0
            for train, test in splits:
                if method.startswith("nbml"):
                    pred, t, k = nbml_fold(frame, train, test, home)
                    kept.append(k)
                else:
                    est = clone(baselines()[method])
                    t0 = time.perf_counter()
                    est.fit(X.iloc[train], y[train])
                    t = time.perf_counter() - t0
                    pred = est.predict(X.iloc[test])
                took += t
                accs.append(accuracy_score(y[test], pred))
                f1s.append(f1_score(y[test], pred, average="macro"))
            scores[method] = float(np.mean(accs))
            rows.append([name, method, f"{np.mean(accs):.4f}", f"{np.std(accs):.4f}", f"{np.mean(f1s):.4f}",
                         f"{took / folds:.2f}"])
        best = max(v for k, v in scores.items() if not k.startswith("nbml"))
        worst_gap[name] = (scores["nbml (default)"] - best) * 100
        rows.append([name, f"  nbml kept per fold: {', '.join(kept)}", "", "", "", ""])
    print_table(["data", "method", "accuracy", "std", "macro-F1", "train s/fold"], rows)
    for name, gap in worst_gap.items():
        print(f"target, nbml within 1 point of the best baseline on {name}: {gap:+.2f} points, "
              f"{'met' if gap >= -1 else 'NOT met'}")
    print()


def efficiency(frame, home: str, seeds: int, sizes=(4, 8, 16, 32, 64)) -> None:
    import numpy as np
    import nbml
    from sklearn.model_selection import train_test_split
    results = {}
    for strategy in ("margin", "random"):
        for seed in range(seeds):
            pool, test = train_test_split(frame, test_size=0.3, stratify=frame["label"], random_state=seed)
            ds = nbml.Dataset(os.path.join(home, f"eff-{strategy}-{seed}.nbml"))
            report = ds.add_table(pool.drop(columns=["label"]), label_col=None, progress=False)
            truth = dict(zip(report.added, pool["label"]))
            rng = np.random.default_rng(seed)
            start = pool.reset_index(drop=True).groupby("label").sample(4, random_state=seed).index
            for i in start:
                ds.set_label(report.added[i], truth[report.added[i]])
            for size in sizes:
                n_classes = pool["label"].nunique()
                need = size * n_classes - sum(v for k, v in ds.label_counts().items() if k is not None)
                if need > 0:
                    if strategy == "margin":
                        ids = ds.suggest(n=need, strategy="margin")["id"].tolist()
                    else:
                        unl = ds.query_ids(labelled=False)
                        ids = rng.choice(unl, need, replace=False).tolist()
                    for i in ids:
                        ds.set_label(int(i), truth[int(i)])
                model = nbml.train(ds, quiet=True, seed=0)
                acc = float((model.predict_many(test.drop(columns=["label"]))["label"].to_numpy()
                             == test["label"].to_numpy()).mean())
                results.setdefault((strategy, size), []).append(acc)
            ds.close()
    rows = [[f"{size}"] + [f"{np.mean(results[(s, size)]):.4f} ± {np.std(results[(s, size)]):.4f}"
                           for s in ("margin", "random")] for size in sizes]
    print(f"label efficiency on Titanic ({seeds} seeds, 30% held out; labels per class on the train side, "
          f"the first 4 per class random):")
    print_table(["labels per class (total = x2)", "nbml, margin", "nbml, random"], rows)
    print()


def label_issues(frame, home: str, seed: int = 0) -> None:
    import numpy as np
    import nbml
    from cleanlab.filter import find_label_issues
    from sklearn.model_selection import cross_val_predict
    y = frame["label"].to_numpy().copy()
    rng = np.random.default_rng(seed)
    flip = rng.choice(len(y), len(y) // 10, replace=False)
    classes = sorted(set(y))
    y[flip] = [classes[1 - classes.index(v)] for v in y[flip]]
    noisy = frame.assign(label=y)
    ds = nbml.Dataset(os.path.join(home, "issues.nbml"))
    report = ds.add_table(noisy, label_col="label", progress=False)
    ids = np.array(report.added)
    t = time.perf_counter()
    nbml.train(ds, quiet=True, seed=0)
    issues = ds.label_issues()
    took = time.perf_counter() - t
    truth = set(ids[flip].tolist())
    flagged = set(issues["id"].tolist())
    p_nbml = len(flagged & truth) / max(len(flagged), 1)
    r_nbml = len(flagged & truth) / len(truth)
    X = noisy.drop(columns=["label"])
    yi = np.array([classes.index(v) for v in y])
    probs = cross_val_predict(baselines()["HistGradientBoosting"], X, yi, cv=5, method="predict_proba")
    found = np.flatnonzero(find_label_issues(yi, probs))
    p_cl = len(set(found) & set(flip.tolist())) / max(len(found), 1)
    r_cl = len(set(found) & set(flip.tolist())) / len(flip)
    print(f"label issues on Titanic, {len(flip)} of {len(y)} labels flipped:")
    print_table(["method", "flagged", "precision", "recall"],
                [["nbml: train on every label, then ds.label_issues()", str(len(flagged)), f"{p_nbml:.3f}",
                  f"{r_nbml:.3f}"],
                 ["cleanlab on HistGradientBoosting's 5-fold probabilities", str(len(found)), f"{p_cl:.3f}",
                  f"{r_cl:.3f}"]])
    print(f"nbml: {issues.attrs.get('method', '')} ({took:.1f} s with training)\n")
    ds.close()


# The floor under any Python server here: uvicorn (with httptools and uvloop, as nbml serve runs) and an ASGI app that
# reads the body and answers a fixed JSON of nbml's shape, no model. Measured in the same rounds as nbml.
FLOOR_APP = '''
import json
ANSWER = json.dumps({"label": "died", "probabilities": {"died": 0.25, "survived": 0.75}}).encode()
HEAD = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEAD})
    await send({"type": "http.response.body", "body": ANSWER})
'''
FLOOR = "uvicorn + an ASGI app answering a fixed JSON (no model)"


def serving(frame, home: str, n_requests: int) -> None:
    import numpy as np
    import nbml
    from serve import measure, print_results
    ds = nbml.Dataset(os.path.join(home, "serve.nbml"))
    ds.add_table(frame, label_col="label", progress=False)
    model = nbml.train(ds, quiet=True, seed=0)
    folder = str(model.export(os.path.join(home, "titanic-model"), quiet=True))
    rows = frame.drop(columns=["label"]).head(64).to_dict("records")
    rows = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in rows]
    bodies = [json.dumps({"row": r}).encode() for r in rows]

    def bare(folder: str):
        from nbml.kinds.table_serving import TableOnnxRunner
        config = json.load(open(os.path.join(folder, "config.json")))
        batches = []
        for r in rows:
            batches.append(np.empty(1, dtype=object))
            batches[-1][0] = r
        return cycling_call(TableOnnxRunner(folder, config, None), batches)
    with tempfile.TemporaryDirectory() as tmp:
        m = measure({"nbml": folder, FLOOR: folder}, bodies, n_requests, tmp, app_source=FLOOR_APP, bare_call=bare,
                    content_type="application/json")
    print(f"serving the Titanic model ({model.config['model']} kept), JSON {{\"row\": ...}} requests:")
    b = print_results(m, ["nbml", "nbml, through http.client", FLOOR], one="1 row, encode + session.run")
    p50, floor = m["results"][("nbml", 1)]["p50"], m["results"][(FLOOR, 1)]["p50"]
    ratio = p50 / b["nbml"]
    print(f"target, p50 at concurrency 1 <= 1.3x the bare call: {ratio:.2f}x, {'met' if ratio <= 1.3 else 'NOT met'}")
    print(f"where nbml's p50 goes: {floor:.3f} ms the HTTP round trip of a server with no work ({floor / b['nbml']:.2f}x "
          f"the bare call by itself), {b['nbml']:.3f} ms the bare call, {p50 - floor - b['nbml']:.3f} ms nbml's own "
          f"request handling (JSON, the row's checks and encoding, the response)")
    print(f"requests per second at concurrency 8: {m['results'][('nbml', 8)]['rps']:.1f}")
    ds.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--only", choices=["accuracy", "efficiency", "issues", "serving"], default=None)
    args = ap.parse_args()
    print_machine("benchmarks/tabular.py: nbml on tables against scikit-learn")
    print(f"load average at start: {' '.join(open('/proc/loadavg').read().split()[:3])}\n")
    data = datasets()
    with tempfile.TemporaryDirectory() as home:
        if args.only in (None, "accuracy"):
            accuracy_table(data, home, args.folds)
        if args.only in (None, "efficiency"):
            efficiency(data["titanic"], home, args.seeds)
        if args.only in (None, "issues"):
            label_issues(data["titanic"], home)
        if args.only in (None, "serving"):
            serving(data["titanic"], home, args.requests)
    print(f"load average at the end: {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
