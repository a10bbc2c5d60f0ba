"""nbml.serve(engine="ray") on the local Ray it starts itself, with each ingress: HAProxy in front of the replicas
(the default where Ray has it) and Ray Serve's Python proxy. In a child process: the Ray of tests/test_serve_ray.py's
module is a cluster this process connects to, and a local Ray is started only by a process connected to none."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import trained_and_exported

pytest.importorskip("ray.serve")
pytestmark = pytest.mark.timeout(600)

CHILD = textwrap.dedent("""
    import io, json, sys
    import httpx, psutil
    import nbml
    from nbml.serving.ray_engine import haproxy_available
    folder, png = sys.argv[1], open(sys.argv[2], "rb").read()
    out = {"available": haproxy_available()}
    for ingress in (None, "proxy"):
        handle = nbml.serve(folder, engine="ray", replicas=1, port=0, ingress=ingress)
        r = httpx.post(handle.direct_url + "/predict", files={"file": ("x.png", png, "image/png")}, timeout=60)
        ours = psutil.Process().children(recursive=True)
        out[str(ingress)] = {"ingress": handle.ingress, "status": r.status_code, "label": r.json().get("label"),
                             "haproxy": any("haproxy" in p.name() for p in ours)}
        handle.stop()
        out[str(ingress)]["stopped"] = not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in ours)
    print(json.dumps(out))
""")


def test_the_local_ray_nbml_starts_with_each_ingress(tmp_path):
    images, ds, model, folder = trained_and_exported(tmp_path, "colours")
    ds.close()
    png = sorted(images.rglob("*.png"))[0]
    r = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(png)], capture_output=True, text=True,
                       timeout=540)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    default = "haproxy" if out["available"] else "proxy"
    assert out["None"]["ingress"] == default and out["None"]["haproxy"] == out["available"]
    assert out["proxy"]["ingress"] == "proxy" and not out["proxy"]["haproxy"]
    for case in ("None", "proxy"):
        assert out[case]["status"] == 200 and out[case]["label"] == model.predict(png).label, out
        assert out[case]["stopped"], f"Ray's processes outlived handle.stop() ({case})"
