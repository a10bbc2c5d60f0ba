"""`ds.forecast()` on real parts: table projects in real SQLite files (scikit-learn's breast cancer and wine, and a
table whose classes are built to differ in difficulty), their real embeddings (the standardised rows) and the
kind's real head, fitted at subsets of the labels. No speed is asserted (benchmarks/forecast.py measures it)."""
import numpy as np
import pandas as pd
import pytest

import nbml
from nbml import forecast as F


def table(name):
    from sklearn.datasets import load_breast_cancer, load_wine
    bunch = (load_breast_cancer if name == "breast_cancer" else load_wine)(as_frame=True)
    frame = bunch.frame.rename(columns={"target": "label"})
    frame["label"] = frame["label"].map(dict(enumerate(bunch.target_names))).astype(str)
    return frame


def project(tmp_path, frame, per_class, seed=0, name="p"):
    """A table project with `per_class` random labels of each class; the other rows unlabelled."""
    ds = nbml.Dataset(tmp_path / f"{name}.nbml")
    report = ds.add_table(frame.drop(columns=["label"]), label_col=None, progress=False)
    rng = np.random.default_rng(seed)
    for c in sorted(frame["label"].unique()):
        rows = rng.permutation(np.flatnonzero(frame["label"].to_numpy() == c))[:per_class]
        ds.set_label([report.added[i] for i in rows], c)
    return ds, report.added


def test_forecast_gives_numbers_intervals_target_and_a_chart(tmp_path):
    ds, _ = project(tmp_path, table("breast_cancer"), 30)
    f = ds.forecast(target=0.97)
    assert f.not_yet is None, f.not_yet
    assert f.labels == f.used == 60 and f.kind == "table"
    assert list(f.frame["horizon"]) == [1, 2, 4] and list(f.frame["labels"]) == [60, 120, 240]
    assert ((f.frame["low"] <= f.frame["accuracy"]) & (f.frame["accuracy"] <= f.frame["high"])).all()
    assert 0.8 < f.frame["accuracy"].iloc[0] <= 1.0               # a logistic head on these columns: about 0.93
    assert f.frame["accuracy"].is_monotonic_increasing
    assert f.to_frame().equals(f.frame)
    ltt = f.labels_to_target
    assert ltt is not None and "target 97%" in ltt["words"]
    assert ltt["reachable"] == (np.isfinite(ltt["estimate"]) and ltt["estimate"] <= F.MAX_LABELS_FACTOR * 60)
    assert f.summary.startswith("Forecast accuracy: now (60 labels)") and "2x (120 labels)" in f.summary
    assert "target 97%" in f.summary and f.summary in repr(f)
    assert len(f.points) == len(F.FRACTIONS) and (f.points["repeats"] == F.REPEATS).all()
    assert (f.points["labels"] <= 60).all()                        # measured below today's labels, never above
    # the unlabelled rows say nothing about accuracy; the 60 have no split yet, and the result says so
    assert any("no split yet" in n for n in f.notes)

    spec = f.spec
    marks = [layer["mark"]["type"] for layer in spec["layer"]]
    assert marks.count("area") == 1 and marks.count("line") == 1      # the fitted curve and its band
    assert marks.count("point") == 2 and marks.count("rule") == 3     # measured, forecasts, spreads, the target
    target = [layer for layer in spec["layer"] if "strokeDash" in layer["mark"]]
    assert target and target[0]["data"]["values"][0]["target"] == 0.97
    point = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "point")
    assert "labels" in point["encoding"]["x"]["title"] and "accuracy" in point["encoding"]["y"]["title"]
    assert all("url" not in layer["data"] for layer in spec["layer"])
    band = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "area")["data"]["values"]
    assert max(r["labels"] for r in band) == pytest.approx(240)
    chart = f.chart()
    from nbml.widgets.chart import Chart
    assert isinstance(chart, Chart) and chart.spec["layer"][0]["mark"]["type"] == "area"
    ds.close()


def test_not_yet_with_too_few_labels_per_class_and_with_one_class(tmp_path):
    ds, ids = project(tmp_path, table("wine"), 4)
    f = ds.forecast(target=0.9)
    assert f.not_yet is not None and f.not_yet.startswith(f"label {F.MIN_PER_CLASS - 4} more per class")
    assert f.summary.startswith("Forecast: not yet: label")
    assert f.frame.empty and f.labels_to_target is None
    assert sorted(f.per_class["labelled"]) == [4, 4, 4]
    assert f.chart().spec["layer"]                                   # a chart even so (nothing measured yet)
    ds.close()

    one = nbml.Dataset(tmp_path / "one.nbml")
    rep = one.add_table(table("wine").drop(columns=["label"]), label_col=None, progress=False)
    one.set_label(rep.added[:20], "class_0")
    assert "at least two classes" in one.forecast().not_yet
    assert F.headline(one).startswith("Forecast: not yet")
    one.close()


def test_a_curve_that_does_not_rise_says_not_yet(tmp_path):
    rng = np.random.default_rng(0)
    noise = pd.DataFrame(rng.normal(size=(240, 4)), columns=list("abcd"))
    noise["label"] = rng.choice(["x", "y", "z"], len(noise))        # labels that nothing in the row predicts
    ds, _ = project(tmp_path, noise, 30)
    f = ds.forecast()
    assert f.not_yet is not None and "label 30 more per class" in f.not_yet
    assert len(f.points) == len(F.FRACTIONS)                          # it measured, and says why it will not guess
    ds.close()


def test_it_never_reads_validation_labels(tmp_path):
    frame = table("wine")
    ds, ids = project(tmp_path, frame, 25)
    labelled = ds.df[ds.df["label"].notna()]
    valid = labelled.groupby("label").head(5)["id"].astype(int).tolist()
    ds.set_split(valid, "valid")
    before = ds.forecast(target=0.95)
    assert before.used == 60 and before.labels == 75
    assert any("'valid' split were left out" in n for n in before.notes)
    # turn every validation label into another class: a forecast that read them would change
    classes = sorted(frame["label"].unique())
    for i in valid:
        old = ds.df.set_index("id").loc[i, "label"]
        ds.set_label(i, classes[(classes.index(old) + 1) % len(classes)])
    after = ds.forecast(target=0.95)
    pd.testing.assert_frame_equal(before.frame, after.frame)
    pd.testing.assert_frame_equal(before.points, after.points)
    assert before.summary == after.summary
    both = ds.forecast(include_valid=True)
    assert both.used == 75 and any("include_valid=True" in n for n in both.notes)
    ds.set_split(valid[:3], "test")
    assert ds.forecast().labels == 72                                 # 'test' items are not even counted
    ds.close()


def test_deterministic_for_a_seed(tmp_path):
    ds, _ = project(tmp_path, table("breast_cancer"), 20)
    a, b = ds.forecast(seed=3), ds.forecast(seed=3)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    pd.testing.assert_frame_equal(a.per_class, b.per_class)
    assert a.summary == b.summary
    ds.close()


def test_per_class_finds_the_classes_that_hold_accuracy_back(tmp_path):
    rng = np.random.default_rng(1)
    n = 150
    easy = rng.normal(4.0, 1.0, size=(n, 3))                          # far from the others
    hard1, hard2 = rng.normal(0.0, 1.0, size=(n, 3)), rng.normal(0.6, 1.0, size=(n, 3))   # overlapping
    frame = pd.DataFrame(np.vstack([easy, hard1, hard2]), columns=["u", "v", "w"])
    frame["label"] = ["easy"] * n + ["hard1"] * n + ["hard2"] * n
    ds, _ = project(tmp_path, frame, 30)
    f = ds.forecast(target=0.9)
    pc = f.per_class.set_index("class")
    assert list(f.per_class.columns) == ["class", "labelled", "recall", "recall_2x", "needs", "holds_back"]
    assert pc.loc["easy", "recall"] > 0.95 and not pc.loc["easy", "holds_back"]
    assert pc.loc["hard1", "holds_back"] and pc.loc["hard2", "holds_back"]
    assert pc.loc["easy", "needs"] == 0                                # reached the target already
    assert pc.loc["hard1", "needs"] > 0 and pc.loc["hard2", "needs"] > 0
    assert f.per_class["recall"].is_monotonic_increasing               # the ones holding it back first
    assert "per class" in repr(f)
    ds.close()


def test_headline_is_one_line_and_never_raises(tmp_path):
    ds, _ = project(tmp_path, table("breast_cancer"), 20)
    line = F.headline(ds, target=0.95)
    assert line.startswith("Forecast accuracy: now (40 labels)") and "\n" not in line
    empty = nbml.Dataset(tmp_path / "empty.nbml")
    assert F.headline(empty) == ""                                     # nothing to say yet, and no exception
    with pytest.raises(ValueError, match="between 0 and 1"):
        ds.forecast(target=90)
    ds.close()
    empty.close()


def test_power_law_fit_recovers_a_known_curve():
    m = np.array([20.0, 40, 80, 160, 320])
    y = 0.95 - 0.8 * m ** -0.5
    A, B, c = F.fit_power_law(m, y)
    assert A[0] == pytest.approx(0.95, abs=0.01) and c[0] == pytest.approx(0.5, abs=0.06)
    flat = F.fit_power_law(m, np.full(5, 0.7))
    assert flat[1][0] == 0 and flat[0][0] == pytest.approx(0.7)
    over = F.fit_power_law(m, 1.2 - 2 * m ** -0.3)                     # would level off above 1: the ceiling holds
    assert over[0][0] == 1.0
    est = F._labels_for(0.95, 0.8, 0.5, 1.0, 1.0, 0.9)                  # 0.95 - 0.8 m^-0.5 = 0.9 at m = 256
    assert float(est) == pytest.approx(256)
    assert np.isinf(F._labels_for(0.95, 0.8, 0.5, 1.0, 1.0, 0.96))


def test_images_through_a_trained_body_leave_the_valid_split_out(tmp_path):
    from conftest import make_images
    folder = make_images(tmp_path / "images", per_class=14)
    ds = nbml.Dataset(tmp_path / "colours.nbml")
    ds.add_images(folder)                                              # 3 colour classes, labelled from the folders
    model = nbml.train(ds, arch="test_resnet", epochs=1, size=32, bs=8, pretrained=False, quiet=True, seed=0)
    f = ds.forecast(model=model, target=0.9)
    n_valid = int((ds.df["split"] == "valid").sum())
    assert n_valid > 0 and f.kind == "image" and f.labels == 42 and f.used == 42 - n_valid
    assert any("'valid' split were left out" in n for n in f.notes)
    assert f.method.startswith("image head") and "embeddings from" in f.method     # the trained body's
    assert f.not_yet is not None or list(f.frame["horizon"]) == [1, 2, 4]
    assert len(f.per_class) == 3 and set(f.per_class["class"]) == {"red", "green", "blue"}
    ds.close()


def test_the_summary_never_rounds_an_estimate_up_to_100_percent():
    assert [F._pct(v) for v in (0.731, 0.9949, 0.995, 0.9996, 1.0)] == ["73%", "99%", "99.5%", "99.9%", "100%"]
