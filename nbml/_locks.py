"""An exclusive lock on a file, shared by processes: guards the append-only caches beside a project."""
from __future__ import annotations

import fcntl
from contextlib import contextmanager


@contextmanager
def file_lock(path):
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
