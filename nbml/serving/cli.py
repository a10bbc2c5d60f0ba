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
    return p


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
        run_foreground(args.folder, **kw)
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"nbml serve: {e}", file=sys.stderr)
        return 1
    return 0
