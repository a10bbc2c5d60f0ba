"""Schema upgrades: a project written by an older nbml is brought to `SCHEMA_VERSION` in place when it is opened.

`meta.schema_version` says which tables a project has; `STEPS[n]` turns version n-1 into n. Everything runs in the
opener's write transaction, so an upgrade is whole or not at all, and (on PostgreSQL, under an advisory lock) one
opener upgrades while the others wait and then find the work done.
"""
from __future__ import annotations

from sqlalchemy import inspect, insert, select, text, update

from . import _schema as S

__all__ = ["prepare"]

_LOCK_KEY = 0x6E626D6C   # "nbml": the advisory lock that serialises schema work on a PostgreSQL server


def _to_2(c) -> None:
    """Authors on every change (labels, undo log), the label rules a snapshot trained on; the new tables
    (annotations, leases, thumbs) are made by create_all."""
    for table, column in (("labels", "author"), ("actions", "author"), ("snapshots", "label_rules")):
        c.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} TEXT"))
    next(i for i in S.actions.indexes if i.name == "ix_actions_author").create(c, checkfirst=True)


def _to_3(c) -> None:
    """Indexes the grid's keyset pages seek on, in id order: (status, label, id) replaces (status, label), and
    (label, id) serves the label filter."""
    for index in S.items.indexes:
        if index.name in ("ix_items_status_label_id", "ix_items_label_id"):
            index.create(c, checkfirst=True)
    c.execute(text("DROP INDEX IF EXISTS ix_items_status_label"))


STEPS = {2: _to_2, 3: _to_3}


def prepare(c, where: str) -> int:
    """Create the tables of a new project or upgrade an older one; returns the version found (0 for new).
    `where` names the project in the error raised when a newer nbml wrote it."""
    if c.dialect.name == "postgresql":
        c.execute(select(text(f"pg_advisory_xact_lock({_LOCK_KEY})")))
    found = 0
    if inspect(c).has_table("meta"):
        value = c.execute(select(S.meta.c.value).where(S.meta.c.key == "schema_version")).scalar()
        found = int(value) if value is not None else 0
    if found > S.SCHEMA_VERSION:
        raise RuntimeError(f"{where} was written by a newer nbml (schema {found}, this nbml reads up to "
                           f"{S.SCHEMA_VERSION}); upgrade nbml")
    S.metadata.create_all(c)
    if found == S.SCHEMA_VERSION:
        return found
    if found:
        for version in range(found + 1, S.SCHEMA_VERSION + 1):
            STEPS[version](c)
        c.execute(update(S.meta).where(S.meta.c.key == "schema_version").values(value=str(S.SCHEMA_VERSION)))
    else:
        c.execute(insert(S.meta).values(key="schema_version", value=str(S.SCHEMA_VERSION)))
    return found
