"""The nbml projects under a folder, summarised for the side panel: read-only SQLite (never created, migrated or
written), plain columns and JSON only (nothing is unpickled), a bounded walk."""
from __future__ import annotations

import json
import math
import os
import sqlite3
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["find_projects", "summarize", "resolve_inside", "OutsideRoot"]

SUFFIX = ".nbml"
MAX_DEPTH = 3          # the root's own files are depth 0
MAX_FILES = 200
MAX_RUNS = 50
SKIP_DIRS = {"node_modules", "__pycache__", "site-packages"}


class OutsideRoot(ValueError):
    pass


def resolve_inside(root: Path, relpath: str) -> Path:
    """`root/relpath` with symlinks resolved; OutsideRoot when that leaves the root (.., absolute, symlinks)."""
    root = Path(os.path.realpath(root))
    if relpath.startswith(("/", "\\")) or ".." in Path(relpath).parts:
        raise OutsideRoot(f"{relpath!r} is outside the Jupyter root directory")
    target = Path(os.path.realpath(root / relpath))
    if target != root and root not in target.parents:
        raise OutsideRoot(f"{relpath!r} is outside the Jupyter root directory")
    return target


def find_projects(root: Path) -> list[Path]:
    """`*.nbml` files under `root`, at most MAX_DEPTH folders down and MAX_FILES in all; hidden folders,
    node_modules, virtual environments and project homes (`x.nbml.d`) skipped; links leaving the root skipped."""
    root = Path(os.path.realpath(root))
    found: list[Path] = []
    for here, dirs, files in os.walk(root):
        depth = len(Path(here).relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if not (d.startswith(".") or d in SKIP_DIRS or d.endswith(SUFFIX + ".d")
                                                or os.path.isfile(os.path.join(here, d, "pyvenv.cfg"))))
        if depth >= MAX_DEPTH:
            dirs[:] = []
        for f in sorted(files):
            if f.endswith(SUFFIX) and not f.startswith("."):
                path = Path(here) / f
                try:
                    resolve_inside(root, str(path.relative_to(root)))
                except OutsideRoot:
                    continue
                found.append(path)
                if len(found) >= MAX_FILES:
                    return found
    return found


def _iso(t) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(float(t), timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _finite(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _accuracy(metrics: str | None, history: str | None) -> float | None:
    for text in (metrics, history):
        try:
            value = json.loads(text) if text else None
        except ValueError:
            continue
        if isinstance(value, list):          # the history: the last epoch that has one
            value = next((h for h in reversed(value) if isinstance(h, dict) and "accuracy" in h), None)
        if isinstance(value, dict) and value.get("accuracy") is not None:
            return _finite(value["accuracy"])
    return None


def _empty(path: Path, root: Path, error: str | None) -> dict:
    return {"path": path.relative_to(root).as_posix(), "name": path.stem, "kind": None, "items": 0, "labelled": 0,
            "labelled_fraction": 0.0, "classes": {}, "runs": [], "error": error}


def summarize(path: Path, root: Path, timeout: float = 0.5) -> dict:
    """One project's summary; a file that is not an nbml project, or is locked or corrupt, gets `error`."""
    root = Path(os.path.realpath(root))
    path = Path(path)
    if not path.is_absolute():
        path = root / path
    out = _empty(path, root, None)
    # A project open somewhere has its -wal and -shm files: read through them. A closed one has none, and a read-only
    # connection would leave new ones beside it: read the file as immutable (a writer opening it during this read
    # can at worst make this summary stale or an error).
    live = os.path.exists(os.fspath(path) + "-wal")
    uri = f"file:{urllib.parse.quote(os.fspath(path))}?mode=ro" + ("" if live else "&immutable=1")
    try:
        con = sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)
    except sqlite3.Error as e:
        return _empty(path, root, f"cannot open the file: {e}")
    try:
        con.execute("PRAGMA query_only=1")
        try:
            meta = dict(con.execute("SELECT key, value FROM meta WHERE key IN ('schema_version', 'kind')"))
        except sqlite3.DatabaseError as e:
            if "no such table" in str(e):
                return _empty(path, root, "not an nbml project (no meta table)")
            raise
        if "schema_version" not in meta:
            return _empty(path, root, "not an nbml project (no schema version)")
        kind = meta.get("kind") or con.execute("SELECT kind FROM items LIMIT 1").fetchone()
        out["kind"] = kind if isinstance(kind, str) or kind is None else kind[0]
        out["items"] = con.execute("SELECT count(*) FROM items WHERE status = 'ok'").fetchone()[0]
        classes = {name: 0 for (name,) in con.execute("SELECT name FROM classes ORDER BY id")}
        for label, n in con.execute("SELECT label, count(*) FROM items WHERE status = 'ok' AND label IS NOT NULL "
                                    "GROUP BY label ORDER BY label"):
            classes[label] = n
        out["classes"] = classes
        out["labelled"] = sum(classes.values())
        out["labelled_fraction"] = round(out["labelled"] / out["items"], 4) if out["items"] else 0.0
        out["runs"] = [{"id": rid, "arch": arch, "accuracy": _accuracy(metrics, history), "status": status,
                        "started": _iso(started)}
                       for rid, arch, metrics, history, status, started in con.execute(
                           "SELECT id, arch, metrics, history, status, started_at FROM runs ORDER BY id DESC "
                           f"LIMIT {MAX_RUNS}")]
        return out
    except sqlite3.DatabaseError as e:     # locked, corrupt, not a database, an older layout
        return _empty(path, root, f"cannot read the project: {e}")
    finally:
        con.close()
