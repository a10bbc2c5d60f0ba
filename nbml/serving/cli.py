"""`nbml serve DIR`: serve an exported model from a shell until Ctrl-C or SIGTERM."""
from __future__ import annotations

import argparse
import os
import sys

TOKEN_ENV = "NBML_TOKEN"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nbml serve", description="Serve a model folder written by model.export(DIR).",
        epilog=f"A bearer token is read from the {TOKEN_ENV} environment variable (or --token, which other users "
               f"of this machine can see in the process list); with one, every request but the health checks "
               f"needs 'Authorization: Bearer <token>'.")
    p.add_argument("folder", metavar="DIR", help="the exported model folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                                                         "only; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 for any free port)")
    p.add_argument("--token", default=None, help=f"bearer token (prefer the {TOKEN_ENV} environment variable)")
    p.add_argument("--device", default="auto", help="auto (GPU with torch if there is one, else ONNX Runtime on "
                                                    "the CPU), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: every core)")
    p.add_argument("--max-batch", type=int, default=32, help="largest dynamic batch (default 32)")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="longest wait for a batch to fill while more requests are arriving (default 5)")
    p.add_argument("--max-body-mb", type=float, default=16.0, help="largest request body, MiB (default 16)")
    p.add_argument("--project", default=None, help="log predictions into this nbml project file instead of "
                                                   "DIR/predictions.sqlite")
    p.add_argument("--no-log", action="store_true", help="do not log predictions")
    p.add_argument("--log-images", type=int, default=0, help="also keep up to N input images in the log")
    p.add_argument("--log-texts", type=int, default=10_000,
                   help="text models: keep up to N input texts in the log (default 10000; 0 for none)")
    p.add_argument("--log-text-chars", type=int, default=2_000,
                   help="text models: characters of each text the log keeps (default 2000)")
    p.add_argument("--max-text-chars", type=int, default=100_000,
                   help="text models: longest text accepted, in characters (default 100000; 400 above it)")
    ray = p.add_argument_group("Ray Serve (--engine ray): the same server in replicas, on a local Ray or a cluster")
    ray.add_argument("--engine", choices=["process", "ray"], default="process",
                     help="process: one process (default); ray: Ray Serve replicas")
    ray.add_argument("--replicas", type=int, default=None, help="a fixed number of replicas (default 2)")
    ray.add_argument("--min-replicas", type=int, default=None, help="autoscaling: fewest replicas (0: none when idle)")
    ray.add_argument("--max-replicas", type=int, default=None, help="autoscaling: most replicas")
    ray.add_argument("--ray-address", default=None, help="the Ray cluster to serve on (default: a local Ray)")
    ray.add_argument("--ingress", choices=["haproxy", "proxy"], default=None,
                     help="the local Ray's ingress: HAProxy in front of the replicas (default where Ray has it) or "
                          "Ray Serve's Python proxy")
    return p


def _ray_engine(args, kw: dict) -> int:
    """`--engine ray`: serve on Ray Serve until Ctrl-C or SIGTERM, then delete the application."""
    import signal
    import threading
    from .server import serve
    autoscale = None
    if args.min_replicas is not None or args.max_replicas is not None:
        if args.replicas is not None:
            print("nbml serve: give --replicas or --min-replicas/--max-replicas, not both", file=sys.stderr)
            return 2
        low = args.min_replicas if args.min_replicas is not None else 1
        autoscale = (low, args.max_replicas if args.max_replicas is not None else max(low, 1))
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    handle = serve(args.folder, engine="ray", replicas=args.replicas, autoscale=autoscale,
                   ray_address=args.ray_address, ingress=args.ingress, **kw)
    shape = f"{autoscale[0]}-{autoscale[1]} replicas (autoscaling)" if autoscale else f"{handle.replicas} replicas"
    if handle.ingress:
        shape += f", {'HAProxy' if handle.ingress == 'haproxy' else 'Ray Serve proxy'} in front"
    print(f"nbml: serving {handle.name} on Ray Serve at {handle.direct_url} ({shape})\n"
          f"  POST {handle.direct_url}/predict   GET {handle.direct_url}/metrics\n  Ctrl-C to stop", flush=True)
    done.wait()
    handle.stop()
    print("nbml: stopped; the prediction log is written", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from .server import run_foreground
    dataset = None
    if args.project:
        from ..dataset import Dataset
        dataset = Dataset(args.project)
    kw = dict(host=args.host, port=args.port, dataset=dataset, device=args.device, threads=args.threads,
              token=args.token or os.environ.get(TOKEN_ENV) or None, max_batch=args.max_batch,
              max_wait_ms=args.max_wait_ms, max_body_bytes=int(args.max_body_mb * 2**20),
              log=not args.no_log, log_images=args.log_images, log_texts=args.log_texts,
              log_text_chars=args.log_text_chars, max_text_chars=args.max_text_chars)
    if dataset is not None:
        kw["max_pixels"] = dataset.max_pixels
    try:
        if args.engine == "ray":
            return _ray_engine(args, kw)
        run_foreground(args.folder, **kw)
    except (FileNotFoundError, ValueError, OSError, RuntimeError, ImportError) as e:
        print(f"nbml serve: {e}", file=sys.stderr)
        return 1
    return 0
