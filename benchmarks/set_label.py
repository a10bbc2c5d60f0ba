"""Benchmark: latency of `Dataset.set_label(item_id, label)` and `Dataset.undo()` against a raw durable write.

Builds a project of 2,000 small generated images in a temporary directory, then times, in the same run and
interleaved call by call (so a change in the disk's fsync speed hits both alike):

  baseline  a raw sqlite3 connection (WAL, synchronous=FULL) on a similar items + labels table pair, doing
            BEGIN IMMEDIATE; one UPDATE; one INSERT; COMMIT per call -- the floor for one durable write
  nbml      ds.set_label(item_id, label) over 1,000 calls, cycling items and 10 labels
  nbml      ds.undo() over 200 calls (each undoes one of the label changes above)

and reports p50 / p99 / mean milliseconds and the ratio of the p50s.

    .venv/bin/python benchmarks/set_label.py [--items 2000] [--calls 1000] [--undos 200]
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import percentile, print_machine, print_table, write_noise_images  # noqa: E402

LABELS = [f"class_{i:02d}" for i in range(10)]
WARMUP = 10


class RawStore:
    """The durable-write floor: raw sqlite3, WAL + synchronous=FULL, one UPDATE + one INSERT + COMMIT per call."""

    def __init__(self, db_path: str, n_items: int):
        self.n_items = n_items
        self.conn = conn = sqlite3.connect(db_path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript("""
            CREATE TABLE items (id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'ok',
                                label TEXT, label_source TEXT, label_time REAL);
            CREATE INDEX ix_items_status_label ON items(status, label);
            CREATE TABLE labels (id INTEGER PRIMARY KEY, item_id INTEGER NOT NULL REFERENCES items(id),
                                 value TEXT, source TEXT NOT NULL, time REAL NOT NULL, action_id INTEGER);
            CREATE INDEX ix_labels_item ON labels(item_id);
        """)
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO items (id, sha256, label, label_source) VALUES (?, ?, ?, 'import')",
                         [(i + 1, f"{i:064x}", LABELS[i % len(LABELS)]) for i in range(n_items)])
        conn.execute("COMMIT")

    def write(self, k: int) -> None:
        item, label, now = k % self.n_items + 1, LABELS[(k * 7 + 3) % len(LABELS)], time.time()
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE items SET label=?, label_source='human', label_time=? WHERE id=?", (label, now, item))
        conn.execute("INSERT INTO labels (item_id, value, source, time) VALUES (?, ?, 'human', ?)",
                     (item, label, now))
        conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class Timer:
    """Wall time and CPU time (this process) of each call."""

    def __init__(self):
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def __call__(self, fn, *a):
        c, t = time.process_time(), time.perf_counter()
        out = fn(*a)
        self.wall.append(time.perf_counter() - t)
        self.cpu.append(time.process_time() - c)
        return out


def stats_ms(xs: list[float]) -> tuple[float, float, float]:
    return percentile(xs, 50) * 1e3, percentile(xs, 99) * 1e3, statistics.fmean(xs) * 1e3


def interleaved(a, b, k: int) -> None:
    """Run a() and b() back to back, alternating which goes first, so both see the same disk state."""
    if k % 2:
        b()
        a()
    else:
        a()
        b()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--undos", type=int, default=200)
    args = ap.parse_args()

    print_machine("set_label / undo latency: nbml vs raw durable sqlite3 write")
    import nbml
    Dataset = nbml.Dataset

    with tempfile.TemporaryDirectory(prefix="nbml-bench-label-") as tmp:
        folder = os.path.join(tmp, "images")
        write_noise_images(folder, args.items, n_classes=len(LABELS))
        ds = Dataset(os.path.join(tmp, "bench.nbml"))
        report = ds.add_images(folder, progress=False)
        ids = report.added
        raw = RawStore(os.path.join(tmp, "raw.sqlite"), args.items)
        print(f"project: {len(ids)} items added ({len(report.duplicates)} duplicates, "
              f"{len(report.skipped)} skipped), {len(ds.classes)} classes; sqlite {sqlite3.sqlite_version}")
        print()

        # item cycles through the project, label cycles through the 10 classes
        def call(k: int) -> tuple[int, str]:
            return ids[k % len(ids)], LABELS[(k * 7 + 3) % len(LABELS)]

        expected: dict[int, list[str | None]] = {i: [ds.item(i)["label"]] for i in ids}
        history = []
        for k in range(WARMUP):
            item, label = call(k)
            ds.set_label(item, label)
            raw.write(k)
            expected[item].append(label)
            history.append(item)

        base, nb = Timer(), Timer()
        for k in range(args.calls):
            item, label = call(k)
            interleaved(lambda: base(raw.write, WARMUP + k), lambda: nb(ds.set_label, item, label), k)
            expected[item].append(label)
            history.append(item)

        base_u, und = Timer(), Timer()
        undo_results = []
        for k in range(args.undos):
            interleaved(lambda: base_u(raw.write, WARMUP + args.calls + k),
                        lambda: undo_results.append(und(ds.undo)), k)

        # Correctness spot-check (not timed): each undo reverted the latest label call, newest first.
        problems = []
        for j, res in enumerate(undo_results):
            item = history[-1 - j]
            if res is None or res.get("kind") != "label" or res.get("items") != [item]:
                problems.append(f"undo #{j + 1} returned {res!r}, expected a label undo of item {item}")
            expected[item].pop()
        for item in ids:
            if ds.item(item)["label"] != expected[item][-1]:
                problems.append(f"item {item}: label {ds.item(item)['label']!r}, expected {expected[item][-1]!r}")
        ds.close()
        raw.close()

    b50 = percentile(base.wall, 50)
    bu50 = percentile(base_u.wall, 50)

    def row(name, t: Timer, ref50: float):
        p50, p99, mean = stats_ms(t.wall)
        return [name, str(len(t.wall)), f"{p50:.3f}", f"{p99:.3f}", f"{mean:.3f}",
                f"{statistics.fmean(t.cpu) * 1e3:.3f}", f"{percentile(t.wall, 50) / ref50:.2f}"]

    rows = [
        row("baseline: raw sqlite3 UPDATE+INSERT+COMMIT", base, b50),
        row("nbml: ds.set_label(item_id, label)", nb, b50),
        row("baseline: raw sqlite3 (during undo phase)", base_u, bu50),
        row("nbml: ds.undo()", und, bu50),
    ]
    print("all WAL + synchronous=FULL in the same temp directory; each nbml call is interleaved with one raw call")
    print(f"(alternating order) so both see the same disk state; {WARMUP} untimed warm-up calls each")
    print_table(["operation", "calls", "p50 ms", "p99 ms", "mean ms", "cpu ms/call", "p50 x baseline"], rows)
    print()
    print(f"ratio of p50s, set_label / raw durable write: {percentile(nb.wall, 50) / b50:.2f}x")
    print(f"ratio of p50s, undo / raw durable write:      {percentile(und.wall, 50) / bu50:.2f}x")
    print(f"CPU per call (excludes waiting on fsync): set_label {statistics.fmean(nb.cpu) * 1e3:.3f} ms, "
          f"undo {statistics.fmean(und.cpu) * 1e3:.3f} ms, raw {statistics.fmean(base.cpu) * 1e3:.3f} ms")
    print(f"undo p50 first 50 calls: {percentile(und.wall[:50], 50) * 1e3:.3f} ms, "
          f"last 50 calls: {percentile(und.wall[-50:], 50) * 1e3:.3f} ms")
    if problems:
        print(f"CHECK FAILED: {len(problems)} problem(s) in label/undo state, first: {problems[0]}")
    else:
        print(f"check: every undo reverted the latest label call and all {len(ids)} labels match the expected state")


if __name__ == "__main__":
    main()
