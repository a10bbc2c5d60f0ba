"""Benchmark: nbml's server on Ray Serve (nbml.serve(engine="ray")) against the one-process server, same artifact,
same machine, same run.

For the image model (resnet18 at 224 px: the int8 export benchmarks/serve.py --int8 --keep DIR leaves in DIR when
`--image DIR` names it, else resnet18 with random weights exported in float32 here: speed does not depend on the
weights) and the text model (benchmarks/serve_text.py's SMS model, trained here, or `--text DIR`):

  one process   `nbml serve DIR` in its own process (today's server)
  ray x1        nbml.serve(DIR, engine="ray", replicas=1) on the local Ray nbml starts (2 CPUs)
  ray x2        the same deployment scaled to 2 replicas (handle.scale(2))

each measured with benchmarks/serve.py's load generator (keep-alive connections, requests built once): requests per
second at concurrency 8, p50 at concurrency 1, and the bare model call (one input, this process) for reference.
Then, on the image model with 2 replicas: a replica killed with SIGKILL during a load at concurrency 8 (failed
requests, seconds until 2 replicas run again, log rows against answered requests), and the cold start from zero
replicas (autoscale=(0, 1), idle 2 s: seconds of the first request).

The machine is shared with other engineers' work: the load averages before and after are printed, and figures from
a loaded machine are lower than an idle one's.

Targets (2-core machine): ray x2 at least 1.6x ray x1's throughput on the image model; p50 at concurrency 1 at most
1.5x the one-process server's; recovery after SIGKILL under 10 s with no answered request missing from the log;
cold start from zero under 5 s.

    .venv/bin/python benchmarks/serve_ray.py [--requests 160] [--image DIR] [--text DIR]
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
    from serve_text import data, models
    texts, labels, *_ = data(2000)
    folder, _, _ = models(tmp, texts, labels)
    return folder


def text_bodies() -> list[bytes]:
    import json
    from serve_text import data
    _, _, requests, _, _ = data(2000)
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


def one_model(name: str, folder: str, bodies: list[bytes], content_type: str, bare, n: int, tmp: str) -> dict:
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
    t0 = time.perf_counter()
    handle = nbml.serve(folder, engine="ray", replicas=1, port=free_port())
    out["ray x1"] = {"start_s": time.perf_counter() - t0, **measure(handle.port, bodies, n, content_type)}
    t0 = time.perf_counter()
    handle.scale(2)
    out["ray x2"] = {"start_s": time.perf_counter() - t0, **measure(handle.port, bodies, n, content_type)}
    out["_handle"] = handle
    print(f"\n{name}: one process ready in {started['ready_s']:.2f} s; Ray deployment with 1 replica "
          f"{out['ray x1']['start_s']:.1f} s (the local Ray's start included the first time), scale(2) "
          f"{out['ray x2']['start_s']:.1f} s; load now {loads()}")
    rows = []
    one = out["one process"]
    for k in ("bare call", "one process", "ray x1", "ray x2"):
        m = out[k]
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


def cold_start(folder: str) -> float:
    import nbml
    handle = nbml.serve(folder, engine="ray", autoscale=(0, 1), idle_s=2, port=free_port())
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
    args = p.parse_args()
    print_machine("nbml.serve(engine='ray') against the one-process server")
    print(f"load averages at the start: {loads()} (a machine shared with other engineers' work)")
    with tempfile.TemporaryDirectory() as tmp:
        image = args.image or make_model(tmp, "resnet18", 224)
        import json
        precision = json.load(open(os.path.join(image, "config.json")))["onnx"].get("precision", "float32")
        print(f"image model: {image} (resnet18 at 224 px, {precision})")
        bodies = [multipart(b) for b in make_jpegs()]
        ctype = "multipart/form-data; boundary=nbmlbenchboundary"
        img = one_model("image", image, bodies, ctype, bare_onnx(image), args.requests, tmp)
        handle = img.pop("_handle")
        k = sigkill(handle, bodies, ctype, max(200, args.requests))
        handle.stop()
        print(f"\nSIGKILL of one of 2 replicas during a load at c=8: {k['failed']} requests failed, {k['answered']} "
              f"answered, {k['log_rows']} log rows written meanwhile (each answered one is logged before it is "
              f"sent); 2 replicas running again {k['recovery_s']:.1f} s after the kill")
        cold = cold_start(image)
        print(f"cold start from zero replicas (autoscale=(0, 1), idle 2 s): first request answered in {cold:.2f} s")

        text = args.text or text_artifact(tmp)
        tbodies = text_bodies()
        import json as _j
        texts = [_j.loads(b)["text"] for b in tbodies]
        txt = one_model("text", text, tbodies, "application/json", bare_text(text, texts), args.requests, tmp)
        txt.pop("_handle").stop()

        ratio = img["ray x2"]["rps"] / img["ray x1"]["rps"]
        print("\nTargets:")
        print(f"  image: ray x2 / ray x1 throughput {ratio:.2f}x (target >= 1.6x): {'met' if ratio >= 1.6 else 'NOT met'}")
        for name, m in (("image", img), ("text", txt)):
            for k2 in ("ray x1", "ray x2"):
                r = m[k2]["p50_c1"] / m["one process"]["p50_c1"]
                print(f"  {name} {k2}: p50 c=1 {r:.2f}x the one-process server's (target <= 1.5x): "
                      f"{'met' if r <= 1.5 else 'NOT met'}")
        print(f"  recovery after SIGKILL {k['recovery_s']:.1f} s (target < 10 s): "
              f"{'met' if k['recovery_s'] < 10 else 'NOT met'}; log rows {k['log_rows']} >= answered "
              f"{k['answered']}: {'met' if k['log_rows'] >= k['answered'] else 'NOT met'}")
        print(f"  cold start {cold:.2f} s (target < 5 s): {'met' if cold < 5 else 'NOT met'}")
    print(f"load averages at the end: {loads()}")


if __name__ == "__main__":
    main()
