"""The vector index of large projects (nbml.vector_index) against exact search, on a few thousand generated vectors
with the index switched on from 1,000 items: recall, filters, update on add, persistence, duplicates, diverse."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import nbml
from nbml import vector_index
from nbml.analysis import _exact_nearest, _pairs_above

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from scale import backbone, clustered_vectors, write_embeddings  # noqa: E402

N = 3000


@pytest.fixture
def big(tmp_path, monkeypatch):
    """A text project of N items with generated 512-d embeddings, large enough for the index (MIN_ITEMS 1,000)."""
    monkeypatch.setattr(vector_index, "MIN_ITEMS", 1000)
    ds = nbml.Dataset(tmp_path / "big.nbml")
    ds.add_texts([f"text number {i}" for i in range(N)], progress=False)
    bb = backbone("text")
    vectors, clusters = next(clustered_vectors(N, seed=3, centres=50))
    vectors[1:200:2] = vectors[0:200:2] * np.float16(1.02)      # 100 near copies: near duplicates to find
    write_embeddings(ds, bb, iter([(vectors, clusters)]))
    ids = np.asarray(ds.query_ids())
    ds.set_label(ids[:300][clusters[:300] % 2 == 0].tolist(), "even")
    ds.set_label(ids[:300][clusters[:300] % 2 == 1].tolist(), "odd")
    yield ds, bb
    ds.close()


def _exact_ids(emb, item_id: int, k: int = 20, keep=None) -> list[int]:
    idx, _ = _exact_nearest(emb, emb.vectors[emb.positions([item_id])[0]], k, keep, {item_id})
    return emb.ids[idx].tolist()


def test_similar_through_the_index_finds_what_exact_search_finds(big):
    ds, bb = big
    first = ds.similar(int(ds.query_ids()[0]), backbone=bb)
    index = ds._embedding_cache.indexes[bb.model_id]
    assert len(index) == N and index.file.exists() and index.build_s > 0
    emb = ds.embed(bb)
    recall = []
    for item in emb.ids[np.random.default_rng(0).choice(N, 30, replace=False)]:
        got = ds.similar(int(item), backbone=bb)
        assert int(item) not in got["id"].tolist() and len(got) == 20
        assert got["similarity"].is_monotonic_decreasing
        pos = emb.positions(got["id"])      # the similarities given are the exact cosines
        np.testing.assert_allclose(got["similarity"], emb.vectors[pos] @ emb.vectors[emb.positions([item])[0]],
                                   rtol=1e-5, atol=1e-5)
        recall.append(len(set(got["id"]) & set(_exact_ids(emb, int(item)))) / 20)
    assert np.mean(recall) >= 0.95
    assert first.attrs["embeddings"] == bb.model_id


def test_filters_hold_on_the_index_path(big, monkeypatch):
    ds, bb = big
    emb = ds.embed(bb)
    item = int(emb.ids[5])
    unlabelled = ds.similar(item, k=10, labelled=False, backbone=bb)
    assert unlabelled["label"].isna().all() and len(unlabelled) == 10
    monkeypatch.setattr(vector_index, "MIN_ITEMS", 200)      # 'even' has ~150: kept too few, so exact answers
    even = ds.similar(item, k=10, label="even", backbone=bb)
    assert (even["label"] == "even").all()
    assert even["id"].tolist() == _exact_ids(emb, item, 10, (emb.frame["label"] == "even").to_numpy())
    several = ds.similar([item, int(emb.ids[6])], k=10, backbone=bb)
    assert not {item, int(emb.ids[6])} & set(several["id"])


def test_the_index_is_updated_on_add_and_saved(big):
    ds, bb = big
    ds.similar(int(ds.query_ids()[0]), backbone=bb)
    index = ds._embedding_cache.indexes[bb.model_id]
    built_at = index.file.stat().st_mtime_ns
    emb = ds.embed(bb)
    target = int(emb.ids[2042])
    ds.add_texts([f"added text {i}" for i in range(200)], progress=False)
    extra = list(clustered_vectors(200, seed=9))
    extra[0][0][0] = emb.raw[2042] * np.float16(1.01)            # a near copy of item `target`
    write_embeddings(ds, bb, iter(extra), start=N)
    new_id = int(ds.query_ids()[N])
    got = ds.similar(target, k=5, backbone=bb)
    assert got["id"].iloc[0] == new_id and got["similarity"].iloc[0] > 0.999
    assert len(index) == N + 200 and index.trained_rows == N       # added to, not built again
    assert index.file.stat().st_mtime_ns != built_at               # 200 rows (> 5%): saved
    ds.close()

    again = nbml.Dataset(ds.path)                                   # another session: loaded, not built
    try:
        assert again.similar(target, k=5, backbone=bb)["id"].iloc[0] == new_id
        loaded = again._embedding_cache.indexes[bb.model_id]
        assert len(loaded) == N + 200 and loaded.build_s == 0
    finally:
        again.close()


def test_a_replaced_embeddings_file_builds_the_index_again(big):
    ds, bb = big
    ds.similar(int(ds.query_ids()[0]), backbone=bb)
    index = vector_index.VectorIndex(ds._embedding_cache.indexes[bb.model_id].source, bb.model_id)
    array = np.memmap(index.source, np.float16, "r").reshape(-1, 512)
    assert index.sync(array[:1500]) == 1500 and index.build_s > 0 and len(index) == 1500   # fewer rows: rebuilt


def test_small_projects_search_exactly(tmp_path):
    ds = nbml.Dataset(tmp_path / "small.nbml")
    try:
        ds.add_texts([f"text number {i}" for i in range(300)], progress=False)
        bb = backbone("text")
        write_embeddings(ds, bb, clustered_vectors(300, seed=4))
        emb = ds.embed(bb)
        item = int(emb.ids[3])
        assert ds.similar(item, backbone=bb)["id"].tolist() == _exact_ids(emb, item)
        assert not ds._embedding_cache.indexes and not list((ds.home / "embeddings").glob("*.ivf"))
    finally:
        ds.close()


def test_near_duplicates_and_diverse_through_the_index(big):
    ds, bb = big
    emb = ds.embed(bb)
    v = emb.vectors
    a, b, _ = _pairs_above(v, 0.99, 100_000)
    assert len(a) >= 100                                            # the near copies, and any as close
    near = vector_index.pairs_above(ds, emb, np.arange(len(emb)), 0.99, 100_000, k=8)
    exact = set(zip(a.tolist(), b.tolist()))
    found = set(zip(near[0].tolist(), near[1].tolist()))
    assert found <= exact and len(found) >= 0.95 * len(exact)
    assert (near[2] >= 0.99).all()
    pairs = ds.duplicates(threshold=0.99, backbone=bb)            # through ds.duplicates: the same pairs
    assert {tuple(sorted(p)) for p in zip(pairs["id_a"], pairs["id_b"])} >= {
        (int(emb.ids[i]), int(emb.ids[j])) for i, j in found}

    labelled = np.flatnonzero(emb.frame["label"].notna().to_numpy())
    pool = np.flatnonzero(emb.frame["label"].isna().to_numpy())[:40]
    vector_index.MIN_ITEMS = 200
    got = vector_index.nearest_distance(ds, emb, v[pool], labelled)
    want = (1 - v[pool] @ v[labelled].T).min(1)
    assert np.mean(np.isclose(got, want, atol=1e-5)) >= 0.95 and (got >= want - 1e-5).all()
    picks = ds.suggest(n=10, strategy="diverse", backbone=bb)
    assert len(picks) == 10 and picks["distance"].notna().all()


def test_kept_counts_follow_every_change_from_any_process(tmp_path):
    """The grid's counts (label_counts, count_ids), kept between changes and moved by the label history, equal a
    fresh count after labels, undos, removals and restores made here and through another Store on the file."""
    import random
    import sqlite3
    ds = nbml.Dataset(tmp_path / "c.nbml")
    other = nbml.Dataset(ds.path)
    try:
        ds.add_texts([f"t {i}" for i in range(120)], labels=[None if i % 3 else "a" for i in range(120)],
                     progress=False)
        ids = ds.query_ids()
        rng = random.Random(0)
        for step in range(80):
            pick, op = rng.sample(ids, rng.randint(1, 4)), rng.random()
            try:
                if op < 0.5:
                    ds.set_label(pick, rng.choice(["a", "b", None]))
                elif op < 0.6:
                    other.set_label(pick, "c")
            except KeyError:          # a removed item: labelling it is refused
                pass
            if 0.6 <= op < 0.75:
                ds.undo()
            elif 0.75 <= op < 0.85:
                ds.remove(pick)
            elif op >= 0.85:
                ds.restore(pick)
            with sqlite3.connect(ds.path) as c:
                ok = dict(c.execute("SELECT label, count(*) FROM items WHERE status = 'ok' GROUP BY label"))
                live = c.execute("SELECT count(*) FROM items WHERE status != 'removed'").fetchone()[0]
                b = c.execute("SELECT count(*) FROM items WHERE status != 'removed' AND label = 'b'").fetchone()[0]
            for s in (ds, other):
                assert {k: v for k, v in s.label_counts().items() if v} == ok, step
                assert s.count_ids() == live and s.count_ids(label="b") == b
                assert s.count_ids(labelled=False, usable_only=True) == ok.get(None, 0)
    finally:
        other.close()
        ds.close()
