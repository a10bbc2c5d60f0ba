"""Benchmark: nbml's server on Ray Serve (nbml.serve(engine="ray")) against the one-process server, same artifact,
same machine, same run.

For the image model (resnet18 at 224 px: an int8 export when `--image DIR` names one, such as the one
benchmarks/serve.py --int8 --keep DIR leaves, else resnet18 with random weights exported in float32 here: speed
does not depend on the weights) and the text model (nbml's default, the fine-tuned sentence encoder in int8, trained
as benchmarks/serve_text.py does on 600 SMS texts, or `--text DIR`):

  one process        `nbml serve DIR` in its own process (today's server)
  ray x1 INGRESS     nbml.serve(DIR, engine="ray", replicas=1, ingress=INGRESS) on the local Ray nbml starts (2
                     CPUs): "proxy" (Ray Serve's Python proxy) and "haproxy" (HAProxy in front of replicas that
                     serve HTTP themselves, nbml's default), a local Ray each
  ray x2 INGRESS     the same deployment scaled to 2 replicas (handle.scale(2))

each measured with benchmarks/serve.py's load generator (keep-alive connections, requests built once): requests per
second at concurrency 8, p50 at concurrency 1, and the bare model call (one input, this process) for reference.
Then, on the image model with 2 replicas (the last ingress): a replica killed with SIGKILL during a load at concurrency 8 (failed
requests, seconds until 2 replicas run again, log rows against answered requests), and the cold start from zero
replicas (autoscale=(0, 1), idle 2 s: seconds of the first request).

The machine is shared with other engineers' work: the load averages before and after are printed, and figures from
a loaded machine are lower than an idle one's.

Targets (2-core machine): ray x2 at least 1.6x ray x1's throughput on the image model; p50 at concurrency 1 at most
1.5x the one-process server's; recovery after SIGKILL under 10 s with no answered request missing from the log;
cold start from zero under 5 s.

    .venv/bin/python benchmarks/serve_ray.py [--requests 160] [--image DIR] [--text DIR] [--ingress proxy,haproxy]
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import percentile, print_machine, print_table  # noqa: E402
from serve import (ROOT, bare_onnx, free_port, load, make_jpegs, make_model, multipart,  # noqa: E402
                   start_nbml)


def loads() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def measure(port: int, bodies: list[bytes], n: int, content_type: str) -> dict:
    load(port, bodies, 16, 4, content_type=content_type)                       # warm-up
    c8 = load(port, bodies, n, 8, content_type=content_type)
    c1 = load(port, bodies, max(40, n // 4), 1, content_type=content_type)
    return {"rps": len(c8["latencies"]) / c8["wall"], "p99_c8": percentile(c8["latencies"], 99) * 1000,
            "p50_c1": percentile(c1["latencies"], 50) * 1000, "errors": c8["errors"] + c1["errors"]}


def bare_p50(call, n: int = 60) -> float:
    return percentile([call() for _ in range(n)], 50) * 1000


def text_artifact(tmp: str) -> str:
    """nbml's default text model (the fine-tuned sentence encoder, int8) trained as benchmarks/serve_text.py does."""
    from serve_text import data, nbml_export
    texts, labels, *_ = data(600)
    return nbml_export(tmp, texts, labels, encoder=True)[0]


def text_bodies() -> list[bytes]:
    import json
    from serve_text import data
    _, _, requests, _, _ = data(600)
    return [json.dumps({"text": t}).encode() for t in requests]


def bare_text(folder: str, texts: list[str]):
    import numpy as np
    from serve_text import runner_of
    runner, _ = runner_of(folder)
    x = [np.array([t], dtype=object) for t in texts]
    state = {"i": 0}

    def call() -> float:
        state["i"] += 1
        t = time.perf_counter()
        runner(x[state["i"] % len(x)])
        return time.perf_counter() - t
    return call


def one_model(name: str, folder: str, bodies: list[bytes], content_type: str, bare, n: int, ingresses) -> dict:
    """The one-process server, then for each ingress a local Ray started for it: 1 replica, then scale(2). The
    last ingress's handle is returned running (under "_handle")."""
    import nbml
    out = {}
    port = free_port()
    proc, started = start_nbml(sys.executable, folder, port, dict(os.environ), ROOT)
    try:
        out["one process"] = measure(port, bodies, n, content_type)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    out["bare call"] = {"p50_c1": bare_p50(bare)}
    starts = []
    for i, ingress in enumerate(ingresses):
        t0 = time.perf_counter()
        handle = nbml.serve(folder, engine="ray", replicas=1, port=free_port(), ingress=ingress)
        x1 = f"ray x1 {ingress}"
        out[x1] = {"start_s": time.perf_counter() - t0, **measure(handle.port, bodies, n, content_type)}
        t0 = time.perf_counter()
        handle.scale(2)
        x2 = f"ray x2 {ingress}"
        out[x2] = {"start_s": time.perf_counter() - t0, **measure(handle.port, bodies, n, content_type)}
        starts.append(f"{ingress}: 1 replica {out[x1]['start_s']:.1f} s (the local Ray's start included), "
                      f"scale(2) {out[x2]['start_s']:.1f} s")
        if i == len(ingresses) - 1:
            out["_handle"] = handle
        else:
            t0 = time.perf_counter()
            handle.stop()
            starts[-1] += f", stop {time.perf_counter() - t0:.1f} s"
    print(f"\n{name}: one process ready in {started['ready_s']:.2f} s; Ray deployments: {'; '.join(starts)}; "
          f"load now {loads()}")
    rows = []
    one = out["one process"]
    for k, m in out.items():
        if k.startswith("_"):
            continue
        rows.append([k, f"{m['rps']:.1f}" if "rps" in m else "-", f"{m['p50_c1']:.2f}",
                     f"{m['p50_c1'] / one['p50_c1']:.2f}x", f"{m['p99_c8']:.1f}" if "p99_c8" in m else "-",
                     str(m.get("errors", "-"))])
    print_table(["", "req/s at c=8", "p50 c=1 ms", "p50 vs one process", "p99 c=8 ms", "errors"], rows)
    return out


def sigkill(handle, bodies: list[bytes], content_type: str, n: int) -> dict:
    """A load at concurrency 8 on 2 replicas; one replica killed a quarter of the way in."""
    import re

    import httpx

    from nbml.predlog import read_log
    text = httpx.get(f"{handle.direct_url}/metrics", timeout=30).text
    pids = sorted({int(p) for p in re.findall(r'replica="[^"]*-pid(\d+)"', text)})
    before = len(read_log(handle.folder))
    result: dict = {}

    def kill():
        time.sleep(1.0)
        os.kill(pids[0], signal.SIGKILL)
        result["killed"] = time.monotonic()

    killer = threading.Thread(target=kill)
    killer.start()
    r = load(handle.port, bodies, n, 8, content_type=content_type)
    killer.join()
    while handle.replicas < 2 and time.monotonic() - result["killed"] < 120:
        time.sleep(0.1)
    recovered = time.monotonic() - result["killed"]
    answered = len(r["latencies"]) - r["errors"]
    rows = len(read_log(handle.folder)) - before
    return {"failed": r["errors"], "answered": answered, "recovery_s": recovered, "log_rows": rows}


def cold_start(folder: str, ingress: str) -> float:
    import nbml
    handle = nbml.serve(folder, engine="ray", autoscale=(0, 1), idle_s=2, port=free_port(), ingress=ingress)
    try:
        import httpx
        body = multipart(make_jpegs(1)[0])
        headers = {"content-type": "multipart/form-data; boundary=nbmlbenchboundary"}
        httpx.post(f"{handle.direct_url}/predict", content=body, headers=headers, timeout=60)
        deadline = time.monotonic() + 120
        while handle.replicas > 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1.0)
        t0 = time.perf_counter()
        r = httpx.post(f"{handle.direct_url}/predict", content=body, headers=headers, timeout=120)
        took = time.perf_counter() - t0
        assert r.status_code == 200, r.text
        return took
    finally:
        handle.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=160)
    p.add_argument("--image", default=None, help="an exported image model (the int8 one of serve.py --int8 --keep)")
    p.add_argument("--text", default=None, help="an exported text model")
    p.add_argument("--ingress", default="proxy,haproxy",
                   help="the local Ray's ingresses to measure, in this order; the last one is nbml's default and "
                        "gets the SIGKILL and cold-start runs")
    args = p.parse_args()
    ingresses = args.ingress.split(",")
    last = ingresses[-1]
    print_machine("nbml.serve(engine='ray') against the one-process server")
    print(f"load averages at the start: {loads()} (a machine shared with other engineers' work)")
    with tempfile.TemporaryDirectory() as tmp:
        image = args.image or make_model(tmp, "resnet18", 224)
        import json
        precision = json.load(open(os.path.join(image, "config.json")))["onnx"].get("precision", "float32")
        print(f"image model: {image} (resnet18 at 224 px, {precision})")
        bodies = [multipart(b) for b in make_jpegs()]
        ctype = "multipart/form-data; boundary=nbmlbenchboundary"
        img = one_model("image", image, bodies, ctype, bare_onnx(image), args.requests, ingresses)
        handle = img.pop("_handle")
        k = sigkill(handle, bodies, ctype, max(200, args.requests))
        handle.stop()
        print(f"\nSIGKILL of one of 2 replicas ({last}) during a load at c=8: {k['failed']} requests failed, "
              f"{k['answered']} answered, {k['log_rows']} log rows written meanwhile (each answered one is logged "
              f"before it is sent); 2 replicas running again {k['recovery_s']:.1f} s after the kill")
        cold = cold_start(image, last)
        print(f"cold start from zero replicas ({last}; autoscale=(0, 1), idle 2 s): first request answered in "
              f"{cold:.2f} s")

        text = args.text or text_artifact(tmp)
        tbodies = text_bodies()
        texts = [json.loads(b)["text"] for b in tbodies]
        txt = one_model("text", text, tbodies, "application/json", bare_text(text, texts), args.requests, ingresses)
        txt.pop("_handle").stop()

        print("\nTargets:")
        for ingress in ingresses:
            ratio = img[f"ray x2 {ingress}"]["rps"] / img[f"ray x1 {ingress}"]["rps"]
            print(f"  image, {ingress}: ray x2 / ray x1 throughput {ratio:.2f}x (target >= 1.6x): "
                  f"{'met' if ratio >= 1.6 else 'NOT met'}")
        for name, m in (("image", img), ("text", txt)):
            for ingress in ingresses:
                for x in ("x1", "x2"):
                    r = m[f"ray {x} {ingress}"]["p50_c1"] / m["one process"]["p50_c1"]
                    print(f"  {name} ray {x} {ingress}: p50 c=1 {r:.2f}x the one-process server's (target <= 1.5x): "
                          f"{'met' if r <= 1.5 else 'NOT met'}")
        print(f"  recovery after SIGKILL {k['recovery_s']:.1f} s (target < 10 s): "
              f"{'met' if k['recovery_s'] < 10 else 'NOT met'}; log rows {k['log_rows']} >= answered "
              f"{k['answered']}: {'met' if k['log_rows'] >= k['answered'] else 'NOT met'}")
        print(f"  cold start {cold:.2f} s (target < 5 s): {'met' if cold < 5 else 'NOT met'}")
    print(f"load averages at the end: {loads()}")


if __name__ == "__main__":
    main()
