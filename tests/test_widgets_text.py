"""The grid widgets on a text project, driven as the front end drives them (messages and traits), checked against
the store: cards carry their preview (no thumbnail request), the full text comes on request, search narrows the
list, and the keys, filters, suggestions, confusion matrix and top-loss cleaner work as with images."""
import json

import pytest

import nbml
from nbml.datasets import sms_spam
from conftest import widget_reply
from nbml.widgets import ConfusionWidget, LabelWidget, TopLossesWidget
from nbml.widgets._text import full

LONG = "word " * 2000          # 10,000 characters: more than a card shows, more than the model's 256 tokens
CONTROL = "bell\x07 and\x00 nul\ttab\nnew line"


send = widget_reply     # (messages before the reply, the `done` reply)


@pytest.fixture
def tds(tmp_path):
    ds = nbml.Dataset(tmp_path / "texts.nbml")
    texts = [f"message {i}: " + ("win a FREE prize now" if i % 3 == 0 else "see you at lunch") for i in range(20)]
    ds.add_texts(texts + [LONG, CONTROL, "x" * 250 + " the needle is here"])
    ds.set_label(ds.df["id"].tolist()[:4], "ham")
    ds.set_label(ds.df["id"].tolist()[4:6], "spam")
    yield ds
    ds.close()


def test_text_cards_carry_their_preview_and_no_thumbnail(tds):
    w = tds.label(page_size=50)
    assert isinstance(w, LabelWidget) and w.item_kind == "text"
    assert all("thumb" not in i for i in w.items)
    by_chars = {i["text"]["chars"]: i["text"] for i in w.items}
    long = by_chars[len(LONG)]
    assert long["more"] and long["cut"] and len(long["snippet"]) == 300
    control = next(i["text"] for i in w.items if i["text"]["snippet"].startswith("bell"))
    assert control["snippet"] == "bell\\x07 and\\x00 nul\ttab\nnew line"    # escaped, newline and tab kept
    assert not control["more"] and not control["cut"]
    assert w._listed == {}                                                   # no rows kept for thumbnails


def test_full_text_on_request_escaped_and_split_where_the_model_stops(tds):
    w = tds.label(page_size=50)
    long_id = next(i["id"] for i in w.items if i["text"]["chars"] == len(LONG))
    sent, done = send(w, type="text", id=long_id)
    assert done.get("error") is None
    (msg,) = sent
    assert msg["type"] == "text" and msg["id"] == long_id and msg["cut"] and msg["max_tokens"] == 256
    assert msg["read"] + msg["unread"] == LONG and 0 < len(msg["read"]) < 2000
    control_id = next(i["id"] for i in w.items if i["text"]["snippet"].startswith("bell"))
    (msg,), _ = send(w, type="text", id=control_id)
    assert msg["read"] == "bell\\x07 and\\x00 nul\ttab\nnew line" and msg["unread"] == "" and not msg["cut"]
    _, done = send(w, type="text", id=999999)
    assert "no item with id 999999" in done["error"]


def test_full_text_of_a_huge_text_is_capped_and_says_so():
    from nbml.kinds import text as text_kind
    msg = full(1, "a" * 300_000, text_kind)
    assert msg["chars"] == 300_000 and msg["shown_chars"] == 200_000 and msg["cut"]
    assert len(msg["read"]) + len(msg["unread"]) == 200_000


def test_search_filters_the_list_any_case_and_shows_the_match(tds):
    w = tds.label(filter="all", page_size=5)
    _, done = send(w, type="search", query="free PRIZE")
    assert w.search == "free PRIZE" and w.page == 0
    assert w.n_total == 7 and len(w.items) == 5 and done["message"] == "7 texts contain 'free PRIZE'"
    assert all("win a FREE prize" in i["text"]["snippet"] for i in w.items)
    send(w, type="page", page=1)
    assert len(w.items) == 2                                 # the pager pages the matches
    send(w, type="search", query="NEEDLE")                  # past the card's first 300 characters? no: at 251
    (item,) = w.items
    assert "needle" in item["text"]["snippet"]
    send(w, type="search", query="")
    assert w.n_total == len(tds.df)


def test_search_shows_the_part_around_a_match_beyond_the_preview(tmp_path):
    ds = nbml.Dataset(tmp_path / "far.nbml")
    ds.add_texts(["filler " * 100 + "the Zebra is here" + " tail" * 50, "no match"])
    w = ds.label(filter="all")
    w.search = "zebra"
    (item,) = w.items
    assert item["text"]["start"] > 0 and "Zebra" in item["text"]["snippet"] and item["text"]["more"]


def test_search_is_refused_for_images(ds):
    w = ds.label(filter="all")
    assert w.item_kind == "image" and "thumb" in w.items[0]
    _, done = send(w, type="search", query="x")
    assert "holds images" in done["error"]
    _, done = send(w, type="text", id=w.items[0]["id"])
    assert "only text items" in done["error"]


def test_keys_bulk_undo_and_filters_write_to_the_store(tds):
    w = tds.label(page_size=10)
    first, second, third = (i["id"] for i in w.items[:3])
    send(w, type="label", ids=[first], label="spam")
    assert tds.item(first)["label"] == "spam" and tds.item(first)["label_source"] == "human"
    assert first not in [i["id"] for i in w.items]
    send(w, type="label", ids=[second, third], label="ham")
    assert [tds.item(i)["label"] for i in (second, third)] == ["ham", "ham"]
    send(w, type="undo")
    assert [tds.item(i)["label"] for i in (second, third)] == [None, None]
    send(w, type="unusable", ids=[second])
    assert tds.item(second)["status"] == "unusable"
    w.filter = "label:spam"
    assert {i["id"] for i in w.items} == set(tds.query_ids(label="spam"))
    w.search = "free"                                        # search within a filter
    assert all("FREE" in i["text"]["snippet"] for i in w.items) and first in [i["id"] for i in w.items]


@pytest.fixture(scope="module")
def sms_model(tmp_path_factory):
    df = sms_spam()
    df = df.groupby("label").head(60).reset_index(drop=True)
    ds = nbml.Dataset(tmp_path_factory.mktemp("sms") / "sms.nbml")
    ds.add_texts(df["text"].tolist(), labels=df["label"].tolist())
    return nbml.train(ds, quiet=True, epochs=2, seed=0)


def test_suggestions_with_confidence_on_texts(sms_model):
    ds = sms_model.dataset
    some = ds.query_ids()[-6:]
    before = {i: ds.item(i)["label"] for i in some}
    ds.set_label(some, None)
    try:
        w = ds.label(model=sms_model)
        assert w.items and all(i["suggestion"] in ("ham", "spam") and 0 <= i["confidence"] <= 1 and "text" in i
                               for i in w.items)
        target = w.items[0]
        send(w, type="accept", ids=[target["id"]])
        assert ds.item(target["id"])["label"] == target["suggestion"]
        w.filter = "low_confidence"
        assert all(i["confidence"] < w.low_confidence for i in w.items)
    finally:
        for i, label in before.items():
            ds.set_label([i], label)


def test_confusion_and_top_losses_on_texts(sms_model):
    ds = sms_model.dataset
    c = sms_model.confusion()
    assert isinstance(c, ConfusionWidget) and c.item_kind == "text" and "rect" in json.dumps(c.spec)
    _, done = send(c, type="cell", actual="ham", predicted="ham")
    assert done.get("error") is None and c.items and all("snippet" in i["text"] for i in c.items)
    item = c.items[0]["id"]
    send(c, type="label", ids=[item], label="spam")
    assert ds.item(item)["label"] == "spam"
    decided = next(i for i in c.items if i["id"] == item)
    assert decided["decision"] == "→ spam"

    t = sms_model.top_losses(n=10)
    assert isinstance(t, TopLossesWidget) and t.item_kind == "text" and len(t.items) == 10
    worst = t.items[0]
    assert worst["loss"] is not None and "text" in worst
    send(t, type="remove", ids=[worst["id"]])
    assert ds.item(worst["id"])["status"] == "removed"
    send(t, type="undo")
    assert ds.item(worst["id"])["status"] == "ok"
    (msg,), _ = send(t, type="text", id=worst["id"])
    assert msg["read"] + msg["unread"] == ds.item(worst["id"])["content"].translate(
        {i: f"\\x{i:02x}" for i in range(32) if chr(i) not in "\n\t"} | {127: "\\x7f"})


def test_runs_compare_on_a_text_project(sms_model):
    w = sms_model.dataset.compare_runs()
    assert w is not None


def test_explore_map_hover_shows_each_text(tds, monkeypatch):
    import pandas as pd
    from nbml.widgets import explore

    class Embeddings:   # text embeddings belong to nbml.embeddings: the map only needs its points and a name
        model_id = "test"

    frame = tds.df[["id", "label", "split"]].copy()
    frame["x"], frame["y"] = range(len(frame)), range(len(frame))
    frame.attrs["projection"] = "PCA"
    monkeypatch.setattr(type(tds), "embed", lambda self, backbone=None, **kw: Embeddings)
    monkeypatch.setattr(explore, "project_2d", lambda ds, embeddings, method: frame)
    w = explore.ExploreWidget(tds)
    assert w.item_kind == "text"
    spec = w.spec
    assert "text:N" in json.dumps(spec["encoding"]["tooltip"]) or any(
        t.get("field") == "text" for t in spec["encoding"]["tooltip"])
    rows = spec["data"].get("values") or spec["datasets"][spec["data"]["name"]]
    values = {v["id"]: v["text"] for v in rows}
    control_id = int(tds.df.loc[tds.df["content"] == CONTROL, "id"].iloc[0])
    assert values[control_id] == "bell\\x07 and\\x00 nul\ttab\nnew line"   # escaped as on the cards
    long_id = int(tds.df.loc[tds.df["content"] == LONG, "id"].iloc[0])
    assert len(values[long_id]) == 201 and values[long_id].endswith("…")
    assert all(not pd.isna(v) for v in values.values())
