"""Thumbnails for the widgets: made once per file content, kept as JPEG bytes in a SQLite file beside the project,
or, for a project on a database server, in its `thumbs` table where every person's grid finds them."""
from __future__ import annotations

import io
import os
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from ._imaging import ImageError, decode, read_file

__all__ = ["ThumbCache", "PLACEHOLDER"]


def _placeholder(size: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (220, 220, 220)).save(buf, "JPEG", quality=70)
    return buf.getvalue()


PLACEHOLDER = _placeholder(8)


def make_thumb(path: str, size: int, max_pixels: int) -> bytes:
    """JPEG bytes of the image shrunk to fit `size` x `size` (aspect kept)."""
    img = decode(read_file(path), max_pixels, draft=(size, size))
    img.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=82, optimize=False)
    return buf.getvalue()


class ThumbCache:
    """`get(rows)` returns {sha256: jpeg bytes} for item rows (dicts with sha256, path, path_raw)."""

    def __init__(self, ds, size: int = 128):
        self.ds, self.size = ds, int(size)
        self.in_project = ds.path is None   # a project on a server keeps them in its database, for everyone
        self._local = threading.local()
        if self.in_project:
            return
        os.makedirs(ds.home, exist_ok=True)
        self.file = os.path.join(ds.home, "thumbs.sqlite")
        with self._conn() as c:
            c.execute("CREATE TABLE IF NOT EXISTS thumbs (sha256 TEXT, size INTEGER, data BLOB, "
                      "PRIMARY KEY (sha256, size))")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.file, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")   # a lost thumbnail is just made again
            self._local.conn = conn
        return conn

    def _stored(self, shas: list[str]) -> dict[str, bytes]:
        if self.in_project:
            return self.ds._thumb_rows(self.size, shas)
        marks = ",".join("?" * len(shas))
        return dict(self._conn().execute(f"SELECT sha256, data FROM thumbs WHERE size=? AND sha256 IN ({marks})",
                                         [self.size, *shas]).fetchall())

    def _store(self, made: dict[str, bytes]) -> None:
        if self.in_project:
            self.ds._add_thumbs(self.size, made)
            return
        with self._conn() as conn:
            conn.executemany("INSERT OR REPLACE INTO thumbs VALUES (?, ?, ?)",
                             [(h, self.size, d) for h, d in made.items()])

    def fill(self, ids, chunk: int = 256) -> None:
        """Make and keep the thumbnails of these items now (ingest into a project on a server does, as the other
        people's grids cannot read this machine's files)."""
        ids = list(ids)
        for start in range(0, len(ids), chunk):
            self.get(self.ds.item_rows(ids[start:start + chunk]))

    def get(self, rows: list[dict]) -> dict[str, bytes]:
        shas = list({r["sha256"] for r in rows})
        if not shas:
            return {}
        found = self._stored(shas)
        todo = {r["sha256"]: r for r in rows if r["sha256"] not in found}
        if todo:
            def work(r):
                path = os.fsdecode(r["path_raw"]) if r.get("path_raw") else r["path"]
                try:
                    return r["sha256"], make_thumb(path, self.size, self.ds.max_pixels)
                except ImageError:
                    return r["sha256"], None
            with ThreadPoolExecutor(min(4, len(todo))) as pool:
                made = [(h, d) for h, d in pool.map(work, todo.values())]
            self._store({h: d for h, d in made if d is not None})
            found.update({h: d if d is not None else PLACEHOLDER for h, d in made})
        return found
