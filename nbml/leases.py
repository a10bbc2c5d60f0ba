"""The shared labelling queue: which items a person should label next, and leases so that two people never get
the same item at once (a lease is a row with an expiry, as Label Studio's TaskLock).

A lease is taken by an insert that updates on conflict only where the row is the taker's own or has expired; the
database decides, so two takers racing for one item cannot both win, on SQLite (one writer at a time) or
PostgreSQL (the second insert waits for the first and then finds the row taken). Leases end on labelling, on
`release` (skipping, paging on, closing the grid) or at expiry; a grid renews the ones it shows.
"""
from __future__ import annotations

import threading

from sqlalchemy import and_, delete, exists, func, or_, select, true

from . import _schema as S
from ._dialect import clock, upsert

__all__ = ["LEASE_TTL", "LeaseHolder", "take", "release", "held_by_others", "to_label_by"]

LEASE_TTL = 300.0   # seconds an item stays leased without renewal (a grid renews every third of it)


def take(c, ids, holder: str, ttl: float) -> list[int]:
    """Lease `ids` to `holder` for `ttl` seconds where nobody else holds them; returns the ids obtained, sorted
    (the holder's own leases among them are renewed)."""
    ids = sorted({int(i) for i in ids})
    if not ids:
        return []
    now = clock(c)
    stmt = upsert(c, S.leases).values([{"item_id": i, "holder": holder, "expires_at": now + ttl} for i in ids])
    stmt = stmt.on_conflict_do_update(
        index_elements=[S.leases.c.item_id],
        set_={"holder": stmt.excluded.holder, "expires_at": stmt.excluded.expires_at},
        where=or_(S.leases.c.holder == holder, S.leases.c.expires_at <= now))
    return sorted(c.execute(stmt.returning(S.leases.c.item_id)).scalars())


def release(c, holder: str, ids=None) -> None:
    """End `holder`'s leases on `ids` (all of them when None)."""
    q = delete(S.leases).where(S.leases.c.holder == holder)
    if ids is not None:
        ids = [int(i) for i in ids]
        if not ids:
            return
        q = q.where(S.leases.c.item_id.in_(ids))
    c.execute(q)


def held_by_others(c, holder: str) -> set[int]:
    """Ids leased now by someone other than `holder`."""
    return set(c.execute(select(S.leases.c.item_id).where(S.leases.c.holder != holder,
                                                          S.leases.c.expires_at > clock(c))).scalars())


def to_label_by(c, holder: str, overlap: int) -> list:
    """WHERE clauses on `items` for what `holder` should label next: usable items nobody else holds that are
    unlabelled, or (with overlap k > 1) that have fewer than k people's labels, none of them the holder's, and no
    reviewed label. Items labelled only by import or a model count as labelled."""
    where = [S.items.c.status == "ok"]
    others = held_by_others(c, holder)   # a few pages' worth: one small read, then a plain NOT IN on the items
    if others:
        where.append(S.items.c.id.not_in(sorted(others)))
    if overlap <= 1:
        return where + [S.items.c.label.is_(None)]
    a = S.annotations.c
    people = select(func.count()).where(a.item_id == S.items.c.id, a.review == 0).scalar_subquery()
    mine = exists().where(a.item_id == S.items.c.id, a.author == holder, a.review == 0)
    reviewed = exists().where(a.item_id == S.items.c.id, a.review == 1)
    return where + [or_(S.items.c.label.is_(None), and_(people > 0, people < overlap)), ~mine, ~reviewed]


def next_free(c, holder: str, overlap: int, n: int, ttl: float, tries: int = 5) -> list[int]:
    """Lease up to `n` items of `holder`'s queue, oldest first (items the holder already holds come back)."""
    got: list[int] = []
    for _ in range(tries):
        q = (select(S.items.c.id).where(*to_label_by(c, holder, overlap), S.items.c.id.not_in(got) if got else true())
             .order_by(S.items.c.id).limit(n - len(got)).with_for_update(skip_locked=True, of=S.items))
        candidates = list(c.execute(q).scalars())
        if not candidates:
            break
        got += take(c, candidates, holder, ttl)
        if len(got) >= n:
            break
    return sorted(got)


class LeaseHolder:
    """The items a grid shows from the shared queue: leased while shown, renewed in the background every third
    of the lease, released when they leave the screen or the grid closes."""

    def __init__(self, store, ttl: float = LEASE_TTL):
        self.store, self.ttl = store, float(ttl)
        self.held: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, ids: list[int]) -> list[int]:
        """Lease `ids` (the page about to be shown) and release what was held and is not among them; returns the
        ids obtained, in the order given (an id someone else holds is left out)."""
        ids = [int(i) for i in ids]
        with self._lock:
            wanted = set(ids)
            got = set(self.store.lease(ids, ttl=self.ttl, release=[i for i in self.held if i not in wanted]))
            self.held = [i for i in ids if i in got]
            held = list(self.held)
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._renew, name="nbml-leases", daemon=True)
            self._thread.start()
        return held

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            with self._lock:
                if self.held:
                    try:
                        got = set(self.store.lease(self.held, ttl=self.ttl))
                        self.held = [i for i in self.held if i in got]
                    except Exception:   # the database is away for a moment: leases run on until they expire
                        pass

    def close(self) -> None:
        """Stop renewing and release every lease held."""
        self._stop.set()
        with self._lock:
            held, self.held = self.held, []
        if held:
            self.store.release(held)
