"""Images per second scoring the same generated files three ways: a plain loop over `model.predict_many` (torch,
one process), `nbml.predict_files(engine="local")` (the exported ONNX graph in a process pool) and
`nbml.predict_files(engine="ray")` (Ray Data on a local Ray). Each engine writes its own Parquet folder; the
predictions are checked to agree with the loop's.

    .venv/bin/python benchmarks/predict_files.py            # 10,000 files, resnet18 at 64 px, untrained
    .venv/bin/python benchmarks/predict_files.py --n 2000 --engines local
    .venv/bin/python benchmarks/predict_files.py --ray-init 4   # only: starting a local Ray, plain vs nbml's

`--ray-init N` starts a local Ray (2 CPUs, no dashboard) N times each way, alternately, each in a fresh Python
process as a user's first call would: a plain `ray.init`, and `nbml.batch_predict.start_local_ray` (the same
`ray.init`, its processes without jsonschema's rfc3987_syntax grammar). Ray gives its node fixed windows to come up,
so on a busy machine the plain start fails ("The current node timed out during startup"); the seconds are printed
either way, with the load average beside each.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import print_machine, print_table, write_noise_images  # noqa: E402


def loop_over_predict_many(artifact: str, files: list[str], bs: int):
    import pandas as pd

    import nbml
    model = nbml.load(artifact, device="cpu")
    started = time.perf_counter()
    frames = [model.predict_many(files[i:i + bs], bs=bs) for i in range(0, len(files), bs)]
    return time.perf_counter() - started, pd.concat(frames, ignore_index=True)


def engine_run(artifact: str, files: list[str], out: str, engine: str, bs: int, shard_size: int):
    import pandas as pd

    import nbml
    started = time.perf_counter()
    nbml.predict_files(artifact, files, out, engine=engine, batch_size=bs, shard_size=shard_size, quiet=True)
    return time.perf_counter() - started, pd.read_parquet(out)


RAY_START = """
import json, sys, time
started = time.perf_counter()
import ray
from nbml.batch_predict import start_local_ray
imported = time.perf_counter() - started
started = time.perf_counter()
try:
    if sys.argv[1] == "nbml":
        start_local_ray(2)
    else:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 configure_logging=False)
    error = None
except Exception as e:
    error = str(e).splitlines()[0][:90]
seconds = time.perf_counter() - started
ray.shutdown()
print(json.dumps({"import": imported, "init": seconds, "error": error}))
"""


def ray_start_times(rounds: int) -> None:
    """Start a local Ray `rounds` times each way (plain ray.init, nbml's start_local_ray), alternately."""
    rows, times = [], {"plain": [], "nbml": []}
    for i in range(rounds):
        for way in ("plain", "nbml"):
            load = os.getloadavg()[0]
            proc = subprocess.run([sys.executable, "-c", RAY_START, way], capture_output=True, text=True)
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            if not result["error"]:
                times[way].append(result["init"])
            rows.append([str(i + 1), "plain ray.init" if way == "plain" else "nbml start_local_ray",
                         f"{load:.2f}", f"{result['import']:.2f} s", f"{result['init']:.2f} s",
                         "started" if not result["error"] else f"FAILED: {result['error']}"])
    print_table(["round", "", "load (1 min)", "import ray", "ray.init", "result"], rows)
    for way, name in (("plain", "plain ray.init"), ("nbml", "nbml start_local_ray")):
        ok = times[way]
        typical = f"median {statistics.median(ok):.2f} s of those that started" if ok else "none started"
        print(f"{name}: {len(ok)}/{rounds} started; {typical}")


def agreement(table, reference, classes) -> str:
    import numpy as np
    diff = float(np.abs(table[classes].to_numpy() - reference[classes].to_numpy()).max())
    same = float((table["label"].to_numpy() == reference["label"].to_numpy()).mean())
    return f"labels {same:.2%} equal, max |p diff| {diff:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="files to score")
    parser.add_argument("--image-size", type=int, default=96, help="side of the generated images (px)")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--size", type=int, default=64, help="the model's input size")
    parser.add_argument("--bs", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=2_000)
    parser.add_argument("--engines", default="loop,local,ray")
    parser.add_argument("--ray-init", type=int, default=0, metavar="N",
                        help="only time starting a local Ray, N times each way")
    args = parser.parse_args()
    engines = args.engines.split(",")
    if args.ray_init:
        print_machine("Starting a local Ray: plain ray.init and nbml's start_local_ray")
        print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
        ray_start_times(args.ray_init)
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return

    from serve import make_model
    print_machine("nbml.predict_files: images per second")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="nbml-predict-files-") as tmp:
        artifact = make_model(tmp, args.arch, args.size)
        files = sorted(write_noise_images(os.path.join(tmp, "images"), args.n, size=args.image_size))
        print(f"{args.n:,} files ({args.image_size} px noise, PNG and JPEG), {args.arch} at {args.size} px "
              f"(untrained, 10 classes), batch size {args.bs}, shard size {args.shard_size}\n")
        times, tables = {}, {}
        if "loop" in engines:
            times["loop"], tables["loop"] = loop_over_predict_many(artifact, files, args.bs)
        ray_start = None
        for engine in ("local", "ray"):
            if engine not in engines:
                continue
            if engine == "ray":
                import ray

                from nbml.batch_predict import start_local_ray
                started = time.perf_counter()
                start_local_ray(os.cpu_count())     # what predict_files(engine="ray") starts for a call
                ray_start = time.perf_counter() - started
            times[engine], tables[engine] = engine_run(artifact, files, os.path.join(tmp, f"{engine}.parquet"),
                                                       engine, args.bs, args.shard_size)
            if engine == "ray":
                ray.shutdown()
        base = times.get("loop")
        names = {"loop": "loop over model.predict_many (torch)", "local": 'predict_files(engine="local")',
                 "ray": 'predict_files(engine="ray"), Ray already started'}
        classes = [c for c in tables[next(iter(tables))].columns if c.startswith("class_")]
        rows = []
        for name, seconds in times.items():
            rows.append([names[name], f"{seconds:.2f} s", f"{args.n / seconds:,.0f}",
                         f"{base / seconds:.2f}x" if base else "-",
                         agreement(tables[name], tables["loop"], classes) if "loop" in tables and name != "loop"
                         else ""])
        print_table(["", "time", "images/s", "vs loop", "predictions vs loop"], rows)
        if ray_start is not None:
            print(f"\nstart_local_ray ({os.cpu_count()} CPUs) took {ray_start:.2f} s before that; with it, "
                  f"engine=\"ray\" ran at {args.n / (times['ray'] + ray_start):,.0f} images/s")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
