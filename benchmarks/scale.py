"""Benchmark: a project of 1,000,000 items against 100 and 100,000: paging, labelling, ds.df, ds.stats(), ds.similar
and its vector index.

Each project is built in a temporary directory (or --keep DIR, reused when there): the first 100 items are the 100
64x64 noise images of benchmarks/widgets.py (ingested with ds.add_images), the rest distinct 16x16 BMP noise files
(the files of widgets.py's write_tiny_bmps, their bytes written directly and hashed as written) inserted in bulk
with sqlite3, with their real sha256, size and mtime.
Embeddings are written directly (nbml.embeddings' float16 file and its rows in the store): 512-d clustered vectors
(1,000 centres in a 64-d latent space, spread within each, projected to 512-d, ReLU'd like pooled CNN features), for
a backbone named `bench:clustered-512` that is never run. 1% of the items (at most 2,000) are labelled cat, dog or
bird by their cluster.

Measured in this process, on the paths the label widget takes (as tests drive it: the front end's messages sent to
`_dispatch`): first page (`ds.label(page_size=48, filter="all")` built), a page turn, the last page, the first
unlabelled page, and a key press (label one item: the store write until the `done` reply, then with the page
refresh that follows). Then `ds.df`, `ds.stats()`, `ds.similar` (first call: embeddings loaded and the index built
or loaded; then p50 over 100 queries), its recall@20 against exact search over the same embeddings, the index's
build time and memory, exact search p50, and `ds.suggest(strategy="diverse")`.

With --libraries, also USearch, hnswlib and FAISS (IVF and HNSW) on the same vectors, outside nbml: build time,
memory, p50 and recall@20 at a few search widths (hnswlib builds from source; it is skipped when not installed).

Prints figures only; asserts nothing about speed.

    .venv/bin/python benchmarks/scale.py [--sizes 100,100000,1000000] [--keep DIR] [--libraries N]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import percentile, print_machine, print_table, write_noise_images  # noqa: E402

DIM = 512
MODEL_ID = "bench:clustered-512"
CLASSES = ["cat", "dog", "bird"]
QUERIES = 100
K = 20


# -- generated data ---------------------------------------------------------------------------------------------
def clustered_vectors(n: int, dim: int = DIM, seed: int = 0, centres: int = 1000, latent: int = 64,
                      chunk: int = 100_000):
    """Yields (float16 vectors [m, dim], cluster of each) for n items in chunks: points spread around `centres`
    centres in a `latent`-d space, projected to `dim`-d with a little noise and ReLU'd, so that neighbours are
    neither trivial (well-separated clusters) nor meaningless (uniform noise)."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(centres, latent)).astype(np.float32)
    project = (rng.normal(size=(latent, dim)) / np.sqrt(latent)).astype(np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        cluster = rng.integers(0, centres, m)
        z = centre[cluster] + 0.8 * rng.normal(size=(m, latent)).astype(np.float32)
        x = np.maximum(z @ project + 0.2 * rng.normal(size=(m, dim)).astype(np.float32), 0)
        yield x.astype(np.float16), cluster


def backbone(kind: str = "image"):
    """The backbone the generated embeddings are filed under; it is never run (every item has its embedding)."""
    from nbml.embeddings import Backbone

    def never():
        raise RuntimeError("benchmarks/scale.py writes every embedding; its backbone is never run")
    return Backbone(MODEL_ID, "generated clustered vectors (benchmarks/scale.py)", "none", 0, (), (), "none",
                    loader=never, kind=kind)


def write_embeddings(ds, bb, vectors, start: int = 0) -> np.ndarray:
    """File `vectors` (chunks from clustered_vectors) as the embeddings of the project's items in id order from
    the `start`-th on, as nbml.embeddings stores computed ones. Returns the cluster of each item."""
    from nbml.embedding_store import VectorFile
    shas = ds._item_columns(["sha256"])["sha256"][start:]
    store = VectorFile(ds, bb.model_id)
    index = store.index()
    clusters, done = [], 0
    for chunk, cluster in vectors:
        with store.lock():
            store.append(shas[done:done + len(chunk)], chunk, bb, index)
        clusters.append(cluster)
        done += len(chunk)
    return np.concatenate(clusters)


def write_and_insert(project: str, root: str, n: int, size: int = 16, seed: int = 1) -> int:
    """Write n distinct 16x16 24-bit BMP noise files under `root` (the same files as widgets.write_tiny_bmps: the
    index in the first pixels, 1,000 per folder) and insert each as an image item, as ds.add_images would have
    (sha256 of the bytes, size, mtime, 16x16), in one pass: the bytes are hashed as they are written, never read
    back nor decoded. Rows go in by 100,000 in one transaction; returns how many."""
    from widgets import _bmp_header
    rng = np.random.default_rng(seed)
    head = _bmp_header(size, size)
    now = time.time()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    sql = ("INSERT INTO items (kind, path, sha256, size_bytes, mtime, width, height, status, added_at, origin) "
           "VALUES ('image', ?, ?, ?, ?, 16, 16, 'ok', ?, 'import')")
    with sqlite3.connect(project) as c:
        for start in range(0, n, 10_000):
            m = min(10_000, n - start)
            px = rng.integers(0, 256, size=(m, size * size * 3), dtype=np.uint8)
            px[:, :4] = np.arange(start, start + m, dtype="<u4").view(np.uint8).reshape(m, 4)
            rows = []
            for j in range(m):
                i = start + j
                folder = os.path.join(root, f"{i // 1000:03d}")
                if i % 1000 == 0:
                    os.makedirs(folder, exist_ok=True)
                path = os.path.join(folder, f"t{i:06d}.bmp")
                data = head + px[j].tobytes()
                fd = os.open(path, flags, 0o644)
                os.write(fd, data)
                mtime = os.fstat(fd).st_mtime
                os.close(fd)
                rows.append((path, hashlib.sha256(data).hexdigest(), len(data), mtime, now))
            c.executemany(sql, rows)
        c.execute("UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'items_version'")
    return n


def build_project(folder: str, n: int) -> dict:
    """The n-item project in `folder` (reused when built before), with embeddings and 1% labelled."""
    import nbml
    project = os.path.join(folder, f"p{n}.nbml")
    if os.path.exists(project + ".built"):
        return {"project": project, "reused": True}
    t0 = time.perf_counter()
    img64 = os.path.join(folder, "img64")
    if not os.path.isdir(img64):
        write_noise_images(img64, 100, n_classes=1, size=64)
    ds = nbml.Dataset(project)
    ds.add_images(img64, label_from=None, progress=False)
    if n > 100:
        write_and_insert(project, os.path.join(folder, f"img16-{n}"), n - 100)
    t_files = time.perf_counter() - t0      # the files written and their rows inserted, in one pass
    t_rows = 0.0
    t = time.perf_counter()
    clusters = write_embeddings(ds, backbone(), clustered_vectors(len(ds)))
    t_emb = time.perf_counter() - t
    ids = np.asarray(ds.query_ids())
    pick = np.random.default_rng(1).permutation(len(ids))[:max(6, min(2000, len(ids) // 100))]
    for c, name in enumerate(CLASSES):
        chosen = pick[clusters[pick] % len(CLASSES) == c]
        if len(chosen):
            ds.set_label(ids[chosen].tolist(), name)
    ds.close()
    open(project + ".built", "w").close()
    return {"project": project, "reused": False, "files_s": t_files, "rows_s": t_rows, "embeddings_s": t_emb}


# -- measuring ----------------------------------------------------------------------------------------------------
def timed(fn, *args, **kw) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args, **kw)
    return (time.perf_counter() - t) * 1000, out


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Figures(dict):
    """Figures, each printed as it is measured (a long run that is stopped still leaves those it reached)."""

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        print(f"  {key}: {value:.1f}" if isinstance(value, float) else f"  {key}: {value}", flush=True)


def measure_widget(ds, out: dict) -> dict:
    """The label widget's paging and labelling paths, driven as its front end drives them."""
    from nbml.widgets.label import LabelWidget
    sent = []

    def message(w, **content):
        w.send = lambda msg, buffers=None: sent.append(msg)
        w._dispatch(w, {"seq": 1, **content}, [])
        assert sent[-1]["type"] == "done" and "error" not in sent[-1], sent[-1]

    out["first_page_ms"], w = timed(LabelWidget, ds, filter="all", page_size=48)
    again = []
    for _ in range(5):           # one timing of a few tens of ms moves with the machine: the median of five more
        ms, other = timed(LabelWidget, ds, filter="all", page_size=48)
        other.close()
        again.append(ms)
    out["first_page_p50_ms"] = percentile(again, 50)
    keys = [it["thumb"] for it in w.items]
    out["thumbs_first_ms"], _ = timed(message, w, type="thumbs", keys=keys)
    out["thumbs_cached_ms"], _ = timed(message, w, type="thumbs", keys=keys)
    turns = [timed(message, w, type="page", page=p)[0] for p in range(1, 21)]
    out["page_turn_ms"] = percentile(turns, 50)
    last = (w.n_total - 1) // w.page_size
    out["last_page_ms"], _ = timed(message, w, type="page", page=last)
    jumps = []
    for _ in range(20):          # back to the first page and to the last again: the median of 20 jumps
        message(w, type="page", page=0)
        jumps.append(timed(message, w, type="page", page=last)[0])
    out["last_page_p50_ms"] = percentile(jumps, 50)
    message(w, type="page", page=0)
    presses, refreshed = [], []
    ids = [it["id"] for it in w.items]
    for k in range(100):         # the reply first, then the page refresh that follows it (the grid's order)
        w._after_reply = lambda: None
        t = time.perf_counter()
        message(w, type="label", ids=[ids[k % len(ids)]], label=CLASSES[k % 3])
        t1 = time.perf_counter()
        w.refresh()
        presses.append((t1 - t) * 1000)
        refreshed.append((time.perf_counter() - t) * 1000)
    out["key_ms"] = percentile(presses, 50)
    out["key_refresh_ms"] = percentile(refreshed, 50)
    w.close()
    out["unlabelled_page_ms"], w = timed(LabelWidget, ds, filter="unlabelled", page_size=48)
    w.close()
    return out


def measure_similar(ds, out: dict) -> dict:
    from nbml import vector_index
    from nbml.analysis import _exact_nearest
    bb = backbone()
    r0 = rss_mib()
    ids = np.asarray(ds.query_ids(usable_only=True))
    queries = np.random.default_rng(2).choice(ids, QUERIES, replace=False)
    out["first_ms"], _ = timed(ds.similar, int(queries[0]), k=K, backbone=bb)
    emb = ds.embed(bb)
    index = ds._embedding_cache.indexes.get(MODEL_ID)
    if index is not None and len(index):
        out["index_build_s"] = index.build_s or None
        out["index_mib"] = index.memory_bytes() / 2**20
        out["index_file_mib"] = os.path.getsize(index.file) / 2**20
        out["index_cells"] = index.index.nlist
    out["rss_after_first_mib"] = rss_mib() - r0
    times, found = [], []
    for q in queries:
        ms, res = timed(ds.similar, int(q), k=K, backbone=bb)
        times.append(ms)
        found.append(res["id"].to_numpy())
    out["similar_p50_ms"] = percentile(times, 50)
    out["similar_p99_ms"] = percentile(times, 99)
    pos = emb.positions(queries)
    exact_times = [timed(_exact_nearest, emb, emb.vectors[p], K, None, {int(q)})[0] for q, p in
                   zip(queries[:10], pos[:10])]
    sims = np.concatenate([emb.vectors[i:i + 65_536] @ emb.vectors[pos].T for i in range(0, len(emb), 65_536)])
    sims[pos, np.arange(len(pos))] = -np.inf           # the query item itself is left out, as ds.similar does
    best = np.argpartition(-sims, K, axis=0)[:K].T     # the exact K best of each query, all at once
    recall = [len(set(emb.ids[b].tolist()) & set(got.tolist())) / K for b, got in zip(best, found)]
    del sims
    out["exact_p50_ms"] = percentile(exact_times, 50)
    out["recall"] = float(np.mean(recall))
    out["index_used"] = index is not None and len(index) > 0
    out["diverse_first_ms"], _ = timed(ds.suggest, n=20, strategy="diverse", backbone=bb)
    out["diverse_ms"], _ = timed(ds.suggest, n=20, strategy="diverse", backbone=bb)
    out["min_items"] = vector_index.MIN_ITEMS
    return out


def warm_up(folder: str) -> None:
    """The widget's imports and first-use costs paid once per process, on a throwaway project, so the first
    project measured is not charged for them."""
    import nbml
    path = os.path.join(folder, "warm-up.nbml")
    for _ in range(2):          # the second open takes the kept counts forward by the first one's labels
        ds = nbml.Dataset(path)
        try:
            if not len(ds):
                from widgets import write_tiny_bmps
                write_tiny_bmps(os.path.join(folder, "warm-up-images"), 200, seed=7)
                ds.add_images(os.path.join(folder, "warm-up-images"), progress=False)
            measure_widget(ds, {})    # every statement the measured paths run, compiled once
        finally:
            ds.close()


def measure(project: str, n: int) -> dict:
    import nbml
    out = Figures()
    out["open_ms"], ds = timed(nbml.Dataset, project)
    out["items"] = len(ds)
    measure_widget(ds, out)
    out["df_ms"], _ = timed(lambda: ds.df)
    out["stats_ms"], _ = timed(ds.stats)
    measure_similar(ds, out)
    ds.close()
    return dict(out)


# -- the libraries, outside nbml ----------------------------------------------------------------------------------
def compare_libraries(n: int) -> list[list[str]]:
    """Each library on the same n unit vectors: build s, MiB, and per search width: recall@20 and p50 ms."""
    raw = np.concatenate([v for v, _ in clustered_vectors(n)])
    v = raw.astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    qi = np.random.default_rng(1).choice(n, QUERIES, replace=False)
    truth = [set(np.argsort(-(v @ v[q]))[:K].tolist()) for q in qi]
    rows = []

    def run(name, build, search, widths, memory):
        t = time.perf_counter()
        index = build()
        build_s = time.perf_counter() - t
        for w in widths:
            times, rec = [], []
            for q, want in zip(qi, truth):
                t = time.perf_counter()
                got = search(index, v[q], w)
                times.append((time.perf_counter() - t) * 1000)
                rec.append(len(set(np.asarray(got).tolist()) & want) / K)
            rows.append([name, f"{build_s:.1f}", f"{memory(index) / 2**20:.0f}", str(w), f"{np.mean(rec):.3f}",
                         f"{percentile(times, 50):.2f}"])
            print("  " + "  ".join(rows[-1]), flush=True)

    import faiss
    from nbml.vector_index import n_cells
    cells = n_cells(n)

    def ivf():
        ix = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(DIM), DIM, cells, faiss.ScalarQuantizer.QT_fp16,
                                           faiss.METRIC_INNER_PRODUCT)
        ix.train(v[np.random.default_rng(0).choice(n, min(n, 64 * cells), replace=False)])
        ix.add(v)
        return ix

    def ivf_search(ix, q, w):
        ix.nprobe = w
        return ix.search(q[None], K)[1][0]
    run(f"faiss {faiss.__version__} IVF{cells},SQfp16 (nprobe)", ivf, ivf_search, [8, 16, 24, 32, 64],
        lambda ix: ix.ntotal * (2 * DIM + 8) + cells * DIM * 4)

    def hnsw():
        ix = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
        ix.hnsw.efConstruction = 80
        ix.add(v)
        return ix

    def hnsw_search(ix, q, w):
        ix.hnsw.efSearch = w
        return ix.search(q[None], K)[1][0]
    run(f"faiss {faiss.__version__} HNSW32,Flat efConstruction 80 (efSearch)", hnsw, hnsw_search, [32, 64],
        lambda ix: faiss.serialize_index(ix).nbytes)
    from usearch.index import Index
    import usearch

    def us():
        ix = Index(ndim=DIM, metric="cos", dtype="f16", connectivity=16, expansion_add=128)
        ix.add(np.arange(n), raw)
        return ix

    def us_search(ix, q, w):
        ix.expansion_search = w
        return ix.search(q, K).keys
    run(f"usearch {usearch.__version__} connectivity 16, expansion_add 128, f16 (expansion_search)", us, us_search, [32, 64], lambda ix: ix.memory_usage)
    try:
        import hnswlib
    except ImportError:
        rows.append(["hnswlib", "not installed", "", "", "", ""])
        return rows

    def hl():
        ix = hnswlib.Index(space="ip", dim=DIM)
        ix.init_index(max_elements=n, M=16, ef_construction=100)
        ix.add_items(v, np.arange(n))
        return ix

    def hl_search(ix, q, w):
        ix.set_ef(w)
        return ix.knn_query(q[None], K)[0][0]
    run("hnswlib 0.8.0 M 16, ef_construction 100, f32 (ef)", hl, hl_search, [32, 64], lambda ix: ix.index_file_size())
    return rows


# -- printing ---------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,100000,1000000", help="project sizes (default 100,100000,1000000)")
    ap.add_argument("--keep", default=None, help="build the projects in this folder and keep them for the next run")
    ap.add_argument("--libraries", type=int, default=0, help="also compare the index libraries on this many vectors")
    ap.add_argument("--reuse", action="store_true", help="with --keep: reuse the figures saved by an earlier run")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print_machine("a million items: paging, labelling, ds.df, ds.stats, ds.similar and its vector index")
    print(f"load average at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    t_total = time.perf_counter()
    if args.libraries:
        print(f"\nindex libraries on {args.libraries:,} generated unit vectors ({DIM}-d), {QUERIES} queries, "
              f"recall@{K} against exact search")
        rows = compare_libraries(args.libraries)
        print_table(["library", "build s", "MiB", "width", f"recall@{K}", "p50 ms"], rows)
    folder = args.keep or tempfile.mkdtemp(prefix="nbml-bench-scale-")
    os.makedirs(folder, exist_ok=True)
    try:
        run_sizes(args, sizes, folder, t_total)
    finally:
        if not args.keep:           # a million generated files: never left behind
            shutil.rmtree(folder, ignore_errors=True)


def run_sizes(args, sizes: list[int], folder: str, t_total: float) -> None:
    built, results = {}, {}
    warm_up(folder)
    for n in sizes:
        saved = os.path.join(folder, f"p{n}.results.json")
        if args.reuse and os.path.exists(saved):
            with open(saved) as f:
                results[n] = json.load(f)
            print(f"\nproject of {n:,} items: figures of an earlier run reused ({saved}, load "
                  f"{results[n]['load_before']:.2f} before, {results[n]['load_after']:.2f} after)", flush=True)
            continue
        built[n] = build_project(folder, n)
        print(f"\nproject of {n:,} items: " + ("reused" if built[n]["reused"] else
              f"files written and rows inserted {built[n]['files_s']:.0f} s, "
              f"embeddings {built[n]['embeddings_s']:.0f} s"), flush=True)
        load_before = os.getloadavg()[0]
        results[n] = measure(built[n]["project"], n)
        results[n].update(load_before=load_before, load_after=os.getloadavg()[0])
        with open(saved, "w") as f:
            json.dump(results[n], f, default=float)
        print(f"measured (load {load_before:.2f} before, {results[n]['load_after']:.2f} after): {results[n]}",
              flush=True)
    base = results[sizes[0]]

    def row(name, key, fmt="{:.1f}", ratio=True):
        cells = [fmt.format(results[n][key]) if results[n].get(key) is not None else "-" for n in sizes]
        if ratio and base.get(key):
            cells += [f"{results[n][key] / base[key]:.2f}x" for n in sizes[1:]]
        else:
            cells += ["" for _ in sizes[1:]]
        return [name, *cells]
    print()
    print_table(["figure", *[f"{n:,} items" for n in sizes], *[f"{n:,} / {sizes[0]:,}" for n in sizes[1:]]], [
        row("open project ms", "open_ms"),
        row("grid first page ms (filter all, 48)", "first_page_ms"),
        row("  the same, median of 5 more", "first_page_p50_ms"),
        row("first page thumbnails made ms", "thumbs_first_ms"),
        row("first page thumbnails cached ms", "thumbs_cached_ms"),
        row("page turn p50 ms (pages 1-20)", "page_turn_ms"),
        row("last page ms", "last_page_ms"),
        row("  the same, median of 20 more jumps from the first page", "last_page_p50_ms"),
        row("first unlabelled page ms", "unlabelled_page_ms"),
        row("key press p50 ms (to done)", "key_ms"),
        row("key press + refresh p50 ms", "key_refresh_ms"),
        row("ds.df ms", "df_ms"),
        row("ds.stats() ms", "stats_ms"),
        row("ds.similar first call ms", "first_ms"),
        row("ds.similar p50 ms", "similar_p50_ms"),
        row("ds.similar p99 ms", "similar_p99_ms"),
        row("exact search p50 ms", "exact_p50_ms"),
        row(f"recall@{K} vs exact", "recall", "{:.3f}", False),
        row("index used", "index_used", "{}", False),
        row("load average before / after", "load_before", "{:.1f}", False),
        row("", "load_after", "{:.1f}", False),
        row("index build s", "index_build_s", "{:.1f}", False),
        row("index memory MiB", "index_mib", "{:.0f}", False),
        row("index file MiB", "index_file_mib", "{:.0f}", False),
        row("RSS added by the first similar MiB", "rss_after_first_mib", "{:.0f}", False),
        row("suggest diverse first ms", "diverse_first_ms", "{:.0f}"),
        row("suggest diverse ms", "diverse_ms", "{:.0f}"),
    ])
    print(f"\nindex used from {base['min_items']:,} embedded items; below that, exact search")
    print(f"load average at end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    print(f"total run {time.perf_counter() - t_total:.0f} s" + (f"; projects kept in {folder}" if args.keep else ""))


if __name__ == "__main__":
    main()
