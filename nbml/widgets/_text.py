"""What the grid shows of a text item: a card's preview (sent with the page, no thumbnail request), the full text
on demand, and the search that narrows the list to texts containing a query."""
from __future__ import annotations

import re

FULL_MAX_CHARS = 200_000   # the full-text view shows at most this much of one text (the store keeps it all)
AROUND_MATCH = 80          # characters shown before a search match that lies beyond the card's preview


def _kind():
    from ..kinds import text
    return text


def card(content: str | None, query: str = "") -> dict:
    """The card of one text: `nbml.kinds.text.preview` (snippet, chars, more, cut); when `query` matches past the
    snippet, the snippet is the part around the first match and `start` says where it begins."""
    text = content or ""
    kind = _kind()
    shown = {**kind.preview(text), "max_tokens": _max_tokens()}
    match = _find(text, query)
    if match is not None and match.end() > kind.PREVIEW_CHARS:
        start = max(0, match.start() - AROUND_MATCH)
        end = start + kind.PREVIEW_CHARS
        shown.update(snippet=kind.shown_text(text[start:end]), start=start, more=True)
    return shown


def full(item_id: int, content: str | None) -> dict:
    """The `text` message: the whole text escaped, split into what the model reads and what it never reads."""
    kind = _kind()
    text = content or ""
    body = text[:FULL_MAX_CHARS]
    read_to = _read_chars(body)
    return {"type": "text", "id": int(item_id), "read": kind.shown_text(body[:read_to]),
            "unread": kind.shown_text(body[read_to:]), "chars": len(text), "shown_chars": len(body),
            "max_tokens": _max_tokens(), "cut": read_to < len(text)}


def _max_tokens() -> int:
    from ..kinds.text_encoding import MAX_TOKENS
    return MAX_TOKENS


def _read_chars(text: str) -> int:
    """How many leading characters of `text` the model reads (the tokens past MAX_TOKENS are dropped)."""
    limit = _max_tokens()
    if len(text) <= limit:     # a token covers at least one character
        return len(text)
    enc = _kind().tokenizer().encode(text, add_special_tokens=False)
    if len(enc.ids) <= limit:
        return len(text)
    return int(enc.offsets[limit - 1][1])


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


def table_rows(ds):
    """content -> a table row's card text, the columns that matter most to the latest model first (read once, when
    the widget opens)."""
    from ..kinds import table
    order = table.column_order(ds)
    return lambda content: table.row_text(content, order)
