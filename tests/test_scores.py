"""Numbers a newcomer can read: accuracy with its count, interval, baseline and notes (nbml.scores), in
`model.evaluate()` and `model.summary`; the forecast's line in the label grid's header and the monitor's summary."""
from __future__ import annotations

import math
import time

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

import nbml
from nbml.scores import overfit_note, scored, wilson


def test_wilson_interval_matches_the_textbook_values():
    low, high = wilson(12, 16)            # 75% on 16 items: wide
    assert low == pytest.approx(0.505, abs=0.005) and high == pytest.approx(0.898, abs=0.005)
    low, high = wilson(750, 1000)         # the same accuracy on 1,000: narrow
    assert high - low < 0.06
    assert all(math.isnan(v) for v in wilson(0, 0))   # nothing was measured


def test_an_unbalanced_small_validation_set_gets_its_baseline_and_notes():
    actual = ["ham"] * 88 + ["spam"] * 12
    predicted = ["ham"] * 100                      # never says spam: 0.88, exactly the baseline
    s = scored(actual, predicted)
    assert s["accuracy"] == pytest.approx(0.88) and s["baseline"] == pytest.approx(0.88) and s["majority"] == "ham"
    assert s["balanced_accuracy"] == pytest.approx(0.5)
    assert "always answering 'ham' would score 0.880" in s.line and "balanced accuracy" in s.line
    assert any("88% of the validation items are 'ham'" in n for n in s["notes"])
    small = scored(["a", "b"] * 8, ["a", "b"] * 6 + ["b", "a"] * 2)
    assert any("only 16 validation items" in n for n in small["notes"]) and small["balanced_accuracy"] is None
    assert scored(["a", "b"] * 100, ["a", "b"] * 100)["notes"] == []


def test_overfitting_note():
    assert "overfitting" in overfit_note(0.006, 0.64)
    assert overfit_note(0.30, 0.35) is None and overfit_note(None, 0.5) is None


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    frame = load_breast_cancer(as_frame=True).frame.sample(160, random_state=0)
    frame["target"] = frame["target"].map({0: "malignant", 1: "benign"})
    ds = nbml.Dataset(tmp_path_factory.mktemp("scores") / "b.nbml")
    ds.add_table(frame, label_col="target")
    yield ds
    ds.close()


def test_evaluate_and_summary_say_how_far_to_trust_the_accuracy(project):
    model = nbml.train(project, mode="head", quiet=True, seed=0)
    ev = model.evaluate()
    assert ev.scores["n"] == ev.n and ev.scores["low"] <= ev.accuracy <= ev.scores["high"]
    assert f"on {ev.n} valid items (95% interval" in repr(ev) and "always answering" in repr(ev)
    summary = model.summary
    assert summary.startswith("table classifier lightgbm, 2 classes")
    assert f"on {ev.n} validation items" in summary and "always answering 'benign'" in summary
    assert "Forecast accuracy" in summary or "not yet" in summary


def test_grid_header_shows_the_forecast_and_follows_new_labels(project):
    from nbml.widgets.label import LabelWidget
    w = LabelWidget(project, filter="all")
    deadline = time.monotonic() + 120
    while not w.forecast and time.monotonic() < deadline:
        time.sleep(0.1)
    first = w.forecast
    assert "Forecast accuracy" in first or "not yet" in first
    labelled = project.df[project.df["label"].notna()]
    ids = labelled["id"].head(40).tolist()
    project.set_label(ids, None)                      # 40 fewer labels: the line must say so
    w._after_decision(len(ids))
    while (w.forecast == first or w._forecasting.locked()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert w.forecast != first
    project.undo()


def test_monitor_summary_gains_the_forecast_after_a_run(project):
    from types import SimpleNamespace

    from nbml import events as E
    from nbml.widgets.monitor import TrainingMonitor
    model = nbml.train(project, mode="head", quiet=True, seed=0)
    monitor = TrainingMonitor(SimpleNamespace(model=model, subscribe=lambda fn: None))
    monitor(E.TrainEnded(model.run_id, "completed", {"accuracy": 0.9}, 1.0, 0))
    assert monitor.summary["run_id"] == model.run_id and monitor.summary["status"] == "completed"
    deadline = time.monotonic() + 120
    while "forecast" not in monitor.summary and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "Forecast accuracy" in monitor.summary["forecast"] or "not yet" in monitor.summary["forecast"]
    assert "validation items (95% interval" in monitor.summary["scores"]["line"]
    assert any("validation items" in n for n in monitor.summary["scores"]["notes"])     # 32 of them: small


def test_card_and_run_comparison_give_the_count_and_interval(project, tmp_path):
    from nbml.scores import interval_text
    model = nbml.train(project, mode="head", quiet=True, seed=0)
    card = (model.export(tmp_path / "m", quiet=True) / "README.md").read_text()
    n = project.runs().iloc[-1]["params"]["n_valid"]
    assert f"measured on {n} validation items: the 95% interval of the accuracy is" in card
    assert "always answering `benign` would score" in card
    w = project.compare_runs()
    assert "accuracy 95%" in w.columns
    last = [r for r in w.rows if r["run"] == model.run_id][0]
    assert last["accuracy 95%"] == interval_text(model.config["metrics"]["accuracy"], n)


def test_text_frames_show_the_start_of_each_text(tmp_path):
    from nbml.analysis import SHOWN_CHARS
    ds = nbml.Dataset(tmp_path / "t.nbml")
    ds.add_texts([f"review {i}: " + "very long words " * 60 for i in range(12)] + ["short one", "short two"],
                 labels=["a", "b"] * 6 + [None, None])
    similar = ds.similar("very long words", k=3)
    assert "path" not in similar.columns and similar["text"].str.len().max() <= SHOWN_CHARS + 1
    ds.close()
