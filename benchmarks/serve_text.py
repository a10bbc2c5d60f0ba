"""Benchmark: nbml's text model server against a hand-written FastAPI server, same data, same machine, same run
(issue 12, the serving line of "Benchmarks"; issue 25 for the encoder).

`--model encoder` (default): nbml's default text model (all-MiniLM-L6-v2 fine-tuned on pairs of the first 600
distinct SMS texts, ham/spam, then a logistic head), exported with `quantize="int8"` (kept when within 0.5 point of
float32 on the validation texts), against FastAPI + sentence-transformers + scikit-learn (benchmarks/_fastapi_st_server.py:
the pretrained all-MiniLM-L6-v2, the same network, and a LogisticRegression on its embeddings of the same 600 texts;
needs `pip install --no-deps sentence-transformers`). `--model static`: nbml's static model (2 epochs) against
FastAPI + scikit-learn (benchmarks/_fastapi_text_server.py: TF-IDF word 1-2 grams + char_wb 2-4 grams, a
LogisticRegression). Each server in its own process on 127.0.0.1:

  the baseline            uvicorn, a sync endpoint, pydantic body
  nbml                    `nbml serve DIR` (ONNX Runtime, dynamic batching, prediction log on, as it ships)

Both take the same JSON API, POST /predict {"text": "..."}. The requests are 64 SMS texts sampled from the rest of
the data set (texts the models did not train on), as JSON bodies. The load generator, warm-up, turn taking and
process handling are benchmarks/serve.py's (see its docstring): pre-built requests over keep-alive sockets, 8 rounds
per server, concurrency 1 and 8. The reference for latency is the bare model call: the server's runner on one text
(tokenise, then ONNX Runtime's session.run on the same model.onnx with the server's session settings), timed in this
process between nbml's concurrency-1 requests, over the same texts in the same order.

Targets: nbml's p50 at concurrency 1 within 1.3x of the bare call; nbml at least 2x the baseline's requests/s at
concurrency 8; `nbml serve` ready in under 1.5 s and under 300 MiB resident.

    .venv/bin/python benchmarks/serve_text.py [--model encoder|static] [--requests 400] [--train 600] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cycling_call, print_machine  # noqa: E402
from serve import WITH_HTTP_CLIENT, measure, print_results, print_targets  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BASELINE = "FastAPI + scikit-learn"
BASELINE_ENCODER = "FastAPI + sentence-transformers + scikit-learn"
JSON = "application/json"


def data(n_train: int, n_requests: int = 64):
    """(training texts, their labels, request texts, held-out texts, their labels)."""
    from nbml.datasets import sms_spam
    df = sms_spam().drop_duplicates("text").reset_index(drop=True)
    train, rest = df.head(n_train), df.iloc[n_train:]
    requests = rest.sample(n_requests, random_state=0)["text"].tolist()
    return train["text"].tolist(), train["label"].tolist(), requests, rest["text"].tolist(), rest["label"].tolist()


def nbml_export(home: str, texts: list[str], labels: list[str], encoder: bool) -> tuple[str, dict]:
    """nbml's export folder (its default text model, int8 when kept, or the static model) and the seconds spent per
    step; what `home` already holds from an earlier run (--keep) is reused."""
    import nbml
    folder, took = os.path.join(home, "sms-export"), {}
    if not os.path.isfile(os.path.join(folder, "config.json")):
        ds = nbml.Dataset(os.path.join(home, "sms.nbml"))
        if len(ds) == 0:
            ds.add_texts(texts, labels=labels)
        t0 = time.perf_counter()
        model = (nbml.train(ds, quiet=True, seed=0) if encoder else
                 nbml.train(ds, arch="wordllama-tfidf", quiet=True, epochs=2, seed=0))
        took["nbml train"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        folder = str(model.export(folder, quantize="int8" if encoder else None, quiet=True))
        took["nbml export"] = time.perf_counter() - t0
        ds.close()
    return folder, took


def models(home: str, texts: list[str], labels: list[str], encoder: bool) -> tuple[str, str, dict]:
    """(nbml's export folder, the baseline's model (the pipeline's joblib file, or a folder with the encoder and its
    head), seconds spent per step); what `home` already holds from an earlier run (--keep) is reused."""
    import joblib
    folder, took = nbml_export(home, texts, labels, encoder)
    base = os.path.join(home, "st-baseline" if encoder else "pipeline.joblib")
    if encoder and not os.path.isdir(base):
        t0 = time.perf_counter()
        st_baseline(base, texts, labels)
        took["sentence-transformers + scikit-learn fit"] = time.perf_counter() - t0
    elif not encoder and not os.path.isfile(base):
        from _fastapi_text_server import build_pipeline
        t0 = time.perf_counter()
        joblib.dump(build_pipeline().fit(texts, labels), base)
        took["scikit-learn fit"] = time.perf_counter() - t0
    return folder, base, took


def st_baseline(folder: str, texts: list[str], labels: list[str]) -> None:
    """The hand-written encoder server's model: the pretrained all-MiniLM-L6-v2 (the same network nbml fine-tunes,
    so the same cost per request) as a sentence-transformers folder, and a LogisticRegression on its embeddings."""
    import shutil

    import joblib
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression

    from nbml.kinds.text_encoder import resolve_encoder
    shutil.copytree(resolve_encoder(None, download=False).folder, os.path.join(folder, "encoder"))
    encoder = SentenceTransformer(os.path.join(folder, "encoder"), device="cpu")
    joblib.dump(LogisticRegression(max_iter=2000).fit(encoder.encode(texts), labels),
                os.path.join(folder, "head.joblib"))


def runner_of(folder: str):
    """The server's text runner on `folder` (its tokenizer, max_tokens and ONNX session settings)."""
    from nbml.kinds.text_serving import EncoderOnnxRunner, Inputs, TextOnnxRunner
    config = json.load(open(os.path.join(folder, "config.json")))
    inputs = Inputs(folder, config, None)
    runner = EncoderOnnxRunner if inputs.encoder else TextOnnxRunner
    return runner(folder, config, None, inputs.tok, inputs.max_tokens), config


def bare_text_call(texts: list[str]):
    """measure()'s bare_call: encode one text + session.run, over `texts` in turn (as the requests go)."""
    import numpy as np

    def make(folder: str):
        runner, _ = runner_of(folder)
        return cycling_call(runner, [np.array([t], dtype=object) for t in texts])
    return make


def accuracies(folder: str, base: str, texts: list[str], labels: list[str], encoder: bool) -> tuple[float, float]:
    """Held-out accuracy of nbml's ONNX graph and of the baseline's model: both servers answer sensibly."""
    import joblib
    import numpy as np
    runner, config = runner_of(folder)
    probs = np.concatenate([runner(np.array(texts[i:i + 64], dtype=object)) for i in range(0, len(texts), 64)])
    nbml_pred = [config["classes"][i] for i in probs.argmax(1)]
    if encoder:
        from sentence_transformers import SentenceTransformer
        emb = SentenceTransformer(os.path.join(base, "encoder"), device="cpu").encode(texts, batch_size=64)
        sk_pred = joblib.load(os.path.join(base, "head.joblib")).predict(emb)
    else:
        sk_pred = joblib.load(base).predict(texts)
    y = np.array(labels)
    return float((np.array(nbml_pred) == y).mean()), float((sk_pred == y).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=400, help="requests per server and concurrency")
    ap.add_argument("--train", type=int, default=600, help="labelled texts both models train on")
    ap.add_argument("--keep", default=None, help="a folder for the project, export and pipeline, reused when run again")
    ap.add_argument("--model", choices=["encoder", "static"], default="encoder",
                    help="nbml's default text model (a fine-tuned sentence encoder, int8 when kept) against FastAPI + "
                         "sentence-transformers + scikit-learn, or the static model against FastAPI + scikit-learn")
    args = ap.parse_args()
    encoder = args.model == "encoder"
    if encoder:
        os.environ.pop("NBML_TEXT_ENCODER", None)
    baseline = BASELINE_ENCODER if encoder else BASELINE
    print_machine(f"benchmarks/serve_text.py: nbml serve (text, {args.model} model) vs a hand-written {baseline} "
                  f"server")
    print(f"load average at start: {' '.join(open('/proc/loadavg').read().split()[:3])}\n")
    texts, labels, requests, held_texts, held_labels = data(args.train)
    bodies = [json.dumps({"text": t}).encode() for t in requests]
    with tempfile.TemporaryDirectory() as tmp:
        home = args.keep or tmp
        os.makedirs(home, exist_ok=True)
        folder, base, took = models(home, texts, labels, encoder)
        acc_nbml, acc_base = accuracies(folder, base, held_texts, held_labels, encoder)
        app = "_fastapi_st_server.py" if encoder else "_fastapi_text_server.py"
        app_source = open(os.path.join(HERE, app)).read()
        m = measure({baseline: base, "nbml": folder}, bodies, args.requests, tmp, app_source=app_source,
                    bare_call=bare_text_call(requests), content_type=JSON)
        precision = json.load(open(os.path.join(folder, "config.json")))["onnx"].get("precision")
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in took.items()) or "models reused from --keep"
    what = ("nbml's default model (all-MiniLM-L6-v2 fine-tuned on pairs, then a head; model.onnx " + str(precision)
            + ") and the pretrained all-MiniLM-L6-v2 + LogisticRegression" if encoder
            else "nbml's static text model and TF-IDF + LogisticRegression")
    print(f"models: {what}, both on the first {len(texts)} distinct SMS texts (ham/spam; {steps}); held-out accuracy "
          f"on the other {len(held_texts)} texts: nbml {acc_nbml:.4f}, baseline {acc_base:.4f}")
    print(f"requests: JSON {{\"text\": ...}} of {len(bodies)} held-out SMS texts "
          f"({sum(map(len, bodies)) // len(bodies)} bytes on average), {args.requests} per server and concurrency, "
          f"sent as pre-built bytes over keep-alive sockets\n")
    bare = print_results(m, [baseline, "nbml", WITH_HTTP_CLIENT], one="1 text, encode + session.run")
    print_targets(m["results"], bare, "nbml", [baseline])
    print(f"nbml's p50 at concurrency 1 through Python's http.client / the bare call: "
          f"{m['results'][(WITH_HTTP_CLIENT, 1)]['p50'] / bare['nbml']:.2f}x")
    print(f"p50 at concurrency 1, {baseline} / nbml's bare call: "
          f"{m['results'][(baseline, 1)]['p50'] / bare['nbml']:.2f}x")
    print(f"load average at the end: {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
