"""Benchmark: the backtest of `ds.forecast()` (issue 27), offline, on this machine.

Data sets: digits (images; no pretrained weights here, so the embeddings are those of the body of the model trained on
the project's labels, as a user without weights would have), TREC-6 and SMS spam (texts: the forecast reads the
pretrained encoder's embeddings with TF-IDF, and nbml.train fine-tunes the encoder; where no encoder can be had, or
with NBML_TEXT_ENCODER=static, WordLlama's embeddings and the static model),
Titanic, breast cancer and wine (tables). Per data set and seed: a stratified 30% test set is held out (never added
to the project); the rest, the pool, is added unlabelled. Per n in 5, 10, 20 labels per class: n random labels per
class are labelled, `ds.forecast()` is asked (for images after `nbml.train(ds)`, whose body gives the embeddings;
its 'valid' split is then left out of the forecast, as by default), then the project is really labelled to 2n and 4n
per class (random, nested) and `nbml.train(ds)` (default settings) is trained at n, 2n and 4n and scored on the test
set. A horizon the pool cannot fill (wine has 33 of its smallest class in the pool) is skipped.

Printed per data set and overall: mean absolute error of the forecast at 2n and 4n (the naive baseline, today's
accuracy carried forward, beside it), the share of actual accuracies inside the 80% intervals, how often it said
"not yet" (and how often with 10 or more labels per class), and the labels-to-target error: the target is the
accuracy actually reached at 4n, the truth the first of n, 2n, 4n that reached it; the error is |log2(forecast labels /
truth)|. The forecast's time is printed too (its cost with the embeddings cached, the first case of a data set
included).

The expensive part (training) writes one JSON line per case to <the --out file's name>-raw.jsonl; the
report is computed from those lines with the module's constants, so `--report FILE` recomputes it without training
(after changing a kind's forecast_rho, or WIDEN, FLOOR or MAX_WIDTH in nbml/forecast.py). `--calibrate` also prints the
correction the backtest itself points to per kind and backbone (fitted on the same cases: in-sample), and the report
again with each seed's cases corrected by what the other seeds' cases point to (out of sample).

    .venv/bin/python benchmarks/forecast.py [--quick] [--seeds 5] [--sets digits,trec6,...] [--threads 1]
    .venv/bin/python benchmarks/forecast.py --report benchmarks/results/forecast-raw-<date>.jsonl [--calibrate]

`--quick`: 2 seeds, 10 and 20 per class, breast cancer, TREC-6 and digits. `--speed`: only the forecast's time at
1,000 labels.

Cost here (2-core EPYC shared with other work, load 9-16 on 2026-12-07): a TREC-6 or SMS case (three default text
trainings) took 3-6 minutes, a table case 10-130 s, and the first digits case (three default resnet18 trainings
from random weights, the pool embedded by the body) did not finish in 14 minutes, so the run of that day left
digits out and ran 3 seeds at 10 and 20 per class (n = 5 is below the forecast's 8 labels per class: always
"not yet"). With the fine-tuned encoder as the text model (2026-12-08, quiet): a TREC-6 or SMS case 1.5-3 minutes.
"""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import datetime
import json
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Tee, print_machine, print_table  # noqa: E402

SETS = ("digits", "trec6", "sms", "titanic", "breast_cancer", "wine")
KIND = {"digits": "image", "trec6": "text", "sms": "text", "titanic": "table", "breast_cancer": "table",
        "wine": "table"}
PER_CLASS = (5, 10, 20)
MULTS = (1, 2, 4)
TEST_FRACTION = 0.3


def load(name: str):
    """(kind, DataFrame with `label` and the item column(s)) of a data set."""
    import pandas as pd
    from nbml import datasets
    if name == "digits":
        folder = datasets.digits()
        paths = sorted(str(p) for p in Path(folder).rglob("*.png"))
        return pd.DataFrame({"path": paths, "label": [Path(p).parent.name for p in paths]})
    if name == "trec6":
        return datasets.trec6()[["text", "label"]]
    if name == "sms":
        return datasets.sms_spam().drop_duplicates("text").reset_index(drop=True)
    if name == "titanic":
        frame = datasets.titanic().drop(columns=["name"]).rename(columns={"survived": "label"})
        return frame.drop_duplicates([c for c in frame.columns if c != "label"]).reset_index(drop=True)
    from sklearn.datasets import load_breast_cancer, load_wine
    bunch = (load_breast_cancer if name == "breast_cancer" else load_wine)(as_frame=True)
    frame = bunch.frame.rename(columns={"target": "label"})
    frame["label"] = frame["label"].map(dict(enumerate(bunch.target_names))).astype(str)
    return frame


def add_pool(ds, kind: str, pool) -> list[int]:
    """Add the pool unlabelled; the item id of each pool row (in order)."""
    if kind == "image":
        import pandas as pd
        ds.add_dataframe(pd.DataFrame({"path": pool["path"].tolist()}), label_col=None, progress=False)
        by_path = dict(zip(ds.df["path"], ds.df["id"].astype(int)))
        return [by_path[p] for p in pool["path"]]
    if kind == "text":         # texts nbml takes for duplicates of others (after normalisation) stay out: None
        ds.add_texts(pool["text"].tolist(), progress=False)
        by_text = dict(zip(ds.df["content"], ds.df["id"].astype(int)))
        return [by_text.get(t) for t in pool["text"]]
    else:
        rep = ds.add_table(pool.drop(columns=["label"]), label_col=None, progress=False)
    if len(rep.added) != len(pool):
        raise RuntimeError(f"{len(pool) - len(rep.added)} pool rows were not added: {rep}")
    return list(rep.added)


def test_accuracy(model, kind: str, test) -> float:
    if kind == "image":
        items = test["path"].tolist()
    elif kind == "text":
        items = test["text"].tolist()
    else:
        items = test.drop(columns=["label"])
    pred = model.predict_many(items)["label"].to_numpy()
    return float((pred == test["label"].to_numpy()).mean())


def run_case(name: str, frame, seed: int, n: int, tmp: Path) -> dict:
    import nbml
    from sklearn.model_selection import train_test_split
    kind = KIND[name]
    pool, test = train_test_split(frame, test_size=TEST_FRACTION, stratify=frame["label"], random_state=seed)
    pool = pool.reset_index(drop=True)
    ds = nbml.Dataset(tmp / f"{name}-{seed}-{n}.nbml")
    ids = add_pool(ds, kind, pool)
    if None in ids:            # a few SMS are the same message but for spaces: one of each, as nbml keeps
        keep = [i is not None for i in ids]
        pool, ids = pool[keep].reset_index(drop=True), [i for i in ids if i is not None]
    rng = np.random.default_rng(1000 * seed + n)
    order = {c: rng.permutation(np.flatnonzero(pool["label"].to_numpy() == c)) for c in sorted(pool["label"].unique())}
    out = dict(set=name, kind=kind, seed=seed, n=n, classes=len(order), actual={}, labels={}, train_s={})
    labelled = 0
    for mult in MULTS:
        k = n * mult
        if min(len(v) for v in order.values()) < k:
            break
        for c, rows in order.items():
            new = [ids[i] for i in rows[labelled:k]]
            if new:
                ds.set_label(new, str(c))
        labelled = k
        if mult == 1 and kind != "image":
            out["forecast"] = ask(ds)
        t = time.perf_counter()
        model = nbml.train(ds, quiet=True, seed=seed)
        out["train_s"][mult] = time.perf_counter() - t
        out["actual"][mult] = test_accuracy(model, kind, test)
        out["labels"][mult] = k * len(order)
        if mult == 1 and kind == "image":
            out["forecast"] = ask(ds)
    ds.close()
    return out


def ask(ds) -> dict:
    """The forecast's raw parts (so the report can recompute it with other constants) and its time."""
    from nbml.forecast import forecast
    ds.embed(progress=False)            # cached first, as the speed target says
    t = time.perf_counter()
    f = forecast(ds)
    seconds = time.perf_counter() - t
    cv = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.curve.items()}
    return dict(seconds=seconds, labels=f.labels, used=f.used, not_yet=f.not_yet, curve=cv,
                min_class=int(f.per_class["labelled"].min()) if len(f.per_class) else 0,
                points=f.points[["head_labels", "accuracy", "sd"]].to_dict("list"),
                frame=f.frame.to_dict("list"))


# -- the report ---------------------------------------------------------------------------------------------------------
def model_id(case: dict) -> str:
    """The backbone of the case's embeddings; cases written before it was recorded were read by the static text model
    (WordLlama) or a table's columns."""
    return (case.get("forecast") or {}).get("curve", {}).get("model_id") or ("wordllama:" if case["kind"] == "text"
                                                                           else case["kind"] + ":")


def family(model_id: str) -> str:
    """What the backtest groups the correction by: the backbone id's prefix ('encoder', 'wordllama', 'table')."""
    return model_id.split(":", 1)[0]


def evaluate(case: dict, rho: float | None = None) -> dict | None:
    """The forecast of a case recomputed with nbml.forecast's current constants (or the correction `rho`), against
    what happened."""
    from nbml import forecast as F, kinds
    fc = case.get("forecast")
    if fc is None or 1 not in case["actual"]:
        return None
    now = fc["labels"]
    res = dict(set=case["set"], kind=case["kind"], n=case["n"], seed=case["seed"], seconds=fc["seconds"],
               today=case["actual"][1], model_id=model_id(case))
    if fc["curve"] == {}:          # "not yet" before any curve (too few labels)
        res["not_yet"] = fc["not_yet"]
        return res
    curve = {k: (np.asarray(v) if isinstance(v, list) else v) for k, v in fc["curve"].items()}
    curve["rho"] = F.rho_of(kinds.get(case["kind"]), model_id(case)) if rho is None else rho
    labels = np.array([case["labels"].get(m, m * now) for m in MULTS], np.float64)
    acc, low, high = F._band(curve, labels, now)
    not_yet = fc["not_yet"] if "better than" in (fc["not_yet"] or "") else None     # at chance: not recomputed
    if not_yet is None and high[1] - low[1] > F.MAX_WIDTH:
        not_yet = "wide"
    res["not_yet"] = not_yet
    head = F._head_at(curve["A"], curve["B"], curve["c"], curve["share"] * labels)
    for j, m in enumerate(MULTS):
        res[f"pred{m}"], res[f"low{m}"], res[f"high{m}"] = float(acc[j]), float(low[j]), float(high[j])
        res[f"head{m}"] = float(np.ravel(head)[j])
        res[f"actual{m}"] = case["actual"].get(m)
    if case["actual"].get(4) is not None:
        target = case["actual"][4]
        truth = next(case["labels"][m] for m in MULTS if case["actual"][m] >= target)
        est = float(F._labels_for(curve["A"], curve["B"], curve["c"], curve["rho"], curve["share"], target))
        res["ltt"] = (est, truth)
    return res


def summarise(rows: list[dict], title: str) -> list[str]:
    """One table row: cases, not yet, MAE 2n/4n (naive), coverage, labels-to-target."""
    n = len(rows)
    ny = sum(1 for r in rows if r.get("not_yet"))
    ny10 = [r for r in rows if r["n"] >= 10]
    ny10_rate = (sum(1 for r in ny10 if r.get("not_yet")) / len(ny10)) if ny10 else float("nan")
    cells = [title, str(n), f"{ny / max(n, 1):.0%}", f"{ny10_rate:.0%}" if ny10 else "-"]
    live = [r for r in rows if not r.get("not_yet") and "pred1" in r]
    cover, cover_n = 0, 0
    for m in (2, 4):
        err = [abs(r[f"pred{m}"] - r[f"actual{m}"]) for r in live if r.get(f"actual{m}") is not None]
        naive = [abs(r["today"] - r[f"actual{m}"]) for r in live if r.get(f"actual{m}") is not None]
        cells += [f"{100 * np.mean(err):.1f} ({100 * np.mean(naive):.1f})" if err else "-"]
    for m in MULTS:
        for r in live:
            if r.get(f"actual{m}") is not None:
                cover_n += 1
                cover += r[f"low{m}"] <= r[f"actual{m}"] <= r[f"high{m}"]
    now = [abs(r["pred1"] - r["actual1"]) for r in live]
    cells.insert(4, f"{100 * np.mean(now):.1f}" if now else "-")
    cells += [f"{cover / cover_n:.0%} of {cover_n}" if cover_n else "-"]
    ltt = [r["ltt"] for r in live if "ltt" in r]
    if ltt:
        logs = [abs(math.log2(max(e, 1) / t)) if math.isfinite(e) else float("inf") for e, t in ltt]
        cells += [f"{np.median(logs):.2f}", f"{np.mean([x <= 1 for x in logs]):.0%}"]
    else:
        cells += ["-", "-"]
    secs = [r["seconds"] for r in rows]
    cells += [f"{np.median(secs):.2f}/{np.max(secs):.2f}"]
    return cells


def report(cases: list[dict], calibrate: bool) -> None:
    from nbml import forecast as F, kinds
    rows = [r for r in (evaluate(c) for c in cases) if r is not None]
    rhos = sorted({(r["kind"], family(r["model_id"]), F.rho_of(kinds.get(r["kind"]), r["model_id"])) for r in rows})
    print(f"constants: MIN_PER_CLASS {F.MIN_PER_CLASS}, MAX_WIDTH {F.MAX_WIDTH}, rho "
          f"{', '.join(f'{k} ({m}) {v}' for k, m, v in rhos)}, WIDEN {F.WIDEN}, "
          f"FLOOR {F.FLOOR}, TRAIN_SHARE {F.TRAIN_SHARE}")
    header = ["data set", "cases", "not yet", "not yet >=10/class", "MAE now", "MAE 2n (naive)", "MAE 4n (naive)",
              "80% coverage", "labels-to-target |log2|, median", "within 2x", "forecast s med/max"]
    table = [summarise([r for r in rows if r["set"] == s], s) for s in SETS if any(r["set"] == s for r in rows)]
    for per in PER_CLASS:
        sub = [r for r in rows if r["n"] == per]
        if sub:
            table.append(summarise(sub, f"all, {per} per class"))
    table.append(summarise(rows, "ALL"))
    print_table(header, table)
    print("MAE in points of accuracy; (naive) = today's accuracy (the model trained at n, on the test set) carried "
          "forward; coverage over now, 2n and 4n of the cases with a forecast")
    live = [r for r in rows if not r.get("not_yet") and "pred1" in r]
    print("signed error (forecast - actual), points, mean per data set at 2n / 4n: " + "; ".join(
        f"{s} {100 * np.mean([r['pred2'] - r['actual2'] for r in live if r['set'] == s and r.get('actual2') is not None]):+.1f}"
        f" / {100 * np.nanmean([r['pred4'] - r['actual4'] if r.get('actual4') is not None else np.nan for r in live if r['set'] == s]):+.1f}"
        for s in SETS if any(r["set"] == s for r in live)))
    worst = sorted(((abs(r[f"pred{m}"] - r[f"actual{m}"]), r, m) for r in live for m in (2, 4)
                    if r.get(f"actual{m}") is not None), key=lambda t: -t[0])[:5]
    print("largest errors: " + "; ".join(f"{r['set']} seed {r['seed']} n={r['n']} at {m}n: forecast "
                                        f"{r[f'pred{m}']:.3f} [{r[f'low{m}']:.3f}-{r[f'high{m}']:.3f}], actual "
                                        f"{r[f'actual{m}']:.3f}" for _, r, m in worst))
    if calibrate:
        print()
        print("calibration (in-sample: fitted on these same cases)")
        groups = sorted({(r["kind"], family(r["model_id"])) for r in rows})
        for kind, fam in groups:
            ratios = error_ratios(rows, kind, fam)
            if ratios:
                print(f"  {kind} ({fam}): the trained model's error / the head's, geometric mean "
                      f"{math.exp(np.mean(ratios)):.3f}, median {math.exp(np.median(ratios)):.3f} over {len(ratios)} "
                      f"points")
        print("out of sample: each seed's cases forecast with the geometric mean fitted on the other seeds' cases")
        table = []
        for kind, fam in groups:
            held = []
            for seed in sorted({r["seed"] for r in rows}):
                others = error_ratios(rows, kind, fam, skip_seed=seed)
                if others:
                    held += [r for r in (evaluate(c, math.exp(np.mean(others))) for c in cases
                                         if c["kind"] == kind and c["seed"] == seed
                                         and family(model_id(c)) == fam) if r is not None]
            if held:
                table.append(summarise(held, f"{kind} ({fam})"))
        if table:
            print_table(header, table)


def error_ratios(rows: list[dict], kind: str, fam: str, skip_seed: int | None = None) -> list[float]:
    """log(the trained model's error / the head's) at every horizon measured, for one kind and backbone family."""
    return [math.log(max(1 - r[f"actual{m}"], 0.005) / max(1 - r[f"head{m}"], 0.005))
            for r in rows if r["kind"] == kind and family(r["model_id"]) == fam and "head1" in r
            and r["seed"] != skip_seed for m in MULTS if r.get(f"actual{m}") is not None]


def speed(labels: int = 1000) -> None:
    """The forecast's own time with the embeddings cached: `labels` random labels of TREC-6 and SMS spam (texts, the
    costliest head) and every row of Titanic (tables), median of 3 after a first call."""
    import statistics
    import nbml
    print(f"speed: ds.forecast() with the embeddings cached, {labels:,} labels (Titanic: all its rows), median of 3")
    rows = []
    with tempfile.TemporaryDirectory(prefix="nbml-bench-forecast-speed-") as tmp:
        for name in ("trec6", "sms", "titanic"):
            frame = load(name)
            ds = nbml.Dataset(Path(tmp) / f"{name}.nbml")
            ids = add_pool(ds, KIND[name], frame)
            pick = np.random.default_rng(0).permutation(len(frame))[:labels]
            for c in sorted(frame["label"].unique()):
                sel = [ids[i] for i in pick if frame["label"].iloc[i] == c and ids[i] is not None]
                ds.set_label(sel, str(c))
            ds.embed(progress=False)
            ds.forecast()
            times = []
            for _ in range(3):
                t = time.perf_counter()
                f = ds.forecast(target=0.9)
                times.append(time.perf_counter() - t)
            rows.append([name, f"{f.used:,}", f"{statistics.median(times):.2f}", f"{max(times):.2f}",
                         f"{os.getloadavg()[0]:.1f}"])
            ds.close()
    print_table(["data set", "labels", "seconds (median)", "max", "load (1 min)"], rows)
    print("TARGET under 2 s for 1,000 labels: " + ("MET" if all(float(r[2]) < 2 for r in rows) else "NOT MET"))


def collect(args, out_raw: Path) -> list[dict]:
    cases = []
    sets = args.sets.split(",")
    per_class = [int(x) for x in args.per_class.split(",")]
    with tempfile.TemporaryDirectory(prefix="nbml-bench-forecast-") as tmp:
        frames = {name: load(name) for name in sets}
        for seed in range(args.seed_from, args.seed_from + args.seeds):    # outermost: a run cut short covers every set
            for name in sets:
                frame = frames[name]
                for n in per_class:
                    t = time.perf_counter()
                    try:
                        case = run_case(name, frame, seed, n, Path(tmp))
                    except Exception as e:           # a failed case is reported, not hidden
                        case = dict(set=name, kind=KIND[name], seed=seed, n=n, error=repr(e)[:300], actual={})
                    case["case_s"] = time.perf_counter() - t
                    case["load"] = os.getloadavg()
                    with open(out_raw, "a") as f:
                        f.write(json.dumps(case) + "\n")
                    fc = case.get("forecast") or {}
                    print(f"{name} seed {seed} n={n}: actual {case.get('actual')} "
                          f"forecast {[round(x, 3) for x in (fc.get('frame') or {}).get('accuracy', [])]} "
                          f"not yet {fc.get('not_yet')!r:.60} ({case['case_s']:.0f} s, forecast "
                          f"{fc.get('seconds', float('nan')):.2f} s, load {os.getloadavg()[0]:.1f})"
                          + (f" ERROR {case['error']}" if "error" in case else ""), flush=True)
                    cases.append(case)
    return cases


def read_cases(path: Path) -> list[dict]:
    """The cases of a raw file, the first of each (data set, seed, n) where runs appended the same case twice."""
    cases, seen = [], set()
    for line in Path(path).read_text().splitlines():
        case = json.loads(line)
        if (case["set"], case["seed"], case["n"]) in seen or "error" in case:
            continue
        seen.add((case["set"], case["seed"], case["n"]))
        case["actual"] = {int(k): v for k, v in case.get("actual", {}).items()}
        case["labels"] = {int(k): v for k, v in case.get("labels", {}).items()}
        cases.append(case)
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--seed-from", type=int, default=0, help="the first seed (to add seeds to an earlier run's raw file)")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--per-class", default=",".join(map(str, PER_CLASS)))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="BLAS/OpenMP/torch threads (0: leave as they are)")
    ap.add_argument("--report", default=None, help="recompute the report from a raw .jsonl file, no training")
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--speed", action="store_true", help="only the forecast's time at 1,000 labels")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    for cat in (FutureWarning, DeprecationWarning, UserWarning, RuntimeWarning):
        warnings.simplefilter("ignore", cat)
    if args.report:
        report(read_cases(Path(args.report)), args.calibrate)
        return
    if args.speed:
        print_machine("forecast: speed of ds.forecast() (offline, CPU)")
        print(f"load average at start {os.getloadavg()}")
        speed()
        print(f"load average at end {os.getloadavg()}")
        return
    if args.quick:
        args.seeds, args.sets, args.per_class = 2, "breast_cancer,trec6,digits", "10,20"
    date = datetime.date.today().isoformat()
    stem = f"forecast{'-quick' if args.quick else ''}-{date}"
    out = Path(args.out or Path(__file__).parent / "results" / f"{stem}.txt")
    sys.stdout = Tee(out, "a")
    print_machine("forecast: backtest of ds.forecast() (offline, CPU)")
    print(f"arguments: {' '.join(sys.argv[1:]) or '(none)'}; load average at start {os.getloadavg()}")
    if args.threads:
        import torch
        from threadpoolctl import threadpool_limits
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    import nbml  # noqa: F401
    raw = out.with_name(f"{out.stem}-raw.jsonl")
    t0 = time.perf_counter()
    cases = collect(args, raw)
    print()
    report(cases, calibrate=True)
    print(f"total {time.perf_counter() - t0:.0f} s; load average at end {os.getloadavg()}")
    print(f"written to {out}; raw cases in {raw}")


if __name__ == "__main__":
    main()
