"""Text projects on real parts: ingest and its bad-input rules, the store's one-kind rule, training through the shared
fastai loop, head mode, the data-centric loop, save and load. Real data: the SMS spam set shipped inside nbml."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import nbml
from nbml.datasets import sms_spam, trec6
from nbml.kinds import text_export
from nbml.kinds import text_model as T
from nbml.store import KindMismatchError


@pytest.fixture
def ds(tmp_path):
    d = nbml.Dataset(tmp_path / "t.nbml")
    yield d
    d.close()


def test_store_imports_no_models_analysis_or_widgets():
    code = ("import sys, nbml.store; bad = [m for m in sys.modules if m.startswith(('nbml.analysis', "
            "'nbml.widgets', 'nbml.model', 'nbml.training', 'nbml.embeddings', 'nbml.kinds', 'torch', 'fastai'))]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_add_texts_bad_input_reasons(ds, tmp_path):
    texts = ["Hello  world", " Hello world\n", "Caf\u00e9 open", "Cafe\u0301 open", "   ", "", None, "bell\x07 here",
             "x" * 30_000, b"caf\xe9 bytes", 42]
    rep = ds.add_texts(texts, labels=["a", "b", None, "a", "a", "a", "a", float("nan"), "b", "a", "a"])
    reasons = dict(rep.skipped)
    assert reasons["text 4"] == reasons["text 5"] == "empty or whitespace-only text"
    assert reasons["text 6"] == "no text (missing value)"
    assert reasons["text 10"].startswith("not a text")
    # whitespace folding and Unicode normalisation find the duplicates
    assert [shown for shown, _ in rep.duplicates] == ["text 1", "text 3"]
    notes = dict(rep.warnings)
    assert "undecodable bytes replaced" in notes["text 9"] and "long text" in notes["text 8"]
    assert len(rep.added) == 5
    df = ds.df.set_index("id")
    assert df.loc[rep.added[3], "content"] == "x" * 30_000           # kept whole
    assert df.loc[rep.added[2], "label"] is None or pd.isna(df.loc[rep.added[2], "label"])   # NaN label: unlabelled
    assert "\ufffd" in df.loc[rep.added[4], "content"]
    from nbml.widgets._text import shown_text
    assert shown_text("bell\x07 here") == "bell\\x07 here"
    assert ds.kind == "text"


def test_add_texts_files_and_folders(ds, tmp_path):
    csv = tmp_path / "t.csv"
    pd.DataFrame({"body": ["first text", "second text"], "y": ["a", "b"]}).to_csv(csv, index=False)
    with pytest.raises(KeyError, match=r"columns are \['body', 'y'\]"):
        ds.add_texts(csv)
    rep = ds.add_texts(csv, text_col="body", label_col="y")
    assert len(rep.added) == 2 and ds.label_counts()["b"] == 1
    jl = tmp_path / "t.jsonl"
    jl.write_text("\n".join(json.dumps({"text": t, "label": l}) for t, l in [("third one", "a"), ("fourth", None)]))
    assert len(ds.add_texts(jl).added) == 2
    pq = tmp_path / "t.parquet"
    pd.DataFrame({"text": ["fifth", "sixth"]}).to_parquet(pq)
    assert len(ds.add_texts(pq).added) == 2
    folder = tmp_path / "docs"
    (folder / "pos").mkdir(parents=True)
    (folder / "neg").mkdir()
    (folder / "pos" / "1.txt").write_text("good film")
    (folder / "neg" / "2.txt").write_bytes(b"bad film \xff")
    (folder / "neg" / "3.txt").write_bytes(b"\x00\x01\x02binary")
    (folder / "neg" / "4.md").write_text("not a txt")
    rep = ds.add_texts(folder)
    assert len(rep.added) == 2
    reasons = {k.rsplit("/", 1)[-1]: v for k, v in rep.skipped}
    assert reasons["3.txt"] == "binary file, not text" and reasons["4.md"].startswith("not a .txt file")
    assert any("undecodable" in n for _, n in rep.warnings)
    assert set(ds.df.dropna(subset=["label"])["label"]) >= {"pos", "neg"}
    with pytest.raises(FileNotFoundError):
        ds.add_texts(tmp_path / "missing.csv")


def test_one_kind_per_project(ds, tmp_path):
    ds.add_texts(["a text"])
    with pytest.raises(KindMismatchError, match="holds text items"):
        ds.add_images(tmp_path)
    img = nbml.Dataset(tmp_path / "i.nbml")
    from PIL import Image
    Image.new("RGB", (8, 8), "red").save(tmp_path / "r.png")
    img.add_images([tmp_path / "r.png"])
    with pytest.raises(KindMismatchError, match="holds image items"):
        img.add_texts(["no"])
    img.close()


@pytest.fixture(scope="module")
def spam(tmp_path_factory):
    """A real SMS project: 240 labelled (10% flipped), the rest unlabelled, and one trained model."""
    path = tmp_path_factory.mktemp("spam") / "sms.nbml"
    ds = nbml.Dataset(path)
    df = sms_spam().drop_duplicates("text").reset_index(drop=True)
    ham, spm = df[df.label == "ham"].head(160), df[df.label == "spam"].head(80)
    rest = df.drop(ham.index).drop(spm.index).head(400)
    labelled = pd.concat([ham, spm]).sample(frac=1, random_state=0)
    labels = labelled["label"].tolist()
    flipped = list(range(0, len(labels), 10))
    for i in flipped:
        labels[i] = "spam" if labels[i] == "ham" else "ham"
    rep = ds.add_texts(labelled["text"].tolist() + rest["text"].tolist(), labels + [None] * len(rest))
    flipped_ids = {rep.added[i] for i in flipped}
    model = nbml.train(ds, epochs=2, quiet=True, seed=0)
    yield ds, model, flipped_ids, rest
    ds.close()


def test_train_text_through_the_shared_loop(spam, tmp_path):
    ds, model, _, rest = spam
    run = ds.runs().iloc[-1]
    assert run["status"] == "completed" and run["params"]["kind"] == "text"
    assert [h["phase"] for h in run["history"]] == ["unfrozen", "unfrozen"]
    assert model.config["kind"] == "text" and model.config["arch"] == "wordllama-tfidf"
    ev = model.evaluate()
    assert ev.accuracy > 0.75          # 10% of the training labels are wrong
    pred = model.predict("WINNER! You have been selected for a free prize. Call now to claim")
    assert pred.label == "spam"
    with pytest.raises(ValueError, match="empty"):
        model.predict("   ")
    folder = model.save(tmp_path / "m")
    assert (folder / "tokenizer.json").is_file()
    back = nbml.load(folder)
    texts = rest["text"].head(20).tolist()
    np.testing.assert_allclose(T.probs(back, texts), T.probs(model, texts), atol=1e-5)


def test_stop_keeps_the_best_epoch(tmp_path):
    ds = nbml.Dataset(tmp_path / "s.nbml")
    df = sms_spam().drop_duplicates("text").head(200)
    ds.add_texts(df["text"].tolist(), df["label"].tolist())
    events = []

    def stop_after_first(e):
        events.append(e)
        if type(e).__name__ == "EpochEnded" and e.epoch == 0:
            handle.stop()
    handle = nbml.train(ds, epochs=5, background=True, on_event=stop_after_first)
    model = handle.wait(120)
    run = ds.runs().iloc[-1]
    assert run["status"] == "stopped" and len(run["history"]) < 5
    assert model.config["kind"] == "text"
    ds.close()


def _validation_check(ds, model):
    """A model fitted again on every label: recorded as such, its validation texts keep the probabilities of the
    model that had not seen them (what evaluate() reports), while its network has learnt their labels."""
    n_labelled = len(ds.training_items(("train", "valid")))
    assert model.config["refit_on_all"] == n_labelled
    assert ds.runs().iloc[-1]["params"]["refit_on_all"] == n_labelled
    valid = ds.training_items(["valid"])
    assert set(model.holdout) == set(valid["id"].astype(int))
    held = np.stack([model.holdout[int(i)] for i in valid["id"]])
    own = T.probs(model, valid["content"].tolist())
    rows, idx = np.arange(len(valid)), valid["label"].map({c: i for i, c in enumerate(model.classes)}).to_numpy()
    ev = model.evaluate()
    assert ev.accuracy == pytest.approx((held.argmax(1) == idx).mean())
    assert ev.accuracy == pytest.approx(model.config["metrics"]["accuracy"], abs=1.5 / len(valid))
    assert own[rows, idx].mean() > held[rows, idx].mean() + 0.02       # in-sample now: its labels were learnt
    losses = model.losses(("valid",)).set_index("id")
    np.testing.assert_allclose(losses.loc[valid["id"], "p_label"].to_numpy(), held[rows, idx], rtol=1e-5)


def test_refit_on_every_label_keeps_validation_figures_out_of_sample(spam, tmp_path):
    ds, model, _, rest = spam
    _validation_check(ds, model)
    back = nbml.load(model.save(tmp_path / "m"), dataset=ds)       # the holdout is saved with the model
    assert (tmp_path / "m" / "holdout.json").is_file()
    assert back.evaluate().accuracy == model.evaluate().accuracy
    np.testing.assert_allclose(T.probs(back, rest["text"].head(10).tolist()),
                               T.probs(model, rest["text"].head(10).tolist()), atol=1e-5)
    back.holdout = {}                                  # a model without one, saved over it: no stale holdout left
    assert not nbml.load(back.save(tmp_path / "m")).holdout and not (tmp_path / "m" / "holdout.json").exists()


def test_refit_skipped_above_the_limit_and_stop_keeps_the_validated_model(tmp_path, monkeypatch):
    ds = nbml.Dataset(tmp_path / "r.nbml")
    df = sms_spam().drop_duplicates("text").head(120)
    ds.add_texts(df["text"].tolist(), df["label"].tolist())
    monkeypatch.setattr(T, "REFIT_MAX", 100)                     # 120 labelled: too many, trained once
    once = nbml.train(ds, epochs=1, quiet=True, seed=0)
    assert "refit_on_all" not in once.config and not once.holdout
    assert "refit_on_all" not in ds.runs().iloc[-1]["params"]
    monkeypatch.setattr(T, "REFIT_MAX", 2000)
    events = []

    def stop_at_refit(e):
        events.append(e)
        if type(e).__name__ == "PhaseStarted" and e.phase == "refit":
            handle.stop()
    handle = nbml.train(ds, epochs=1, background=True, on_event=stop_at_refit, seed=0)
    model = handle.wait(120)
    assert [e.phase for e in events if type(e).__name__ == "PhaseStarted"] == ["unfrozen", "refit"]
    assert "refit_on_all" not in model.config and not model.holdout       # Stop kept the validated network
    assert [e.refit_on_all for e in events if type(e).__name__ == "TrainEnded"] == [None]
    texts = df["text"].head(30).tolist()
    np.testing.assert_allclose(T.probs(model, texts), T.probs(once, texts), atol=1e-4)
    # a run that refits says so at its end: the console line and the monitor's summary
    import io
    from nbml.events import ConsolePrinter
    from nbml.widgets.monitor import TrainingMonitor
    out, monitor = io.StringIO(), TrainingMonitor()
    nbml.train(ds, epochs=1, seed=0, on_event=[ConsolePrinter(out), monitor])
    assert "training again on every label" in out.getvalue()
    assert "then trained again on all 120 labelled items" in out.getvalue().splitlines()[-1]
    assert monitor.summary["refit_on_all"] == 120 and monitor.summary["status"] == "completed"
    ds.close()


def _idf_of(texts):
    from nbml.kinds.text_encoding import gram_counts        # not T.gram_counts, which the test below replaces
    counts = gram_counts(texts)
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    idf = (np.log((1 + len(texts)) / (1 + df)) + 1).astype(np.float32)
    idf[T.WORD_BUCKETS + T.CHAR_BUCKETS:] = 1.0       # the opening words are not weighed by rarity
    return idf


def test_idf_is_kept_in_the_project_between_sessions(tmp_path, monkeypatch):
    texts = sms_spam().drop_duplicates("text")["text"].head(60).tolist()
    ds = nbml.Dataset(tmp_path / "i.nbml")
    ds.add_texts(texts)
    np.testing.assert_allclose(T.project_idf(ds), _idf_of(texts), rtol=1e-6)
    home = ds.home
    ds.close()
    assert (home / "embeddings" / T.DF_FILE).is_file()
    T._GRAMS.clear()                                   # a new session: nothing hashed in this process

    def no_hashing(*a, **k):
        raise AssertionError("hashed every text again")
    monkeypatch.setattr(T, "gram_counts", no_hashing)
    again = nbml.Dataset(tmp_path / "i.nbml")
    np.testing.assert_allclose(T.project_idf(again), _idf_of(texts), rtol=1e-6)
    monkeypatch.undo()
    again.add_texts(["zyxwv qwerty: a text with words no other text has"])     # items changed: computed again
    np.testing.assert_allclose(T.project_idf(again), _idf_of(texts + ["zyxwv qwerty: a text with words no other "
                                                                      "text has"]), rtol=1e-6)
    (home / "embeddings" / T.DF_FILE).write_bytes(b"not an npz")                # unreadable: computed again
    again.__dict__.pop("_text_idf")
    assert T.project_idf(again).shape == (T.GRAM_BUCKETS,)
    again.close()


def test_head_solution_is_kept_for_the_next_session(tmp_path, monkeypatch):
    """A new session's first mode="head" fit starts from the last solution kept in the project's folder (and lands
    where a fit from zero does); an unreadable file is ignored."""
    df = sms_spam().drop_duplicates("text").reset_index(drop=True).head(300)
    ds = nbml.Dataset(tmp_path / "h.nbml")
    ds.add_texts(df["text"].tolist(), df["label"].tolist())
    first = nbml.train(ds, mode="head", quiet=True, seed=0)
    texts = df["text"].tolist()[:60]
    expected = T.probs(first, texts)
    file = ds.home / "embeddings" / T.HEAD_FILE
    ds.close()
    assert file.is_file()
    starts = []
    fit = T._fit_used

    def watched(X, y, n_classes, C, init=None):
        starts.append(init is not None)
        return fit(X, y, n_classes, C, init)
    monkeypatch.setattr(T, "_fit_used", watched)
    again = nbml.Dataset(tmp_path / "h.nbml")                 # a new session: nothing held in the process
    again_model = nbml.train(again, mode="head", quiet=True, seed=0)
    assert starts[0] is True
    np.testing.assert_allclose(T.probs(again_model, texts), expected, atol=0.02)
    again.close()
    file.write_bytes(b"not an npz")
    starts.clear()
    third = nbml.Dataset(tmp_path / "h.nbml")
    np.testing.assert_allclose(T.probs(nbml.train(third, mode="head", quiet=True, seed=0), texts), expected,
                               atol=0.02)
    assert starts[0] is False and file.stat().st_size > 100          # from zero, and kept again
    third.close()


def test_head_mode_on_text(spam):
    ds, _, _, rest = spam
    head = nbml.train(ds, mode="head", quiet=True)
    assert head.config["kind"] == "text" and head.config["mode"] == "head"
    assert head.evaluate().accuracy > 0.75
    _validation_check(ds, head)
    p = head.predict_many(rest["text"].head(5).tolist())
    assert list(p.columns[:2]) == ["label", "confidence"] and len(p) == 5
    # a refit starts from the last solution (the grid refits often) and lands where a cold fit does
    ds.__dict__.pop("_text_head_solution")
    (ds.home / "embeddings" / T.HEAD_FILE).unlink()
    cold = T.probs(nbml.train(ds, mode="head", quiet=True), rest["text"].head(50).tolist())
    warm = T.probs(nbml.train(ds, mode="head", quiet=True), rest["text"].head(50).tolist())
    assert "_text_head_solution" in ds.__dict__
    # (the self-training picks the unlabelled texts the first fit is surest of: one pick at the edge moves a little)
    np.testing.assert_allclose(warm, cold, atol=0.05)


def test_opening_words_tell_apart_texts_with_the_same_words(tmp_path):
    """Two classes told apart only by where a word stands: mean-pooled tokens and bags of n-grams cannot do it, the
    opening words can (held-out texts, head mode and the fine-tuned default)."""
    from nbml.kinds.text_encoding import OPEN_BUCKETS, TEXT_BUCKETS, gram_counts, opening_words
    assert opening_words("How many people live in Paris?") == ["^how", "^how many"]
    assert opening_words("  ...Refund!") == ["^refund"] and opening_words("?!") == []
    counts = gram_counts(["How many people live in Paris?", "Paris: how many people live there"])
    assert counts.shape[1] == TEXT_BUCKETS + OPEN_BUCKETS
    opening = counts[:, TEXT_BUCKETS:].toarray()
    assert (opening.sum(1) == 2).all() and not (opening[0] @ opening[1])
    # "refund" first, or third of four, among words drawn from 5,000: the same words and n-gram counts either way, and
    # the bigrams around "refund" are new in almost every held-out text (without the opening words: 0.5 both ways)
    import re
    vocab = sorted({w for t in trec6()["text"].head(3000) for w in re.findall(r"[a-z]{4,}", t.lower())} - {"refund"})
    rng = np.random.default_rng(0)

    def texts(n):
        out = []
        for _ in range(n):
            m = rng.choice(vocab, 6, replace=False)
            out += [(f"refund {m[0]} {m[1]} {m[2]}", "refund"), (f"{m[3]} {m[4]} refund {m[5]}", "other")]
        return out
    train, held = texts(40), texts(50)
    ds = nbml.Dataset(tmp_path / "o.nbml")
    ds.add_texts([t for t, _ in train], [lab for _, lab in train])
    truth = np.array([lab for _, lab in held])
    for model in (nbml.train(ds, mode="head", quiet=True, seed=0), nbml.train(ds, epochs=1, quiet=True, seed=0)):
        p = T.probs(model, [t for t, _ in held])
        assert (np.asarray(model.classes)[p.argmax(1)] == truth).mean() == 1.0
    ds.close()


def test_few_labels_self_train_on_the_unlabelled_texts(tmp_path, monkeypatch):
    """A word no labelled text has, seen only in unlabelled texts the head is sure are refund requests: the
    self-trained head (head mode and the default path's start) gives it refund's weight; without self-training it
    has none."""
    from nbml.kinds.text_encoding import WORD_BUCKETS, gram_counts
    import re
    vocab = sorted({w for t in trec6()["text"].head(2000) for w in re.findall(r"[a-z]{5,}", t.lower())})
    rng = np.random.default_rng(1)
    fill = lambda: " ".join(rng.choice(vocab, 2, replace=False))   # noqa: E731
    labelled = [(f"please refund my order {fill()}", "refund") for _ in range(10)] + \
               [(f"great product, love it {fill()}", "praise") for _ in range(10)]
    unlabelled = [f"please refund my order zorblatt {fill()}" for _ in range(30)] + \
                 [f"great product, love it {fill()}" for _ in range(30)]
    word = gram_counts(["zorblatt"])[:, :WORD_BUCKETS].indices[0]
    ds = nbml.Dataset(tmp_path / "s.nbml")
    ds.add_texts([t for t, _ in labelled], [lab for _, lab in labelled])
    ds.add_texts(unlabelled)

    def weight(model):
        return model.net.grams.weight.detach().numpy()[word]
    for train in (lambda: nbml.train(ds, mode="head", quiet=True, seed=0),
                  lambda: nbml.train(ds, epochs=1, quiet=True, seed=0)):
        model = train()
        w = weight(model)
        assert model.classes[int(np.argmax(w))] == "refund" and w.max() - w.min() > 0.1
        p = T.probs(model, ["zorblatt"])[0]
        assert model.classes[int(p.argmax())] == "refund"
        assert 30 <= model.config["self_trained"] <= 60             # recorded (config.json, the model card)
    check = dict(max_abs_diff=0, tolerance=1e-4, described="x")
    card = text_export.card({**model.config, "onnx": {"check": check}, "exported_with": "0", "name": "m", "preprocessing": {}})
    assert "learnt from" in card["limits"][1]
    monkeypatch.setattr(T, "SELF_TRAIN_MAX", 0)          # labels only
    model = nbml.train(ds, mode="head", quiet=True, seed=0)
    assert not weight(model).any() and model.config["self_trained"] == 0
    ds.close()


def test_a_model_saved_without_the_opening_words_still_loads_predicts_and_exports(spam, tmp_path):
    """Models saved before the opening words' block (config without open_buckets) keep working: the same network
    without those buckets, fed n-grams without them."""
    import json as _json
    ds, model, _, rest = spam
    folder = model.save(tmp_path / "old")
    config = _json.loads((folder / "config.json").read_text())
    for key in ("open_buckets", "opening_words"):
        config.pop(key)
    (folder / "config.json").write_text(_json.dumps(config))
    from safetensors.torch import load_file, save_file
    weights = folder / "model.safetensors"
    state = load_file(str(weights))
    state = {k: (v[:T.TEXT_BUCKETS].contiguous() if k in ("grams.weight", "idf") else v) for k, v in state.items()}
    save_file(state, str(weights))
    old = nbml.load(folder)
    assert old.net.grams.num_embeddings == T.TEXT_BUCKETS
    texts = rest["text"].head(40).tolist()
    # what the old network gives: the text's own n-grams only (the same model without its opening words' weights)
    import torch
    ref = nbml.load(model.save(tmp_path / "ref"))
    with torch.no_grad():
        ref.net.grams.weight[T.TEXT_BUCKETS:] = 0
    np.testing.assert_allclose(T.probs(old, texts), T.probs(ref, texts), atol=1e-5)
    out = old.export(tmp_path / "old-export")
    exported = _json.loads((out / "config.json").read_text())
    assert exported["onnx"]["check"]["max_abs_diff"] < 1e-3 and "open_buckets" not in exported
    assert "character n-grams, a linear head" in (out / "README.md").read_text()       # the card says what it has
    # the server's runner encodes for the exported model's buckets
    from nbml.kinds.text_encoding import tokenizer
    from nbml.kinds.text_serving import TextOnnxRunner
    runner = TextOnnxRunner(out, exported, 1, tokenizer((out / "tokenizer.json").read_text()), 256)
    np.testing.assert_allclose(runner(np.array(texts, dtype=object)), T.probs(old, texts), atol=1e-4)


def test_data_loop_on_text(spam):
    ds, model, flipped, _ = spam
    hits = ds.similar("Congratulations you won a prize, call to claim", k=10)
    assert "text" in hits.columns and hits.attrs["query"].startswith("the text")
    assert (hits["label"] == "spam").sum() >= (hits["label"] == "ham").sum()
    assert len(ds.similar(int(hits["id"].iloc[0]), k=3)) == 3
    issues = ds.label_issues()
    found = set(issues["id"].tolist())
    assert "TF-IDF" in issues.attrs["method"]
    precision = len(found & flipped) / max(len(found), 1)
    recall = len(found & flipped) / len(flipped)
    assert precision > 0.25 and recall > 0.6, (precision, recall)    # chance: precision 0.1
    sug = ds.suggest(model, n=10, strategy="margin")
    assert len(sug) == 10 and sug["id"].isin(ds.query_ids(labelled=False)).all()
    # the scores are the whole model's (token head and n-grams), not the head on the embeddings alone
    whole = T.probs(model, [r["content"] for r in ds.item_rows(sug["id"].tolist())])
    np.testing.assert_allclose(sug["confidence"].to_numpy(), whole.max(1), atol=2e-3)
    for strategy in ("entropy", "least_confident", "random", "diverse"):
        assert len(ds.suggest(model, n=5, strategy=strategy)) == 5
    # without a model (the grid's background refits): a head on the same features a text model is made of
    alone = ds.suggest(n=5)
    assert "TF-IDF" in alone.attrs["scored_by"] and len(alone) == 5 and alone["confidence"].between(0.5, 1).all()
    assert len(ds.outliers(5)) == 5
    st = ds.stats()
    assert st.lengths is not None and "text length" in repr(st)


def test_duplicates_on_text(ds):
    base = "Your account has been credited with 500 pounds, reply YES to confirm"
    rep = ds.add_texts([base, base + "!", "Lunch at noon?", "totally different words here", base.upper()],
                       ["spam", "spam", "ham", "ham", None])
    dup = ds.duplicates()
    pairs = {frozenset(p) for p in zip(dup["id_a"], dup["id_b"])}
    assert frozenset((rep.added[0], rep.added[1])) in pairs
    assert "text_similarity" in dup.columns and "text_a" in dup.columns


def test_trec_loader():
    t = trec6()
    assert len(t) == 5381 and sorted(t.label.unique()) == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
