"""Benchmark: nbml's text model server against a hand-written FastAPI + scikit-learn server, same data, same machine,
same run (issue 12, the serving line of "Benchmarks").

Trains nbml's text classifier on the first 600 distinct texts of the SMS spam data set (ham/spam; 2 epochs, seed 0),
exports it (`model.export`: ONNX + tokenizer.json + config.json), and fits on the same 600 labelled texts the
pipeline of benchmarks/_fastapi_text_server.py (TfidfVectorizer word 1-2 grams + char_wb 2-4 grams in a FeatureUnion,
LogisticRegression), pickled with joblib. Then, each in its own process on 127.0.0.1:

  FastAPI + scikit-learn  benchmarks/_fastapi_text_server.py under uvicorn (a sync endpoint, pydantic body)
  nbml                    `nbml serve DIR` (ONNX Runtime, dynamic batching, prediction log on, as it ships)

Both take the same JSON API, POST /predict {"text": "..."}. The requests are 64 SMS texts sampled from the rest of
the data set (texts the models did not train on), as JSON bodies. The load generator, warm-up, turn taking and
process handling are benchmarks/serve.py's (see its docstring): pre-built requests over keep-alive sockets, 8 rounds
per server, concurrency 1 and 8. The reference for latency is the bare model call: nbml.kinds.text_encoding.encode
of one text and ONNX Runtime's session.run on the same model.onnx with the server's session settings, timed in this
process between nbml's concurrency-1 requests, over the same texts in the same order.

Targets: nbml's p50 at concurrency 1 within 1.3x of the bare call; nbml at least 2x the FastAPI + scikit-learn
server's requests/s at concurrency 8 (as for images); `nbml serve` ready in under 1.5 s and under 300 MiB resident.

    .venv/bin/python benchmarks/serve_text.py [--requests 400] [--train 600] [--keep DIR]
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
JSON = "application/json"


def data(n_train: int, n_requests: int = 64):
    """(training texts, their labels, request texts, held-out texts, their labels)."""
    from nbml.datasets import sms_spam
    df = sms_spam().drop_duplicates("text").reset_index(drop=True)
    train, rest = df.head(n_train), df.iloc[n_train:]
    requests = rest.sample(n_requests, random_state=0)["text"].tolist()
    return train["text"].tolist(), train["label"].tolist(), requests, rest["text"].tolist(), rest["label"].tolist()


def models(home: str, texts: list[str], labels: list[str]) -> tuple[str, str, dict]:
    """(nbml's export folder, the pipeline's joblib file, seconds spent per step); what `home` already holds from an
    earlier run (--keep) is reused."""
    import joblib

    import nbml
    from _fastapi_text_server import build_pipeline
    folder, pipe_file, took = os.path.join(home, "sms-export"), os.path.join(home, "pipeline.joblib"), {}
    if not os.path.isfile(os.path.join(folder, "config.json")):
        ds = nbml.Dataset(os.path.join(home, "sms.nbml"))
        if len(ds) == 0:
            ds.add_texts(texts, labels=labels)
        t0 = time.perf_counter()
        model = nbml.train(ds, quiet=True, epochs=2, seed=0)
        took["nbml train"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        folder = str(model.export(folder))
        took["nbml export"] = time.perf_counter() - t0
        ds.close()
    if not os.path.isfile(pipe_file):
        t0 = time.perf_counter()
        joblib.dump(build_pipeline().fit(texts, labels), pipe_file)
        took["scikit-learn fit"] = time.perf_counter() - t0
    return folder, pipe_file, took


def runner_of(folder: str):
    """The server's text runner on `folder` (its tokenizer, max_tokens and ONNX session settings)."""
    from nbml.serving.decode_text import Inputs, TextOnnxRunner
    config = json.load(open(os.path.join(folder, "config.json")))
    inputs = Inputs(folder, config, None)
    return TextOnnxRunner(folder, config, None, inputs.tok, inputs.max_tokens), config


def bare_text_call(texts: list[str]):
    """measure()'s bare_call: encode one text + session.run, over `texts` in turn (as the requests go)."""
    import numpy as np

    def make(folder: str):
        runner, _ = runner_of(folder)
        return cycling_call(runner, [np.array([t], dtype=object) for t in texts])
    return make


def accuracies(folder: str, pipe_file: str, texts: list[str], labels: list[str]) -> tuple[float, float]:
    """Held-out accuracy of nbml's ONNX graph and of the pipeline: both servers answer sensibly."""
    import joblib
    import numpy as np
    runner, config = runner_of(folder)
    probs = np.concatenate([runner(np.array(texts[i:i + 64], dtype=object)) for i in range(0, len(texts), 64)])
    nbml_pred = [config["classes"][i] for i in probs.argmax(1)]
    sk_pred = joblib.load(pipe_file).predict(texts)
    y = np.array(labels)
    return float((np.array(nbml_pred) == y).mean()), float((sk_pred == y).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=400, help="requests per server and concurrency")
    ap.add_argument("--train", type=int, default=600, help="labelled texts both models train on")
    ap.add_argument("--keep", default=None, help="a folder for the project, export and pipeline, reused when run again")
    args = ap.parse_args()
    print_machine("benchmarks/serve_text.py: nbml serve (text) vs a hand-written FastAPI + scikit-learn server")
    print(f"load average at start: {' '.join(open('/proc/loadavg').read().split()[:3])}\n")
    texts, labels, requests, held_texts, held_labels = data(args.train)
    bodies = [json.dumps({"text": t}).encode() for t in requests]
    with tempfile.TemporaryDirectory() as tmp:
        home = args.keep or tmp
        os.makedirs(home, exist_ok=True)
        folder, pipe_file, took = models(home, texts, labels)
        acc_nbml, acc_sk = accuracies(folder, pipe_file, held_texts, held_labels)
        app_source = open(os.path.join(HERE, "_fastapi_text_server.py")).read()
        m = measure({BASELINE: pipe_file, "nbml": folder}, bodies, args.requests, tmp, app_source=app_source,
                    bare_call=bare_text_call(requests), content_type=JSON)
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in took.items()) or "models reused from --keep"
    print(f"models: nbml text classifier and TF-IDF + LogisticRegression, both on the first {len(texts)} distinct SMS "
          f"texts (ham/spam; {steps}); held-out accuracy on the other {len(held_texts)} texts: nbml {acc_nbml:.4f}, "
          f"scikit-learn {acc_sk:.4f}")
    print(f"requests: JSON {{\"text\": ...}} of {len(bodies)} held-out SMS texts "
          f"({sum(map(len, bodies)) // len(bodies)} bytes on average), {args.requests} per server and concurrency, "
          f"sent as pre-built bytes over keep-alive sockets\n")
    bare = print_results(m, [BASELINE, "nbml", WITH_HTTP_CLIENT], one="1 text, encode + session.run")
    print_targets(m["results"], bare, "nbml", [BASELINE])
    print(f"nbml's p50 at concurrency 1 through Python's http.client / the bare call: "
          f"{m['results'][(WITH_HTTP_CLIENT, 1)]['p50'] / bare['nbml']:.2f}x")
    print(f"p50 at concurrency 1, {BASELINE} / nbml's bare call: "
          f"{m['results'][(BASELINE, 1)]['p50'] / bare['nbml']:.2f}x")
    print(f"load average at the end: {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
