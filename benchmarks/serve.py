"""Benchmark: nbml's model server against a hand-written FastAPI + PyTorch server, same model, same machine, same run.

Builds a resnet18 classifier (random weights: speed does not depend on them) at 64 px with 10 classes, exports it
with `model.export`, and starts, each in its own process on 127.0.0.1:

  baseline  a FastAPI app written the way an engineer would by hand: `UploadFile`, Pillow decode, torchvision
            Resize + CenterCrop + Normalize, the torch model under `torch.inference_mode()`, one request at a time
  nbml      `nbml serve DIR` (ONNX Runtime, dynamic batching, prediction log on, as it ships)

and the baseline a second time with OMP_WAIT_POLICY=PASSIVE (see SERVERS below). A client in this process sends
the same JPEG files (256x256) as multipart uploads (one keep-alive connection per concurrent client) and reports
requests per second and p50 / p99 latency at concurrency 1 and 8. The load generator works as wrk does: each
request's bytes are built once, written to a plain socket, and the answer read by its Content-Length, so that the
client's own Python costs as little as it can in the latency it reports. For comparison, nbml's concurrency-1 p50
is also measured with Python's http.client (headers parsed into a message object, as requests and most Python
clients do), which adds 0.1-0.2 ms per request on this kind of machine. The servers take turns (8 rounds each,
after 250 warm-up requests each), so a slow spell of the machine hits every side alike. The reference for latency
is the bare ONNX Runtime call on one already-decoded image (the server's session settings), timed in this process
between nbml's concurrency-1 requests, while the servers are idle.

Targets: nbml at least 2x the baseline's throughput at concurrency 8; nbml's p50 at concurrency 1 within 1.3x of
the bare call.

    .venv/bin/python benchmarks/serve.py [--requests 400] [--size 64] [--arch resnet18]
"""
from __future__ import annotations

import argparse
import http.client
import io
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import percentile, print_machine, print_table  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOUNDARY = "nbmlbenchboundary"
# name -> extra environment. "baseline, passive OpenMP" is the same app with OMP_WAIT_POLICY=PASSIVE: torch's
# OpenMP threads then sleep instead of spinning between operators. On a small VM whose CPU time is capped, spinning
# threads can get the whole VM throttled for hundreds of milliseconds, so the default baseline may look far worse
# than it would on a dedicated machine; the 2x target is judged against the faster of the two baselines.
SERVERS = {"baseline": {}, "baseline, passive OpenMP": {"OMP_WAIT_POLICY": "PASSIVE"}, "nbml": {}}
WITH_HTTP_CLIENT = "nbml, through http.client"   # the same server, nbml's c1 p50 as a typical Python client sees it
WARMUP = 200   # requests per server before measuring: torch's first few hundred calls on this VM have long stalls

BASELINE = textwrap.dedent('''
    """A plain FastAPI + PyTorch image classifier server, as one would write it by hand."""
    import io, json, os

    import torch
    from fastapi import FastAPI, File, UploadFile
    from PIL import Image
    from safetensors.torch import load_file
    from torchvision import transforms

    from nbml.model import build_net   # only to rebuild the same architecture as the exported weights

    FOLDER = os.environ["MODEL_DIR"]
    config = json.load(open(os.path.join(FOLDER, "config.json")))
    model, _, _ = build_net(config["arch"], len(config["classes"]), pretrained=False, head=config["head"])
    model.load_state_dict(load_file(os.path.join(FOLDER, "model.safetensors")))
    model.eval()
    preprocess = transforms.Compose([
        transforms.Resize(config["size"]), transforms.CenterCrop(config["size"]), transforms.ToTensor(),
        transforms.Normalize(config["mean"], config["std"])])
    app = FastAPI()

    @app.post("/predict")
    async def predict(file: UploadFile = File(...)):
        image = Image.open(io.BytesIO(await file.read())).convert("RGB")
        with torch.inference_mode():
            probs = torch.softmax(model(preprocess(image)[None]), dim=1)[0]
        best = int(probs.argmax())
        return {"label": config["classes"][best],
                "probabilities": dict(zip(config["classes"], probs.tolist()))}
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"server on port {port} did not start in {timeout}s")


def make_model(folder: str, arch: str, size: int, n_classes: int = 10) -> str:
    import torch

    import nbml
    from nbml.model import build_net, new_config
    torch.manual_seed(0)
    net, source, head = build_net(arch, n_classes, pretrained=False)
    config = new_config(name="bench", arch=arch, classes=[f"class_{i}" for i in range(n_classes)], size=size,
                        mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], head=head, weights=source,
                        run_id=None, snapshot_id=None, metrics={})
    return str(nbml.Model(net, config, device="cpu").export(os.path.join(folder, "bench")))


def make_jpegs(n: int = 32, side: int = 256) -> list[bytes]:
    """Smooth random pictures (upsampled noise), JPEG quality 90: closer to photos than pure noise."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        small = Image.fromarray(rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8))
        buf = io.BytesIO()
        small.resize((side, side), Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def multipart(data: bytes) -> bytes:
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def encode_request(port: int, body: bytes) -> bytes:
    return (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; "
            f"boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


class RawClient:
    """One keep-alive connection that writes pre-built requests and reads each answer by its Content-Length."""

    def __init__(self, port: int, bodies: list[bytes]):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.requests = [encode_request(port, b) for b in bodies]
        self.pending = b""

    def post(self, i: int) -> int:
        """Send request i (mod the bodies), wait for the whole answer; its status."""
        self.sock.sendall(self.requests[i % len(self.requests)])
        data = self.pending
        while (end := data.find(b"\r\n\r\n")) < 0:
            data += self._recv()
        head = data[:end].decode("latin-1").lower()
        length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
        while len(data) < end + 4 + length:
            data += self._recv()
        self.pending = data[end + 4 + length:]
        return int(head.split(" ", 2)[1])

    def _recv(self) -> bytes:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self.sock.close()


class HttpClient:
    """The same through Python's http.client."""

    def __init__(self, port: int, bodies: list[bytes]):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.conn.connect()   # http.client writes headers and body separately: without this, Nagle adds ~40 ms
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.bodies = bodies
        self.headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}

    def post(self, i: int) -> int:
        self.conn.request("POST", "/predict", body=self.bodies[i % len(self.bodies)], headers=self.headers)
        response = self.conn.getresponse()
        response.read()
        return response.status

    def close(self) -> None:
        self.conn.close()


CLIENTS = {"raw": RawClient, "http.client": HttpClient}


def load(port: int, bodies: list[bytes], n_requests: int, concurrency: int, between=None, client: str = "raw") -> dict:
    """n_requests POSTs to /predict from `concurrency` threads, each with its own keep-alive connection.
    `between()`, if given (concurrency 1 only), runs after each request and its returned duration is collected."""
    lock = threading.Lock()
    state = {"next": 0, "errors": 0, "latencies": [], "between": []}

    def run():
        conn = CLIENTS[client](port, bodies)
        mine = []
        while True:
            with lock:
                i = state["next"]
                state["next"] += 1
            if i >= n_requests:
                break
            t = time.perf_counter()
            status = conn.post(i)
            mine.append(time.perf_counter() - t)
            if status != 200:
                with lock:
                    state["errors"] += 1
            if between is not None and concurrency == 1:
                state["between"].append(between())
        conn.close()
        with lock:
            state["latencies"] += mine

    threads = [threading.Thread(target=run) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0 - sum(state["between"])
    return {"latencies": state["latencies"], "wall": wall, "errors": state["errors"], "between": state["between"]}


def bare_onnx(folder: str, size: int):
    """The bare ONNX Runtime call on one decoded image, with the server's session settings: a callable."""
    import json

    import numpy as np

    from nbml.serving.runners import OnnxRunner
    runner = OnnxRunner(folder, json.load(open(os.path.join(folder, "config.json"))))
    x = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    for _ in range(30):
        runner(x)

    def call() -> float:
        t = time.perf_counter()
        runner(x)
        return time.perf_counter() - t
    return call


def rounds(targets: dict, bodies: list[bytes], n: int, concurrency: int, bare=None, n_rounds: int = 8) -> dict:
    """Each target (name -> (port, client)) in turn, `n_rounds` times, n / n_rounds requests a turn: a slow spell of
    the machine hits all alike. At concurrency 1 the bare call is timed between nbml's requests too, for the same
    reason."""
    merged = {k: {"lat": [], "wall": 0.0, "errors": 0} for k in targets}
    bare_times = []
    for _ in range(n_rounds):
        for k, (port, client) in targets.items():
            # the bare call follows nbml's requests only: the baseline's OpenMP threads keep spinning after a
            # request, which would slow the bare call and flatter nbml's ratio
            r = load(port, bodies, n // n_rounds, concurrency, between=bare if k.startswith("nbml") else None,
                     client=client)
            merged[k]["lat"] += r["latencies"]
            merged[k]["wall"] += r["wall"]
            merged[k]["errors"] += r["errors"]
            bare_times += r["between"]
    out = {k: {"rps": len(m["lat"]) / m["wall"], "p50": percentile(m["lat"], 50) * 1000,
               "p99": percentile(m["lat"], 99) * 1000, "errors": m["errors"], "n": len(m["lat"])}
           for k, m in merged.items()}
    return out, bare_times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=400, help="requests per server and concurrency")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--arch", default="resnet18")
    args = ap.parse_args()
    print_machine("benchmarks/serve.py: nbml serve vs a hand-written FastAPI + PyTorch server")
    python = sys.executable
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ROOT}
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_model(tmp, args.arch, args.size)
        with open(os.path.join(tmp, "baseline_app.py"), "w") as f:
            f.write(BASELINE)
        bodies = [multipart(b) for b in make_jpegs()]
        ports = {k: free_port() for k in SERVERS}   # dict order: the order of each round

        def command(k):
            if k == "nbml":
                return [python, "-m", "nbml.cli", "serve", folder, "--host", "127.0.0.1", "--port", str(ports[k])]
            return [python, "-m", "uvicorn", "baseline_app:app", "--host", "127.0.0.1", "--port", str(ports[k]),
                    "--log-level", "warning", "--no-access-log"]
        procs = {k: subprocess.Popen(command(k), cwd=tmp, env={**env, "MODEL_DIR": folder, **SERVERS[k]},
                                     stdout=subprocess.DEVNULL) for k in SERVERS}
        try:
            for k, p in procs.items():
                wait_until_up(ports[k], p)
            bare = bare_onnx(folder, args.size)
            for k in procs:   # warm-up: lazy imports, allocators, code pages of the libraries, thread pools
                load(ports[k], bodies, WARMUP, 8)
                load(ports[k], bodies, WARMUP // 4, 1)
            targets = {k: (ports[k], "raw") for k in SERVERS}
            c1, bare_times = rounds({**targets, WITH_HTTP_CLIENT: (ports["nbml"], "http.client")}, bodies,
                                    args.requests, 1, bare=bare)
            c8, _ = rounds(targets, bodies, args.requests, 8)
            results = {**{(k, 1): r for k, r in c1.items()}, **{(k, 8): r for k, r in c8.items()}}
            bare = percentile(bare_times, 50) * 1000
        finally:
            for p in procs.values():
                p.terminate()
            for p in procs.values():
                p.wait(30)

    print(f"model: {args.arch}, {args.size}x{args.size} px input, 10 classes, random weights; requests: multipart "
          f"upload of 256x256 JPEG files ({sum(map(len, bodies)) // len(bodies):,} bytes on average), "
          f"{args.requests} per server and concurrency, sent as pre-built bytes over keep-alive sockets\n")
    rows = []
    order = list(SERVERS) + [WITH_HTTP_CLIENT]
    for (k, c), r in sorted(results.items(), key=lambda kv: (kv[0][1], order.index(kv[0][0]))):
        rows.append([k, str(c), f"{r['n']}", f"{r['errors']}", f"{r['rps']:.1f}", f"{r['p50']:.2f}",
                     f"{r['p99']:.2f}"])
    rows.append(["bare ONNX Runtime call, 1 image", "-", str(len(bare_times)), "-", f"{1000 / bare:.1f}",
                 f"{bare:.2f}", f"{percentile(bare_times, 99) * 1000:.2f}"])
    print_table(["server", "concurrency", "requests", "errors", "req/s", "p50 ms", "p99 ms"], rows)
    baselines = [k for k in SERVERS if k != "nbml"]
    python_client = results[(WITH_HTTP_CLIENT, 1)]["p50"] / bare
    best = max(baselines, key=lambda k: results[(k, 8)]["rps"])
    speedup = results[("nbml", 8)]["rps"] / results[(best, 8)]["rps"]
    ratio = results[("nbml", 1)]["p50"] / bare
    print()
    for k in baselines:
        print(f"throughput at concurrency 8, nbml / {k}: {results[('nbml', 8)]['rps'] / results[(k, 8)]['rps']:.2f}x")
    print(f"target, nbml >= 2x the faster baseline ({best}) at concurrency 8: {speedup:.2f}x, "
          f"{'met' if speedup >= 2 else 'NOT met'}")
    print(f"target, nbml's p50 at concurrency 1 <= 1.3x the bare ONNX Runtime call: {ratio:.2f}x, "
          f"{'met' if ratio <= 1.3 else 'NOT met'}")
    print(f"nbml's p50 at concurrency 1 through Python's http.client / the bare call: {python_client:.2f}x")
    for k in baselines:
        print(f"p50 at concurrency 1, {k} / bare ONNX Runtime call: {results[(k, 1)]['p50'] / bare:.2f}x")


if __name__ == "__main__":
    main()
