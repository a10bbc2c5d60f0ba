"""The model server, for real: uvicorn on 127.0.0.1, httpx and tritonclient.http as clients, a real prediction log.

One tiny model is trained and exported for the module; servers start on free ports and are stopped by each test.
"""
import asyncio
import base64
import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from conftest import wait_ready, trained_and_exported
from PIL import Image

import nbml
from nbml.predlog import read_log
from nbml.serving.runners import OnnxRunner, TorchRunner, choose_runner, gpu_present

LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    images, ds, model, folder = trained_and_exported(root, "colours")
    paths = sorted(images.rglob("*.png"))
    yield SimpleNamespace(root=root, ds=ds, model=model, folder=folder, paths=paths,
                          png=[p.read_bytes() for p in paths])
    ds.close()


@pytest.fixture(scope="module")
def server(env):
    """The module's shared server: no token, a small body limit, logging to <artifact>/predictions.sqlite."""
    handle = nbml.serve(env.folder, port=0, max_body_bytes=LIMIT, max_wait_ms=2)
    yield handle
    handle.stop()


def fresh_copy(folder, tmp_path):
    """The artifact without the shared server's prediction log."""
    return shutil.copytree(folder, tmp_path / folder.name, ignore=shutil.ignore_patterns("predictions.sqlite*"))


def expected(env, data: bytes) -> dict:
    return env.model.predict(data).probabilities


def eventually(condition, timeout: float = 5.0) -> bool:
    """Counts and log rows are taken just after a response is written: wait for the server's thread."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def files(data: bytes, name="x.png"):
    return {"file": (name, data, "image/png")}


def bomb_png(width=30_000, height=30_000) -> bytes:
    """A valid PNG whose header claims 900 megapixels (a decompression bomb; the pixels are never there)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_predict_multipart_json_and_raw(env, server):
    data = env.png[0]
    r = httpx.post(f"{server.url}/predict", files=files(data))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"label", "probabilities"}
    assert body["probabilities"] == pytest.approx(expected(env, data), abs=1e-4)
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)

    b64 = base64.b64encode(data).decode()
    one = httpx.post(f"{server.url}/predict", json={"image": b64}).json()
    assert one["probabilities"] == pytest.approx(body["probabilities"], abs=1e-6)
    url = httpx.post(f"{server.url}/predict", json={"image": "data:image/png;base64," + b64}).json()
    assert url["label"] == body["label"]
    many = httpx.post(f"{server.url}/predict", json={"images": [b64, base64.b64encode(env.png[20]).decode()]})
    preds = many.json()["predictions"]
    assert len(preds) == 2 and preds[1]["probabilities"] == pytest.approx(expected(env, env.png[20]), abs=1e-4)
    assert httpx.post(f"{server.url}/predict", json=[b64, b64]).json()["predictions"][0]["label"] == body["label"]
    raw = httpx.post(f"{server.url}/predict", content=data, headers={"content-type": "image/png"})
    assert raw.json()["label"] == body["label"]
    chunked = httpx.post(f"{server.url}/predict", content=iter([data[:100], data[100:]]),    # no Content-Length
                         headers={"content-type": "image/png"})
    assert chunked.json()["probabilities"] == pytest.approx(body["probabilities"], abs=1e-6)
    two = httpx.post(f"{server.url}/predict", files=[("a", ("a.png", data)), ("b", ("b.png", env.png[20]))])
    assert [p["label"] for p in two.json()["predictions"]] == [body["label"], preds[1]["label"]]


def test_multipart_parser_on_bodies_real_clients_encode():
    """parse_multipart on what httpx and urllib3 (requests) send, and on the RFC's optional parts."""
    from urllib3 import encode_multipart_formdata

    from nbml.serving.app import HTTPError, header_parameters, parse_multipart
    a, b = os.urandom(5000) + b"\r\n--not-the-boundary\r\n", b"\r\n"   # file bytes that look like syntax
    request = httpx.Request("POST", "http://x/predict", data={"note": "hi"},
                            files=[("a", ("a.jpg", a, "image/jpeg")), ("b", ("b.png", b, "image/png"))])
    assert parse_multipart(request.read(), request.headers["content-type"]) == [a, b]
    body, content_type = encode_multipart_formdata({"field": "text", "file": ("photo.jpg", a, "image/jpeg")})
    assert parse_multipart(body, content_type) == [a]

    ct = "multipart/form-data; boundary=XyZ"
    part = b'Content-Disposition: form-data; name="f"; filename="p.png"\r\nContent-Type: image/png\r\n\r\nPIXELS'
    assert parse_multipart(b"preamble\r\n--XyZ  \t\r\n" + part + b"\r\n--XyZ--\r\nepilogue", ct) == [b"PIXELS"]
    assert parse_multipart(b"--XyZ\r\n" + part + b"\r\n--XyZ--", 'multipart/form-data; boundary="XyZ"') == [b"PIXELS"]
    empty_file = b'--XyZ\r\nContent-Disposition: form-data; name="f"; filename="e"\r\n\r\n\r\n--XyZ--'
    assert parse_multipart(empty_file, ct) == [b""]
    for body, message in [(b"--XyZ\r\n" + part, "ends before the closing boundary"),
                          (b"--Other\r\n" + part + b"\r\n--Other--", "does not occur in the body"),
                          (b"--XyZ garbage\r\n" + part + b"\r\n--XyZ--", "boundary line"),
                          (b"--XyZ\r\nno colon here\r\n\r\nPIXELS\r\n--XyZ--", "malformed part header"),
                          (b"--XyZ\r\nContent-Type: image/png\r\nPIXELS\r\n--XyZ--", "no blank line"),
                          (b'--XyZ\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n--XyZ--', "no file")]:
        with pytest.raises(HTTPError, match=message) as e:
            parse_multipart(body, ct)
        assert e.value.status == 400
    with pytest.raises(HTTPError, match="without a boundary"):
        parse_multipart(b"--XyZ--", "multipart/form-data")
    assert header_parameters('multipart/form-data; Boundary="a;b \\"q\\" c" ; charset=utf-8; boundary=no') == {
        "boundary": 'a;b "q" c', "charset": "utf-8"}
    assert header_parameters('form-data; name="a; filename=b"') == {"name": "a; filename=b"}   # not a file part


def test_open_inference_protocol_with_tritonclient(env, server):
    import tritonclient.http as tc
    from tritonclient.utils import InferenceServerException
    client = tc.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("colours")
        meta = client.get_model_metadata("colours")
        assert meta["name"] == "colours"
        assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
        assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
                                   {"name": "label", "datatype": "BYTES", "shape": [-1]}]
        batch = [env.png[0], env.png[15], env.png[30]]
        inp = tc.InferInput("image", [3], "BYTES")
        inp.set_data_from_numpy(np.array(batch, dtype=np.object_))        # binary tensor data, the default
        result = client.infer("colours", [inp])                            # every output, binary
        probs, labels = result.as_numpy("probabilities"), result.as_numpy("label")
        want = np.array([[expected(env, b)[c] for c in env.model.classes] for b in batch])
        assert probs.shape == (3, 3) and probs.dtype == np.float32
        np.testing.assert_allclose(probs, want, atol=1e-4)
        assert [x.decode() for x in labels] == [env.model.classes[i] for i in probs.argmax(1)]
        # outputs asked for as JSON, with a request id echoed back
        outputs = [tc.InferRequestedOutput("label", binary_data=False),
                   tc.InferRequestedOutput("probabilities", binary_data=False)]
        as_json = client.infer("colours", [inp], outputs=outputs, request_id="req-7").get_response()
        assert as_json["id"] == "req-7" and as_json["model_name"] == "colours"
        assert [o["name"] for o in as_json["outputs"]] == ["label", "probabilities"]
        assert as_json["outputs"][0]["data"] == [x.decode() for x in labels]
        np.testing.assert_allclose(np.array(as_json["outputs"][1]["data"]).reshape(3, 3), probs, atol=1e-6)
        # a versioned path and a compressed request body work too
        gz = client.infer("colours", [inp], model_version="1", request_compression_algorithm="gzip")
        np.testing.assert_allclose(gz.as_numpy("probabilities"), probs, atol=1e-6)
        with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
            client.infer("nope", [inp])
        with pytest.raises(InferenceServerException, match="datatype BYTES"):
            wrong = tc.InferInput("image", [1, 4], "FP32")
            wrong.set_data_from_numpy(np.zeros((1, 4), np.float32))
            client.infer("colours", [wrong])
    finally:
        client.close()
    # the JSON form with base64 elements, from a plain HTTP client
    body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                        "data": [base64.b64encode(env.png[0]).decode()]}]}
    r = httpx.post(f"{server.url}/v2/models/colours/infer", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert out["probabilities"]["shape"] == [1, 3] and out["label"]["data"] == [labels[0].decode()]


def v2_error(url, json_body=None, **kw):
    r = httpx.post(f"{url}/v2/models/colours/infer", json=json_body, **kw) if json_body is not None else \
        httpx.post(f"{url}/v2/models/colours/infer", **kw)
    return r.status_code, r.json()["error"]


def test_bad_input_answers_and_server_keeps_serving(env, server):
    url, good = server.url, env.png[3]

    def still_serving():
        assert httpx.post(f"{url}/predict", files=files(good)).status_code == 200

    cases = []
    r = httpx.post(f"{url}/predict", files=files(b"<html><body>hello</body></html>", "x.jpg"))
    cases.append((r, 400, "not an image: the file is an HTML page"))
    r = httpx.post(f"{url}/predict", files=files(b"\x00\x01\x02 binary junk \xff" * 10, "x.png"))
    cases.append((r, 400, "not an image"))
    r = httpx.post(f"{url}/predict", files=files(good[: len(good) // 2]))
    cases.append((r, 400, "truncated or corrupt"))
    r = httpx.post(f"{url}/predict", files=files(bomb_png()))
    cases.append((r, 400, "decompression bomb"))
    r = httpx.post(f"{url}/predict", files=files(b"x" * (LIMIT + 1000)))                 # Content-Length says
    cases.append((r, 413, "larger than this server's limit"))
    r = httpx.post(f"{url}/predict", content=iter([b"x" * 65536] * 6),                   # chunked: no length
                   headers={"content-type": "application/octet-stream"})
    cases.append((r, 413, "larger than this server's limit"))
    r = httpx.post(f"{url}/predict", content=b'{"image": "abc', headers={"content-type": "application/json"})
    cases.append((r, 400, "not valid JSON"))
    r = httpx.post(f"{url}/predict", json={"image": "not base64!!"})
    cases.append((r, 400, "not valid base64"))
    r = httpx.post(f"{url}/predict", json={"images": [base64.b64encode(good).decode(),
                                                      base64.b64encode(b"plain text").decode()]})
    cases.append((r, 400, "image 2 of 2: not an image: the file holds text"))
    r = httpx.post(f"{url}/predict", content=b"a=1", headers={"content-type": "application/x-www-form-urlencoded"})
    cases.append((r, 400, "multipart/form-data"))
    r = httpx.post(f"{url}/v2/models/colours/infer", content=b"{nope", headers={"content-type": "application/json"})
    cases.append((r, 400, "not valid JSON"))
    img = base64.b64encode(good).decode()
    for body, message in [
        ({"inputs": [{"name": "image", "shape": [1], "datatype": "FP32", "data": [1.0]}]}, "datatype BYTES"),
        ({"inputs": [{"name": "image", "shape": [1, 1, 1], "datatype": "BYTES", "data": [img]}]}, "shape [N]"),
        ({"inputs": [{"name": "image", "shape": [2], "datatype": "BYTES", "data": [img]}]}, "but 1 data elements"),
        ({"inputs": [{"name": "pixels", "shape": [1], "datatype": "BYTES", "data": [img]}]}, "unknown input"),
        ({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [img]}],
          "outputs": [{"name": "logits"}]}, "unknown output"),
        ({"inputs": []}, "'inputs'"),
    ]:
        r = httpx.post(f"{url}/v2/models/colours/infer", json=body)
        cases.append((r, 400, message))
    head = b'{"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 99}}]}'
    r = httpx.post(f"{url}/v2/models/colours/infer", content=head + struct.pack("<I", 4) + b"abcd",
                   headers={"inference-header-content-length": str(len(head))})
    cases.append((r, 400, "binary_data_size 99 does not fit"))
    r = httpx.post(f"{url}/v2/models/colours/infer", content=head, headers={"inference-header-content-length": "999"})
    cases.append((r, 400, "Inference-Header-Content-Length 999 does not fit"))
    r = httpx.post(f"{url}/v2/models/unknown/infer", json={"inputs": []})
    cases.append((r, 404, "unknown model 'unknown'"))
    r = httpx.get(f"{url}/v2/models/unknown")
    cases.append((r, 404, "unknown model"))
    r = httpx.get(f"{url}/no/such/route")
    cases.append((r, 404, "no such endpoint"))
    r = httpx.get(f"{url}/predict")
    cases.append((r, 405, "Method Not Allowed"))
    for response, status, message in cases:
        assert response.status_code == status, (message, response.text)
        assert message in response.json()["error"], response.text
        still_serving()
    metrics = httpx.get(f"{url}/metrics").text
    assert 'nbml_requests_total{endpoint="predict",code="400"}' in metrics
    assert 'nbml_requests_total{endpoint="predict",code="413"}' in metrics


def test_load_8_clients_500_requests(env, server):
    before = server.predictions
    bodies = [base64.b64encode(b).decode() for b in env.png]

    async def run():
        counter = iter(range(500))
        statuses = []
        async with httpx.AsyncClient(base_url=server.url, timeout=60,
                                     limits=httpx.Limits(max_connections=8)) as client:
            async def worker():
                for i in counter:
                    if i % 2:
                        r = await client.post("/predict", files=files(env.png[i % len(env.png)]))
                    else:
                        r = await client.post("/predict", json={"image": bodies[i % len(bodies)]})
                    statuses.append((r.status_code, r.json().get("label")))
            await asyncio.gather(*[worker() for _ in range(8)])
        return statuses

    statuses = asyncio.run(run())
    assert len(statuses) == 500 and all(s == 200 for s, _ in statuses)
    assert {label for _, label in statuses} <= set(env.model.classes)
    assert eventually(lambda: server.predictions - before == 500), server.predictions - before
    text = httpx.get(f"{server.url}/metrics").text
    assert "nbml_batch_size_count" in text and "nbml_predictions_total" in text


def test_prometheus_metrics(server):
    httpx.get(f"{server.url}/v2/health/live")
    text = httpx.get(f"{server.url}/metrics").text
    for line in ['nbml_model_info{model="colours",runner="onnxruntime/cpu"} 1', "# TYPE nbml_requests_total counter",
                 'nbml_request_duration_seconds_bucket{endpoint="health",le="+Inf"}',
                 "# TYPE nbml_prediction_confidence histogram", "nbml_inference_seconds_count"]:
        assert line in text


def post_many(url, datas, headers=None):
    with httpx.Client(base_url=url, headers=headers) as c:
        return [c.post("/predict", files=files(d)) for d in datas]


def test_restart_keeps_the_log_and_frees_the_port(env, tmp_path):
    folder = fresh_copy(env.folder, tmp_path)
    first = nbml.serve(folder, port=0)
    port = first.port
    answers = post_many(first.url, env.png[:7])
    assert all(r.status_code == 200 for r in answers)
    first.stop()
    with socket.socket() as s:                                   # the port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
    log1 = read_log(folder)
    assert len(log1) == 7
    import hashlib
    assert list(log1["sha256"]) == [hashlib.sha256(d).hexdigest() for d in env.png[:7]]
    assert list(log1["label"]) == [r.json()["label"] for r in answers]
    conf = [max(r.json()["probabilities"].values()) for r in answers]
    np.testing.assert_allclose(log1["confidence"], conf, rtol=1e-6)
    assert (log1["latency_ms"] > 0).all() and log1["model"].eq("colours").all() and not log1["has_image"].any()

    second = nbml.serve(folder, port=port)                       # same port, same log file
    assert second.port == port
    post_many(second.url, env.png[7:10])
    second.stop()
    log2 = read_log(folder)
    assert len(log2) == 10
    assert log2.iloc[:7].equals(log1)                            # the earlier rows are untouched


def test_token(env, tmp_path):
    import tritonclient.http as tc
    from tritonclient.utils import InferenceServerException
    with nbml.serve(env.folder, port=0, token="s3cret", log=False) as handle:
        assert httpx.post(f"{handle.url}/predict", files=files(env.png[0])).status_code == 401
        wrong = httpx.post(f"{handle.url}/predict", files=files(env.png[0]),
                           headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "bearer token" in wrong.json()["error"]
        assert httpx.get(f"{handle.url}/metrics").status_code == 401
        assert httpx.get(f"{handle.url}/v2/health/ready").status_code == 200   # probes need no token
        ok = post_many(handle.url, env.png[:1], headers={"authorization": "Bearer s3cret"})
        assert ok[0].status_code == 200
        client = tc.InferenceServerClient(handle.url.removeprefix("http://"))
        inp = tc.InferInput("image", [1], "BYTES")
        inp.set_data_from_numpy(np.array([env.png[0]], dtype=np.object_))
        with pytest.raises(InferenceServerException, match="bearer token"):
            client.infer("colours", [inp])
        result = client.infer("colours", [inp], headers={"Authorization": "Bearer s3cret"})
        assert result.as_numpy("label")[0].decode() == ok[0].json()["label"]
        client.close()
        assert "$NBML_TOKEN" in handle.curl() and "s3cret" not in handle._html()
    assert not handle.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{handle.url}/v2/health/live")


def test_model_serve_logs_to_project_and_add_from_log(env):
    handle = env.model.serve(port=0, log_images=4)
    try:
        assert handle.folder == env.ds.home / "exports" / env.model.config["name"]
        assert handle.name == env.model.config["name"]
        assert handle.url.startswith("http://127.0.0.1:")
        assert handle.url in handle._html() and "curl" in handle._html()
        handle._ipython_display_()                        # what a notebook cell shows: a live request count
        view = handle._views[0]
        datas = [env.png[i] for i in (0, 1, 2, 13, 14, 25)] + [env.png[0]]
        assert all(r.status_code == 200 for r in post_many(handle.url, datas))
        assert eventually(lambda: handle.predictions == 7), handle.predictions
        deadline = time.monotonic() + 5
        while "<b>7</b> requests" not in view.value and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "<b>7</b> requests" in view.value and "running" in view.value
        chart = nbml.monitor(handle)
        spec = chart.to_dict()
        assert len(spec["vconcat"]) == 2 and all(len(row["hconcat"]) == 2 for row in spec["vconcat"])
    finally:
        handle.stop()
    log = read_log(env.ds, model=handle.name)
    assert len(log) == 7 and log["has_image"].sum() == 4             # capped at log_images
    assert not (handle.folder / "predictions.sqlite").exists()        # logged to the project, not beside

    n_before = len(env.ds)
    report = env.ds.add_from_log(max_confidence=1.0)
    # the logged images are copies of images already in the project: reported as duplicates, not added twice
    assert report.added == [] and len(report.duplicates) == 4 and len(env.ds) == n_before
    assert sorted(p.name for p in (env.ds.home / "from_log").iterdir())[0].endswith(".png")
    assert env.ds.add_from_log(max_confidence=0.0).added == []       # nothing that unsure
    assert "stopped" in view.value
    assert len(nbml.monitor(env.ds).to_dict()["vconcat"]) == 2


def test_add_from_log_brings_new_images_in_unlabelled(env, tmp_path):
    folder = fresh_copy(env.folder, tmp_path)
    rng = np.random.default_rng(1)
    new = []
    for i in range(3):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buf, "JPEG")
        new.append(buf.getvalue())
    with nbml.serve(folder, port=0, log_images=10) as handle:
        assert all(r.status_code == 200 for r in post_many(handle.url, new))
    assert read_log(folder)["has_image"].sum() == 3
    ds = nbml.Dataset(tmp_path / "fresh.nbml")
    try:
        report = ds.add_from_log(max_confidence=1.0, limit=2, source=folder)
        assert len(report.added) == 2
        items = ds.df
        assert items["label"].isna().all() and all(p.endswith(".jpg") for p in items["path"])
        assert len(nbml.monitor(folder).to_dict()["vconcat"]) == 2
    finally:
        ds.close()


def test_runner_selection_and_torch_runner_on_cpu(env):
    assert choose_runner("auto", cuda_available=False) == ("onnxruntime", "cpu")
    assert choose_runner("auto", cuda_available=True) == ("torch", "cuda")
    assert choose_runner("cuda:1") == ("torch", "cuda:1") and choose_runner("cpu") == ("onnxruntime", "cpu")
    with pytest.raises(ValueError, match="device must be"):
        choose_runner("tpu")
    import json
    config = json.loads((env.folder / "config.json").read_text())
    batch = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in env.png[:5]])
    onnx, torch_runner = OnnxRunner(env.folder, config), TorchRunner(env.folder, config, device="cpu")
    np.testing.assert_allclose(torch_runner(batch), onnx(batch), atol=1e-4)
    with nbml.serve(env.folder, port=0, device="torch-cpu", log=False) as handle:   # the GPU path's code, on CPU
        r = httpx.post(f"{handle.url}/predict", files=files(env.png[0]))
        assert r.json()["probabilities"] == pytest.approx(expected(env, env.png[0]), abs=1e-4)
        assert "torch/cpu" in httpx.get(f"{handle.url}/metrics").text


def test_port_in_use_is_a_clear_error(env, server):
    with pytest.raises(OSError, match="already in use"):
        nbml.serve(env.folder, port=server.port, log=False)
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200


# `nbml serve` run with the training stack made unimportable: what requirements.txt installs is all it needs
WITHOUT_TRAINING_STACK = ("import sys\n"
                          "for name in ('torch', 'torchvision', 'fastai', 'timm', 'sklearn', 'cleanlab',\n"
                          "             'python_multipart', 'multipart'):\n"
                          "    sys.modules[name] = None\n"
                          "from nbml.cli import main\n"
                          "sys.exit(main())\n")


# `nbml serve` as it runs on a CPU machine; at exit it prints which of the training stack's packages it imported
REPORTS_HEAVY_MODULES = ("import atexit, sys\n"
                         "heavy = ('torch', 'torchvision', 'fastai', 'timm', 'pandas', 'nbml.model', 'nbml.widgets', "
                         "'nbml.training', 'nbml.kinds.image')\n"
                         "atexit.register(lambda: print('imported:', [m for m in heavy if m in sys.modules]))\n"
                         "from nbml.cli import main\n"
                         "sys.exit(main())\n")


def serve_in_subprocess(script: str, folder, requests: list[bytes], env: dict | None = None):
    """Run `script serve folder` on a free port, wait until ready, POST `requests`, stop it with SIGTERM:
    (url, responses, return code, stdout, stderr)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", script, "serve", str(folder), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NBML_TOKEN": "", **(env or {})})
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, proc)
        responses = post_many(url, requests)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return url, responses, proc.returncode, out, err


def test_cli_serves_without_the_training_stack_and_sigterm_flushes_the_log(env, tmp_path):
    folder = fresh_copy(env.folder, tmp_path)
    # SIGTERM comes well within the 1 s flush interval: only a clean stop saves these
    url, responses, code, out, err = serve_in_subprocess(WITHOUT_TRAINING_STACK, folder, env.png[:5])
    assert all(r.status_code == 200 for r in responses)
    assert code == 0, err
    assert f"serving colours at {url}" in out
    assert len(read_log(folder)) == 5


def test_cli_on_a_machine_without_gpu_never_imports_torch(env):
    """torch installed, no GPU visible: `nbml serve` runs ONNX Runtime and never loads torch or its CUDA libraries
    (nor pandas, which only reading the log needs)."""
    url, responses, code, out, err = serve_in_subprocess(REPORTS_HEAVY_MODULES, env.folder, env.png[:2],
                                                         env={"CUDA_VISIBLE_DEVICES": ""})
    assert code == 0, err
    assert [r.json()["label"] for r in responses] == [env.model.predict(d).label for d in env.png[:2]]
    assert "(onnxruntime/cpu, float32)" in out and "imported: []" in out, out


def test_gpu_is_looked_for_without_torch(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    proc, dev = tmp_path / "proc", tmp_path / "dev"
    gpus = proc / "driver" / "nvidia" / "gpus"
    gpus.mkdir(parents=True)
    dev.mkdir()
    assert not gpu_present(proc, dev)                          # the driver is loaded but lists no GPU
    (gpus / "0000:01:00.0").mkdir()
    assert gpu_present(proc, dev)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")             # hidden from CUDA, hence from torch
    assert not gpu_present(proc, dev)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    (gpus / "0000:01:00.0").rmdir()
    (dev / "kfd").touch()                                      # ROCm's device: torch may see an AMD GPU
    assert gpu_present(proc, dev)


def test_batcher_groups_concurrent_requests_and_respects_max_batch():
    from nbml.serving.batcher import Batcher
    sizes = []

    def runner(batch):                       # a slow model: requests pile up while it runs
        sizes.append(len(batch))
        time.sleep(0.05)
        return batch.reshape(len(batch), -1)[:, :2].astype(np.float32)

    async def run():
        batcher = Batcher(runner, max_batch=4, max_wait_ms=20)
        await batcher.start()
        try:
            images = [np.full((1, 2, 2, 3), i, np.uint8) for i in range(9)]
            results = await asyncio.gather(*[batcher.predict(x) for x in images])
            big = await batcher.predict(np.arange(6 * 12, dtype=np.uint8).reshape(6, 2, 2, 3))
        finally:
            await batcher.stop()
        return results, big

    results, big = asyncio.run(run())
    assert [int(r[0, 0]) for r in results] == list(range(9))      # each caller gets its own row back
    assert sizes[:3] == [4, 4, 1] and max(sizes[:3]) <= 4          # 9 waiting images: full batches of 4
    assert sizes[3:] == [4, 2] and big.shape == (6, 2)             # one request above max_batch runs in chunks
