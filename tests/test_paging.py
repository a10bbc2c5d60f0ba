"""Large-project reads on a real SQLite file and a real PostgreSQL server (`where`): the grid's keyset pages equal
OFFSET pages under every filter while labels, statuses, leases and splits change; ds.df and ds.stats() equal what
the row-by-row reads gave; kept counts survive a reopen; schema 2 projects gain the paging indexes."""
from __future__ import annotations

import random
import sqlite3

import pandas as pd
import pytest
from sqlalchemy import select

import nbml
from nbml import _schema as S
from nbml import store as store_module
from nbml.widgets.label import LabelWidget

N = 400


@pytest.fixture
def project(where):
    ds = nbml.Dataset(where, user="alice")
    ds.add_texts([f"text {i}" for i in range(N)], labels=[None if i % 3 else "a" for i in range(N)], progress=False)
    yield ds
    ds.close()


def _filters(user: str) -> list[dict]:
    return [{}, dict(label="a"), dict(label="b"), dict(labelled=False), dict(labelled=True, usable_only=True),
            dict(to_label_by=user), dict(split="train"), dict(labelled=True, split="valid")]


def _change(ds, other, rng: random.Random) -> None:
    ids = ds.query_ids()
    op = rng.random()
    try:
        if op < 0.35:
            ds.set_label(rng.sample(ids, rng.randint(1, 5)), rng.choice(["a", "b", None]))
        elif op < 0.45:
            other.set_label(rng.sample(ids, 2), "b")
        elif op < 0.55:
            ds.remove(rng.sample(ids, 2))
        elif op < 0.6:
            ds.mark_unusable(rng.sample(ids, 1))
        elif op < 0.7:
            ds.undo()
        elif op < 0.8:
            ds.set_split(rng.sample(ids, 4), rng.choice(["train", "valid", None]))
        elif op < 0.9:
            other.next_items(rng.randint(1, 6), ttl=600)      # others' leases leave alice's queue
        else:
            other.release()
    except (KeyError, nbml.UndoConflictError):                 # a removed item, or bob's label in the way
        pass


def test_keyset_pages_equal_offset_pages_under_every_filter_while_things_change(project, where):
    ds = project
    other = nbml.Dataset(where, user="bob")
    rng = random.Random(7)
    pagers = [(f, ds.pager(**f)) for f in _filters(ds.user)]
    try:
        for step in range(40):
            _change(ds, other, rng)
            for f, pager in pagers:
                total = ds.count_ids(**f)
                assert total == len(ds.query_ids(**f)), (step, f)
                for _ in range(3):       # a page near what was shown, a far one, past the end, the last one
                    size = rng.choice([1, 5, 48])
                    offset = rng.choice([rng.randint(0, total + 3), total - size, max(0, total - 1)])
                    offset = max(offset, 0)
                    got = pager.page(offset, size)
                    assert got == (ds.query_ids(**f, offset=offset, limit=size), total), (step, f, offset, size)
    finally:
        other.close()


def test_page_turns_through_a_filter_match_the_whole_list(project):
    """Walking forward and back page by page (the grid's page turns) gives every item once, in id order, with
    labels changing between turns of the 'all' filter (they move no rank there)."""
    ds = project
    pager = ds.pager()
    seen, page = [], 0
    while True:
        ids, total = pager.page(page * 48, 48)
        if not ids:
            break
        seen += ids
        ds.set_label(ids[0], "b")
        page += 1
    assert seen == ds.query_ids() and total == N
    for page in reversed(range((N - 1) // 48 + 1)):
        assert pager.page(page * 48, 48)[0] == ds.query_ids(offset=page * 48, limit=48)


def test_the_grid_pages_by_keyset(project):
    ds = project
    grid = LabelWidget(ds, filter="all", page_size=48)
    try:
        last = (N - 1) // 48
        grid.page = last
        grid.refresh()
        assert [i["id"] for i in grid.items] == ds.query_ids(offset=last * 48, limit=48) and grid.n_total == N
        assert grid._pager[1].anchors            # the last page's first and last ids are known ranks now
        grid.filter = "label:a"
        assert [i["id"] for i in grid.items] == ds.query_ids(label="a", limit=48)
        grid.filter = "unlabelled"
        ids = [i["id"] for i in grid.items]
        assert ids == ds.query_ids(to_label_by=ds.user, limit=48)
        ds.set_label(ids[:3], "b")
        grid.refresh()
        assert [i["id"] for i in grid.items] == ds.query_ids(to_label_by=ds.user, limit=48)
    finally:
        grid.close()


def _old_frame(ds) -> pd.DataFrame:
    """ds.df as it was read before: SQLAlchemy rows into pandas, row by row."""
    with ds._read() as c:
        rows = c.execute(select(*[S.items.c[n] for n in store_module._ITEM_COLUMNS])
                         .where(S.items.c.status != "removed").order_by(S.items.c.id)).all()
    return store_module._frame(rows, list(store_module._ITEM_COLUMNS))


def _old_counts(ds) -> tuple[pd.DataFrame, int, int, int]:
    """ds.stats()'s table and totals as they were computed before: a crosstab of ds.df."""
    df = _old_frame(ds)
    usable = df[df["status"] == "ok"]
    lab = usable[usable["label"].notna()]
    table = pd.crosstab(pd.Categorical(lab["label"], categories=ds.classes),
                        pd.Categorical(lab["split"].fillna("unassigned"),
                                       categories=["train", "valid", "test", "unassigned"]), dropna=False)
    table = table.reindex(index=ds.classes, columns=["train", "valid", "test", "unassigned"], fill_value=0)
    table.index.name, table.columns.name = "class", None
    table["labelled"] = table.sum(axis=1)
    return table, len(lab), int(usable["label"].isna().sum()), int((df["status"] == "unusable").sum())


def test_df_and_stats_equal_the_row_by_row_results(where, image_folder):
    ds = nbml.Dataset(where)
    try:
        pd.testing.assert_frame_equal(ds.df, _old_frame(ds))          # empty
        ds.add_images(image_folder)
        ids = ds.query_ids()
        ds.set_label(ids[:2], "zebra")
        ds.set_split(ids[:4], "valid")
        ds.mark_unusable(ids[5])
        ds.remove(ids[6])
        for check in range(2):
            pd.testing.assert_frame_equal(ds.df, _old_frame(ds), check_exact=True)
            st = ds.stats()
            table, labelled, unlabelled, unusable = _old_counts(ds)
            pd.testing.assert_frame_equal(st.counts, table)
            assert (st.labelled, st.unlabelled, st.unusable) == (labelled, unlabelled, unusable)
            ds.set_label(ids[7:9], None)                               # some unlabelled for the second round
    finally:
        ds.close()


def test_text_df_and_stats_equal_the_row_by_row_results(project):
    ds = project
    ds.set_split(ds.query_ids(label="a")[:10], "train")
    ds.mark_unusable(ds.query_ids()[1])
    pd.testing.assert_frame_equal(ds.df, _old_frame(ds), check_exact=True)
    st = ds.stats()
    table, labelled, unlabelled, unusable = _old_counts(ds)
    pd.testing.assert_frame_equal(st.counts, table)
    assert (st.labelled, st.unlabelled, st.unusable) == (labelled, unlabelled, unusable)
    assert len(st.lengths) == N - 1


def test_kept_counts_survive_a_reopen_and_follow_changes_made_meanwhile(tmp_path):
    path = tmp_path / "k.nbml"
    ds = nbml.Dataset(path)
    ds.add_texts([f"t {i}" for i in range(50)], progress=False)
    ds.label_counts()                                   # counted once, kept in meta
    ds.close()
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT value FROM meta WHERE key = 'item_counts'").fetchone() is not None
    other = nbml.Dataset(path)
    other.set_label([1, 2, 3], "x")
    other.close()
    again = nbml.Dataset(path)
    try:
        assert again.label_counts() == {"x": 3, None: 47} and again.count_ids(labelled=False) == 47
    finally:
        again.close()


def test_schema_2_project_gains_the_paging_indexes(tmp_path):
    path = tmp_path / "v2.nbml"
    ds = nbml.Dataset(path)
    ds.add_texts(["one", "two", "three"], labels=["a", None, "b"], progress=False)
    ds.close()
    with sqlite3.connect(path) as c:                    # as nbml with schema 2 left it
        c.execute("DROP INDEX ix_items_status_label_id")
        c.execute("DROP INDEX ix_items_label_id")
        c.execute("CREATE INDEX ix_items_status_label ON items (status, label)")
        c.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    again = nbml.Dataset(path)
    try:
        assert again._meta_value("schema_version") == "3"
        assert again.pager(label="a").page(0, 10) == ([1], 1)
    finally:
        again.close()
    with sqlite3.connect(path) as c:
        names = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"ix_items_status_label_id", "ix_items_label_id"} <= names and "ix_items_status_label" not in names


@pytest.mark.parametrize("kind", ["images", "texts"])
def test_large_df_read_through_arrow_equals_the_row_by_row_read(tmp_path, image_folder, monkeypatch, kind):
    """ds.df of a big SQLite project comes from the ADBC driver's Arrow columns (here from the first row on): the
    same frame, dtypes included, with columns of nothing but NULL, NULLs in the first rows, removed items; and a
    column the driver cannot type (an integer among a column's strings) falls back to the plain read."""
    from nbml import _arrow_read
    monkeypatch.setattr(_arrow_read, "MIN_ROWS", 0)
    ds = nbml.Dataset(tmp_path / "p.nbml")
    try:
        if kind == "images":
            ds.add_images(image_folder)
        else:
            ds.add_texts([f"text number {i}" for i in range(1500)])      # > 1024: the driver's default batch
        ids = ds.query_ids()
        ds.set_label(ids[-3:], "late")                 # every label after a thousand NULLs
        ds.set_split(ids[-2:], "valid")
        ds.remove(ids[0])
        statement = select(*[S.items.c[n] for n in store_module._ITEM_COLUMNS]).where(
            S.items.c.status != "removed").order_by(S.items.c.id)
        through_arrow = _arrow_read.sqlite_frame(ds.path, statement, list(store_module._ITEM_COLUMNS), len(ids))
        assert through_arrow is not None
        pd.testing.assert_frame_equal(through_arrow, _old_frame(ds), check_exact=True)
        pd.testing.assert_frame_equal(ds.df, _old_frame(ds), check_exact=True)
        with sqlite3.connect(ds.path) as raw:
            raw.execute("UPDATE items SET width = 'wide' WHERE id = ?", (ids[-1],))
        assert _arrow_read.sqlite_frame(ds.path, statement, list(store_module._ITEM_COLUMNS), len(ids)) is None
        pd.testing.assert_frame_equal(ds.df, _old_frame(ds), check_exact=True)
    finally:
        ds.close()
