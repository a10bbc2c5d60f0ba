"""What every nbml widget shares: the bundled ES module, message dispatch with a `done` reply, and the paged
thumbnail grid whose every action is written to the store before the grid shows it."""
from __future__ import annotations

import traceback
from pathlib import Path

import anywidget
import traitlets as t

from .. import kinds
from ._text import card, full, matching

STATIC = Path(__file__).resolve().parent.parent / "static"


def bundle(name: str) -> Path:
    path = STATIC / f"{name}.js"
    if not path.exists():
        raise RuntimeError(f"the widget bundle {path} is missing: reinstall nbml (pip install -e .) so that the "
                           f"front end is built (needs Node.js and npm)")
    return path


class Widget(anywidget.AnyWidget):
    """Routes front-end messages `{type: X, seq}` to `_on_X(content)` and answers `{type: "done", seq}`."""

    def __init__(self, **traits):
        super().__init__(**traits)
        self.on_msg(self._dispatch)

    def _dispatch(self, _widget, content, _buffers):
        kind = content.get("type")
        handler = getattr(self, f"_on_{kind}", None)
        reply = {"type": "done", "seq": content.get("seq")}
        if "request" in content:   # a thumbnail request: the front end settles it by this id
            reply["request"] = content["request"]
        if handler is None:
            reply["error"] = f"unknown action {kind!r}"
        else:
            try:
                message = handler(content)
                if isinstance(message, str):
                    reply["message"] = message
            except (KeyError, ValueError, LookupError, RuntimeError) as e:
                reply["error"] = str(e).strip("'\"")
            except Exception as e:   # never let a widget action kill the kernel's comm handler silently
                reply["error"] = f"{type(e).__name__}: {e}"
                traceback.print_exc()
        self.send(reply)
        self._after_reply()

    def _after_reply(self) -> None:
        """Work that may follow the `done` reply (the grid sends its refreshed page then)."""


class GridWidget(Widget):
    """A page of items with thumbnails; subclasses say which ids are shown (`_ids`) and what each carries."""

    LISTED_MAX = 10_000   # thumbnail keys remembered from pages shown, newest kept

    classes = t.List(t.Unicode()).tag(sync=True)
    counts = t.Dict().tag(sync=True)
    items = t.List().tag(sync=True)
    page = t.Int(0).tag(sync=True)
    page_size = t.Int(48).tag(sync=True)
    n_total = t.Int(0).tag(sync=True)
    drops_decided = t.Bool(False).tag(sync=True)   # True when decided items leave the list (unlabelled filter)
    item_kind = t.Unicode("image").tag(sync=True)  # 'text': cards carry their preview, no thumbnail is asked for
    item_noun = t.Unicode("image").tag(sync=True)  # what one item is called on screen ('image', 'text', 'row')
    search = t.Unicode("").tag(sync=True)          # text items: only those containing this (any case) are listed

    def __init__(self, ds, *, page_size: int = 48, thumb_size: int = 128, **traits):
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        self.ds = ds
        self._kind = kinds.get(ds.kind)
        # a table row is shown as a text card of `column: value` lines, the columns the model uses most first
        self._row_text = self._kind.card_text(ds)
        kind = "text" if self._kind.CARD == "text" else "image"
        self._thumb_size = thumb_size
        self._thumbs_cache = None
        self._listed: dict[str, dict] = {}    # sha256 -> item row, for every page this widget has listed
        self._refresh_pending = False
        super().__init__(page_size=page_size, item_kind=kind, item_noun=self._kind.NOUN, **traits)
        self.refresh()

    @property
    def _thumbs(self):
        if self._thumbs_cache is None:
            from ..thumbs import ThumbCache
            self._thumbs_cache = ThumbCache(self.ds, self._thumb_size)
        return self._thumbs_cache

    @property
    def _texts(self) -> bool:
        return self.item_kind == "text"

    # -- what subclasses provide ------------------------------------------------------------------------------
    def _ids(self) -> list[int]:
        raise NotImplementedError

    def _page_ids(self, offset: int, limit: int) -> tuple[list[int], int]:
        """The ids of one page and the total; subclasses backed by a query override this to avoid listing all."""
        ids = self._ids()
        return ids[offset:offset + limit], len(ids)

    def _extra(self, rows: list[dict]) -> list[dict]:
        """Fields added to each item of the page (suggestion, confidence, decision...)."""
        return [{} for _ in rows]

    def _suggestion(self, item_id: int) -> str | None:
        return None

    # -- the page ------------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Send the current page: item fields as JSON, thumbnails by content key (the front end asks for the
        bytes of keys it has not seen, so a key press re-sends no image).

        Raises: nothing of its own.

        Examples:
            >>> widget.refresh()
        """
        page = max(self.page, 0)
        ids, total = self._searched_page_ids(page * self.page_size, self.page_size)
        last = max(0, (total - 1) // self.page_size)
        if page > last:
            page = last
            ids, total = self._searched_page_ids(page * self.page_size, self.page_size)
        rows = self.ds.item_rows(ids)
        if not self._texts:   # texts need no thumbnail, so their rows (and contents) are not kept
            self._remember(rows)
        items = []
        for row, extra in zip(rows, self._extra(rows)):
            shown = {"text": card(self._content(row), self._kind, self.search)} if self._texts else {"thumb": row["sha256"]}
            items.append({"id": row["id"], "label": row["label"], "status": row["status"], "split": row["split"],
                          **shown, **extra})
        counts = {k: v for k, v in self.ds.label_counts().items() if k is not None}   # every class, in order
        with self.hold_sync():
            self.classes = list(counts)
            self.counts = counts
            self.n_total = total
            self.page = page
            self.items = items

    def _searched_page_ids(self, offset: int, limit: int) -> tuple[list[int], int]:
        if not (self._texts and self.search):
            return self._page_ids(offset, limit)
        ids = matching(self.ds, self._ids(), self.search, self._row_text)
        return ids[offset:offset + limit], len(ids)

    def _content(self, row: dict) -> str | None:
        """What a text card shows of an item: its text, or a table row's `column: value` lines."""
        return self._row_text(row.get("content")) if self._row_text else row.get("content")

    def _remember(self, rows: list[dict]) -> None:
        for row in rows:
            self._listed.pop(row["sha256"], None)
            self._listed[row["sha256"]] = row
        while len(self._listed) > self.LISTED_MAX:
            del self._listed[next(iter(self._listed))]

    def _on_text(self, content):
        """The whole text of an item (`{type: "text", id}`), escaped, split where the model stops reading."""
        if not self._texts:
            raise ValueError("only text items have a full text to show")
        item_id = int(content["id"])
        rows = self.ds.item_rows([item_id])
        if not rows:
            raise LookupError(f"no item with id {item_id}: it was removed from the project")
        self.send(full(item_id, self._content(rows[0]), self._kind))

    def _on_search(self, content):
        """Show only the texts containing `query` (any case), from the first page."""
        if not self._texts:
            raise ValueError("search looks in texts; this project holds images")
        self.search = str(content.get("query") or "")
        return f"{self.n_total} {self.item_noun}s contain {self.search!r}" if self.search else ""

    @t.observe("search")
    def _search_set(self, change) -> None:
        if change["new"] and not self._texts:
            self.search = ""
            raise ValueError("search looks in texts; this project holds images")
        self.page = 0
        self.refresh()

    def _on_thumbs(self, content):
        """JPEG bytes for thumbnail keys, as binary message buffers. Any key this widget has listed is answered,
        not only the current page's: the page may have changed since the front end asked (a request waits while
        the kernel runs other cells). Keys it never listed come back as `missing`, so nothing waits for them."""
        asked = list(dict.fromkeys(content.get("keys") or []))
        rows = [self._listed[k] for k in asked if k in self._listed]
        found = self._thumbs.get(rows)
        keys = [r["sha256"] for r in rows]
        missing = [k for k in asked if k not in self._listed]
        self.send({"type": "thumbs", "keys": keys, "missing": missing}, buffers=[found[k] for k in keys])

    # -- actions from the front end: each is in the store before `done` is sent; the front end shows it at once,
    # and the refreshed page (the authority) follows the reply ----------------------------------------------------
    def _after_reply(self) -> None:
        if self._refresh_pending:
            self._refresh_pending = False
            self.refresh()

    @staticmethod
    def _targets(content) -> list[int]:
        ids = [int(i) for i in content.get("ids") or []]
        if not ids:
            raise ValueError("no item selected")
        return ids

    def _on_label(self, content):
        self.ds.set_label(self._targets(content), content["label"])
        self._refresh_pending = True

    def _on_accept(self, content):
        by_label: dict[str, list[int]] = {}
        for item_id in self._targets(content):
            suggestion = self._suggestion(item_id)
            if suggestion is not None:
                by_label.setdefault(suggestion, []).append(item_id)
        if not by_label:
            raise ValueError("no model suggestion to accept: open the grid with a model, e.g. ds.label(model=m)")
        for label, ids in by_label.items():
            self.ds.set_label(ids, label)
        self._refresh_pending = True

    def _on_unusable(self, content):
        self.ds.mark_unusable(self._targets(content))
        self._refresh_pending = True

    def _on_remove(self, content):
        self.ds.remove(self._targets(content))
        self._refresh_pending = True

    def _on_keep(self, content):
        """Confirm the current label (recorded as a human decision in the history)."""
        by_label: dict[str, list[int]] = {}
        for row in self.ds.item_rows(self._targets(content)):
            if row["label"] is not None:
                by_label.setdefault(row["label"], []).append(row["id"])
        for label, ids in by_label.items():
            self.ds.set_label(ids, label)
        self._refresh_pending = True

    def _on_undo(self, content):
        undone = self.ds.undo()
        self._refresh_pending = True
        return "nothing to undo" if undone is None else f"undid {undone['kind']}"

    def _on_add_class(self, content):
        self.ds.add_class(content["name"])
        self._refresh_pending = True

    def _on_page(self, content):
        self.page = int(content["page"])
        self.refresh()
