"""The project store: items, classes, label history, splits, undo log, data snapshots and training runs.

SQLite in WAL mode is the embedded default; a `postgresql://user@host:port/db` URL puts the project on a
PostgreSQL server that several people label at once (psycopg 3 through SQLAlchemy Core, the same tables).
Every public method that changes something has committed it before it returns. Every change records its author
(`user`); undo reverts the caller's own changes only; the labelling queue hands out items under leases.
"""
from __future__ import annotations

import gc
import getpass
import hashlib
import json
import os
import re
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
from sqlalchemy import Integer, Text, cast, create_engine, delete, exists, func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from . import _arrow_read
from . import _schema as S
from . import leases as _leases
from ._dialect import upsert
from ._migrations import prepare as _prepare_schema
from ._sqlite import sqlite_engine as _sqlite_engine
from ._report import IngestReport

__all__ = ["Store", "NewItem", "KindMismatchError", "UndoConflictError", "LABEL_SOURCES", "SPLITS"]

LABEL_SOURCES = ("human", "import", "model", "review")   # review: a reviewer settles a disagreement
SPLITS = ("train", "valid", "test")
_ITEM_COLUMNS = ("id", "kind", "path", "label", "split", "label_source", "status", "sha256", "width", "height",
                 "added_at", "label_time", "content")
# Counters in `meta`, bumped in the same transaction as the change they count, so a reader (this process or
# another) can tell in one indexed read whether what it loaded is still current (see nbml.embeddings.EmbeddingCache).
# Label changes need none: each one adds a row to `labels`, whose newest id says the same.
ITEMS_VERSION = "items_version"     # items added, removed, restored or marked unusable
SPLITS_VERSION = "splits_version"   # splits set or cleared
_COUNTS_DELTA_MAX = 2000    # label changes since the counts were taken that are applied to them; more: count again
_COUNTS_KEY = "item_counts"   # meta: the (status, label) counts as of (items version, newest label row)
_IN_CHUNK = 30_000     # ids per IN (...) list: SQLite caps bound parameters (32,766 or 250,000), PostgreSQL at 65,535


def _now() -> float:
    return time.time()


def _ids(item_ids) -> list[int]:
    if isinstance(item_ids, (str, bytes)):
        raise TypeError(f"item ids are integers, not {item_ids!r}")
    if hasattr(item_ids, "__index__"):
        return [int(item_ids)]
    out = [int(i) for i in item_ids]
    if not out:
        raise ValueError("no item ids given")
    return out


def _frame(rows, columns: list[str]) -> pd.DataFrame:
    """A DataFrame of SQLAlchemy rows, given as plain tuples: pandas probes a Row's attributes one by one otherwise,
    which took 0.1 s for 10,000 rows."""
    return pd.DataFrame(list(map(tuple, rows)), columns=columns)


@contextmanager
def _no_gc():
    """Python's cyclic collector paused while millions of tuples are made and dropped (none of them in a cycle): its
    full passes over every live object made reading a million items take ten times as long as 100,000."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _columns_frame(rows: list[tuple], columns: list[str]) -> pd.DataFrame:
    """A DataFrame of DB-API row tuples, built column by column without pandas' per-row inference: text columns go
    through Arrow to pandas' `str` dtype, numbers through numpy. The frame equals `_frame`'s (same dtypes: a column
    of numbers with a missing value is float, a column of nothing but None stays object)."""
    import numpy as np
    from pandas._libs import lib
    table = lib.to_object_array_tuples(rows) if rows else np.empty((0, len(columns)), dtype=object)
    return pd.DataFrame({name: _column(table[:, j]) for j, name in enumerate(columns)}, columns=columns)


def _column(values):
    import numpy as np
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    if inferred == "string":
        import pyarrow as pa
        return pd.array(pa.array(values, type=pa.large_string(), from_pandas=True),
                        dtype=pd.StringDtype(na_value=np.nan))
    if inferred == "integer" and not pd.isna(values).any():
        return values.astype(np.int64)
    return pd.Series(values.tolist(), dtype=None).array if len(values) else values


class KindMismatchError(TypeError):
    """An item of one kind added to a project that holds another (a project holds one kind of item)."""


class UndoConflictError(RuntimeError):
    """`undo` would overwrite a label another person set since: nothing was undone."""


def _default_user(user) -> str:
    user = user if user is not None else (os.environ.get("NBML_USER") or getpass.getuser())
    if not isinstance(user, str) or not user.strip():
        raise ValueError(f"user must be a non-empty name, not {user!r} (or set NBML_USER)")
    return user.strip()


def _server_url(text: str):
    """The SQLAlchemy URL of a database server project: postgresql:// and postgres:// use psycopg 3."""
    try:
        url = make_url(text)
    except (ArgumentError, ValueError):   # the message is not repeated: it may quote the password
        raise ValueError("this database URL cannot be read; use postgresql://user:password@host:port/database (the "
                         "port a number) or a project file name such as 'pets.nbml'") from None
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg")
    raise ValueError(f"nbml projects live in a SQLite file or on PostgreSQL; {url.drivername}:// is not supported "
                     f"(use postgresql://user:password@host:port/database)")


def _scrub(message: str, url) -> str:
    """An error message of the driver without the URL's password, should a driver ever repeat it."""
    return message.replace(url.password, "***") if url.password else message


@dataclass
class NewItem:
    """One item to insert, as a kind's ingest hands it over: the content hash that finds duplicates, how the
    report names it, its label and split, and the kind's own columns of `items` (path, content, width, ...)."""
    sha256: str
    shown: str
    label: str | None = None
    split: str | None = None
    columns: dict = field(default_factory=dict)


class Pager:
    """Pages of one filter of the items in id order, by keyset: each page is found by a seek in the index to an id
    whose rank (how many of the filter's items come before it) is known, then a short walk, never an OFFSET that
    walks every item before the page. Known ranks: the first (0) and the end (the count, from the store's kept
    counts), and the first and last id of pages shown since nothing they depend on changed (`Store._paging_state`;
    a label change does not move ranks in the 'all' filter). The pages equal `query_ids(offset=..., limit=...)`."""

    MAX_ANCHORS = 512

    def __init__(self, store: "Store", filters: dict):
        self.store, self.filters = store, filters
        self.state = None
        self.anchors: dict[int, int] = {}     # id -> rank

    def page(self, offset: int, limit: int) -> tuple[list[int], int]:
        """(ids of ranks offset .. offset+limit-1, how many items the filter has)."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        return self.store._page(self, offset, limit)

    def check(self, state) -> None:
        if state != self.state:
            self.state, self.anchors = state, {}

    def nearest(self, offset: int, total: int) -> tuple[int, int | None]:
        """(rank, id) of the known rank closest to `offset`: the first item (0, id -1: every id is above it), the
        end (`total`, None) or an id of a page shown."""
        best_rank, best_id = (0, -1) if offset <= total - offset else (total, None)
        for item_id, rank in self.anchors.items():
            if abs(offset - rank) < abs(offset - best_rank):
                best_rank, best_id = rank, item_id
        return best_rank, best_id

    def remember(self, ids: list[int], offset: int) -> None:
        if ids:
            self.anchors[ids[0]] = offset
            self.anchors[ids[-1]] = offset + len(ids) - 1
        while len(self.anchors) > self.MAX_ANCHORS:
            del self.anchors[next(iter(self.anchors))]


class Store:
    """The bottom of the house: one project's items, labels, history, splits, runs and logs, in SQLite (a file)
    or at a database URL. It knows nothing of models, analysis or screens: `nbml.Dataset` adds those on top."""

    def __init__(self, path: str | os.PathLike, *, user: str | None = None):
        text = os.fspath(path)
        self.user = _default_user(user)
        if "://" in text:
            self.path = None
            self._url = _server_url(text)
            self.url = make_url(text).render_as_string(hide_password=True)   # what repr, logs and runs show
            try:
                self._reader = self._writer = create_engine(self._url, pool_pre_ping=True)
            except NoSuchModuleError:
                raise ValueError("PostgreSQL projects need psycopg 3: pip install 'psycopg[binary]'") from None
            place = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self._url.host}_{self._url.port or 5432}_{self._url.database}")
            self.home = Path(os.environ.get("NBML_HOME", Path.home() / ".cache" / "nbml")) / "remote" / place
        else:
            self.path = Path(text).expanduser().resolve()
            if self.path.is_dir():
                raise IsADirectoryError(f"{self.path} is a folder; give a project file name such as 'pets.nbml'")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.url = f"sqlite:///{self.path}"
            self._writer = _sqlite_engine(self.path, immediate=True)
            self._reader = _sqlite_engine(self.path, immediate=False)
            self.home = self.path.with_name(self.path.name + ".d")
        self._init_schema()
        self._on_close: list = []    # callables run by close() (caches layered on top of the store)
        self._counts = None          # (items version, newest label row, {(status, label): n}): see _item_counts

    # -- plumbing -------------------------------------------------------------------------------------------
    def _init_schema(self) -> None:
        try:
            with self._write() as c:
                _prepare_schema(c, str(self.path or self.url))
        except OperationalError as e:
            if self.path is not None:
                raise
            reason = _scrub(str(e.orig).strip().splitlines()[0] if e.orig else "no answer", self._url)
            raise ConnectionError(f"cannot open the project at {self.url}: {reason}") from None

    @contextmanager
    def _write(self):
        with self._writer.begin() as c:
            yield c

    @contextmanager
    def _read(self):
        with self._reader.begin() as c:
            yield c

    def close(self) -> None:
        """Close the project's database connections and free what this Dataset keeps in memory (loaded
        embeddings). The project file stays as it is; open it again with `nbml.Dataset(path)`.

        Raises: nothing of its own.

        Examples:
            >>> ds.close()
        """
        for fn in self._on_close:
            fn()
        self._writer.dispose()
        self._reader.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        with self._read() as c:
            rows = c.execute(select(S.items.c.label.is_not(None), func.count()).where(S.items.c.status != "removed")
                             .group_by(S.items.c.label.is_not(None))).all()
        counts = {bool(k): n for k, n in rows}
        return (f"Dataset({self.path or self.url}: {counts.get(True, 0)} labelled, {counts.get(False, 0)} unlabelled, "
                f"{len(self.classes)} classes" + (f", user {self.user!r})" if self.path is None else ")"))

    def __len__(self) -> int:
        with self._read() as c:
            return c.execute(select(func.count()).select_from(S.items).where(S.items.c.status != "removed")).scalar()

    # -- classes --------------------------------------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        """The project's class names, in the order they were added (the grid's keys 1-9 follow it).

        Raises: nothing of its own.

        Examples:
            >>> ds.classes
        """
        with self._read() as c:
            return list(c.execute(select(S.classes.c.name).order_by(S.classes.c.id)).scalars())

    @staticmethod
    def _check_class_name(name) -> str:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a class name must be a non-empty string, not {name!r}")
        return name.strip()

    def _ensure_classes(self, c, names: Iterable[str], record: bool = True) -> list[str]:
        existing = set(c.execute(select(S.classes.c.name)).scalars())
        new = []
        for n in dict.fromkeys(names):
            if n not in existing:   # two people adding one class at once: the second insert adds nothing
                stmt = upsert(c, S.classes).values(name=n, added_at=_now()).on_conflict_do_nothing()
                new += list(c.execute(stmt.returning(S.classes.c.name)).scalars())
        if new and record:
            self._log_action(c, "add_class", {"classes": new})
        return new

    def add_class(self, name: str) -> None:
        """Add a class to the class list (a no-op if it is there already).

        `name`: the new class's name.

        Raises:
            ValueError: `name` is not a non-empty string.

        Examples:
            >>> ds.add_class("cat")
        """
        name = self._check_class_name(name)
        with self._write() as c:
            self._ensure_classes(c, [name])

    # -- reading items --------------------------------------------------------------------------------------
    @property
    def df(self) -> pd.DataFrame:
        """One row per live item (removed items excluded): id, path, label, split, label_source, status, ...

        Raises: nothing of its own.

        Examples:
            >>> ds.df[["id", "label", "split"]].head()
        """
        return self._items_frame(S.items.c.status != "removed")

    def _items_frame(self, *where) -> pd.DataFrame:
        """The items matching `where` as a DataFrame (the columns of `df`), read as the driver's row tuples (no
        SQLAlchemy Row per item) and built column by column, with the collector paused."""
        cols = [S.items.c[n] for n in _ITEM_COLUMNS]
        statement = select(*cols).where(*where).order_by(S.items.c.id)
        if self.path is not None and (n := self._item_count_bound()) >= _arrow_read.MIN_ROWS:
            frame = _arrow_read.sqlite_frame(self.path, statement, list(_ITEM_COLUMNS), n)
            if frame is not None:
                return frame
        with self._read() as c, _no_gc():
            rows = c.execute(statement).cursor.fetchall()
            return _columns_frame(rows, list(_ITEM_COLUMNS))

    def _item_count_bound(self) -> int:
        """How many item rows there are at most (removed ones included): SQLite's largest rowid, one index read."""
        with self._read() as c:
            return int(c.execute(select(func.max(S.items.c.id))).scalar() or 0)

    def item(self, item_id: int) -> dict:
        """One item's row of the store as a dict (id, kind, path or content, label, split, status, ...);
        `item_id` is its id. Raises KeyError when the project has no such item.

        Raises:
            KeyError: the project has no item `item_id`.

        Examples:
            >>> ds.item(1)
        """
        with self._read() as c:
            row = c.execute(select(S.items).where(S.items.c.id == int(item_id))).mappings().first()
        if row is None:
            raise KeyError(f"no item with id {item_id} in this project")
        return dict(row)

    def file_path(self, item_id_or_row) -> str:
        """The exact file-system path of an image item (undecodable names included).

        `item_id_or_row`: an item id, or the dict `item` returns.

        Raises:
            KeyError: given an id, the project has no such item.

        Examples:
            >>> ds.file_path(1)
        """
        row = item_id_or_row if isinstance(item_id_or_row, dict) else self.item(item_id_or_row)
        return os.fsdecode(row["path_raw"]) if row.get("path_raw") else row["path"]

    def history(self, item_id: int | None = None) -> pd.DataFrame:
        """Every label change (value, source, time as a UTC datetime, author, and the undo step `action_id`), for
        one item or for all.

        `item_id`: one item's history; None (the default) gives every item's.

        Raises: nothing of its own.

        Examples:
            >>> ds.history(1)
        """
        q = select(S.labels.c.item_id, S.labels.c.value, S.labels.c.source, S.labels.c.time, S.labels.c.action_id,
                   S.labels.c.author)
        if item_id is not None:
            q = q.where(S.labels.c.item_id == int(item_id))
        with self._read() as c:
            rows = c.execute(q.order_by(S.labels.c.id)).all()
        frame = _frame(rows, ["item_id", "label", "source", "time", "action_id", "author"])
        frame["time"] = pd.to_datetime(frame["time"].astype("float64"), unit="s", utc=True)   # when, in UTC
        frame["action_id"] = frame["action_id"].astype("Int64")      # the undo step it belongs to; <NA>: none
        return frame

    def item_rows(self, ids: Sequence[int]) -> list[dict]:
        """Full rows for these item ids, in the order given (unknown ids are left out).

        Raises: nothing of its own.

        Examples:
            >>> ds.item_rows([3, 1, 2])
        """
        ids = [int(i) for i in ids]
        if not ids:
            return []
        rows = {}
        with self._read() as c:
            for i in range(0, len(ids), _IN_CHUNK):
                rows.update({r["id"]: dict(r) for r in c.execute(
                    select(S.items).where(S.items.c.id.in_(ids[i:i + _IN_CHUNK]))).mappings()})
        return [rows[i] for i in ids if i in rows]

    def _item_filter(self, labelled, label, split, usable_only) -> list:
        where = [S.items.c.status != "removed"]
        if usable_only:
            where.append(S.items.c.status == "ok")
        if labelled is not None:
            where.append(S.items.c.label.is_not(None) if labelled else S.items.c.label.is_(None))
        if label is not None:
            where.append(S.items.c.label == label)
        if split is not None:
            where.append(S.items.c.split == split)
        return where

    def _where(self, c, labelled, label, split, usable_only, to_label_by) -> list:
        where = self._item_filter(labelled, label, split, usable_only)
        if to_label_by is not None:
            where += _leases.to_label_by(c, to_label_by, self._overlap(c))
        return where

    def pager(self, *, labelled: bool | None = None, label: str | None = None, split: str | None = None,
              usable_only: bool = False, to_label_by: str | None = None) -> "Pager":
        """Pages of `query_ids` with these filters by keyset (seek) instead of OFFSET: see `Pager`.

        Filters: `labelled` (True: labelled items only, False: unlabelled only, None: both), `label` (one class),
        `split` ('train', 'valid', 'test'), `usable_only` (leave out items marked unusable), `to_label_by` (a person's
        labelling queue, leaving out what others hold).

        Raises: nothing of its own.

        Examples:
            >>> pager = ds.pager(labelled=False)
            >>> ids, total = pager.page(0, 48)
        """
        return Pager(self, dict(labelled=labelled, label=label, split=split, usable_only=usable_only,
                                to_label_by=to_label_by))

    def _page(self, pager: "Pager", offset: int, limit: int) -> tuple[list[int], int]:
        with self._read() as c:
            where = self._where(c, **pager.filters)
            total = self._count_in(c, pager.filters, where)
            pager.check(self._paging_state(c, pager.filters))
            offset = max(0, min(int(offset), total))
            rank, anchor = pager.nearest(offset, total)
            ids = self._seek(c, where, rank, anchor, offset, limit)
        pager.remember(ids, offset)
        return ids, total

    def _paging_state(self, c, filters: dict) -> tuple:
        """What the rank of an id among the filter's items depends on: while it is equal, remembered ranks hold.
        Labels count only for the filters on them; others' leases only for a person's queue."""
        on_labels = any(filters.get(k) is not None for k in ("labelled", "label", "to_label_by"))
        keys = [ITEMS_VERSION] + ([SPLITS_VERSION] if filters.get("split") is not None else [])
        meta = dict(c.execute(select(S.meta.c.key, S.meta.c.value).where(S.meta.c.key.in_(keys))).all())
        state = (tuple(meta.get(k) for k in keys),)
        if on_labels:
            state += (c.execute(select(func.max(S.labels.c.id))).scalar() or 0,)
        if filters.get("to_label_by") is not None:
            overlap = self._overlap(c)
            state += (overlap, frozenset(_leases.held_by_others(c, filters["to_label_by"])))
            if overlap > 1:   # others' labels and reviews move the queue too
                state += (c.execute(select(func.count(), func.max(S.annotations.c.time))).one(),)
        return state

    @staticmethod
    def _seek(c, where: list, rank: int, anchor: int | None, offset: int, limit: int) -> list[int]:
        """The ids at ranks offset .. offset+limit-1 of `where` in id order, given that `rank` of them come before
        id `anchor` (None: after every item): a seek to the anchor in the index, then a walk of |offset - rank|."""
        item_id = S.items.c.id
        if offset >= rank:
            if anchor is None:
                return []
            q = select(item_id).where(*where, item_id >= anchor).order_by(item_id).limit(limit)
            return list(c.execute(q.offset(offset - rank) if offset > rank else q).scalars())
        back = rank - offset
        q = select(item_id).where(*where, *([item_id < anchor] if anchor is not None else []))
        before = list(c.execute(q.order_by(item_id.desc()).limit(back)).scalars())[::-1]
        ids = before[:limit]
        if len(ids) < limit and anchor is not None:
            ids += list(c.execute(select(item_id).where(*where, item_id >= anchor).order_by(item_id)
                                  .limit(limit - len(ids))).scalars())
        return ids

    def query_ids(self, *, labelled: bool | None = None, label: str | None = None, split: str | None = None,
                  usable_only: bool = False, offset: int = 0, limit: int | None = None,
                  to_label_by: str | None = None) -> list[int]:
        """Ids of live items, oldest first, filtered by labelled / label / split / usable; `offset`/`limit` page.
        `to_label_by=user`: that person's labelling queue (see nbml.leases.to_label_by).

        `usable_only=True` leaves out items marked unusable.

        Raises: nothing of its own.

        Examples:
            >>> ds.query_ids(labelled=False, limit=10)
            >>> ds.query_ids(label="cat", split="valid")
        """
        with self._read() as c:
            q = (select(S.items.c.id).where(*self._where(c, labelled, label, split, usable_only, to_label_by))
                 .order_by(S.items.c.id))
            if offset or limit is not None:
                q = q.offset(offset).limit(limit if limit is not None else -1)
            return list(c.execute(q).scalars())

    def count_ids(self, *, labelled: bool | None = None, label: str | None = None, split: str | None = None,
                  usable_only: bool = False, to_label_by: str | None = None) -> int:
        """How many items `query_ids` would return with the same filters.

        The filters are those of `query_ids`: `labelled`, `label`, `split`, `usable_only`, `to_label_by`.

        Raises: nothing of its own.

        Examples:
            >>> ds.count_ids(label="cat", usable_only=True)
        """
        with self._read() as c:
            filters = dict(labelled=labelled, label=label, split=split, usable_only=usable_only,
                           to_label_by=to_label_by)
            return self._count_in(c, filters, None)

    def _count_in(self, c, filters: dict, where: list | None) -> int:
        """count_ids in the caller's transaction: from the kept (status, label) counts where the filters allow
        (for a person's queue with one label per item: the unlabelled count less the items others hold), else a
        COUNT over `where` (the filters' clauses, made here when None)."""
        labelled, label, usable_only = filters.get("labelled"), filters.get("label"), filters.get("usable_only")
        if filters.get("split") is None and (filters.get("to_label_by") is None or self._overlap(c) <= 1):
            counts = self._item_counts(c)
            if filters.get("to_label_by") is None:
                return sum(n for (status, value), n in counts.items()
                           if status != "removed" and (status == "ok" or not usable_only)
                           and (labelled is None or (value is not None) == labelled)
                           and (label is None or value == label))
            queue = counts.get(("ok", None), 0) if labelled in (None, False) and label is None else 0
            others = sorted(_leases.held_by_others(c, filters["to_label_by"]))
            for i in range(0, len(others), _IN_CHUNK):
                if queue:
                    queue -= c.execute(select(func.count()).select_from(S.items).where(
                        S.items.c.id.in_(others[i:i + _IN_CHUNK]), S.items.c.status == "ok",
                        S.items.c.label.is_(None))).scalar()
            return queue
        where = where if where is not None else self._where(c, **filters)
        return int(c.execute(select(func.count()).select_from(S.items).where(*where)).scalar())

    def label_counts(self) -> dict:
        """{class: number of live usable items with that label}, every class listed, plus None for unlabelled.

        Raises: nothing of its own.

        Examples:
            >>> ds.label_counts()
        """
        counts = {name: 0 for name in self.classes}
        counts.update({value: n for (status, value), n in self._item_counts().items() if status == "ok"})
        return counts

    def _item_counts(self, c=None) -> dict[tuple[str, str | None], int]:
        """{(status, label): items}, counted in one scan of the (status, label) index and kept: while no item is
        added or changes status, the labels changed since (read from the label history) bring it up to date, so
        a page turn or a key press on a large project does not count a million rows again. A project file keeps
        its latest counts in `meta` too, so that a new Dataset starts from them instead of a scan (SQLite only:
        one writer at a time numbers the label history in commit order, which moving the counts relies on)."""
        if c is None:
            with self._read() as c:
                return self._item_counts(c)
        version = c.execute(select(S.meta.c.value).where(S.meta.c.key == ITEMS_VERSION)).scalar()
        newest = c.execute(select(func.max(S.labels.c.id))).scalar() or 0
        known = self._counts
        if known is None and self.path is not None:
            known = self._saved_counts(c)
        if known is not None and known[:2] == (version, newest):
            self._counts = known
            return known[2]
        counts = None
        if known is not None and known[0] == version and 0 <= newest - known[1] <= _COUNTS_DELTA_MAX:
            counts = self._counts_moved(c, known[2], known[1])
        if counts is None:
            counts = {(status, value): n for status, value, n in c.execute(
                select(S.items.c.status, S.items.c.label, func.count())
                .group_by(S.items.c.status, S.items.c.label)).all()}
            if self.path is not None:
                self._save_counts(version, newest, counts)
        self._counts = (version, newest, counts)
        return counts

    def _saved_counts(self, c):
        text = c.execute(select(S.meta.c.value).where(S.meta.c.key == _COUNTS_KEY)).scalar()
        if not text:
            return None
        saved = json.loads(text)
        return saved["items_version"], saved["label_row"], {(s, v): n for s, v, n in saved["counts"]}

    def _save_counts(self, version, newest: int, counts: dict) -> None:
        value = json.dumps({"items_version": version, "label_row": newest,
                            "counts": [[s, v, n] for (s, v), n in counts.items()]})
        try:
            with self._write() as w:
                stmt = upsert(w, S.meta).values(key=_COUNTS_KEY, value=value)
                w.execute(stmt.on_conflict_do_update(index_elements=[S.meta.c.key],
                                                     set_={"value": stmt.excluded.value}))
        except OperationalError:     # a read-only or busy file: the counts are kept in this process only
            pass

    def _labelled_split_counts(self) -> list[tuple[str, str | None, int]]:
        """(label, split, items) of the usable labelled items, counted in SQL over the (status, label) index."""
        with self._read() as c:
            return [tuple(r) for r in c.execute(
                select(S.items.c.label, S.items.c.split, func.count())
                .where(S.items.c.status == "ok", S.items.c.label.is_not(None))
                .group_by(S.items.c.label, S.items.c.split)).all()]

    @staticmethod
    def _counts_moved(c, counts: dict, since: int) -> dict:
        """`counts` as of label row `since`, moved to now: each item relabelled since leaves the label its last
        earlier history row gave it (none: unlabelled) for the label it has now."""
        L = S.labels.c
        ids = list(c.execute(select(L.item_id).where(L.id > since).distinct()).scalars())
        before = dict(c.execute(select(L.item_id, L.value).where(L.id.in_(
            select(func.max(L.id)).where(L.item_id.in_(ids), L.id <= since).group_by(L.item_id)))).all())
        out = dict(counts)
        for item_id, status, value in c.execute(select(S.items.c.id, S.items.c.status, S.items.c.label)
                                                .where(S.items.c.id.in_(ids))).all():
            old = (status, before.get(item_id))
            out[old] = out.get(old, 0) - 1
            out[(status, value)] = out.get((status, value), 0) + 1
        return {k: n for k, n in out.items() if n}

    # -- adding items (a kind's ingest produces NewItems; see nbml.kinds) ----------------------------------------
    @property
    def kind(self) -> str | None:
        """The kind of item this project holds ('image', 'text', ...), or None while it is empty.

        Raises: nothing of its own.

        Examples:
            >>> ds.kind
        """
        with self._read() as c:
            kind = c.execute(select(S.meta.c.value).where(S.meta.c.key == "kind")).scalar()
            if kind is None:   # projects from before the key: their items say
                kind = c.execute(select(S.items.c.kind).limit(1)).scalar()
        return kind

    def check_kind(self, kind: str) -> None:
        """Raise KindMismatchError, before any work, when this project holds another kind of item.

        Raises:
            KindMismatchError: the project already holds items of another kind.

        Examples:
            >>> ds.check_kind("image")
        """
        held = self.kind
        if held not in (None, kind):
            raise KindMismatchError(f"this project holds {held} items and a project holds one kind of item; "
                                    f"put the {kind} items in a project of their own (nbml.Dataset('other.nbml'))")

    def _claim_kind(self, c, kind: str) -> None:
        held = c.execute(select(S.meta.c.value).where(S.meta.c.key == "kind")).scalar()
        if held is None:
            held = c.execute(select(S.items.c.kind).limit(1)).scalar()
            c.execute(upsert(c, S.meta).values(key="kind", value=held or kind).on_conflict_do_nothing())
            held = c.execute(select(S.meta.c.value).where(S.meta.c.key == "kind")).scalar()
        if held not in (None, kind):
            raise KindMismatchError(f"this project holds {held} items and a project holds one kind of item; "
                                    f"put the {kind} items in a project of their own (nbml.Dataset('other.nbml'))")

    def insert_items(self, kind: str, items: Iterable[NewItem], report: IngestReport | None = None,
                     chunk: int = 512, origin: str = "import") -> IngestReport:
        """Insert items of one kind, `chunk` per transaction; content already in the project (same sha256) is
        reported as a duplicate, not added twice. Returns the report (ids added, duplicates).

        `origin` records where the items came from ('import' for the `add_...` methods; the prediction log's items
        another).

        Raises:
            ValueError: an item's split is not 'train', 'valid' or 'test'.
            KindMismatchError: the project already holds items of another kind.

        Examples:
            >>> item = NewItem(sha256=digest, shown="a note", columns={"content": "a note"})
            >>> report = ds.insert_items("text", [item])
        """
        report = IngestReport() if report is None else report
        batch: list[NewItem] = []
        for item in items:
            batch.append(item)
            if len(batch) >= chunk:
                self._insert(kind, batch, report, origin)
                batch = []
        if batch:
            self._insert(kind, batch, report, origin)
        return report

    def _insert(self, kind: str, batch: list[NewItem], report: IngestReport, origin: str) -> None:
        for b in batch:
            if b.split is not None and b.split not in SPLITS:
                raise ValueError(f"split must be one of {SPLITS}, found {b.split!r}")
        with self._write() as c:
            self._claim_kind(c, kind)
            known = dict(c.execute(select(S.items.c.sha256, S.items.c.id)
                                   .where(S.items.c.sha256.in_({b.sha256 for b in batch}))).all())
            self._ensure_classes(c, [b.label for b in batch if b.label], record=False)
            now = _now()
            rows, fresh, batch_dups = [], {}, []
            for b in batch:
                if b.sha256 in known:
                    report.duplicates.append((b.shown, known[b.sha256]))
                    continue
                if b.sha256 in fresh:             # same content twice in this batch: resolved after insert
                    batch_dups.append((b.shown, b.sha256))
                    continue
                fresh[b.sha256] = b
                rows.append(dict(kind=kind, sha256=b.sha256, status="ok", split=b.split, label=b.label,
                                 label_source="import" if b.label else None, label_time=now if b.label else None,
                                 added_at=now, origin=origin, **{"path": None, "path_raw": None, "content": None,
                                                                 "size_bytes": None, "mtime": None, "width": None,
                                                                 "height": None, **b.columns}))
            if not rows:
                return
            c.execute(insert(S.items), rows)     # one executemany for the whole batch
            self._bump(c, ITEMS_VERSION)
            ids = dict(c.execute(select(S.items.c.sha256, S.items.c.id)
                                 .where(S.items.c.sha256.in_(list(fresh)))).all())
            history = [dict(item_id=ids[h], value=b.label, source="import", time=now, action_id=None,
                            author=self.user) for h, b in fresh.items() if b.label]
            if history:
                c.execute(insert(S.labels), history)
            report.added += [ids[h] for h in fresh]
            report.duplicates += [(shown, ids[h]) for shown, h in batch_dups]

    # -- changing items (each change is one undoable action) --------------------------------------------------
    def _log_action(self, c, kind: str, payload: dict) -> int:
        return c.execute(insert(S.actions).values(kind=kind, payload=json.dumps(payload), time=_now(), undone=0,
                                                  author=self.user)).inserted_primary_key[0]

    def _meta_value(self, key: str) -> str | None:
        with self._read() as c:
            return c.execute(select(S.meta.c.value).where(S.meta.c.key == key)).scalar()

    def _set_meta(self, key: str, value: str) -> None:
        """Keep a project-wide setting in `meta` (a kind's own, such as a table's columns)."""
        with self._write() as c:
            if not c.execute(update(S.meta).where(S.meta.c.key == key).values(value=value)).rowcount:
                c.execute(insert(S.meta).values(key=key, value=value))

    @staticmethod
    def _bump(c, *keys: str) -> None:
        """Add one to these `meta` counters (created at 1), inside the caller's write transaction."""
        for key in keys:
            done = c.execute(update(S.meta).where(S.meta.c.key == key)
                             .values(value=cast(cast(S.meta.c.value, Integer) + 1, Text))).rowcount
            if not done:
                c.execute(insert(S.meta).values(key=key, value="1"))

    def _live_rows(self, c, ids: list[int], allow_removed: bool = False) -> dict[int, dict]:
        # FOR UPDATE (PostgreSQL; SQLite's writer holds the whole file): nobody changes them until this commits
        rows = {r["id"]: dict(r) for r in c.execute(
            select(S.items.c.id, S.items.c.label, S.items.c.label_source, S.items.c.status, S.items.c.split)
            .where(S.items.c.id.in_(ids)).order_by(S.items.c.id).with_for_update()).mappings()}
        missing = [i for i in ids if i not in rows]
        if missing:
            raise KeyError(f"no item with id {missing[0]} in this project" +
                           (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        if not allow_removed:
            gone = [i for i in ids if rows[i]["status"] == "removed"]
            if gone:
                raise KeyError(f"item {gone[0]} was removed; call ds.restore({gone[0]}) first")
        return rows

    def _apply_label(self, c, item_id: int, label, source, action_id, when) -> None:
        c.execute(update(S.items).where(S.items.c.id == item_id).values(
            label=label, label_source=source if label is not None else None, label_time=when))
        c.execute(insert(S.labels).values(item_id=item_id, value=label, source=source or "human", time=when,
                                          action_id=action_id, author=self.user))

    def _annotation(self, c, ids: list[int], review: int) -> dict[int, str]:
        """The caller's own label (or review) of these items: {id: value}."""
        a = S.annotations.c
        return dict(c.execute(select(a.item_id, a.value).where(a.item_id.in_(ids), a.author == self.user,
                                                               a.review == review)).all())

    def _set_annotation(self, c, item_ids: list[int], value, review: int, when) -> None:
        a = S.annotations
        if value is None:
            c.execute(delete(a).where(a.c.item_id.in_(item_ids), a.c.author == self.user, a.c.review == review))
            return
        stmt = upsert(c, a)   # rows as executemany parameters: compiled once, not once per call
        c.execute(stmt.on_conflict_do_update(index_elements=[a.c.item_id, a.c.author, a.c.review],
                                             set_={"value": stmt.excluded.value, "time": stmt.excluded.time}),
                  [dict(item_id=i, author=self.user, review=review, value=value, time=when) for i in item_ids])

    def set_label(self, item_id, label: str | None, source: str = "human") -> None:
        """Label one item or a list of items (one undo step); `None` clears the label. New labels add a class.

        A person's label (`human`) or review (`review`) is also kept as that person's own (see `annotations`), and
        the caller's leases on the items end.

        `item_id`: one id or a list of ids. `source`: who gave the label, 'human' (the default), 'review' (settling a
        disagreement), 'model' or 'import' (`LABEL_SOURCES`), kept in `history`.

        Raises:
            ValueError: `source` is not one of LABEL_SOURCES, `label` is an empty name, or the list of ids is empty.
            TypeError: an id is a string or bytes.
            KeyError: an item is not in the project, or was removed (restore it first).

        Examples:
            >>> ds.set_label(3, "cat")
            >>> ds.set_label([4, 5], None)
        """
        if source not in LABEL_SOURCES:
            raise ValueError(f"source must be one of {LABEL_SOURCES}, not {source!r}")
        if label is not None:
            label = self._check_class_name(label)
        ids = _ids(item_id)
        with self._write() as c:
            rows = self._live_rows(c, ids)
            new_classes = self._ensure_classes(c, [label], record=False) if label is not None else []
            review = {"human": 0, "review": 1}.get(source)
            mine = self._annotation(c, ids, review) if review is not None else {}
            payload = {"items": [{"id": i, "before": [rows[i]["label"], rows[i]["label_source"]],
                                  "after": [label, source], "own_before": mine.get(i)} for i in ids],
                       "new_classes": new_classes, "review": review}
            action = self._log_action(c, "label", payload)
            now = _now()
            for i in ids:
                self._apply_label(c, i, label, source, action, now)
            if review is not None:
                self._set_annotation(c, ids, label, review, now)
            _leases.release(c, self.user, ids)

    def _set_status(self, ids, status: str, kind: str) -> None:
        ids = _ids(ids)
        with self._write() as c:
            rows = self._live_rows(c, ids, allow_removed=True)
            payload = {"items": [{"id": i, "before": rows[i]["status"], "after": status} for i in ids]}
            self._log_action(c, kind, payload)
            c.execute(update(S.items).where(S.items.c.id.in_(ids)).values(status=status))
            self._bump(c, ITEMS_VERSION)

    def remove(self, item_id) -> None:
        """Soft-delete one item or a list: it leaves `df` and training, and `restore` or `undo` brings it back.

        `item_id`: one id or a list of ids.

        Raises:
            TypeError: an id is a string or bytes.
            ValueError: the list of ids is empty.
            KeyError: an item is not in the project.

        Examples:
            >>> ds.remove(3)
            >>> ds.remove([4, 5])
        """
        self._set_status(item_id, "removed", "remove")

    def restore(self, item_id) -> None:
        """Bring removed or unusable items back.

        `item_id`: one id or a list of ids.

        Raises:
            TypeError: an id is a string or bytes.
            ValueError: the list of ids is empty.
            KeyError: an item is not in the project.

        Examples:
            >>> ds.restore(3)
        """
        self._set_status(item_id, "ok", "restore")

    def mark_unusable(self, item_id) -> None:
        """Keep the item but leave it out of training (blurred, wrong kind of picture, ...).

        `item_id`: one id or a list of ids (one undo step).

        Raises:
            TypeError: an id is a string or bytes.
            ValueError: the list of ids is empty.
            KeyError: an item is not in the project.

        Examples:
            >>> ds.mark_unusable([7, 8])
        """
        self._set_status(item_id, "unusable", "unusable")

    def set_split(self, item_id, split: str | None) -> None:
        """Put items in `train`, `valid` or `test`, or back to unassigned (`None`).

        `item_id`: one id or a list of ids; `split`: 'train', 'valid', 'test' or None.

        Raises:
            ValueError: `split` is not 'train', 'valid', 'test' or None, or the list of ids is empty.
            TypeError: an id is a string or bytes.
            KeyError: an item is not in the project, or was removed.

        Examples:
            >>> ds.set_split([1, 2], "test")
        """
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None, not {split!r}")
        ids = _ids(item_id)
        with self._write() as c:
            rows = self._live_rows(c, ids)
            self._log_action(c, "split", {"items": [{"id": i, "before": rows[i]["split"], "after": split}
                                                    for i in ids]})
            c.execute(update(S.items).where(S.items.c.id.in_(ids)).values(split=split))
            self._bump(c, SPLITS_VERSION)

    def undo(self) -> dict | None:
        """Revert the caller's latest change not yet undone (label, remove, restore, split, new class); never
        another person's. Changes made before authors were recorded (nbml before schema 2) are anyone's.

        Returns a description of what was undone, or None when there is nothing left to undo. When someone else
        has labelled one of the items since, nothing changes and UndoConflictError says so (the next undo goes
        to the caller's change before that one).

        Raises:
            UndoConflictError: another person labelled one of the items since the change; nothing was undone.

        Examples:
            >>> ds.undo()
        """
        conflict = None
        with self._write() as c:
            a = S.actions.c
            row = c.execute(select(S.actions).where(a.undone == 0, (a.author == self.user) | a.author.is_(None))
                            .order_by(a.id.desc()).limit(1).with_for_update()).mappings().first()
            if row is None:
                return None
            payload = json.loads(row["payload"])
            kind = row["kind"]
            if kind == "label":
                conflict = self._changed_since(c, row["id"], [it["id"] for it in payload["items"]])
            if conflict is not None:
                c.execute(update(S.actions).where(a.id == row["id"]).values(undone=2))
            elif kind == "label":
                now = _now()
                for it in payload["items"]:
                    label, source = it["before"]
                    self._apply_label(c, it["id"], label, source, row["id"], now)
                    if payload.get("review") is not None:
                        self._set_annotation(c, [it["id"]], it.get("own_before"), payload["review"], now)
                self._drop_unused_classes(c, payload.get("new_classes", []))
            elif kind in ("remove", "restore", "unusable"):
                for it in payload["items"]:
                    c.execute(update(S.items).where(S.items.c.id == it["id"]).values(status=it["before"]))
                self._bump(c, ITEMS_VERSION)
            elif kind == "split":
                for it in payload["items"]:
                    c.execute(update(S.items).where(S.items.c.id == it["id"]).values(split=it["before"]))
                self._bump(c, SPLITS_VERSION)
            elif kind == "add_class":
                self._drop_unused_classes(c, payload["classes"])
            if conflict is None:
                c.execute(update(S.actions).where(a.id == row["id"]).values(undone=1))
                return {"kind": kind, "items": [it["id"] for it in payload.get("items", [])]}
        item, value, author = conflict
        raise UndoConflictError(f"item {item} was labelled {value!r} by {author} after your change, so nothing was "
                                f"undone; label it yourself to change it (the next undo goes to your change before)")

    def _changed_since(self, c, action_id: int, ids: list[int]) -> tuple | None:
        """(item, label, author) of a label another person gave one of `ids` after action `action_id`, or None."""
        lab = S.labels.c
        last = c.execute(select(func.max(lab.id)).where(lab.action_id == action_id)).scalar() or 0
        return c.execute(select(lab.item_id, lab.value, lab.author).where(
            lab.item_id.in_(ids), lab.id > last, lab.author != self.user).order_by(lab.id.desc()).limit(1)).first()

    def _drop_unused_classes(self, c, names: list[str]) -> None:
        for name in names:
            used = c.execute(select(func.count()).select_from(S.items).where(S.items.c.label == name)).scalar()
            if not used:
                c.execute(S.classes.delete().where(S.classes.c.name == name))

    # -- several people: leases on the queue, overlap, each person's labels, agreement ---------------------------
    def lease(self, item_ids, ttl: float = _leases.LEASE_TTL, release=()) -> list[int]:
        """Hold items of the labelling queue for `ttl` seconds so nobody else is handed them (the caller's own
        leases are renewed), after releasing `release`; returns the ids obtained, sorted.

        `item_ids`: the ids wanted.

        Raises: nothing of its own.

        Examples:
            >>> held = ds.lease([10, 11, 12], ttl=600)
        """
        ids = [int(i) for i in item_ids]
        with self._write() as c:
            _leases.release(c, self.user, release)
            return _leases.take(c, ids, self.user, float(ttl))

    def release(self, item_ids=None) -> None:
        """End the caller's leases on these items (skipped, no longer shown), or on every item when None.

        `item_ids`: the ids to let go, or None for all of the caller's.

        Raises:
            TypeError: an id is a string or bytes.
            ValueError: the list of ids is empty.

        Examples:
            >>> ds.release([10, 11])
            >>> ds.release()
        """
        with self._write() as c:
            _leases.release(c, self.user, None if item_ids is None else _ids(item_ids))

    def next_items(self, n: int = 1, ttl: float = _leases.LEASE_TTL) -> list[int]:
        """Take up to `n` items from the caller's labelling queue (unlabelled, or short of the overlap's labels),
        oldest first, leased so that nobody else gets them until labelled, released or `ttl` seconds pass.

        Raises:
            ValueError: `n` is below 1.

        Examples:
            >>> ids = ds.next_items(8)
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, not {n}")
        with self._write() as c:
            return _leases.next_free(c, self.user, self._overlap(c), int(n), float(ttl))

    def held_by_others(self) -> set[int]:
        """Ids someone else holds a lease on now (their grid shows them).

        Raises: nothing of its own.

        Examples:
            >>> ds.held_by_others()
        """
        with self._read() as c:
            return _leases.held_by_others(c, self.user)

    def _overlap(self, c) -> int:
        value = c.execute(select(S.meta.c.value).where(S.meta.c.key == "overlap")).scalar()
        return int(value) if value is not None else 1

    @property
    def overlap(self) -> int:
        """How many people's labels each item asks for (1 unless `set_overlap` said more).

        Raises: nothing of its own.

        Examples:
            >>> ds.overlap
        """
        with self._read() as c:
            return self._overlap(c)

    def set_overlap(self, k: int) -> None:
        """Ask for `k` independent labels per item: each person's queue holds items with fewer than `k` people's
        labels that they have not labelled; where labels differ the item goes to review (`disagreements`) and
        training takes the reviewed label, else the majority, else the latest.

        Raises:
            ValueError: `k` is not a whole number of 1 or more.

        Examples:
            >>> ds.set_overlap(2)
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"overlap must be a whole number of labels per item, 1 or more, not {k!r}")
        with self._write() as c:
            stmt = upsert(c, S.meta).values(key="overlap", value=str(k))
            c.execute(stmt.on_conflict_do_update(index_elements=[S.meta.c.key], set_={"value": stmt.excluded.value}))

    def annotations(self, item_id: int | None = None) -> pd.DataFrame:
        """Each person's own current label of each item: `item_id`, `author`, `label`, `review` (1 for a
        reviewer's settling label), `time`.

        Raises: nothing of its own.

        Examples:
            >>> ds.annotations(3)
        """
        a = S.annotations.c
        q = select(a.item_id, a.author, a.value, a.review, a.time).order_by(a.item_id, a.time)
        if item_id is not None:
            q = q.where(a.item_id == int(item_id))
        with self._read() as c:
            rows = c.execute(q.join_from(S.annotations, S.items).where(S.items.c.status != "removed")).all()
        return _frame(rows, ["item_id", "author", "value", "review", "time"]).rename(columns={"value": "label"})

    def _annotations_raw(self) -> pd.DataFrame:
        return self.annotations().rename(columns={"label": "value"})

    def disagreements(self) -> pd.DataFrame:
        """Items whose people gave different labels and that no reviewer has settled: `id`, `labels`
        ({author: label}), `n`, `majority` (None on a tie). Settle one with ds.set_label(id, label, source='review')
        or in the grid's review filter.

        Raises: nothing of its own.

        Examples:
            >>> ds.disagreements()
        """
        from .agreement import disagreeing
        return disagreeing(self._annotations_raw())

    def agreement(self):
        """How much the people agree on the items two or more labelled: Cohen's kappa for two annotators,
        Fleiss' for more (an `nbml.agreement.Agreement`, a dict shown as one line).

        Raises: nothing of its own.

        Examples:
            >>> ds.agreement()
        """
        from .agreement import agreement
        return agreement(self._annotations_raw())

    # -- thumbnails of a project on a server (nbml.thumbs) ----------------------------------------------------------
    def _thumb_rows(self, size: int, shas: list[str]) -> dict[str, bytes]:
        with self._read() as c:
            return {h: bytes(d) for h, d in c.execute(select(S.thumbs.c.sha256, S.thumbs.c.data).where(
                S.thumbs.c.size == size, S.thumbs.c.sha256.in_(shas))).all()}

    def _add_thumbs(self, size: int, made: dict[str, bytes]) -> None:
        if made:
            with self._write() as c:
                stmt = upsert(c, S.thumbs).values([dict(sha256=h, size=size, data=d) for h, d in made.items()])
                c.execute(stmt.on_conflict_do_nothing())

    # -- what training reads and writes ---------------------------------------------------------------------
    def assign_validation_split(self, valid_pct: float = 0.2, seed: int = 42) -> int:
        """Give labelled items that have no split a stratified train/valid split; returns how many were assigned.

        Classes with a single unassigned item send it to train. Already assigned items never move.

        `valid_pct`: the share of each class that goes to `valid` (0.2); `seed`: the random seed of the draw, so the
        same labels give the same split.

        Raises: nothing of its own.

        Examples:
            >>> ds.assign_validation_split(valid_pct=0.25, seed=0)
        """
        import numpy as np
        frame = self._items_frame(S.items.c.status == "ok", S.items.c.label.is_not(None), S.items.c.split.is_(None))
        if frame.empty:
            return 0
        rng = np.random.default_rng(seed)
        valid_ids, train_ids = [], []
        for _, group in frame.groupby("label", sort=True):
            ids = group["id"].to_numpy().copy()
            rng.shuffle(ids)
            n_valid = int(round(len(ids) * valid_pct)) if len(ids) > 1 else 0
            if len(ids) >= 2 and n_valid == 0:
                n_valid = 1 if len(ids) >= 4 else 0
            valid_ids += ids[:n_valid].tolist()
            train_ids += ids[n_valid:].tolist()
        with self._write() as c:
            for split, ids in (("valid", valid_ids), ("train", train_ids)):
                if ids:
                    c.execute(update(S.items).where(S.items.c.id.in_(ids)).values(split=split))
            self._bump(c, SPLITS_VERSION)
        return len(valid_ids) + len(train_ids)

    def training_items(self, splits: Sequence[str] = ("train", "valid")) -> pd.DataFrame:
        """Usable labelled items in the given splits, with the columns training needs. Where people labelled an
        item, `label` is the reviewed label if there is one, else (with overlap above 1) the majority, else the
        latest; `label_rule` says which.

        Raises: nothing of its own.

        Examples:
            >>> ds.training_items(splits=("train",))
        """
        from .agreement import resolve
        names = ["id", "path", "path_raw", "content", "sha256", "size_bytes", "mtime", "label", "split"]
        with self._read() as c:
            rows = c.execute(select(*[S.items.c[n] for n in names]).where(
                S.items.c.status == "ok", S.items.c.label.is_not(None),
                S.items.c.split.in_(list(splits))).order_by(S.items.c.id)).all()
            overlap = self._overlap(c)
            has_people = c.execute(select(exists().where(S.annotations.c.review >= (0 if overlap > 1 else 1)))
                                   ).scalar()
        frame = _frame(rows, names)
        return resolve(frame, self._annotations_raw() if has_people else pd.DataFrame(), overlap > 1)

    def snapshot(self, frame: pd.DataFrame) -> str:
        """Record the labelled data a run saw; returns its id (a hash of ids, contents, labels and splits).

        `frame`: the labelled items the run trained and validated on (id, content hash, label, split).

        Raises: nothing of its own.

        Examples:
            >>> snapshot_id = ds.snapshot(ds.training_items())
        """
        # column lists zipped: the same JSON as rows of [id, sha256, label, split], without an object array
        listing = list(zip(frame["id"].astype("int64").tolist(), frame["sha256"].tolist(), frame["label"].tolist(),
                           frame["split"].tolist()))
        blob = json.dumps(listing, separators=(",", ":")).encode()
        snap_id = hashlib.sha256(blob).hexdigest()[:16]
        counts = frame["label"].value_counts().sort_index().to_dict()
        rules = (frame["label_rule"].value_counts().sort_index().to_dict() if "label_rule" in frame
                 else {"latest": len(frame)})
        with self._write() as c:
            if c.execute(select(S.snapshots.c.id).where(S.snapshots.c.id == snap_id)).first() is None:
                c.execute(insert(S.snapshots).values(id=snap_id, created_at=_now(), n_items=len(frame),
                                                     class_counts=json.dumps(counts), listing=zlib.compress(blob),
                                                     label_rules=json.dumps(rules)))
        return snap_id

    def snapshot_items(self, snapshot_id: str) -> pd.DataFrame:
        """The items of a data snapshot that a run recorded (`ds.runs()['snapshot_id']`): id, sha256, label and split of
        each. `snapshot_id` is the id `snapshot` returned; a KeyError names an unknown one.

        Raises:
            KeyError: the project has no snapshot `snapshot_id`.

        Examples:
            >>> ds.snapshot_items(ds.runs()["snapshot_id"].iloc[-1])
        """
        with self._read() as c:
            blob = c.execute(select(S.snapshots.c.listing).where(S.snapshots.c.id == snapshot_id)).scalar()
        if blob is None:
            raise KeyError(f"no data snapshot {snapshot_id!r} in this project")
        return pd.DataFrame(json.loads(zlib.decompress(blob)), columns=["id", "sha256", "label", "split"])

    def _start_run(self, arch: str, params: dict, snapshot_id: str, device: str, versions: dict) -> int:
        with self._write() as c:
            rules = c.execute(select(S.snapshots.c.label_rules).where(S.snapshots.c.id == snapshot_id)).scalar()
            # which label each item trained on (reviewed / majority / latest), and who started the run
            params = {**params, "label_rule": json.loads(rules) if rules else None, "user": self.user}
            return c.execute(insert(S.runs).values(
                started_at=_now(), status="running", arch=arch, params=json.dumps(params, default=str),
                history="[]", snapshot_id=snapshot_id, device=device, versions=json.dumps(versions))
            ).inserted_primary_key[0]

    def _update_run(self, run_id: int, **values) -> None:
        for key in ("history", "metrics", "params"):
            if key in values and not isinstance(values[key], str):
                values[key] = json.dumps(values[key], default=float)
        with self._write() as c:
            c.execute(update(S.runs).where(S.runs.c.id == run_id).values(**values))

    def runs(self) -> pd.DataFrame:
        """Training runs, newest last: parameters, per-epoch history, final metrics, data snapshot, versions.

        Raises: nothing of its own.

        Examples:
            >>> ds.runs()[["id", "status", "arch", "final_accuracy"]]
        """
        with self._read() as c:
            rows = c.execute(select(S.runs).order_by(S.runs.c.id)).mappings().all()
        records = []
        for r in rows:
            rec = dict(r)
            for key in ("params", "history", "metrics", "versions"):
                rec[key] = json.loads(rec[key]) if rec[key] else ({} if key != "history" else [])
            rec.update({f"final_{k}": v for k, v in (rec["metrics"] or {}).items()
                        if isinstance(v, (int, float))})
            records.append(rec)
        columns = ["id", "status", "arch", "started_at", "finished_at", "duration_s", "device", "snapshot_id",
                   "params", "history", "metrics", "versions", "model_path", "error"]
        frame = pd.DataFrame(records, columns=None if records else columns)
        if not frame.empty:
            for col in ("started_at", "finished_at"):
                frame[col] = pd.to_datetime(frame[col], unit="s")
        return frame

    def _saved_runs(self) -> list[tuple[int, str]]:
        """(run id, model folder) of the runs that saved a model, oldest first."""
        with self._read() as c:
            return [tuple(r) for r in c.execute(select(S.runs.c.id, S.runs.c.model_path)
                                                .where(S.runs.c.model_path.is_not(None)).order_by(S.runs.c.id))]

    def _embedding_rows(self, model_id: str) -> dict[str, int]:
        with self._read() as c:
            return dict(c.execute(select(S.embeddings.c.sha256, S.embeddings.c.row)
                                  .where(S.embeddings.c.model_id == model_id)).all())

    def _embedding_state(self, model_id: str) -> tuple:
        """What loaded embeddings of `model_id` depend on, in three indexed reads: (items version, splits version,
        newest label change, newest embedding row). Equal tuples mean nothing they show has changed."""
        with self._read() as c:
            meta = dict(c.execute(select(S.meta.c.key, S.meta.c.value)
                                  .where(S.meta.c.key.in_([ITEMS_VERSION, SPLITS_VERSION]))).all())
            label_row = c.execute(select(func.max(S.labels.c.id))).scalar()
            emb_row = c.execute(select(func.max(S.embeddings.c.row))
                                .where(S.embeddings.c.model_id == model_id)).scalar()
        return (int(meta.get(ITEMS_VERSION, 0)), int(meta.get(SPLITS_VERSION, 0)), label_row or 0,
                -1 if emb_row is None else emb_row)

    def _relabelled_since(self, label_row: int, limit: int) -> list[int] | None:
        """Ids of the items whose label changed after label-history row `label_row`; None when more than `limit`."""
        with self._read() as c:
            ids = list(c.execute(select(S.labels.c.item_id).where(S.labels.c.id > label_row)
                                 .distinct().limit(limit + 1)).scalars())
        return None if len(ids) > limit else ids

    def _item_columns(self, columns: Sequence[str], ids: Sequence[int] | None = None) -> dict[str, list]:
        """{"id": [...], column: [...]} for `ids` (or every item), in id order: plain lists, quick for 100,000."""
        q = select(S.items.c.id, *[S.items.c[n] for n in columns]).order_by(S.items.c.id)
        if ids is not None:
            q = q.where(S.items.c.id.in_([int(i) for i in ids]))
        with self._read() as c:
            rows = c.execute(q).all()
        values = list(zip(*rows)) if rows else [()] * (len(columns) + 1)
        return {name: list(v) for name, v in zip(["id", *columns], values)}

    def _add_embedding_rows(self, model_id: str, rows: dict[str, int]) -> None:
        if rows:
            with self._write() as c:
                c.execute(insert(S.embeddings), [{"model_id": model_id, "sha256": k, "row": v}
                                                 for k, v in rows.items()])

    # -- decoded-image cache index (nbml.data) ----------------------------------------------------------------
    def _cache_rows(self, size: int) -> dict[str, int]:
        with self._read() as c:
            return dict(c.execute(select(S.image_cache.c.sha256, S.image_cache.c.row)
                                  .where(S.image_cache.c.size == size)).all())

    def _add_cache_rows(self, size: int, rows: dict[str, int]) -> None:
        if rows:
            with self._write() as c:
                c.execute(insert(S.image_cache), [{"size": size, "sha256": k, "row": v} for k, v in rows.items()])
