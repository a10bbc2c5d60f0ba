"""Tables end to end on real parts: rows with bad values into a real SQLite project, fastai's TabularModel and
LightGBM trained on the Titanic passengers that ship with nbml, the ONNX artifact checked against both, a real server
on 127.0.0.1 (JSON and the Open Inference Protocol through tritonclient), the prediction log back into the project,
and the data-centric loop on rows."""
import json
import math
from types import SimpleNamespace

import httpx
import numpy as np
import pandas as pd
import pytest

import nbml
from nbml.datasets import titanic
from nbml.kinds import table, table_model
from nbml.kinds.table_encoding import ColumnError


def messy_frame(n=40):
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "amount": rng.normal(100, 20, n).round(2),
        "mixed": [f"v{i % 5}" if i % 3 else i % 5 for i in range(n)],    # numbers and strings in one column
        "nothing": [None] * n,
        "customer": [f"cust-{i:04d}" for i in range(n)],                   # all different: an identifier
        "plan": rng.choice(["free", "pro", "team"], n),
        "active": rng.choice([True, False], n),
        "signed_up": pd.date_range("2024-01-01", periods=n, freq="D"),
        "label": rng.choice(["churn", "stay"], n)})


def test_add_table_reports_each_problem_and_keeps_types(tmp_path):
    ds = nbml.Dataset(tmp_path / "rows.nbml")
    frame = messy_frame()
    frame.loc[3, "amount"] = math.inf
    frame = pd.concat([frame, frame.iloc[[5]]], ignore_index=True)      # an exact duplicate row
    report = ds.add_table(frame, progress=False)
    assert len(report.added) == 40 and len(report.duplicates) == 1
    notes = {}
    for where, note in report.warnings:
        notes[where] = notes.get(where, "") + note
    assert "infinite" in notes["column 'amount'"]
    assert "mixed types" in notes["column 'mixed'"]
    assert "every value is missing" in notes["column 'nothing'"]
    assert "identifier" in notes["column 'customer'"]
    cols = ds.columns().set_index("name")
    assert cols.loc["amount", "type"] == "number" and cols.loc["mixed", "type"] == "category"
    assert cols.loc["active", "type"] == "bool" and cols.loc["signed_up", "type"] == "date"
    assert cols.loc["customer", "role"] == "identifier" and cols.loc["nothing", "role"] == "empty"
    assert ds.kind == "table"
    row = json.loads(ds.item_rows([report.added[3]])[0]["content"])
    assert row["amount"] is None and row["active"] in (True, False) and row["signed_up"].startswith("2024-01-04")
    assert set(ds.label_counts()) <= {"churn", "stay", None}

    with pytest.raises(ValueError, match=r"missing \['plan'\].*new \['tier'\]"):
        ds.add_table(messy_frame().rename(columns={"plan": "tier"}), progress=False)
    with pytest.raises(KeyError, match="its columns are"):
        ds.add_table(messy_frame(), label_col="outcome", progress=False)
    with pytest.raises(nbml.store.KindMismatchError):
        ds.add_texts(["a text"])
    ds.use_columns(include=["customer"])
    assert ds.columns().set_index("name").loc["customer", "role"] == "feature"
    with pytest.raises(ValueError, match="no values"):
        ds.use_columns(include=["nothing"])
    ds.close()


def test_files_and_single_class_error(tmp_path):
    frame = messy_frame().drop(columns=["signed_up", "mixed"])   # Parquet holds one type per column
    frame.to_csv(tmp_path / "rows.csv", index=False)
    frame.to_parquet(tmp_path / "rows.parquet")
    ds = nbml.Dataset(tmp_path / "csv.nbml")
    assert len(ds.add_table(tmp_path / "rows.csv", progress=False).added) == 40
    assert len(ds.add_table(tmp_path / "rows.parquet", progress=False).duplicates) == 40    # the same rows
    ds.close()
    one = nbml.Dataset(tmp_path / "one.nbml")
    one.add_table(frame.assign(label="stay"), progress=False)
    with pytest.raises(ValueError, match="at least two classes"):
        nbml.train(one, quiet=True)
    one.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("table")
    ds = nbml.Dataset(root / "titanic.nbml")
    frame = titanic()
    ds.add_table(frame, label_col="survived", progress=False)
    model = nbml.train(ds, quiet=True, epochs=3, seed=0)
    yield SimpleNamespace(root=root, ds=ds, model=model, frame=frame)
    ds.close()


def test_both_models_are_trained_scored_and_the_better_kept(env):
    run = env.ds.runs().iloc[-1]
    params = run["params"]
    assert set(params["candidates"]) == {"network", "lightgbm", "linear"}
    kept = params["kept"]
    # 714 labelled rows: small enough to choose by 5-fold cross-validation over all of them, not the split's 143
    assert params["chosen_by"] == "5-fold cross-validation" and "cross-validated accuracy on the 714" in \
        params["kept_because"]
    cv = {k: v["cv_accuracy"] for k, v in params["candidates"].items()}
    assert cv[kept] == max(cv.values()) and all(0.6 < a < 0.95 for a in cv.values()), cv
    scores = {k: v["accuracy"] for k, v in params["candidates"].items()}
    assert run["metrics"]["accuracy"] == pytest.approx(scores[kept])      # the kept model's validation accuracy
    assert env.model.config["model"] == kept and env.model.evaluate().accuracy > 0.7
    woman = {"pclass": 1, "sex": "female", "age": 30, "fare": 80.0, "sibsp": 0, "parch": 0}
    man = {"pclass": 3, "sex": "male", "age": 30, "fare": 8.0, "sibsp": 0, "parch": 0}
    assert env.model.predict(woman).label == "survived" and env.model.predict(man).label == "died"
    many = env.model.predict_many(env.frame.drop(columns=["survived"]).head(5))     # `name`: known, not read
    assert list(many.columns) == ["label", "confidence", "died", "survived"] and len(many) == 5
    assert env.model.predict({**man, "sex": "unknown to the model"}).label in ("died", "survived")
    with pytest.raises(ColumnError, match="no column 'fare'"):
        env.model.predict({k: v for k, v in man.items() if k != "fare"})
    with pytest.raises(ColumnError, match="does not know: 'cabin'"):
        env.model.predict({**man, "cabin": "C85"})
    loaded = nbml.load(env.ds.runs().iloc[-1]["model_path"], dataset=env.ds)
    assert np.allclose(loaded.predict_many([woman, man]).iloc[:, 2:], env.model.predict_many([woman, man]).iloc[:, 2:],
                       atol=1e-5)


def test_cross_validation_is_deterministic_and_stops(env):
    """The choice's out-of-fold scores, computed again, are the same; Stop ends the cross-validation at once."""
    params = env.ds.runs().iloc[0]["params"]
    frame = env.ds.training_items(("train", "valid"))
    frame = frame[frame["content"].notna()]
    handle = SimpleNamespace(stopping=False)
    plan = SimpleNamespace(frame=frame, classes=params["classes"], ds=env.ds, seed=0, epochs=3,
                           params={"lr": params["lr"]}, handle=handle)
    again = table_model.cross_validate(plan, ["lightgbm", "linear"])
    for name in ("lightgbm", "linear"):
        assert again[name]["cv_accuracy"] == params["candidates"][name]["cv_accuracy"]
        assert again[name]["cv_log_loss"] == pytest.approx(params["candidates"][name]["cv_log_loss"], rel=1e-6)
    handle.stopping = True
    assert table_model.cross_validate(plan, ["network", "lightgbm", "linear"]) is None


def test_a_larger_table_is_chosen_on_the_validation_split(tmp_path, monkeypatch):
    monkeypatch.setattr(table_model, "CV_MAX_ROWS", 100)       # Titanic's 714 rows count as large
    ds = nbml.Dataset(tmp_path / "large.nbml")
    ds.add_table(titanic(), label_col="survived", progress=False)
    nbml.train(ds, quiet=True, epochs=1, seed=0)
    params = ds.runs().iloc[-1]["params"]
    assert params["chosen_by"] == "validation split" and "validation accuracy" in params["kept_because"]
    assert not any("cv_accuracy" in v for v in params["candidates"].values())
    scores = {k: v["accuracy"] for k, v in params["candidates"].items()}
    assert scores[params["kept"]] == max(scores.values())
    ds.close()


@pytest.mark.parametrize("arch", ["lightgbm", "tabular", "linear"])
def test_each_model_exports_checked_onnx_and_serves(env, arch, tmp_path):
    model = nbml.train(env.ds, arch=arch, quiet=True, epochs=2, seed=0)
    assert model.config["model"] == {"tabular": "network"}.get(arch, arch)
    folder = model.export(tmp_path / f"titanic-{arch}", quiet=True)
    config = json.loads((folder / "config.json").read_text())
    assert config["onnx"]["check"]["max_abs_diff"] <= 1e-4 and "validation rows" in config["onnx"]["check"]["described"]
    assert config["ignored_columns"] == ["name"] and not list(folder.glob("*.pkl"))
    assert ("lightgbm.txt" in {p.name for p in folder.iterdir()}) == (arch == "lightgbm")
    rows = env.frame.drop(columns=["survived"]).head(8).to_dict("records")
    with nbml.serve(folder, port=0, dataset=env.ds) as server:
        url = server.url.rstrip("/")
        one = httpx.post(f"{url}/predict", json={"row": rows[0]}).json()
        many = httpx.post(f"{url}/predict", json={"rows": rows}).json()["predictions"]
        want = model.predict_many(rows)
        assert one["label"] == want["label"][0] and [p["label"] for p in many] == want["label"].tolist()
        assert np.allclose([p["probabilities"]["survived"] for p in many], want["survived"], atol=1e-4)
        for bad, words in [({"row": {k: v for k, v in rows[0].items() if k != "age"}}, "no column 'age'"),
                           ({"row": {**rows[0], "age": "thirty"}}, "column 'age' takes a number"),
                           ({"row": {**rows[0], "deck": "B"}}, "does not know: 'deck'"),
                           ({"text": "hello"}, '"row"')]:
            r = httpx.post(f"{url}/predict", json=bad)
            assert r.status_code == 400 and words in r.json()["error"], (bad, r.text)
        assert httpx.post(f"{url}/predict", json={"row": {**rows[1], "sex": "other"}}).status_code == 200
        import tritonclient.http as triton
        client = triton.InferenceServerClient(url.split("://")[1])
        meta = client.get_model_metadata(config["name"])
        assert {i["name"]: i["datatype"] for i in meta["inputs"]}["sex"] == "BYTES"
        inputs = []
        for spec in meta["inputs"]:
            values = [r[spec["name"]] for r in rows]
            arr = np.array(values, dtype=object if spec["datatype"] == "BYTES" else np.float64)
            t = triton.InferInput(spec["name"], [len(rows)], spec["datatype"])
            t.set_data_from_numpy(arr, binary_data=True)
            inputs.append(t)
        result = client.infer(config["name"], inputs)
        assert np.allclose(result.as_numpy("probabilities")[:, 1], want["survived"], atol=1e-4)
        assert [b.decode() for b in result.as_numpy("label")] == want["label"].tolist()
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200                # still serving
    if arch == "lightgbm":       # the log brings rows back: a new project of the same columns
        fresh = nbml.Dataset(tmp_path / "fresh.nbml")
        fresh.add_table(env.frame.head(2), label_col="survived", progress=False)
        report = fresh.add_from_log(max_confidence=1.0, source=env.ds)     # the server logged there
        assert len(report.added) >= 6 and fresh.label_counts().get(None, 0) >= 6
        fresh.close()


def test_data_loop_on_rows(env):
    ds = env.ds
    sug = ds.suggest(n=5)            # every row is labelled: nothing to suggest
    assert sug.empty
    first = int(ds.query_ids()[0])
    sim = ds.similar(first, k=5)
    assert len(sim) == 5 and first not in set(sim["id"])
    row = json.loads(ds.item_rows([first])[0]["content"])
    by_dict = ds.similar(row, k=3)
    assert by_dict["similarity"].iloc[0] > 0.99 or first not in set(by_dict["id"])
    assert len(ds.outliers(n=5)) == 5
    stats = ds.stats()
    assert stats is not None
    issues = ds.label_issues()
    assert {"id", "label", "suggested", "score"} <= set(issues.columns)
    head = nbml.train(ds, mode="head", quiet=True)
    assert head.config["model"] == "lightgbm" and head.evaluate().accuracy > 0.7
    order = table.column_order(ds)
    assert order[0] in ("sex", "fare", "age") and set(order) == set(ds.columns()["name"])
    w = ds.label(filter="all")
    assert w.item_kind == "text" and w.items[0]["text"]["snippet"].startswith(f"{order[0]}:")


def test_label_issues_find_flipped_rows(tmp_path):
    frame = titanic()
    rng = np.random.default_rng(1)
    flip = rng.choice(len(frame), 36, replace=False)
    frame.loc[flip, "survived"] = frame.loc[flip, "survived"].map({"died": "survived", "survived": "died"})
    ds = nbml.Dataset(tmp_path / "flipped.nbml")
    report = ds.add_table(frame, label_col="survived", progress=False)
    ids = np.array(report.added)
    issues = ds.label_issues()
    found = set(issues["id"].head(len(flip)))
    hits = len(found & set(ids[flip].tolist()))
    assert hits >= len(flip) // 3, hits          # far more than the 36 * 36 / 714 ≈ 2 chance would find
    ds.close()


def test_near_duplicate_rows_are_the_same_but_for_pennies(tmp_path):
    ds = nbml.Dataset(tmp_path / "dups.nbml")
    frame = titanic().drop(columns=["name"])
    ds.add_table(frame.head(300), label_col="survived", progress=False)
    pairs = ds.duplicates()
    assert len(pairs) and set(pairs["kind"]) == {"near"}
    for a, b in zip(pairs["id_a"].head(20), pairs["id_b"].head(20)):
        ra, rb = (json.loads(ds.item_rows([i])[0]["content"]) for i in (a, b))
        assert {k: v for k, v in ra.items() if k not in ("fare", "age")} == \
            {k: v for k, v in rb.items() if k not in ("fare", "age")}
        assert abs(ra["fare"] - rb["fare"]) < 1 and abs((ra["age"] or 0) - (rb["age"] or 0)) <= 1
    ds.close()


def test_a_small_table_network_trains_on_one_thread_and_the_count_comes_back(tmp_path):
    """A few hundred tiny steps gain nothing from a second torch thread (which waits on a busy core): the run sets
    one and restores the process's count after."""
    import torch
    ds = nbml.Dataset(tmp_path / "t.nbml")
    frame = titanic().head(120)
    ds.add_table(frame, label_col="survived", progress=False)
    seen = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        nbml.train(ds, arch="tabular", epochs=2, seed=0, quiet=True,
                   on_event=lambda e: seen.append(torch.get_num_threads()) if type(e).__name__ == "EpochEnded" else None)
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
        ds.close()
