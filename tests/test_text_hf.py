"""Fine-tuning a Hugging Face encoder (`arch="hf:<repo>"`) from the local cache only: a tiny BERT with random
weights and a WordPiece vocabulary this file writes itself into a temporary HF_HOME, offline. No download."""
import warnings

import numpy as np
import pytest

REPO = "nbml-test/tiny-bert"
REVISION = "0123456789abcdef0123456789abcdef01234567"

ANIMALS = ["cat", "dog", "horse", "cow", "sheep", "goat", "duck", "mouse", "lion", "tiger"]
VEHICLES = ["car", "bus", "train", "truck", "bike", "plane", "boat", "tram", "van", "taxi"]
FILLER = ["the", "a", "my", "big", "small", "red", "old", "new", "is", "was", "here", "there", "fast", "slow",
          "near", "home", "today", "and", "very", "quite"]


def _vocab() -> list[str]:
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    digits = [str(d) for d in range(10)]
    pieces = [f"##{ch}" for ch in letters + digits]
    words = ANIMALS + VEHICLES + FILLER + [f"word{i}" for i in range(200)]
    return special + list(".,!?") + letters + digits + pieces + words


def write_tiny_bert(hf_home, repo=REPO, revision=REVISION):
    """A random 2-layer BERT (hidden 32) and its WordPiece tokenizer in the hub cache layout under hf_home/hub."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer
    repo_dir = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(revision)
    vocab = _vocab()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=128)
    BertModel(config).save_pretrained(str(snapshot))
    (snapshot / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, model_max_length=128)
    tok.save_pretrained(str(snapshot))
    assert (snapshot / "tokenizer.json").is_file() and (snapshot / "model.safetensors").is_file()
    return snapshot


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    home = tmp_path / "hf-home"
    write_tiny_bert(home)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture
def text_ds(tmp_path):
    import nbml
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for label, nouns in (("animal", ANIMALS), ("vehicle", VEHICLES)):
        for i in range(30):
            words = list(rng.choice(FILLER, 3)) + [nouns[i % len(nouns)], f"word{i}"]
            rng.shuffle(words)
            texts.append(" ".join(words))
            labels.append(label)
    ds = nbml.Dataset(tmp_path / "texts.nbml")
    ds.add_texts(texts, labels)
    yield ds
    ds.close()


def test_resolve_reads_the_cache_and_folders_only(hf_home, tmp_path):
    from nbml.kinds import text_hf
    folder, repo, revision = text_hf.resolve(f"hf:{REPO}")
    assert (repo, revision) == (REPO, REVISION) and folder.name == REVISION
    assert text_hf.resolve(f"hf:{REPO}@{REVISION}")[0] == folder
    assert text_hf.resolve(f"hf:{folder}") == (folder.resolve(), str(folder.resolve()), "local")
    with pytest.raises(LookupError):
        text_hf.resolve("hf:nbml-test/not-there")
    with pytest.raises(ValueError):
        text_hf.resolve("hf:")


def test_fine_tunes_a_cached_encoder_offline(hf_home, text_ds, tmp_path, monkeypatch):
    import torch
    import nbml
    from nbml.kinds import text_hf
    from nbml.pretrained import PretrainedWeightsWarning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = nbml.train(text_ds, arch=f"hf:{REPO}", epochs=1, quiet=True, seed=0)
    assert not [w for w in caught if issubclass(w.category, PretrainedWeightsWarning)]
    assert getattr(model.net, "is_hf", False) and model.config["arch"] == f"hf:{REPO}"
    assert model.config["weights"] == f"hf:{REPO}@{REVISION}"
    assert model.config["kind"] == "text" and model.config["hf_revision"] == REVISION
    assert model.size == 128                          # min(256, what the tokenizer reads)
    body, head = model.net[0], model.net[1]
    assert body.num_features == 32 and head.out_features == 2
    ids, mask = torch.tensor([[2, 50, 3, 0]]), torch.tensor([[1, 1, 1, 0]])
    assert body(ids, mask).shape == (1, 32)
    feats = text_hf.features(body, ["a cat", "the red bus is fast"], model.size)
    assert feats.shape == (2, 32) and feats.dtype == np.float32
    assert np.allclose(feats[:1], text_hf.features(body, ["a cat"], model.size), atol=1e-5)   # padding-free

    pred = model.predict("my old cat is here")
    assert pred.label in ("animal", "vehicle") and abs(sum(pred.probabilities.values()) - 1) < 1e-5
    texts = ["the red car is fast", "a small dog", "quite a zebra!" * 50]    # the last one is cut to 128 tokens
    p = text_hf.probs(model, texts, bs=2)
    assert p.shape == (3, 2) and np.allclose(p.sum(1), 1, atol=1e-5)
    # a random encoder learns nothing general, but the closed-form head fits the training texts
    items = text_ds.training_items(("train",))
    frame = model.predict_many(items["content"].tolist())
    assert (frame["label"].to_numpy() == items["label"].to_numpy()).mean() > 0.7

    folder = tmp_path / "saved"
    model.save(folder)
    text_hf.save_extra(model, folder)      # until nbml.kinds.text.save_extra delegates to it
    assert (folder / "hf" / "config.json").is_file() and (folder / "hf" / "tokenizer.json").is_file()
    # loading needs the model folder only: no cache at all
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    loaded = nbml.load(folder, device="cpu")
    assert getattr(loaded.net, "is_hf", False)
    assert np.allclose(text_hf.probs(loaded, texts), text_hf.probs(model, texts), atol=1e-5)
    assert loaded.predict("my old cat is here").label == pred.label

    import json
    from safetensors.torch import load_file
    config = json.loads((folder / "config.json").read_text())
    net = text_hf.load_net(folder, config, load_file(str(folder / "model.safetensors")))
    text_hf.load_extra(loaded, folder)
    assert net.tokenizer("a cat")["input_ids"] == model.net.tokenizer("a cat")["input_ids"]


def test_not_in_the_cache(hf_home, text_ds):
    import nbml
    from nbml.pretrained import PretrainedWeightsWarning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = nbml.train(text_ds, arch="hf:nbml-test/not-there", epochs=1, quiet=True, seed=0)
    ours = [w for w in caught if issubclass(w.category, PretrainedWeightsWarning)]
    assert len(ours) == 1
    text = str(ours[0].message)
    assert "nbml-test/not-there" in text and "HF_HOME" in text and "HF_HUB_OFFLINE is set" in text
    assert "snapshot_download" in text and "default text model" in text
    assert model.config["arch"] == "wordllama-tfidf"
    assert model.predict("a red car").label in ("animal", "vehicle")

    with pytest.raises(RuntimeError, match="not-there"):
        nbml.train(text_ds, arch="hf:nbml-test/not-there", pretrained=True, quiet=True)
    with pytest.raises(ValueError, match="pretrained=False"):
        nbml.train(text_ds, arch=f"hf:{REPO}", pretrained=False, quiet=True)
