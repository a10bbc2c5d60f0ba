"""What adding items reports (ids added, duplicates, skipped with a reason each) and its progress line: shared by
every kind's ingest and the store."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["IngestReport", "Progress"]


@dataclass
class IngestReport:
    """What `add_images`, `add_texts` or `add_dataframe` did: ids added, duplicates found, files skipped with a reason each.

    `added`: the new items' ids; `duplicates`: (file or text, id of the item it duplicates); `skipped`: (file or text,
    reason); `warnings`: (file or text, what was changed or noted, such as bytes decoded with replacement).

    Raises: nothing of its own.

    Examples:
        >>> report = ds.add_images("pets/")
        >>> report.added, report.skipped
    """
    added: list[int] = field(default_factory=list)
    duplicates: list[tuple[str, int]] = field(default_factory=list)   # (path, id of the item it duplicates)
    skipped: list[tuple[str, str]] = field(default_factory=list)      # (path, reason)
    warnings: list[tuple[str, str]] = field(default_factory=list)     # (path, note): added, with something to know

    def summary(self) -> str:
        """For people: how many were added, duplicates and skipped, then a line per reason for skipping, and the notes
        about items that were added (a note about an input that turned out a duplicate or was skipped is left out:
        nothing of it was added).

        Raises: nothing of its own.

        Examples:
            >>> print(ds.add_texts("sms.csv").summary())
        """
        first = f"added {len(self.added)}, duplicates {len(self.duplicates)}, skipped {len(self.skipped)}"
        if not self.added and self.duplicates and not self.skipped:
            first += ": nothing new, every one is already in the project"
        elif not self.added and (self.duplicates or self.skipped):
            first += ": nothing was added"
        lines = [first]
        for reason, n in Counter(r for _, r in self.skipped).most_common():
            lines.append(f"  skipped {n}: {reason}")
        not_added = {name for name, _ in self.duplicates} | {name for name, _ in self.skipped}
        notes = [r for name, r in self.warnings if name not in not_added]
        for note, n in Counter(r.split(" (")[0].split(":")[0] for r in notes).most_common():
            lines.append(f"  added with a note {n}: {note} (see .warnings)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"IngestReport({self.summary()})"



class Progress:
    """A one-line progress counter for long store work, printed only in a terminal or when asked."""

    def __init__(self, what: str, enabled: bool | None):
        import sys
        self.what = what
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.t0 = time.perf_counter()
        self.last = 0.0

    def update(self, n: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.last > 0.5:
            self.last = now
            print(f"\r{self.what}: {n} files, {n / max(now - self.t0, 1e-9):.0f}/s", end="", flush=True)

    def close(self, message: str) -> None:
        if self.enabled:
            print(f"\r{self.what}: {message.splitlines()[0]} in {time.perf_counter() - self.t0:.1f}s", flush=True)
