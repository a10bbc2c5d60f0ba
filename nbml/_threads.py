"""torch's intra-op thread count for a stretch of work on a small network: a few hundred tiny steps gain nothing
from a second thread, which on a busy machine only waits (a table network's 8 epochs on 455 rows: 1.2 s on one
thread, 5.3 s on two at load 2.5 on this project's 2-core machine). The setting is process-wide while it holds."""
from __future__ import annotations

from contextlib import contextmanager


def set_torch_threads(n: int | None):
    """Set torch's intra-op threads to `n` (None: leave them) and return the function that restores them."""
    if n is None:
        return lambda: None
    import torch
    was = torch.get_num_threads()
    torch.set_num_threads(int(n))
    return lambda: torch.set_num_threads(was)


@contextmanager
def torch_threads(n: int | None):
    restore = set_torch_threads(n)
    try:
        yield
    finally:
        restore()
