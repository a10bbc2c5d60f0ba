"""Several people on one project, on SQLite and on a real PostgreSQL server (`where`): authors, per-person undo,
leases on the shared queue (also across processes), overlap and review, agreement, the labels training takes,
the grid's leases, the upgrade of a schema-1 project file, and the password kept out of everything shown."""
import logging
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

import nbml
from nbml.agreement import cohen_kappa, fleiss_kappa
from nbml.widgets.label import LabelWidget

DATA = Path(__file__).parent / "data"
TEXTS = [f"message number {i} about {w}" for i, w in enumerate(["cats", "dogs", "birds", "fish"] * 5)]


@pytest.fixture
def team(where):
    """alice and bob on one project of 20 unlabelled texts."""
    alice = nbml.Dataset(where, user="alice")
    alice.add_texts(TEXTS)
    bob = nbml.Dataset(where, user="bob")
    yield alice, bob
    alice.close()
    bob.close()


def test_authors_and_undo_is_per_person(team):
    alice, bob = team
    alice.set_label(1, "cat")
    bob.set_label(2, "dog")
    assert alice.history()[["item_id", "label", "author"]].values.tolist() == [[1, "cat", "alice"], [2, "dog", "bob"]]
    assert alice.undo() == {"kind": "label", "items": [1]}        # alice's own change, not bob's latest
    assert alice.item(1)["label"] is None and alice.item(2)["label"] == "dog"
    assert alice.undo() is None                                    # nothing of alice's left; bob's stays
    assert bob.undo() == {"kind": "label", "items": [2]}
    assert alice.history(1)["author"].tolist() == ["alice", "alice"]


def test_undo_refuses_to_overwrite_a_later_label_by_someone_else(team):
    alice, bob = team
    alice.set_label(3, "cat")
    alice.set_label(4, "dog")
    bob.set_label(3, "bird")
    alice.undo()                                                   # item 4: nobody touched it since
    with pytest.raises(nbml.UndoConflictError, match=r"item 3 was labelled 'bird' by bob.*nothing was undone"):
        alice.undo()
    assert alice.item(3)["label"] == "bird" and alice.item(4)["label"] is None
    assert alice.undo() is None                                    # the refused change is not offered again


def test_leases_keep_two_people_off_the_same_items(team):
    alice, bob = team
    a = alice.next_items(5)
    b = bob.next_items(5)
    assert a == [1, 2, 3, 4, 5] and b == [6, 7, 8, 9, 10]
    assert alice.next_items(5) == a                               # her own leases come back, renewed
    assert bob.lease([5, 6, 11]) == [6, 11]                        # 5 is alice's
    assert bob.held_by_others() == set(a) and alice.query_ids(to_label_by="alice") == [1, 2, 3, 4, 5] + list(
        range(12, 21))
    alice.set_label(1, "cat")                                      # labelling ends the lease
    alice.release([2])                                             # so does skipping
    assert bob.lease([2]) == [2]                                   # bob may take 2 now
    assert 1 not in bob.next_items(20) and 2 in bob.next_items(20)  # 1 is labelled: out of the queue
    alice.lease([3], ttl=0)                                        # an expired lease frees the item
    assert bob.lease([3]) == [3]
    bob.release()
    assert alice.held_by_others() == set()


CLAIMER = textwrap.dedent("""
    import sys, nbml
    ds = nbml.Dataset(sys.argv[1], user=sys.argv[2])
    while True:
        ids = ds.next_items(2)
        if not ids:
            break
        ds.set_label(ids, "x")
        print(*ids, flush=True)
""")


def test_processes_racing_for_the_queue_never_share_an_item(where):
    ds = nbml.Dataset(where, user="setup")
    ds.add_texts([f"text {i}" for i in range(60)])
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(where), f"p{n}"], stdout=subprocess.PIPE,
                              text=True) for n in range(3)]
    taken = [int(i) for p in procs for line in p.communicate(timeout=300)[0].splitlines() for i in line.split()]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(taken) == list(range(1, 61))                     # every item once, by one process
    labelled = ds.history().query("source == 'human'")
    assert labelled.groupby("item_id")["author"].nunique().max() == 1 and len(labelled) == 60
    ds.close()


def test_overlap_review_agreement_and_training_labels(team):
    alice, bob = team
    alice.set_overlap(2)
    assert bob.overlap == 2
    alice.set_label([1, 2, 3], "cat")
    assert alice.query_ids(to_label_by="alice")[:2] == [4, 5]     # her labelled ones left her queue
    assert bob.query_ids(to_label_by="bob")[:3] == [1, 2, 3]       # and wait for a second person
    bob.set_label([1, 2], "cat")
    bob.set_label(3, "dog")
    assert 1 not in bob.query_ids(to_label_by="carol")             # two labels: done
    dis = alice.disagreements()
    assert dis["id"].tolist() == [3] and dis["labels"][0] == {"alice": "cat", "bob": "dog"}
    assert dis["majority"][0] is None
    ag = alice.agreement()
    assert ag["method"] == "cohen" and ag["items"] == 3 and ag["disagreements"] == 1
    assert ag["kappa"] == pytest.approx(cohen_kappa(["cat", "cat", "cat"], ["cat", "cat", "dog"]))
    assert "Cohen's kappa" in repr(alice.stats())
    alice.set_split([1, 2, 3], "train")
    frame = alice.training_items().set_index("id")
    assert frame.loc[3, "label"] == "dog" and frame.loc[3, "label_rule"] == "latest"   # a tie: the latest
    assert frame.loc[1, "label_rule"] == "majority"
    bob.set_label(3, "cat", source="review")                       # a reviewer settles it
    assert alice.disagreements().empty
    frame = alice.training_items().set_index("id")
    assert frame.loc[3, "label"] == "cat" and frame.loc[3, "label_rule"] == "reviewed"
    snap = alice.snapshot(alice.training_items())
    run = alice._start_run("test", {}, snap, "cpu", {})
    params = alice.runs().set_index("id").loc[run, "params"]
    assert params["label_rule"] == {"majority": 2, "reviewed": 1} and params["user"] == "alice"


def test_kappa_formulas_by_hand():
    # 4 items, agreement on 3: p_o = 3/4; x/y counts 2/2 and 3/1: p_e = (2*3 + 2*1)/16 = 1/2 -> (3/4 - 1/2)/(1/2)
    assert cohen_kappa(["x", "x", "y", "y"], ["x", "x", "y", "x"]) == pytest.approx(0.5)
    # three raters, two items: unanimous x and unanimous y: perfect agreement
    assert fleiss_kappa([Counter(x=3), Counter(y=3)]) == pytest.approx(1.0)
    # P_i = (4+1-3)/6 = 1/3 each; p_x = p_y = 1/2, P_e = 1/2 -> (1/3 - 1/2) / (1/2) = -1/3
    assert fleiss_kappa([Counter(x=2, y=1), Counter(x=1, y=2)]) == pytest.approx(-1 / 3)


def test_grids_of_two_people_show_different_items_and_let_go(team):
    alice, bob = team
    ga = LabelWidget(alice, page_size=4)
    gb = LabelWidget(bob, page_size=4)
    shown_a = [i["id"] for i in ga.items]
    shown_b = [i["id"] for i in gb.items]
    assert shown_a == [1, 2, 3, 4] and shown_b == [5, 6, 7, 8]
    assert alice.held_by_others() == set(shown_b)
    ga._on_label({"ids": [1], "label": "cat"})
    ga._after_reply()                                              # the refreshed page takes the next free item
    assert [i["id"] for i in ga.items] == [2, 3, 4, 9]
    ga.filter = "all"                                              # leaving the queue lets the items go
    assert bob.held_by_others() == set()
    ga.close()
    gb.close()
    assert alice.held_by_others() == set()


def test_review_filter_settles_disagreements(team):
    alice, bob = team
    alice.set_overlap(2)
    alice.set_label(5, "cat")
    bob.set_label(5, "dog")
    grid = LabelWidget(bob, filter="review")
    assert [(i["id"], i["note"]) for i in grid.items] == [(5, "alice: cat, bob: dog")]
    assert ["review", "review: labels that disagree"] in grid.filter_options
    grid._on_label({"ids": [5], "label": "dog"})
    grid._after_reply()
    assert grid.items == [] and bob.annotations(5)["review"].tolist() == [0, 0, 1]
    queue = LabelWidget(bob, filter="unlabelled", page_size=3)
    assert all(i["label"] is None for i in queue.items)           # overlap: nobody sees the others' labels first
    grid.close()
    queue.close()


def test_schema_1_project_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.nbml"
    shutil.copy(DATA / "v1-project.nbml", path)
    ds = nbml.Dataset(path, user="carol")
    assert ds._meta_value("schema_version") == "3"
    df = ds.df.set_index("id")
    assert len(df) == 8 and df.loc[1, "label"] == "red" and df.loc[7, "label"] == "green"
    assert df["label"].isna().sum() == 1 and set(df["split"].dropna()) == {"train", "valid"}
    assert ds.classes == ["blue", "red", "green"] and len(ds.runs()) == 1
    assert ds.runs()["metrics"][0] == {"accuracy": 0.5}
    hist = ds.history()
    assert len(hist) == 10 and hist["author"].isna().all()       # who made them was not recorded then
    assert ds.undo() == {"kind": "label", "items": [1]}           # the legacy changes stay undoable
    assert ds.item(1)["label"] == "blue" and ds.history(1)["author"].tolist()[-1] == "carol"
    ds.set_label(8, "green")
    ds.close()
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    again = nbml.Dataset(path, user="carol")                      # reopening finds version 2: nothing to do
    assert again.item(8)["label"] == "green" and again.annotations(8)["author"].tolist() == ["carol"]
    again.close()


def test_password_is_never_shown(postgres, tmp_path, caplog):
    from pg import PASSWORD
    caplog.set_level(logging.DEBUG)
    url = postgres.new_database()
    ds = nbml.Dataset(url, user="alice")
    seen = [repr(ds), str(ds), ds.url, repr(ds._writer)]
    spam = nbml.datasets.sms_spam()
    ds.add_texts(spam["text"].head(60).tolist(), labels=spam["label"].head(60).tolist())
    model = nbml.train(ds, mode="head", quiet=True)
    seen.append(ds.runs().to_string())
    seen.append(repr(ds.runs().to_dict("records")))
    folder = model.export(tmp_path / "artifact", quiet=True)
    seen += [p.read_text(errors="replace") for p in Path(folder).rglob("*") if p.suffix in (".md", ".json")]
    for bad in (url.replace(PASSWORD, "wrong-" + PASSWORD), url.rsplit(":", 1)[0] + ":1/none"):
        with pytest.raises(ConnectionError) as err:
            nbml.Dataset(bad)
        seen += [str(err.value), repr(err.value), "".join(__import__("traceback").format_exception(err.value))]
    for bad, message in ((url.replace(f":{postgres.port}/", ":port/"), "cannot be read"),
                         (url.replace("postgresql://", "mysql://"), "not supported")):
        with pytest.raises(ValueError, match=message) as err:
            nbml.Dataset(bad)
        seen += [str(err.value), "".join(__import__("traceback").format_exception(err.value))]
    seen.append(caplog.text)
    assert any("alice" in s for s in seen) and any("cannot open the project" in s for s in seen)
    assert not [s for s in seen if PASSWORD in s]
    ds.close()


def test_thumbnails_of_a_server_project_live_in_its_database(postgres, tmp_path):
    from conftest import make_images, widget_reply
    from nbml.thumbs import PLACEHOLDER
    images = make_images(tmp_path / "images", per_class=2)
    url = postgres.new_database()
    alice = nbml.Dataset(url, user="alice")
    alice.add_images(images)
    shutil.rmtree(images)                                          # bob's machine cannot read alice's disk
    bob = nbml.Dataset(url, user="bob")
    grid = LabelWidget(bob, filter="all")
    keys = [i["thumb"] for i in grid.items]
    sent, _ = widget_reply(grid, type="thumbs", keys=keys)
    assert len(keys) == 6 and sent[-1]["keys"] == keys
    thumbs = bob._thumb_rows(128, keys)
    assert len(thumbs) == 6 and all(t[:2] == b"\xff\xd8" and t != PLACEHOLDER for t in thumbs.values())
    assert not (bob.home / "thumbs.sqlite").exists()
    grid.close()
    alice.close()
    bob.close()
