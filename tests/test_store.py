"""The store on a real SQLite file and on a real PostgreSQL server (each test that takes `ds` or `where` runs on
both): labels, history, undo, soft delete, splits, durability, two writers."""
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

import nbml


@pytest.fixture
def ds(where, image_folder):
    """The colour images in a project on SQLite or PostgreSQL (conftest's `where`)."""
    d = nbml.Dataset(where)
    d.add_images(image_folder)
    yield d
    d.close()


def _integrity_ok(ds) -> bool:
    """SQLite's integrity check; a PostgreSQL server keeps its own consistency (its tests read every row back)."""
    if ds.path is None:
        return True
    return sqlite3.connect(ds.path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_open_creates_wal_project(tmp_path):
    ds = nbml.Dataset(tmp_path / "p.nbml")
    assert (tmp_path / "p.nbml").exists()
    mode = sqlite3.connect(tmp_path / "p.nbml").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert len(ds) == 0 and ds.classes == [] and ds.runs().empty
    assert list(ds.df.columns)[:6] == ["id", "kind", "path", "label", "split", "label_source"]


def test_add_images_from_class_folders(ds, image_folder):
    assert ds.classes == ["blue", "green", "red"]
    df = ds.df
    assert len(df) == 36 and set(df["label_source"]) == {"import"}
    assert all(os.path.isabs(p) for p in df["path"])
    assert (df.groupby("label").size() == 12).all()
    row = ds.item(int(df["id"].iloc[0]))
    assert row["width"] == 32 and row["height"] == 32 and len(row["sha256"]) == 64


def test_duplicates_are_reported_not_added(ds, image_folder, tmp_path):
    again = ds.add_images(image_folder)
    assert again.added == [] and len(again.duplicates) == 36
    copy = tmp_path / "copy.png"
    copy.write_bytes((image_folder / "red" / "0.png").read_bytes())
    report = ds.add_images([copy], label_from=None)
    original = ds.df.set_index("path").loc[str(image_folder / "red" / "0.png"), "id"]
    assert report.duplicates == [(str(copy), original)]
    assert len(ds) == 36


def test_set_label_history_new_class_and_undo(ds):
    item = int(ds.df["id"].iloc[0])
    before = ds.item(item)["label"]
    ds.set_label(item, "purple")
    assert ds.item(item)["label"] == "purple" and ds.item(item)["label_source"] == "human"
    assert "purple" in ds.classes
    hist = ds.history(item)
    assert hist["label"].tolist() == [before, "purple"] and hist["source"].tolist() == ["import", "human"]
    assert ds.undo() == {"kind": "label", "items": [item]}
    assert ds.item(item)["label"] == before and ds.item(item)["label_source"] == "import"
    assert "purple" not in ds.classes                 # the class came with the label and went with it
    assert ds.history(item)["label"].tolist() == [before, "purple", before]   # undo is history too


def test_bulk_label_is_one_undo_step(ds):
    ids = ds.df["id"].iloc[:5].tolist()
    ds.set_label(ids, "green", source="model")
    assert set(ds.df.set_index("id").loc[ids, "label_source"]) == {"model"}
    ds.undo()
    assert set(ds.df.set_index("id").loc[ids, "label_source"]) == {"import"}


def test_remove_restore_and_undo(ds):
    ids = ds.df["id"].iloc[:3].tolist()
    ds.remove(ids)
    assert len(ds) == 33 and not set(ids) & set(ds.df["id"])
    with pytest.raises(KeyError, match="restore"):
        ds.set_label(ids[0], "red")
    ds.undo()
    assert len(ds) == 36
    ds.remove(ids[0])
    ds.restore(ids[0])
    assert len(ds) == 36


def test_add_class_and_clear_label(ds):
    ds.add_class("yellow")
    assert ds.classes[-1] == "yellow"
    ds.add_class("yellow")
    assert ds.classes.count("yellow") == 1
    item = int(ds.df["id"].iloc[0])
    ds.set_label(item, None)
    assert pd.isna(ds.item(item)["label"])
    with pytest.raises(ValueError):
        ds.set_label(item, "  ")
    with pytest.raises(ValueError, match="source"):
        ds.set_label(item, "red", source="robot")
    with pytest.raises(KeyError, match="no item with id 999999"):
        ds.set_label(999999, "red")


def test_undo_with_nothing_to_undo(where):
    assert nbml.Dataset(where).undo() is None


def test_stratified_validation_split_is_kept(ds):
    assigned = ds.assign_validation_split(0.25, seed=1)
    assert assigned == 36
    counts = ds.df.groupby(["label", "split"]).size().unstack()
    assert (counts["valid"] == 3).all() and (counts["train"] == 9).all()
    before = ds.df.set_index("id")["split"]
    assert ds.assign_validation_split(0.5, seed=2) == 0      # assigned items never move
    assert ds.df.set_index("id")["split"].equals(before)


def test_reopen_sees_everything(where, image_folder):
    ds = nbml.Dataset(where)
    ds.add_images(image_folder)
    ds.set_label(1, "blue")
    ds.close()
    again = nbml.Dataset(where)
    assert len(again) == 36 and again.item(1)["label"] == "blue"


WRITER = textwrap.dedent("""
    import sys, nbml
    ds = nbml.Dataset(sys.argv[1])
    ids, tag = [int(i) for i in sys.argv[2].split(",")], sys.argv[3]
    for n in range(int(sys.argv[4])):
        item = ids[n % len(ids)]
        ds.set_label(item, f"{tag}{n}")
        print(item, f"{tag}{n}", flush=True)
""")


def test_kill_after_set_label_loses_nothing(ds, where):
    """A process killed with SIGKILL right after set_label returned: every label it reported is stored."""
    ids = ",".join(str(i) for i in ds.df["id"])
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(where), ids, "k", "100000"],
                            stdout=subprocess.PIPE, text=True)
    reported = {}
    for count, line in enumerate(proc.stdout, 1):   # kill in the middle of a stream of writes
        item, label = line.split()
        reported[int(item)] = label
        if count == 120:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reopened = nbml.Dataset(where)
    labels = reopened.df.set_index("id")["label"]
    for item, label in reported.items():
        # the process may have written one more label after its last report; never fewer
        assert labels[item] == label or int(labels[item][1:]) > int(label[1:])
    assert _integrity_ok(ds)


def test_two_writer_processes(ds, where):
    """Two processes label the same items at once: no corruption, no lost write, full history."""
    ids = ",".join(str(i) for i in ds.df["id"].iloc[:10])
    n = 150 if ds.path else 60   # PostgreSQL's variant kept short: the same code path, each label a round trip
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(where), ids, tag, str(n)],
                              stdout=subprocess.PIPE, text=True) for tag in ("a", "b")]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert all(len(o.splitlines()) == n for o in outs)
    history = nbml.Dataset(where).history()
    written = history[history["source"] == "human"]
    assert len(written) == 2 * n
    assert set(written["label"]) == {f"{t}{i}" for t in "ab" for i in range(n)}
    assert _integrity_ok(ds)


def test_import_is_lazy():
    code = "import sys, nbml; print(sorted(m for m in ('torch', 'fastai', 'timm', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
