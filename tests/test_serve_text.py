"""A text model exported and served for real: a small model trained on SMS spam, its artifact, ONNX Runtime against
torch on held-out texts, uvicorn on 127.0.0.1 with httpx and tritonclient.http as clients, a real prediction log and
`ds.add_from_log` bringing texts back."""
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from types import SimpleNamespace

import httpx
import numpy as np
import onnxruntime as ort
import pytest

import nbml
from conftest import wait_ready
from nbml.kinds import text as text_kind
from nbml.kinds import text_encoding
from nbml.predlog import read_log

MAX_CHARS = 2_000          # the shared server's per-text limit
BODY_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from nbml.datasets import sms_spam
    root = tmp_path_factory.mktemp("serve_text")
    frame = sms_spam()
    labelled = frame.groupby("label").head(120)                       # 240 texts, both classes
    held_out = frame.drop(labelled.index).groupby("label").head(20)   # texts the project never saw
    ds = nbml.Dataset(root / "sms.nbml")
    ds.add_texts(labelled, progress=False)
    model = nbml.train(ds, quiet=True, epochs=1, seed=0)
    folder = model.export(root / "sms-model", quiet=True)
    yield SimpleNamespace(root=root, ds=ds, model=model, folder=folder, held_out=held_out["text"].tolist())
    ds.close()


@pytest.fixture(scope="module")
def server(env):
    handle = nbml.serve(env.folder, port=0, max_text_chars=MAX_CHARS, max_body_bytes=BODY_LIMIT, log=False)
    yield handle
    handle.stop()


def fresh_copy(folder, tmp_path):
    return shutil.copytree(folder, tmp_path / folder.name, ignore=shutil.ignore_patterns("predictions.sqlite*"))


def eventually(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def torch_probs(env, texts) -> np.ndarray:
    return text_kind.probs(env.model, list(texts))


def test_artifact_is_self_contained_and_described(env):
    folder = env.folder
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert names == {"config.json", "model.safetensors", "model.onnx", "tokenizer.json", "README.md",
                     "serve_config.yaml", "requirements.txt", "triton/sms-model/config.pbtxt", "triton/sms-model/labels.txt",
                     "triton/sms-model/1/model.onnx"}
    json.loads((folder / "tokenizer.json").read_text())              # JSON, never a pickle
    config = json.loads((folder / "config.json").read_text())
    assert config["kind"] == "text" and config["arch"] == "wordllama-tfidf" and config["max_tokens"] == 256
    assert config["classes"] == env.model.classes == ["ham", "spam"]
    onnx = config["onnx"]
    assert onnx["inputs"] == list(text_encoding.INPUT_NAMES) and onnx["output"] == "probabilities"
    check = onnx["check"]
    n_valid = int((env.ds.training_items(["valid"])["split"] == "valid").sum())
    assert check["max_abs_diff"] <= check["tolerance"] and check["described"] == f"{n_valid} validation texts"
    assert check["batch_sizes"][0] == 1 and sum(check["batch_sizes"][1:]) == n_valid
    card = (folder / "README.md").read_text()
    assert "text classifier" in card and "tokenising front end" in card and "## Limits" in card
    assert "character n-grams and the opening words" in card and config["open_buckets"] == 2 ** 15
    assert '{"text": ' in card and "validation texts" in card
    n = len(env.ds.training_items(("train", "valid")))
    assert config["refit_on_all"] == n and f"trained again on all {n} labelled texts" in card   # and no holdout.json
    reqs = [line for line in (folder / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert any(line.startswith("tokenizers>=") for line in reqs)
    assert any(line.startswith("scikit-learn>=") for line in reqs)
    assert not any(name in line for line in reqs for name in ("torch", "fastai", "timm"))
    # Triton's entry declares the ONNX graph's real inputs
    pbtxt = (folder / "triton/sms-model/config.pbtxt").read_text()
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(text_encoding.INPUT_NAMES)
    for inp in session.get_inputs():
        assert f'name: "{inp.name}"' in pbtxt
    assert (folder / "triton/sms-model/labels.txt").read_text().split() == ["ham", "spam"]


def test_onnx_and_torch_agree_on_held_out_texts(env):
    texts = env.held_out + ["", " ", "a" * 5000, "Ünïcödé 🙂 text"]       # the empty ones: no token, no n-gram
    want = torch_probs(env, texts)
    tok = text_encoding.tokenizer((env.folder / "tokenizer.json").read_text())
    session = ort.InferenceSession(str(env.folder / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["probabilities"], text_encoding.encode(texts, 256, tok))[0]
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert (got.argmax(1) == want.argmax(1)).all()
    one = session.run(["probabilities"], text_encoding.encode(texts[:1], 256, tok))[0]
    np.testing.assert_allclose(one, want[:1], atol=1e-4)
    loaded = nbml.load(env.folder, device="cpu")                         # safetensors + JSON, no pickle
    np.testing.assert_allclose(text_kind.probs(loaded, texts), want, atol=1e-5)


def test_int8_is_refused_for_the_static_model_with_a_clear_message(env, tmp_path):
    with pytest.raises(ValueError, match="int8 is not offered for nbml.s static text model"):
        env.model.export(tmp_path / "q", quantize="int8", quiet=True)
    assert not (tmp_path / "q" / "model.onnx").exists()


def test_predict_text_and_texts(env, server):
    texts = env.held_out[:5]
    want = torch_probs(env, texts)
    one = httpx.post(f"{server.url}/predict", json={"text": texts[0]})
    assert one.status_code == 200
    body = one.json()
    assert body["label"] == env.model.classes[int(want[0].argmax())]
    assert body["probabilities"] == pytest.approx(dict(zip(env.model.classes, want[0].tolist())), abs=1e-4)
    many = httpx.post(f"{server.url}/predict", json={"texts": texts})
    assert many.status_code == 200
    got = np.array([[p["probabilities"][c] for c in env.model.classes] for p in many.json()["predictions"]])
    np.testing.assert_allclose(got, want, atol=1e-4)
    plain = httpx.post(f"{server.url}/predict", content=texts[1].encode(),
                       headers={"content-type": "text/plain; charset=utf-8"})
    assert plain.status_code == 200 and plain.json()["label"] == many.json()["predictions"][1]["label"]
    index = httpx.get(f"{server.url}/").json()
    assert index["kind"] == "text" and index["classes"] == ["ham", "spam"]


def test_open_inference_protocol_bytes_input_with_tritonclient(env, server):
    import tritonclient.http as tc
    from tritonclient.utils import InferenceServerException
    client = tc.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        assert client.is_model_ready(server.name)
        meta = client.get_model_metadata(server.name)
        assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
        texts = env.held_out[:3] + ["Ünïcödé 🙂"]
        want = torch_probs(env, texts)
        inp = tc.InferInput("text", [len(texts)], "BYTES")
        inp.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))   # binary tensor data
        result = client.infer(server.name, [inp])
        np.testing.assert_allclose(result.as_numpy("probabilities"), want, atol=1e-4)
        assert [x.decode() for x in result.as_numpy("label")] == [env.model.classes[i] for i in want.argmax(1)]
        as_json = tc.InferInput("text", [len(texts)], "BYTES")
        as_json.set_data_from_numpy(np.array(texts, dtype=np.object_), binary_data=False)   # strings in the JSON
        outputs = [tc.InferRequestedOutput("probabilities", binary_data=False)]
        response = client.infer(server.name, [as_json], outputs=outputs).get_response()
        np.testing.assert_allclose(np.array(response["outputs"][0]["data"]).reshape(len(texts), 2), want, atol=1e-4)
        wrong = tc.InferInput("text", [1], "INT32")
        wrong.set_data_from_numpy(np.array([7], dtype=np.int32))
        with pytest.raises(InferenceServerException, match="datatype BYTES"):
            client.infer(server.name, [wrong])
        other = tc.InferInput("image", [1], "BYTES")
        other.set_data_from_numpy(np.array([b"hello"], dtype=np.object_))
        with pytest.raises(InferenceServerException, match="this model takes one input 'text'"):
            client.infer(server.name, [other])
    finally:
        client.close()


def v2_binary(texts: list[bytes]) -> tuple[bytes, dict]:
    """A Triton binary-tensor infer request with the given raw elements."""
    blob = b"".join(len(t).to_bytes(4, "little") + t for t in texts)
    head = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)],
                                   "parameters": {"binary_data_size": len(blob)}}]}).encode()
    return head + blob, {"inference-header-content-length": str(len(head)),
                         "content-type": "application/octet-stream"}


def test_bad_requests_get_400_json_and_the_server_keeps_serving(env, server):
    infer = f"/v2/models/{server.name}/infer"
    as_json = {"content-type": "application/json"}
    cases = {
        "not UTF-8 (text/plain)": ("/predict", b"caf\xe9 ol\xe9", {"content-type": "text/plain"}),
        "not UTF-8 (JSON body)": ("/predict", b'{"text": "caf\xe9"}', as_json),
        "not UTF-8 (OIP binary)": (infer, *v2_binary([b"fine", b"\xff\xfe bad"])),
        "lone surrogate": ("/predict", b'{"text": "\\ud800"}', as_json),
        "empty text": ("/predict", b'{"text": ""}', as_json),
        "whitespace text": ("/predict", b'{"texts": ["ok", "  \\n "]}', as_json),
        "no texts": ("/predict", b'{"texts": []}', as_json),
        "empty OIP element": (infer, *v2_binary([b""])),
        "over the size limit": ("/predict", json.dumps({"text": "x" * (MAX_CHARS + 1)}).encode(), as_json),
        "wrong type in JSON": ("/predict", b'{"text": 5}', as_json),
        "texts not a list": ("/predict", b'{"texts": "one"}', as_json),
        "wrong content type": ("/predict", b"hello", {"content-type": "image/png"}),
        "not JSON": ("/predict", b"{nope", as_json),
        "wrong key": ("/predict", b'{"image": "aGk="}', as_json),
        "wrong OIP datatype": (infer, json.dumps({"inputs": [{"name": "text", "datatype": "FP32", "shape": [1],
                                                             "data": [1.0]}]}).encode(), as_json),
        "OIP number for a string": (infer, json.dumps({"inputs": [{"name": "text", "datatype": "BYTES",
                                                                   "shape": [1], "data": [3]}]}).encode(), as_json),
    }
    with httpx.Client(base_url=server.url) as c:
        for why, (path, body, headers) in cases.items():
            r = c.post(path, content=body, headers=headers)
            assert r.status_code == 400, (why, r.status_code, r.text)
            assert r.headers["content-type"] == "application/json" and r.json()["error"], why
        assert "not valid UTF-8" in c.post("/predict", content=b"\xff", headers={"content-type": "text/plain"}
                                           ).json()["error"]
        assert "limit of 2,000" in c.post("/predict", json={"text": "y" * (MAX_CHARS + 5)}).json()["error"]
        too_big = c.post("/predict", json={"text": "z" * (BODY_LIMIT + 10)})           # the whole body's limit
        assert too_big.status_code == 413 and "larger than this server's limit" in too_big.json()["error"]
    ok = httpx.post(f"{server.url}/predict", json={"text": env.held_out[0]})
    assert ok.status_code == 200 and ok.json()["label"] in ("ham", "spam")


def logged_texts(folder) -> list[tuple[str, float]]:
    with sqlite3.connect(folder / "predictions.sqlite") as c:
        return [(bytes(t).decode(), conf) for t, conf in
                c.execute("SELECT image, confidence FROM predictions WHERE image IS NOT NULL ORDER BY id")]


def test_log_keeps_texts_capped_and_add_from_log_brings_unsure_ones_back(env, tmp_path):
    folder = fresh_copy(env.folder, tmp_path)
    texts = [f"{t} (copy {i})" for i, t in enumerate(env.held_out[:6])]   # none of them is in the project
    with nbml.serve(folder, port=0, log_texts=4, log_text_chars=30) as handle:
        assert httpx.post(f"{handle.url}/predict", json={"texts": texts[:3]}).status_code == 200
        for t in texts[3:]:
            assert httpx.post(f"{handle.url}/predict", json={"text": t}).status_code == 200
    log = read_log(folder)
    assert len(log) == 6 and log["has_image"].sum() == 4                # capped in count...
    kept = logged_texts(folder)
    assert [t for t, _ in kept] == [t[:30] for t in texts[:4]]           # ...and in length
    assert list(log["sha256"][:1]) == [__import__("hashlib").sha256(texts[0].encode()).hexdigest()]

    threshold = sorted(conf for _, conf in kept)[1]                      # the two least confident
    n_before = len(env.ds)
    report = env.ds.add_from_log(max_confidence=threshold, source=folder)
    assert len(report.added) == 2 and len(env.ds) == n_before + 2
    unsure = {t for t, conf in kept if conf <= threshold}
    items = env.ds.df.tail(2)
    assert set(env.ds._item_columns(["content"], items["id"].tolist())["content"]) == unsure
    assert items["label"].isna().all()                                 # back to be labelled
    again = env.ds.add_from_log(max_confidence=threshold, source=folder)
    assert again.added == [] and len(again.duplicates) == 2


def test_model_serve_for_a_text_model_logs_to_the_project(env):
    handle = env.model.serve(port=0)
    try:
        assert handle.folder == env.ds.home / "exports" / env.model.config["name"]
        assert "application/json" in handle.curl()
        r = httpx.post(f"{handle.url}/predict", json={"texts": env.held_out[6:9]})
        assert r.status_code == 200 and len(r.json()["predictions"]) == 3
        assert eventually(lambda: handle.predictions == 3)
    finally:
        handle.stop()
    log = read_log(env.ds, model=handle.name)
    assert len(log) == 3 and log["has_image"].all()


# `nbml serve` on a CPU machine: at exit it prints which of the training stack's packages it imported. (pandas is
# not among them: scikit-learn, whose hashing the text server uses, imports it itself.)
REPORTS_HEAVY_MODULES = ("import atexit, sys\n"
                         "heavy = ('torch', 'fastai', 'timm', 'nbml.kinds.text', 'nbml.model', 'nbml.widgets', 'nbml.training')\n"
                         "atexit.register(lambda: print('imported:', [m for m in heavy if sys.modules.get(m)]))\n"
                         "from nbml.cli import main\n"
                         "sys.exit(main())\n")


def test_cli_serves_texts_without_torch(env, tmp_path):
    folder = fresh_copy(env.folder, tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", REPORTS_HEAVY_MODULES, "serve", str(folder), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NBML_TOKEN": "", "CUDA_VISIBLE_DEVICES": ""})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        r = httpx.post(f"{url}/predict", json={"text": env.held_out[0]})
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert r.status_code == 200, (r.text, err)
    assert r.json()["label"] == env.model.classes[int(torch_probs(env, env.held_out[:1])[0].argmax())]
    assert proc.returncode == 0, err
    assert "imported: []" in out and "application/json" in out, out
    assert len(read_log(folder)) == 1
