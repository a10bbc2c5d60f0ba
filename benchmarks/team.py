"""Benchmark: eight annotators labelling one project at once, through the API, on PostgreSQL and on SQLite.

For each backend: a project of short texts (PostgreSQL: a throwaway cluster started here with fsync on, as
tests/pg.py starts it, on 127.0.0.1; SQLite: a file in the temporary folder, WAL, synchronous=FULL). Eight processes,
each its own `user`, loop for `--seconds`: `ds.next_items(1)` (a lease on the next free item of the shared
unlabelled queue), then `ds.set_label(ids, label)`, and print each item with its set_label latency once the call has
returned. One annotator is killed with SIGKILL half-way. Reported:

  labels/s            human labels in the project at the end / seconds
  set_label p50, p99  milliseconds, over every call of every annotator
  leased to two       items handed to two annotators (printed by two processes, or labelled by two authors): must be 0
  lost after SIGKILL  labels the killed annotator printed (set_label had returned) missing from the project: must be 0

    .venv/bin/python benchmarks/team.py [--seconds 60] [--annotators 8] [--items 30000]
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from _common import percentile, print_machine, print_table  # noqa: E402

ANNOTATOR = textwrap.dedent("""
    import sys, time, nbml
    ds = nbml.Dataset(sys.argv[1], user=sys.argv[2])
    print("ready", flush=True)
    start, stop = map(float, sys.stdin.readline().split())   # the same window for everyone, once all are ready
    while time.time() < start:
        time.sleep(0.01)
    n = 0
    while time.time() < stop:
        ids = ds.next_items(1, ttl=30)
        if not ids:
            break
        t = time.perf_counter()
        ds.set_label(ids, "abc"[n % 3])
        print(ids[0], f"{(time.perf_counter() - t) * 1000:.3f}", flush=True)
        n += 1
""")


def _read(proc, out: list) -> None:
    for line in proc.stdout:
        item, ms = line.split()
        out.append((int(item), float(ms)))


def run(where: str, annotators: int, seconds: float) -> dict:
    import nbml
    procs = [subprocess.Popen([sys.executable, "-c", ANNOTATOR, where, f"annotator{n}"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for n in range(annotators)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    start = time.time() + 0.5
    stop = start + seconds
    outs, readers = [], []
    for p in procs:
        p.stdin.write(f"{start} {stop}\n")
        p.stdin.flush()
        outs.append([])
        readers.append(threading.Thread(target=_read, args=(p, outs[-1]), daemon=True))
        readers[-1].start()
    victim = procs[-1]
    time.sleep(max(0.0, start + seconds / 2 - time.time()))
    os.kill(victim.pid, signal.SIGKILL)
    for p in procs:
        p.wait()
    for r in readers:
        r.join()
    ds = nbml.Dataset(where, user="checker")
    hist = ds.history()
    human = hist[hist["source"] == "human"]
    by_author = human.groupby("item_id")["author"].nunique()
    printed = [i for out in outs for i, _ in out]
    twice_printed = len(printed) - len(set(printed))
    labelled = dict(zip(human["item_id"], human["author"]))
    lost = sum(1 for i, _ in outs[-1] if labelled.get(i) != f"annotator{annotators - 1}")
    latencies = [ms for out in outs for _, ms in out]
    ds.close()
    return {"labels": len(human), "labels_s": len(human) / seconds, "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99), "two": int(twice_printed + (by_author > 1).sum()), "lost": lost,
            "killed_printed": len(outs[-1]), "per_annotator": [len(o) for o in outs]}


def project(where: str, items: int) -> None:
    import nbml
    ds = nbml.Dataset(where, user="setup")
    ds.add_texts([f"ticket {i}: the customer writes about order {i * 7919 % 100003}" for i in range(items)])
    ds.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--annotators", type=int, default=8)
    ap.add_argument("--items", type=int, default=30000)
    args = ap.parse_args()
    print_machine("nbml team labelling: annotators on one project, PostgreSQL and SQLite")
    print(f"load average at start: {os.getloadavg()}")
    from pg import Cluster, binaries
    bindir = binaries()
    if bindir is None:
        sys.exit("PostgreSQL is not installed: apt-get install postgresql")
    results = {}
    cluster = Cluster(bindir, durable=True)
    try:
        url = cluster.new_database()
        project(url, args.items)
        results["PostgreSQL 15 (fsync on)"] = run(url, args.annotators, args.seconds)
    finally:
        cluster.stop()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "team.nbml")
        project(path, args.items)
        results["SQLite (WAL, synchronous=FULL)"] = run(path, args.annotators, args.seconds)
    print(f"\n{args.annotators} annotator processes, {args.seconds:.0f} s each backend, {args.items} items; "
          f"annotator {args.annotators - 1} killed with SIGKILL at {args.seconds / 2:.0f} s")
    rows = [[name, f"{r['labels_s']:.1f}", f"{r['p50']:.1f}", f"{r['p99']:.1f}", str(r["two"]), str(r["lost"]),
             str(r["killed_printed"])] for name, r in results.items()]
    print_table(["backend", "labels/s", "set_label p50 ms", "p99 ms", "leased to two", "lost after SIGKILL",
                 "labels of the killed one"], rows)
    for name, r in results.items():
        print(f"{name}: labels per annotator {r['per_annotator']}")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
