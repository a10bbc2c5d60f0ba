"""`<base_url>nbml/models/<name>/<path>`: any request, behind Jupyter's authentication, forwarded to the model server
registered as <name> (nbml.serving.registry), bodies streamed both ways.

Jupyter's credentials (Authorization, Cookie, the `token` query argument, the XSRF header) stay here; when the model
server has its own token, the proxy adds it itself: whoever passed Jupyter's authentication may use the model.
"""
from __future__ import annotations

import asyncio
import urllib.parse

from tornado import httputil, web
from tornado.httpclient import HTTPRequest
from tornado.iostream import StreamClosedError

from .base import NbmlHandler, find_server

__all__ = ["ModelProxyHandler", "ROUTE"]

ROUTE = r"nbml/models/(?P<name>[^/]+)(?P<path>/.*)?"

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
              "transfer-encoding", "upgrade", "proxy-connection"}
NOT_FORWARDED = HOP_BY_HOP | {"host", "authorization", "cookie", "x-xsrftoken", "x-nbml-secret"}
BODY_METHODS = {"POST", "PUT", "PATCH"}


def _hop_by_hop(headers: httputil.HTTPHeaders) -> set[str]:
    named = {h.strip().lower() for v in headers.get_list("Connection") for h in v.split(",")}
    return HOP_BY_HOP | named


@web.stream_request_body
class ModelProxyHandler(NbmlHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
    _track_activity = True

    async def prepare(self):
        self._fetch = None
        self._chunks: asyncio.Queue = asyncio.Queue(maxsize=16)
        self._dropping = False
        self._header_lines: list[str] = []
        self._headers_sent = False
        await super().prepare()
        if not self.current_user:
            raise web.HTTPError(403, "log in to Jupyter (or send its token) to reach a model server")
        name = self.path_kwargs["name"]
        reg = find_server(self.settings, name)
        if reg is None:
            return self.write_json_error(404, f"no running model server is registered as {name!r}: start one in a "
                                              f"notebook with model.serve(), or see {self.base_url}nbml/api/servers")
        self._reg = reg
        self._start(reg)

    def _upstream_url(self, reg) -> str:
        raw = self.request.path.split("/nbml/models/", 1)[1]        # the path as sent, still percent-encoded
        rest = raw.partition("/")[2]
        query = [(k, v) for k, v in urllib.parse.parse_qsl(self.request.query, keep_blank_values=True) if k != "token"]
        return reg.direct_url + rest + ("?" + urllib.parse.urlencode(query) if query else "")

    def _start(self, reg) -> None:
        drop = _hop_by_hop(self.request.headers) | NOT_FORWARDED
        headers = httputil.HTTPHeaders()
        for k, v in self.request.headers.get_all():
            if k.lower() not in drop:
                headers.add(k, v)
        if reg.token:
            headers["Authorization"] = f"Bearer {reg.token}"
        headers["X-Forwarded-Prefix"] = f"{self.base_url}nbml/models/{reg.name}"
        method = self.request.method
        has_body = method in BODY_METHODS or "Content-Length" in self.request.headers or \
            "Transfer-Encoding" in self.request.headers
        request = HTTPRequest(self._upstream_url(reg), method=method, headers=headers, follow_redirects=False,
                              decompress_response=False, allow_nonstandard_methods=True, connect_timeout=10,
                              request_timeout=600, header_callback=self._on_header,
                              streaming_callback=self._on_chunk,
                              body_producer=self._produce if has_body else None)
        self._has_body = has_body
        self._fetch = asyncio.ensure_future(self.settings["nbml_http_client"].fetch(request, raise_error=False))
        self._fetch.add_done_callback(lambda _: self._stop_reading())

    # -- request body: the client's chunks go upstream as they come, at most 16 waiting ----------------------------
    async def data_received(self, chunk: bytes):
        if not self._dropping:
            await self._chunks.put(chunk)

    async def _produce(self, write):
        while (chunk := await self._chunks.get()) is not None:
            await write(chunk)

    def _stop_reading(self) -> None:
        """The upstream request ended (or failed): the rest of the client's body has nowhere to go."""
        self._dropping = True
        while not self._chunks.empty():
            self._chunks.get_nowait()

    # -- response: status and headers, then the body as it streams in --------------------------------------------
    def _on_header(self, line: str) -> None:
        if line.strip():
            self._header_lines.append(line)
            return
        first, *rest = self._header_lines
        self._header_lines = []
        start = httputil.parse_response_start_line(first.strip())
        if start.code < 200:         # 100 Continue: the real answer follows
            return
        headers = httputil.HTTPHeaders()
        for line in rest:
            headers.parse_line(line)
        self.set_status(start.code, start.reason or None)
        self.clear_header("Content-Type")
        self.clear_header("Server")
        drop = _hop_by_hop(headers)
        for k, v in headers.get_all():
            if k.lower() not in drop:
                self.add_header(k, v)
        self._headers_sent = True

    def _on_chunk(self, chunk: bytes):
        try:
            self.write(chunk)
            return self.flush()
        except StreamClosedError:    # the client went away; the upstream answer is dropped
            return None

    async def _proxy(self, *args, **kwargs):
        if self._has_body:
            await self._chunks.put(None)
        try:
            response = await self._fetch
            failure = response.error if response.code == 599 else None
        except Exception as e:        # refused, reset, timed out: tornado raises these even with raise_error=False
            failure = e
        if failure is not None and not self._headers_sent:
            why = f"{type(failure).__name__}: {failure}"
            self.write_json_error(502, f"the model server {self._reg.name!r} (port {self._reg.port}) did not "
                                       f"answer: {why}; it may have stopped, see {self.base_url}nbml/api/servers")
            return
        if failure is not None:      # broke off mid-body: the client must not take a partial answer as whole
            self.request.connection.close()
            return
        try:
            self.finish()
        except StreamClosedError:
            pass

    get = head = post = put = patch = delete = options = _proxy

    def finish(self, *args, **kwargs):
        kwargs.setdefault("set_content_type", self._headers.get("Content-Type") or "application/octet-stream")
        return super().finish(*args, **kwargs)

    def on_finish(self):
        if self._fetch is not None and not self._fetch.done():
            self._stop_reading()
