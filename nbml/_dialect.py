"""The few statements that differ between SQLite and PostgreSQL: an insert that updates on conflict, and the
database's clock (PostgreSQL's, so that leases taken from several machines compare times from one clock)."""
from __future__ import annotations

import time

from sqlalchemy import Float, cast, func, literal

__all__ = ["upsert", "clock"]


def upsert(c, table):
    """`insert(table)` of the connection's dialect, which has `.on_conflict_do_update` and `.excluded`."""
    if c.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def clock(c):
    """Now, in unix seconds, as an SQL expression: the server's time on PostgreSQL, this machine's on SQLite."""
    if c.dialect.name == "postgresql":
        return cast(func.extract("epoch", func.now()), Float)
    return literal(time.time(), Float)
