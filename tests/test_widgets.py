"""Widgets driven as the front end would drive them (messages and trait changes), checked against the store."""
import json

import pytest

import nbml
from nbml import events as E
from conftest import widget_reply
from nbml.widgets import ConfusionWidget, LabelWidget, RunsWidget, TopLossesWidget, TrainingMonitor

FAST = dict(arch="test_resnet", epochs=2, size=32, bs=8, lr=2e-3, pretrained=False, quiet=True, seed=0)


def send(widget, **content):
    """What the front end does: a custom message; returns the widget's `done` reply."""
    return widget_reply(widget, **content)[1]


@pytest.fixture
def model(ds):
    return nbml.train(ds, **FAST)


def test_label_grid_pages_thumbnails_and_counts(ds):
    ds.set_label(ds.df["id"].tolist()[:10], None)
    w = ds.label(page_size=4)
    assert isinstance(w, LabelWidget) and w.filter == "unlabelled"
    assert w.n_total == 10 and len(w.items) == 4 and w.page == 0
    sent = []
    w.send = lambda msg, buffers=None: sent.append((msg, buffers))
    keys = [i["thumb"] for i in w.items]
    w._on_thumbs({"keys": keys})                                        # what the front end asks for
    msg, buffers = sent[0]
    assert msg == {"type": "thumbs", "keys": keys, "missing": []} and len(buffers) == 4
    assert all(isinstance(b, bytes) and b[:2] == b"\xff\xd8" for b in buffers)   # binary JPEG, not base64 text
    assert w.counts == {k: v for k, v in ds.label_counts().items() if k is not None}
    send(w, type="page", page=2)
    assert w.page == 2 and len(w.items) == 2
    send(w, type="page", page=99)
    assert w.page == 2                                                   # clamped to the last page


def test_thumbnails_answered_after_the_page_changed_and_unknown_keys_said_missing(ds):
    ds.set_label(ds.df["id"].tolist()[:10], None)
    w = ds.label(page_size=4)
    first = [i["thumb"] for i in w.items]
    send(w, type="page", page=1)                     # the page changes while the request waits in the kernel's queue
    sent = []
    w.send = lambda msg, buffers=None: sent.append((msg, buffers))
    w._dispatch(w, {"type": "thumbs", "keys": first + ["0" * 64], "request": 3}, [])
    (msg, buffers), (done, _) = sent
    assert msg == {"type": "thumbs", "keys": first, "missing": ["0" * 64]} and len(buffers) == 4
    assert done == {"type": "done", "seq": None, "request": 3}   # the front end settles request 3 by its id


def test_label_keys_write_to_the_store_at_once(ds):
    ids = ds.df["id"].tolist()[:6]
    ds.set_label(ids, None)
    w = ds.label(page_size=10)
    first, second = w.items[0]["id"], w.items[1]["id"]
    assert send(w, type="label", ids=[first], label="red").get("error") is None
    assert ds.item(first)["label"] == "red" and ds.item(first)["label_source"] == "human"
    assert first not in [i["id"] for i in w.items] and w.n_total == 5    # left the unlabelled page
    send(w, type="label", ids=[second, w.items[1]["id"]], label="kiwi")  # bulk, new class added inline
    assert "kiwi" in ds.classes and w.classes == ds.classes and w.counts["kiwi"] == 2
    send(w, type="undo")
    assert ds.item(second)["label"] is None and "kiwi" not in ds.classes
    send(w, type="unusable", ids=[second])
    assert ds.item(second)["status"] == "unusable"
    send(w, type="add_class", name="purple")
    assert "purple" in ds.classes and "purple" in w.classes
    reply = send(w, type="label", ids=[999999], label="red")
    assert "no item with id 999999" in reply["error"]                    # a clear error, widget still alive
    reply = send(w, type="accept", ids=[w.items[0]["id"]])
    assert "needs" in reply["error"] or "suggestion" in reply["error"]


def test_labels_survive_a_new_widget_and_a_reopened_project(ds, tmp_path):
    item = ds.df["id"].iloc[0]
    ds.set_label(int(item), None)
    send(ds.label(), type="label", ids=[int(item)], label="green")
    again = nbml.Dataset(ds.path)
    assert again.item(int(item))["label"] == "green"
    assert int(item) not in [i["id"] for i in again.label().items]


def test_label_with_model_suggestions_filters_and_accept(ds, model):
    ids = ds.df["id"].tolist()[:9]
    ds.set_label(ids, None)
    w = ds.label(model=model, page_size=20)
    assert all(0 <= i["confidence"] <= 1 and i["suggestion"] in model.classes for i in w.items)
    target = w.items[0]
    send(w, type="accept", ids=[target["id"]])
    assert ds.item(target["id"])["label"] == target["suggestion"]
    w.filter = "low_confidence"
    assert all(i["confidence"] < w.low_confidence for i in w.items)
    predicted = model.classes[0]
    w.filter = f"predicted:{predicted}"
    assert all(i["suggestion"] == predicted for i in w.items)
    w.filter = "label:red"
    assert w.items and all(i["label"] == "red" for i in w.items)
    with pytest.raises(ValueError, match="unknown filter"):
        w.filter = "bogus"
    with pytest.raises(ValueError, match="needs a model"):
        ds.label(filter="low_confidence")


def test_confusion_cell_click_and_fix(ds, model):
    w = model.confusion()
    assert isinstance(w, ConfusionWidget)
    spec = json.dumps(w.spec)
    assert '"mark"' in spec and "rect" in spec and "actual" in spec
    ev = model.evaluate()
    actual = ev.confusion.index[0]
    predicted = ev.confusion.to_numpy()[0].argmax()
    predicted = ev.confusion.columns[predicted]
    send(w, type="cell", actual=actual, predicted=predicted)
    assert w.cell == [actual, predicted] and w.n_total == ev.confusion.loc[actual, predicted]
    item = w.items[0]
    assert item["p_label"] is not None and item["suggestion"] == predicted
    send(w, type="label", ids=[item["id"]], label="green" if actual != "green" else "blue")
    fixed = next(i for i in w.items if i["id"] == item["id"])          # stays listed, marked as fixed
    assert fixed["decision"].startswith("→") and ds.item(item["id"])["label"] != actual
    send(w, type="remove", ids=[item["id"]])
    assert ds.item(item["id"])["status"] == "removed"
    assert "no cell" in send(w, type="cell", actual="nope", predicted=actual)["error"]
    w.normalize = True
    assert "rate" in json.dumps(w.spec)


def test_top_losses_decisions_persist_across_filters_and_widgets(ds, model):
    w = model.top_losses()
    assert isinstance(w, TopLossesWidget)
    losses = [i["loss"] for i in w.items]
    assert losses == sorted(losses, reverse=True) and w.n_total == len(ds.df)
    a, b, c = (i["id"] for i in w.items[:3])
    send(w, type="keep", ids=[a])
    send(w, type="remove", ids=[b])
    send(w, type="label", ids=[c], label="blue" if ds.item(c)["label"] != "blue" else "red")
    w.filter = "split:valid"
    w.filter = "all"
    decisions = {i["id"]: i["decision"] for i in w.items}
    assert decisions[a] == "kept" and decisions[b] == "removed" and decisions[c].startswith("→")
    fresh = {i["id"]: i["decision"] for i in model.top_losses().items}   # a new widget reads the same store
    assert fresh[a] == "kept" and b not in fresh and fresh[c].startswith("→")
    assert ds.history(a)["source"].iloc[-1] == "human"


def test_compare_runs(ds, model):
    nbml.train(ds, **{**FAST, "epochs": 1})
    w = ds.compare_runs()
    assert isinstance(w, RunsWidget) and len(w.rows) == 2
    assert {"run", "arch", "lr", "accuracy"} <= set(w.columns)
    assert "facet" in json.dumps(w.spec) or "hconcat" in json.dumps(w.spec)


def test_monitor_follows_events_and_stop_button_stops(ds):
    handle = nbml.train(ds, **{**FAST, "epochs": 100}, background=True)
    monitor = TrainingMonitor(handle, interval=0.0)
    sent = []
    monitor.send = lambda msg, buffers=None: sent.append(msg)
    import time
    deadline = time.time() + 60
    while not monitor._epochs and time.time() < deadline:
        time.sleep(0.05)
    monitor._dispatch(monitor, {"type": "stop", "seq": 1}, [])        # the Stop button
    handle.wait(60)
    assert handle.status == "stopped" and monitor.status["state"] == "stopped"
    assert monitor.summary["status"] == "stopped" and monitor.summary["run_id"] == handle.run_id
    rows = [m for m in sent if m["type"] == "rows"]
    assert rows and sum(len(m["batches"]) for m in rows) == len(monitor._batches)
    monitor._dispatch(monitor, {"type": "history", "seq": 2}, [])
    history = [m for m in sent if m["type"] == "rows"][-1]
    assert len(history["batches"]) == len(monitor._batches) and history["epochs"]
    assert "hconcat" in monitor.spec


def test_handle_acts_as_the_model_once_done(ds):
    handle = nbml.train(ds, **FAST, background=True)
    assert handle.evaluate().n > 0                                      # waits for training, then delegates
    assert handle.classes == ["blue", "green", "red"]
    with pytest.raises(AttributeError):
        handle.not_a_model_method


def test_events_console_printer_outside_notebook(ds, capsys):
    nbml.train(ds, **{**FAST, "quiet": False})
    out = capsys.readouterr().out
    assert "epoch 1/2" in out and "epoch 2/2" in out and "completed" in out


def test_label_queue_works_through_suggestions_and_reranks(ds, model):
    import time
    ds.set_label(ds.df["id"].tolist()[::3], None)
    w = ds.label(queue="suggest", page_size=4, rerank_every=2)
    assert w.filter == "queue" and "run" in w.queue_source
    ranked = ds.suggest(model=None, n=w.n_total)
    assert [i["id"] for i in w.items] == ranked["id"].tolist()[:4]          # the queue is suggest's order
    assert all(i["suggestion"] in ds.classes for i in w.items)
    before = w.n_total
    send(w, type="label", ids=[w.items[0]["id"]], label="red")
    send(w, type="accept", ids=[w.items[0]["id"]])
    assert w.n_total == before - 2                                          # decided items leave the queue
    assert w._ranking.acquire(timeout=30)                                   # the background re-rank finished
    w._ranking.release()
    assert w._since_rank == 0 and not w.error
    with pytest.raises(ValueError, match="queue"):
        ds.label(queue="bogus")


def test_explore_map_brush_neighbours_and_lists(ds, model):
    from nbml.widgets import ExploreWidget
    w = ds.explore()
    assert isinstance(w, ExploreWidget) and len(w.points) == len(ds.df)
    assert "run-" in w.info and "PCA" in w.info
    ids = [p["id"] for p in w.points[:5]]
    send(w, type="brush", ids=ids)
    assert w.mode == "selection" and sorted(i["id"] for i in w.items) == sorted(ids)
    send(w, type="label", ids=ids, label="blue")                           # bulk label from the map
    assert set(ds.df.set_index("id").loc[ids, "label"]) == {"blue"}
    red = int(ds.df[ds.df["label"] == "red"]["id"].iloc[0])
    send(w, type="point", id=red)
    assert w.mode == "similar" and w.items[0]["id"] == red
    colours = [ds.item(i["id"])["label"] for i in w.items[1:6]]
    assert colours.count("red") >= 3                                        # neighbours share its colour
    w.mode = "issues"
    w.mode = "duplicates"
    assert w.n_total >= 0
    with pytest.raises(ValueError, match="projection must be one of 'auto', 'umap', 'pca', not 'tsne'"):
        ds.explore(projection="tsne")
