"""What a newcomer sees (issue 26): label issues that say when they cannot tell, frames that show the item and say
what their scores mean, and nbml's warnings as one line."""
from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

import nbml


def cancer_frame(n: int, shuffle: bool):
    frame = load_breast_cancer(as_frame=True).frame.sample(n, random_state=0).reset_index(drop=True)
    frame["target"] = frame["target"].map({0: "malignant", 1: "benign"})
    if shuffle:     # labels that have nothing to do with the rows: no head can tell a wrong one
        frame["target"] = np.random.default_rng(1).permutation(frame["target"].to_numpy())
    return frame


def test_label_issues_flag_nothing_when_the_heads_agree_with_labels_at_chance(tmp_path):
    ds = nbml.Dataset(tmp_path / "random.nbml")
    ds.add_table(cancer_frame(80, shuffle=True), label_col="target")
    with pytest.warns(nbml.NbmlWarning, match="label_issues flagged nothing.*cannot tell a wrong label"):
        issues = ds.label_issues()
    assert len(issues) == 0 and "Label more items" in issues.attrs["note"]
    assert issues.attrs["agreement"] < 0.75
    ds.close()


def test_label_issues_on_learnable_labels_flag_and_explain_their_score(tmp_path):
    frame = cancer_frame(300, shuffle=False)
    flipped = frame.index[:15]
    frame.loc[flipped, "target"] = frame.loc[flipped, "target"].map({"malignant": "benign", "benign": "malignant"})
    ds = nbml.Dataset(tmp_path / "cancer.nbml")
    ds.add_table(frame, label_col="target")
    with warnings.catch_warnings():
        warnings.simplefilter("error", nbml.NbmlWarning)
        issues = ds.label_issues()
    assert len(issues) > 0 and "note" not in issues.attrs
    assert "path" not in issues.columns and issues["row"].str.contains("mean radius: ").all()
    assert "how likely the label is wrong" in issues.attrs["columns"]["score"]
    suggested = ds.suggest(n=3) if len(ds.df[ds.df["label"].isna()]) else None
    assert suggested is None or "confidence" in suggested.attrs["columns"]
    ds.close()


def test_nbml_warnings_are_one_line_without_a_source_location():
    code = ("import warnings, nbml\n"
            "from nbml.pretrained import PretrainedWeightsWarning\n"
            "warnings.warn('no pretrained weights here', PretrainedWeightsWarning)\n")
    err = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True,
                         check=True).stderr
    assert err == "PretrainedWeightsWarning: no pretrained weights here\n"


def test_adding_the_same_texts_again_says_nothing_new_was_added(tmp_path):
    ds = nbml.Dataset(tmp_path / "t.nbml")
    texts = [f"message number {i}" for i in range(20)] + ["x" * 30_000]
    first = ds.add_texts(texts)
    assert "added with a note 1: long text" in first.summary()
    again = ds.add_texts(texts).summary()
    assert again.splitlines() == ["added 0, duplicates 21, skipped 0: nothing new, every one is already in the "
                                  "project"]
    ds.close()


def test_table_rows_in_the_grid_are_rows(tmp_path):
    ds = nbml.Dataset(tmp_path / "rows.nbml")
    ds.add_table(cancer_frame(30, shuffle=False), label_col=None)
    w = ds.label()
    assert w.item_kind == "text" and w.item_noun == "row"
    assert w.items[0]["text"]["noun"] == "row"
    w._on_search({"query": "mean radius"})
    assert w.n_total == 30
    ds.close()


def test_history_has_datetimes_and_whole_undo_steps(tmp_path):
    ds = nbml.Dataset(tmp_path / "h.nbml")
    ds.add_texts(["one", "two"], labels=["a", None])
    ds.set_label(2, "b")
    hist = ds.history()
    assert str(hist["time"].dtype) == "datetime64[ns, UTC]" and str(hist["action_id"].dtype) == "Int64"
    assert hist["action_id"].isna().tolist() == [True, False]       # the import is no undo step; the label is one
    ds.close()


def test_columns_have_no_nan_reasons_and_short_ones(tmp_path):
    frame = cancer_frame(40, shuffle=False)
    frame["patient"] = [f"p-{i:04d}" for i in range(len(frame))]
    ds = nbml.Dataset(tmp_path / "c.nbml")
    ds.add_table(frame, label_col="target")
    cols = ds.columns()
    assert not cols["reason"].isna().any()
    reason = cols.set_index("name").loc["patient", "reason"]
    assert reason.startswith("an identifier?") and len(reason) <= 50      # pandas shows 50 characters of a cell
    ds.close()


def test_a_table_runs_candidates_as_a_small_frame_and_the_kept_one_named(tmp_path):
    from nbml import events as E
    ds = nbml.Dataset(tmp_path / "k.nbml")
    ds.add_table(cancer_frame(120, shuffle=False), label_col="target")
    seen = []
    model = nbml.train(ds, epochs=1, seed=0, on_event=seen.append)
    cands = ds.candidates()
    assert set(cands["model"]) == {"network", "lightgbm", "linear"} and cands["kept"].sum() == 1
    kept = cands.loc[cands["kept"], "model"].item()
    assert cands.attrs["kept_because"] and model.config["metrics"]["kept"].startswith(kept)
    ended = [e for e in seen if isinstance(e, E.TrainEnded)][0]
    assert ended.metrics["kept"].startswith(kept)          # what the monitor's summary lists with the accuracies
    ds.close()


def test_monitor_status_line_shows_the_plotted_loss_at_each_epochs_end():
    """The status line showed a throttled batch's loss (0.6810) while the plotted curves ended near 0.46."""
    from nbml import events as E
    from nbml.widgets.monitor import TrainingMonitor
    monitor = TrainingMonitor(interval=3600)        # batches throttled: only epoch ends reach the front end
    monitor(E.TrainStarted(1, "tabular", "cpu", "random", ["a", "b"], 10, 5, 1, 3, 4))
    for i, smooth in enumerate((0.681, 0.52, 0.46)):
        monitor(E.BatchEnded("unfrozen", 0, i, 3, smooth, smooth, 1e-3, (i + 1) / 3, 0.1 * i, 0.0))
    monitor(E.EpochEnded("unfrozen", 0, 1, 0.47, 0.46, {"accuracy": 0.8}, 0.3, 0.0))
    assert monitor.status["loss"] == pytest.approx(0.46)
