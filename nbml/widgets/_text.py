"""What the grid shows of an item shown as text (a text, a table row as `column: value` lines): a card's preview
(sent with the page, no thumbnail request), the full text on demand, and the search that narrows the list to items
whose text contains a query. How much of a text the model reads comes from the item's kind (`read_chars`)."""
from __future__ import annotations

import re

PREVIEW_CHARS = 300        # characters of a text a grid card shows before "more"
FULL_MAX_CHARS = 200_000   # the full-text view shows at most this much of one text (the store keeps it all)
AROUND_MATCH = 80          # characters shown before a search match that lies beyond the card's preview

_CONTROL = {i: f"\\x{i:02x}" for i in range(32) if chr(i) not in "\n\t"}
_CONTROL[127] = "\\x7f"


def shown_text(text: str) -> str:
    """A text as a card shows it: control characters (other than newline and tab) written as escapes."""
    return text.translate(_CONTROL)


def preview(text: str, kind, chars: int = PREVIEW_CHARS) -> dict:
    """What a grid card needs: the first `chars` characters (escaped), whether there is more, and whether the model
    reads only part of it (the kind's `read_chars`)."""
    return {"snippet": shown_text(text[:chars]), "chars": len(text), "more": len(text) > chars,
            "cut": kind.read_chars(text) < len(text), "max_tokens": kind.READ_LIMIT or 0, "noun": kind.NOUN}


def card(content: str | None, kind, query: str = "") -> dict:
    """The card of one item shown as text; when `query` matches past the snippet, the snippet is the part around
    the first match and `start` says where it begins."""
    text = content or ""
    shown = preview(text, kind)
    match = _find(text, query)
    if match is not None and match.end() > PREVIEW_CHARS:
        start = max(0, match.start() - AROUND_MATCH)
        shown.update(snippet=shown_text(text[start:start + PREVIEW_CHARS]), start=start, more=True)
    return shown


def full(item_id: int, content: str | None, kind) -> dict:
    """The `text` message: the whole text escaped, split into what the model reads and what it never reads."""
    text = content or ""
    body = text[:FULL_MAX_CHARS]
    read_to = min(kind.read_chars(body), len(body))
    return {"type": "text", "id": int(item_id), "read": shown_text(body[:read_to]),
            "unread": shown_text(body[read_to:]), "chars": len(text), "shown_chars": len(body),
            "max_tokens": kind.READ_LIMIT or 0, "cut": read_to < len(text)}


def _find(text: str, query: str):
    return re.search(re.escape(query), text, re.IGNORECASE) if query else None


def matching(ds, ids: list[int], query: str, shown=None, chunk: int = 2000) -> list[int]:
    """The ids (in order) whose text (or, for table rows, `shown(content)`) contains `query`, ignoring case."""
    if not query:
        return list(ids)
    pattern = re.compile(re.escape(query), re.IGNORECASE)
    shown = shown or (lambda content: content)
    out = []
    for i in range(0, len(ids), chunk):
        out += [r["id"] for r in ds.item_rows(ids[i:i + chunk]) if pattern.search(shown(r.get("content")) or "")]
    return out
