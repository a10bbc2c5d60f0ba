"""The REST routes of the side panel, under `<base_url>nbml/api/` (JSON, Jupyter's authentication):

    GET  projects                 the nbml projects under the root directory, summarised (nbml.jupyter.projects)
    GET  projects/<relpath>       one of them (403 outside the root, 404 missing)
    GET  servers                  the registered model servers with their requests and p50 latency
    POST servers/<name>/stop      stop one (the kernel that runs it keeps running)
"""
from __future__ import annotations

import asyncio
import json
import math
import re
import time
from pathlib import Path

from tornado import web
from tornado.httpclient import HTTPRequest
from tornado.simple_httpclient import SimpleAsyncHTTPClient

from ..serving import registry
from .base import NbmlHandler, find_server, live_servers
from .projects import OutsideRoot, find_projects, resolve_inside, summarize
from .proxy import ROUTE, ModelProxyHandler

__all__ = ["setup_handlers", "scrape_metrics"]

# Monitoring traffic (the panel's own scrapes, health probes, stop) is not counted as the model's requests.
NOT_COUNTED = {"metrics", "health", "admin"}
LATENCY_ENDPOINTS = {"predict", "v2_infer"}
_SAMPLE = re.compile(r'^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket that holds the q-th observation."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank, lower, below = q * buckets[bounds[-1]], 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 0.0)
        lower, below = bound, count
    return lower


def scrape_metrics(text: str) -> dict:
    """`requests` (all but monitoring) and `p50_ms` (/predict and /v2 infer, estimated from the latency histogram
    as Prometheus does) from a model server's /metrics text."""
    requests, buckets = 0, {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))
        if name == "nbml_requests_total" and labels.get("endpoint") not in NOT_COUNTED:
            requests += int(value)
        elif name == "nbml_request_duration_seconds_bucket" and labels.get("endpoint") in LATENCY_ENDPOINTS:
            le = float(labels["le"].replace("+Inf", "inf"))
            buckets[le] = buckets.get(le, 0.0) + value
    p50 = _quantile(0.5, buckets)
    return {"requests": requests, "p50_ms": round(p50 * 1000, 3) if p50 is not None else None}


class ProjectsHandler(NbmlHandler):
    @web.authenticated
    async def get(self):
        root = Path(self.settings["nbml_root_dir"])

        def listing():
            return [summarize(p, root) for p in find_projects(root)]
        self.finish(json.dumps({"root": str(root), "projects": await asyncio.to_thread(listing)}))


class ProjectHandler(NbmlHandler):
    @web.authenticated
    async def get(self, relpath: str):
        root = Path(self.settings["nbml_root_dir"])
        try:
            path = resolve_inside(root, relpath)
        except OutsideRoot as e:
            return self.write_json_error(403, str(e))
        if not path.name.endswith(".nbml") or not path.is_file():
            return self.write_json_error(404, f"no nbml project at {relpath!r} under the Jupyter root directory")
        self.finish(json.dumps(await asyncio.to_thread(summarize, path, root)))


class ServersHandler(NbmlHandler):
    @web.authenticated
    async def get(self):
        regs = live_servers(self.settings)
        stats = await asyncio.gather(*(self._stats(r) for r in regs))
        self.finish(json.dumps({"servers": [self._model(r, s) for r, s in zip(regs, stats)]}))

    def _model(self, reg: registry.Registration, stats: dict) -> dict:
        return {"name": reg.name, "port": reg.port, "pid": reg.pid, "folder": reg.folder, "kind": reg.kind,
                "url": f"{self.base_url}nbml/models/{reg.name}/", "direct_url": reg.direct_url,
                "started": reg.started, **stats}

    async def _stats(self, reg: registry.Registration) -> dict:
        headers = {"Authorization": f"Bearer {reg.token}"} if reg.token else {}
        response, why = await _fetch(self.settings, HTTPRequest(reg.direct_url + "metrics", headers=headers,
                                                                connect_timeout=2, request_timeout=3))
        if why or response.code != 200:
            why = why or f"HTTP {response.code}"
            return {"requests": 0, "p50_ms": None, "reachable": False, "error": f"metrics unavailable: {why}"}
        return {**scrape_metrics(response.body.decode("utf-8", "replace")), "reachable": True, "error": None}


class StopHandler(NbmlHandler):
    @web.authenticated
    async def post(self, name: str):
        reg = find_server(self.settings, name)
        if reg is None:
            return self.write_json_error(404, f"no running model server is registered as {name!r}")
        response, why = await _fetch(self.settings, HTTPRequest(
            reg.direct_url + "_nbml/stop", method="POST", body=b"", headers={"X-Nbml-Secret": reg.secret},
            connect_timeout=5, request_timeout=10))
        if why or response.code != 200:
            why = why or response.body.decode("utf-8", "replace")[:300]
            return self.write_json_error(502, f"the model server {name!r} did not accept the stop: {why}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not (reg.path and reg.path.exists()) and not await _listening(reg):
                return self.finish(json.dumps({"stopped": True}))
            await asyncio.sleep(0.1)
        self.write_json_error(502, f"the model server {name!r} was asked to stop but still runs after 30 s")


async def _fetch(settings, request: HTTPRequest):
    """(response, None), or (None, why) when the model server could not be reached."""
    try:
        response = await settings["nbml_http_client"].fetch(request, raise_error=False)
    except Exception as e:     # refused, reset, timed out
        return None, f"{type(e).__name__}: {e}"
    if response.code == 599:
        return None, str(response.error)
    return response, None


async def _listening(reg: registry.Registration) -> bool:
    host = reg.direct_url.split("//", 1)[1].rsplit(":", 1)[0].strip("[]")
    try:
        _, writer = await asyncio.open_connection(host, reg.port)
    except OSError:
        return False
    writer.close()
    return True


def setup_handlers(serverapp) -> None:
    web_app = serverapp.web_app
    web_app.settings["nbml_root_dir"] = str(Path(serverapp.root_dir).expanduser().resolve())
    web_app.settings["nbml_runtime_dir"] = serverapp.runtime_dir
    # its own client: the shared one queues beyond 10 requests at once, which a busy model would hit
    web_app.settings["nbml_http_client"] = SimpleAsyncHTTPClient(force_instance=True, max_clients=64,
                                                                 max_body_size=2**31)
    base = web_app.settings["base_url"]
    api = base + "nbml/api/"
    web_app.add_handlers(".*$", [
        (api + r"projects/?", ProjectsHandler),
        (api + r"projects/(?P<relpath>.+)", ProjectHandler),
        (api + r"servers/?", ServersHandler),
        (api + r"servers/(?P<name>[^/]+)/stop/?", StopHandler),
        (base + ROUTE, ModelProxyHandler),
    ])
    serverapp.log.info("nbml: model servers proxied at %snbml/models/<name>/, the panel's API at %s", base, api)
