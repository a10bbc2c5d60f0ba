"""The Jupyter server extension (nbml.jupyter) on a real Jupyter server (pytest-jupyter), with a real exported model
served on loopback: the proxy, Jupyter's authentication in front of it, the registrations, the side panel's REST
API, and `server.url` on a plain Jupyter server, JupyterHub and outside Jupyter."""
import asyncio
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tornado.httpclient import AsyncHTTPClient

import nbml
from conftest import trained_and_exported
from nbml.serving import registry
from nbml.serving.address import locate

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A project with one run (trained for one epoch on the colour images) and its exported model."""
    root = tmp_path_factory.mktemp("ext")
    images, ds, model, artifact = trained_and_exported(root, "colours")
    ds.close()
    return {"root": root, "project": root / "colours.nbml", "artifact": Path(artifact),
            "png": [(images / "red" / "0.png").read_bytes(), (images / "blue" / "1.png").read_bytes()]}


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"nbml.jupyter": True}}}


@pytest.fixture
def served(exported, jp_serverapp):
    """A model server with its own token, registered in the test server's runtime directory (jp_environ set
    JUPYTER_RUNTIME_DIR before this runs)."""
    handle = nbml.serve(exported["artifact"], port=0, token="model-secret", log=False)
    yield handle
    handle.stop()


def body_json(response):
    return json.loads(response.body)


async def fetch_url(url, **kw):
    """A request to a full URL, with no credentials but those given (raise_error=False)."""
    return await AsyncHTTPClient().fetch(url, raise_error=False, request_timeout=20, **kw)


async def fetch_raw(jp_serverapp, path, **kw):
    """A request to the Jupyter server without jp_fetch's token (the test needs the http_server fixture, which
    jp_fetch brings: it is what accepts connections)."""
    return await fetch_url(f"http://127.0.0.1:{jp_serverapp.port}{jp_serverapp.base_url}{path}", **kw)


async def test_prediction_through_the_proxy_with_jupyters_token(served, exported, jp_fetch, jp_serverapp):
    png = exported["png"][0]
    name = served.proxy_name
    assert name == "colours" and served.registration.path.parent == Path(jp_serverapp.runtime_dir)
    assert stat.S_IMODE(served.registration.path.stat().st_mode) == 0o600

    # the model server wants its own token; Jupyter's is all the client gives, the proxy adds the model's
    direct = await fetch_url(f"{served.direct_url}/predict", method="POST", body=png,
                             headers={"Content-Type": "image/png"})
    assert direct.code == 401
    r = await jp_fetch("nbml", "models", name, "predict", method="POST", body=png,
                       headers={"Content-Type": "image/png"})
    answer = body_json(r)
    assert r.code == 200 and r.headers["Content-Type"] == "application/json"
    assert answer["label"] in ("red", "green", "blue") and abs(sum(answer["probabilities"].values()) - 1) < 1e-4
    same = await fetch_url(f"{served.direct_url}/predict", method="POST", body=png,
                           headers={"Content-Type": "image/png", "Authorization": "Bearer model-secret"})
    assert body_json(same) == answer

    # a streamed (chunked) request body, and the index at the bare and the slash-ended name
    async def producer(write):
        for i in range(0, len(png), 97):
            await write(png[i:i + 97])
    chunked = await jp_fetch("nbml", "models", name, "predict", method="POST", body_producer=producer,
                             headers={"Content-Type": "image/png"})
    assert body_json(chunked) == answer
    for path in (("nbml", "models", name), ("nbml", "models", name, "")):
        index = body_json(await jp_fetch(*path))
        assert index["model"] == "colours" and index["classes"] == ["blue", "green", "red"]

    # the model server's errors keep their status and JSON body
    bad = await jp_fetch("nbml", "models", name, "predict", method="POST", body=b"not an image",
                         headers={"Content-Type": "image/png"}, raise_error=False)
    assert bad.code == 400 and "error" in body_json(bad)
    missing = await jp_fetch("nbml", "models", name, "no", "such", "route", raise_error=False)
    assert missing.code == 404 and "no such endpoint" in body_json(missing)["error"]
    # the admin route is refused without the registration's secret, even to an authenticated Jupyter user
    admin = await jp_fetch("nbml", "models", name, "_nbml", "stop", method="POST", body=b"", raise_error=False)
    assert admin.code == 403 and served.running


async def test_refused_without_jupyters_token(served, exported, jp_serverapp, http_server):
    png = exported["png"][0]
    for headers in ({}, {"Authorization": "token wrong"}):
        r = await fetch_raw(jp_serverapp, f"nbml/models/{served.proxy_name}/predict",
                            method="POST", body=png, headers={"Content-Type": "image/png", **headers})
        assert r.code == 403 and "log in to Jupyter" in body_json(r)["error"]
        for path in ("nbml/api/servers", "nbml/api/projects"):
            assert (await fetch_raw(jp_serverapp, path, headers=headers)).code == 403
    token = jp_serverapp.identity_provider.token
    ok = await fetch_raw(jp_serverapp, f"nbml/models/{served.proxy_name}/predict", method="POST", body=png,
                         headers={"Content-Type": "image/png", "Authorization": f"token {token}"})
    assert ok.code == 200
    # the refused requests never reached the model server: it counts a request just after writing its answer, so
    # the count is read again until it moves (never past 1)
    for _ in range(100):
        if served.requests:
            break
        await asyncio.sleep(0.05)
    assert served.requests == 1


async def test_unknown_stale_and_dead_servers(served, jp_fetch, jp_serverapp):
    runtime = Path(jp_serverapp.runtime_dir)
    unknown = await jp_fetch("nbml", "models", "nobody", "predict", method="POST", body=b"x", raise_error=False)
    assert unknown.code == 404 and "nobody" in body_json(unknown)["error"]

    # a registration left by a process that is gone is ignored (and its name can be taken again)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    (runtime / "nbml-server-stale.json").write_text(json.dumps(
        {"name": "stale", "port": served.port, "pid": dead_pid, "folder": "/x", "kind": "image", "secret": "s",
         "started": "2026-01-01T00:00:00Z"}))
    stale = await jp_fetch("nbml", "models", "stale", "v2", "health", "ready", raise_error=False)
    assert stale.code == 404
    listed = body_json(await jp_fetch("nbml", "api", "servers"))["servers"]
    assert [s["name"] for s in listed] == [served.proxy_name]

    # a live process whose server no longer listens: 502, JSON
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    (runtime / "nbml-server-hung.json").write_text(json.dumps(
        {"name": "hung", "port": closed_port, "pid": os.getpid(), "folder": "/x", "kind": "image", "secret": "s",
         "started": "2026-01-01T00:00:00Z"}))
    hung = await jp_fetch("nbml", "models", "hung", "predict", method="POST", body=b"x", raise_error=False)
    assert hung.code == 502 and "did not answer" in body_json(hung)["error"]
    listed = {s["name"]: s for s in body_json(await jp_fetch("nbml", "api", "servers"))["servers"]}
    assert listed["hung"]["reachable"] is False and listed[served.proxy_name]["reachable"] is True


async def test_servers_listing_and_stop(served, exported, jp_fetch, jp_serverapp):
    for png in exported["png"]:
        await jp_fetch("nbml", "models", served.proxy_name, "predict", method="POST", body=png,
                       headers={"Content-Type": "image/png"})
    [s] = body_json(await jp_fetch("nbml", "api", "servers"))["servers"]
    assert s["name"] == "colours" and s["port"] == served.port and s["pid"] == os.getpid()
    assert s["url"] == f"{jp_serverapp.base_url}nbml/models/colours/"
    assert s["direct_url"] == f"http://127.0.0.1:{served.port}/"
    assert s["kind"] == "image" and s["folder"] == str(exported["artifact"])
    assert s["requests"] == 2 and s["p50_ms"] > 0 and s["started"].endswith("Z")
    assert "secret" not in s and "token" not in s        # neither the admin secret nor the model's token leaves

    # a second server of the same folder gets the next name
    second = nbml.serve(exported["artifact"], port=0, log=False)
    try:
        assert second.proxy_name == "colours-2"
        names = [x["name"] for x in body_json(await jp_fetch("nbml", "api", "servers"))["servers"]]
        assert names == ["colours", "colours-2"]
    finally:
        second.stop()

    thread, path = served._thread, served.registration.path
    r = await jp_fetch("nbml", "api", "servers", "colours", "stop", method="POST", body=b"")
    assert body_json(r) == {"stopped": True}
    for _ in range(100):              # the handle's own stop() ends its thread just after the port closes
        if not thread.is_alive():
            break
        await asyncio.sleep(0.05)
    assert not thread.is_alive() and not served.running and not path.exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", served.port), timeout=2).close()
    after = await jp_fetch("nbml", "models", "colours", "predict", method="POST", body=b"x", raise_error=False)
    assert after.code == 404
    again = await jp_fetch("nbml", "api", "servers", "colours", "stop", method="POST", body=b"", raise_error=False)
    assert again.code == 404


async def test_tritonclient_through_the_proxied_url(served, exported, jp_serverapp, http_server):
    """tritonclient.http takes a path prefix in its url ("host:port/prefix") and headers per call."""
    import tritonclient.http as tc
    png = exported["png"][1]
    prefix = f"127.0.0.1:{jp_serverapp.port}{jp_serverapp.base_url}nbml/models/{served.proxy_name}"
    auth = {"Authorization": f"token {jp_serverapp.identity_provider.token}"}

    def infer():
        client = tc.InferenceServerClient(prefix)
        try:
            ready = client.is_model_ready("colours", headers=auth)
            tensor = tc.InferInput("image", [1], "BYTES")
            tensor.set_data_from_numpy(np.array([png], dtype=object), binary_data=True)
            out = client.infer("colours", [tensor], headers=auth,
                               outputs=[tc.InferRequestedOutput("label", binary_data=True)])
            return ready, out.as_numpy("label")[0]
        finally:
            client.close()
    ready, label = await asyncio.to_thread(infer)
    direct = await fetch_url(f"{served.direct_url}/predict", method="POST", body=png,
                             headers={"Content-Type": "image/png", "Authorization": "Bearer model-secret"})
    assert ready and label.decode() == body_json(direct)["label"]


async def test_projects_listing_is_read_only_and_confined(exported, jp_fetch, jp_root_dir, tmp_path):
    team = jp_root_dir / "team"
    team.mkdir()
    shutil.copy(exported["project"], team / "colours.nbml")
    (jp_root_dir / "junk.nbml").write_bytes(os.urandom(4096))
    for skipped in (".hidden", "node_modules", "a/b/c/d"):            # hidden, tools, deeper than 3
        (jp_root_dir / skipped).mkdir(parents=True)
        shutil.copy(exported["project"], jp_root_dir / skipped / "x.nbml")
    outside = tmp_path / "outside.nbml"
    shutil.copy(exported["project"], outside)
    (jp_root_dir / "link.nbml").symlink_to(outside)
    before = {p: p.read_bytes() for p in team.iterdir()}

    listing = body_json(await jp_fetch("nbml", "api", "projects"))
    assert listing["root"] == str(jp_root_dir.resolve())
    by_path = {p["path"]: p for p in listing["projects"]}
    assert sorted(by_path) == ["junk.nbml", "team/colours.nbml"]
    p = by_path["team/colours.nbml"]
    assert p["name"] == "colours" and p["kind"] == "image" and p["error"] is None
    assert p["items"] == 36 and p["labelled"] == 36 and p["labelled_fraction"] == 1.0
    assert p["classes"] == {"blue": 12, "green": 12, "red": 12}
    [run] = p["runs"]
    assert run["id"] == 1 and run["arch"] == "test_resnet" and run["status"] == "completed"
    assert 0 <= run["accuracy"] <= 1 and run["started"].endswith("Z")
    assert by_path["junk.nbml"]["error"] and by_path["junk.nbml"]["items"] == 0
    # read-only: the file is byte for byte the same and nothing was written beside it
    assert {p: p.read_bytes() for p in team.iterdir()} == before

    one = body_json(await jp_fetch("nbml", "api", "projects", "team", "colours.nbml"))
    assert one == p
    for path, code in (("../outside.nbml", 403), ("link.nbml", 403), ("team/none.nbml", 404)):
        r = await jp_fetch("nbml", "api", "projects", *path.split("/"), raise_error=False)
        assert r.code == code and "error" in body_json(r), path


@pytest.fixture
def jp_base_url():
    return "/lab-base/"       # the URLs must work under a base URL, as on JupyterHub or behind a proxy


async def test_server_url_on_a_jupyter_server(served, exported, jp_serverapp, http_server, monkeypatch, tmp_path):
    """The kernel finds its Jupyter server (JPY_PARENT_PID in the runtime dir's server list). Each address works
    where it is shown: `server.url` from the kernel, `server.browser_url` (proxied, behind Jupyter's login) from a
    browser with the Jupyter token, and the curl line pasted into a terminal on this machine."""
    for var in ("JUPYTERHUB_SERVICE_PREFIX", "JPY_SESSION_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("JPY_PARENT_PID", str(os.getpid()))     # what jupyter_client sets for a kernel
    address = locate(served.proxy_name, served.direct_url, served.port)
    assert address.where == "jupyter"
    assert address.url == f"http://localhost:{jp_serverapp.port}/lab-base/nbml/models/colours"
    served._address = address
    assert served.browser_url == address.url and served.url == served.direct_url
    token = jp_serverapp.identity_provider.token
    r = await fetch_url(served.browser_url + "/predict", method="POST", body=exported["png"][0],
                        headers={"Content-Type": "image/png", "Authorization": f"token {token}"})
    assert r.code == 200 and body_json(r)["label"] in ("red", "green", "blue")
    # the tour's line, from the kernel: server.url + "/predict" with the model server's own token
    r = await fetch_url(served.url + "/predict", method="POST", body=exported["png"][0],
                        headers={"Content-Type": "image/png", "Authorization": "Bearer model-secret"})
    assert r.code == 200
    assert address.url in served._html() and served.url in served._html()
    assert served.curl() == f'curl -H "Authorization: Bearer $NBML_TOKEN" -F file=@photo.jpg {served.url}/predict'
    assert served.curl(browser=True) == (f'curl -H "Authorization: token $JUPYTER_TOKEN" -F file=@photo.jpg '
                                         f'{address.url}/predict')
    (tmp_path / "photo.jpg").write_bytes(exported["png"][0])      # what the line names, as a user would have it
    for line, env in ((served.curl(), {"NBML_TOKEN": "model-secret"}),
                      (served.curl(browser=True), {"JUPYTER_TOKEN": token})):
        done = await asyncio.to_thread(subprocess.run, ["bash", "-c", line + " --silent --max-time 30"],
                                       cwd=tmp_path, capture_output=True, text=True, env={**os.environ, **env})
        assert json.loads(done.stdout)["label"] in ("red", "green", "blue"), (line, done.stdout, done.stderr)


def test_server_url_on_jupyterhub_and_outside_jupyter(monkeypatch):
    for var in ("JUPYTERHUB_SERVICE_PREFIX", "JPY_PARENT_PID", "JPY_SESSION_NAME", "JUPYTERHUB_PUBLIC_URL",
                "JUPYTERHUB_HOST", "JUPYTERHUB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    direct = "http://127.0.0.1:8123"
    local = locate("m", direct, 8123)
    assert (local.url, local.where, local.proxied) == (direct, "local", False)

    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ada/")
    hub = locate("m", direct, 8123)
    assert hub.where == "jupyterhub" and hub.url == "/user/ada/nbml/models/m" and hub.direct_url == direct
    assert hub.redirect_url == "/hub/user-redirect/nbml/models/m/" and "JUPYTERHUB_API_TOKEN" in hub.auth
    monkeypatch.setenv("JUPYTERHUB_PUBLIC_URL", "https://hub.example.org/")
    monkeypatch.setenv("JUPYTERHUB_BASE_URL", "/jh/")
    hub = locate("m", direct, 8123)
    assert hub.url == "https://hub.example.org/user/ada/nbml/models/m"
    assert hub.redirect_url == "https://hub.example.org/jh/hub/user-redirect/nbml/models/m/"
    assert "google.colab" not in sys.modules       # Colab's branch falls back to these outside Colab


def test_registration_names_modes_and_takeover(tmp_path, monkeypatch):
    folder = tmp_path / "my model!"
    a = registry.register(folder, 9001, kind="text", secret="a", directory=tmp_path)
    b = registry.register(folder, 9002, kind="text", secret="b", directory=tmp_path)
    assert (a.name, b.name) == ("my-model", "my-model-2")
    assert stat.S_IMODE(a.path.stat().st_mode) == 0o600
    assert [r.name for r in registry.registered_servers(tmp_path)] == ["my-model", "my-model-2"]
    registry.unregister(a)
    c = registry.register(folder, 9003, kind="text", secret="c", directory=tmp_path)
    assert c.name == "my-model"                      # free again
    record = json.loads(c.path.read_text())
    assert record["secret"] == "c" and record["pid"] == os.getpid() and record["port"] == 9003
    # a file of a dead process is ignored and taken over
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    c.path.write_text(json.dumps({**record, "pid": int(gone.stdout)}))
    assert [r.name for r in registry.registered_servers(tmp_path)] == ["my-model-2"]
    d = registry.register(folder, 9004, kind="text", secret="d", directory=tmp_path)
    assert d.name == "my-model" and registry.registered_servers(tmp_path)[0].port == 9004
    registry.unregister(c)                           # not c's any more: d's file stays
    assert d.path.exists()


def test_cli_server_registers_stops_on_request_and_unregisters(exported, tmp_path):
    """`nbml serve` registers itself; the admin stop (what the extension sends) ends it cleanly; a background server
    whose interpreter exits without stop() leaves no registration."""
    import httpx
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", "from nbml.cli import main; raise SystemExit(main())", "serve",
                             str(exported["artifact"]), "--port", "0", "--no-log"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not registry.registered_servers(tmp_path) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        [reg] = registry.registered_servers(tmp_path)
        assert reg.pid == proc.pid and reg.name == "colours"
        assert httpx.post(reg.direct_url + "_nbml/stop", headers={"X-Nbml-Secret": "wrong"}).status_code == 403
        assert httpx.post(reg.direct_url + "_nbml/stop", headers={"X-Nbml-Secret": reg.secret}).json() == \
            {"stopping": True}
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list(tmp_path.glob("nbml-server-*.json")) == []

    script = (f"import nbml; h = nbml.serve({str(exported['artifact'])!r}, port=0, log=False); "
              f"print(h.registration.path, flush=True)")   # and exits without h.stop()
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("nbml-server-colours.json") and not Path(out.stdout.strip()).exists()
