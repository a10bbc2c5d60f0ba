"""The HTTP application: `POST /predict`, the Open Inference Protocol (`/v2/...`) and `GET /metrics`, on Starlette.

Every error is JSON `{"error": "..."}` with a status that says whose fault it is (400 bad input, 401 no token,
404 unknown model or route, 413 body too large, 500 a bug); the server keeps serving after any of them.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import re
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .._imaging import DEFAULT_MAX_PIXELS
from . import v2
from .batcher import Batcher
from .metrics import Metrics

__all__ = ["Settings", "Service", "build_app", "inputs_for"]

log = logging.getLogger("nbml.serve")
LOG_DELAY_S = 0.01      # how long answered requests wait before their prediction log rows are made


@dataclass
class Settings:
    """How a server behaves. `max_body_bytes` bounds a request body (413 above it); `max_pixels` is the
    decompression-bomb limit; `max_images` bounds the images (or texts) in one request. Text models: a text longer
    than `max_text_chars` is refused (400), and the log keeps each text's first `log_text_chars` characters."""
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_body_bytes: int = 16 * 1024 * 1024
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_images: int = 256
    token: str | None = None
    decode_threads: int | None = None
    max_text_chars: int = 100_000
    log_text_chars: int = 2_000


def inputs_for(folder: Path, config: dict, settings: Settings):
    """The kind's half of the server (its serving module, nbml.kinds.serving): how requests become the runner's
    batches. The kinds' own modules are not imported: they need pandas, which the server does without."""
    from .. import kinds
    kind = config.get("kind") or "image"
    try:
        module = kinds.serving(kind)
    except ValueError:
        raise ValueError(f"{folder} holds a model of an unknown kind {kind!r}; this nbml serves "
                         f"{kinds.registered()}") from None
    return module.Inputs(folder, config, settings)


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def json_body(body: bytes):
    """A request body as JSON, or a 400 saying why it is not."""
    try:
        return json.loads(body)
    except UnicodeDecodeError as e:
        raise HTTPError(400, f"the request body is not valid UTF-8 (byte {e.start}): send UTF-8 JSON") from None
    except json.JSONDecodeError as e:
        raise HTTPError(400, f"the request body is not valid JSON: {e}") from None


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class Service:
    """What a running server holds: the model runner behind a batcher, the decode pool, metrics and the log."""

    def __init__(self, folder: Path, config: dict, runner, settings: Settings, prediction_log=None, inputs=None):
        self.folder, self.config, self.runner, self.settings = Path(folder), config, runner, settings
        self.inputs = inputs or inputs_for(self.folder, config, settings)
        self.kind = self.inputs.kind
        self.name = config["name"]
        self.classes = list(config["classes"])
        self.size = int(config["size"])
        self.log = prediction_log
        self._unlogged: list[tuple] = []      # requests answered whose log rows are not written yet (_account)
        self.metrics = Metrics(self.name, f"{runner.kind}/{runner.device}")
        self.batcher = Batcher(runner, settings.max_batch, settings.max_wait_ms, on_batch=self.metrics.batch,
                               alone=lambda: self.metrics.in_flight <= 1)
        self.pool: ThreadPoolExecutor | None = None
        self._token = settings.token.encode() if settings.token else None
        self.ready = False
        # The admin route (POST /_nbml/stop) answers only this secret, which the Jupyter server extension reads from
        # the registration file (nbml.serving.registry); `on_stop` is what stopping means for whoever runs us.
        self.admin_secret: str | None = None
        self.on_stop = None

    async def startup(self) -> None:
        threads = self.settings.decode_threads or min(8, max(2, 2 * (self.runner_threads or 1)))
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="nbml-decode")
        await self.batcher.start()
        self.ready = True

    async def shutdown(self) -> None:
        self.ready = False
        await self.batcher.stop()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self._log_pending()
        if self.log is not None:
            self.log.close()

    @property
    def runner_threads(self) -> int | None:
        return getattr(self.runner, "threads", None)

    def warm_up(self) -> None:
        """One model call before the first request, so it is not the slow one."""
        self.runner(self.inputs.warm_up_batch())

    def admin(self, request: Request) -> bool:
        given = request.headers.get("x-nbml-secret", "").encode()
        return bool(self.admin_secret) and hmac.compare_digest(given, self.admin_secret.encode())

    def authorized(self, request: Request) -> bool:
        if self._token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token)

    async def classify(self, values: list, t0: float) -> tuple[np.ndarray, list[str]]:
        """Probabilities and labels for the request's inputs (encoded images, texts); a bad one is a 400 naming it."""
        noun = self.inputs.noun
        if not values:
            raise HTTPError(400, f"no {noun} in the request")
        if len(values) > self.settings.max_images:
            raise HTTPError(413, f"{len(values)} {noun}s in one request is more than the limit of "
                                 f"{self.settings.max_images}; send them in several requests")
        batch, hashes = await self.inputs.prepare(self, values)
        probs = await self.batcher.predict(batch)
        top = probs.argmax(1)
        labels = [self.classes[i] for i in top]
        # Counted and logged just after the answer is written (the next turn of the event loop): bookkeeping is
        # not part of the client's wait.
        asyncio.get_running_loop().call_soon(self._account, labels, probs[np.arange(len(top)), top], hashes,
                                             values, batch, time.time(), (time.perf_counter() - t0) * 1000)
        return probs, labels

    def _account(self, labels, confidences, hashes, values, batch, when: float, latency_ms: float) -> None:
        self.metrics.predicted(labels, confidences)
        if self.log is not None:
            # The log's work (hashing and serialising each input) waits a few milliseconds and is done for every
            # request of that spell at once: one back-to-back client's next request no longer waits behind it.
            self._unlogged.append((labels, confidences, hashes, values, batch, when, latency_ms))
            if len(self._unlogged) == 1:
                asyncio.get_running_loop().call_later(LOG_DELAY_S, self._log_pending)

    def _log_pending(self) -> None:
        pending, self._unlogged = self._unlogged, []
        if self.log is None:
            return
        inputs = self.inputs
        for labels, confidences, hashes, values, batch, when, latency_ms in pending:
            for label, conf, sha, value, unit in zip(labels, confidences, hashes, values, batch):
                self.log.record(when, latency_ms, label, float(conf), sha or inputs.digest(value),
                                inputs.payload(value, unit))

    def as_dict(self, probs_row: np.ndarray, label: str) -> dict:
        return {"label": label, "probabilities": dict(zip(self.classes, probs_row.tolist()))}


# -- request bodies ----------------------------------------------------------------------------------------------
def _too_big(limit: int) -> HTTPError:
    return HTTPError(413, f"the request body is larger than this server's limit of {limit:,} bytes (start the server "
                          f"with a larger max_body_bytes to accept it)", {"connection": "close"})


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit`: at once from Content-Length, or while
    it streams in. A gzip or deflate Content-Encoding is undone, under the same limit."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_bytes = int(declared)
        except ValueError:
            raise HTTPError(400, f"Content-Length {declared!r} is not a number") from None
        if declared_bytes > limit:
            raise _too_big(limit)
    chunks, total = [], 0
    while True:      # the ASGI messages themselves: a body that came in one piece is not copied
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise _too_big(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding in ("gzip", "deflate"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error as e:
            raise HTTPError(400, f"the {encoding} request body could not be decompressed: {e}") from None
        if len(body) > limit or inflater.unconsumed_tail:
            raise _too_big(limit)
    elif encoding != "identity":
        raise HTTPError(400, f"Content-Encoding {encoding!r} is not supported (use gzip, deflate or none)")
    return body


# one `; name=value` parameter of a header (RFC 9110 5.6.6): the value a token or a quoted string with \-escapes
_PARAMETER = re.compile(r""";\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)""")
_ESCAPE = re.compile(r"\\(.)")


def header_parameters(value: str) -> dict[str, str]:
    """The parameters of a header value such as 'multipart/form-data; boundary="x"': lower-case names, unquoted
    values; the first of a repeated name wins."""
    out: dict[str, str] = {}
    for name, raw in _PARAMETER.findall(value):
        raw = raw.strip()
        if raw.startswith('"'):
            raw = _ESCAPE.sub(r"\1", raw[1:-1])
        out.setdefault(name.lower(), raw)
    return out


def parse_multipart(body: bytes, content_type: str) -> list[bytes]:
    """The contents of every file part of a multipart/form-data body (RFC 7578).

    The body is already in memory, so the parts are found with `bytes.find` (a streaming parser's per-chunk
    callbacks cost more than the rest of the request's Python work together)."""
    boundary = header_parameters(content_type).get("boundary", "").encode("latin-1")
    if not boundary:
        raise HTTPError(400, "multipart body without a boundary in its Content-Type")

    def bad(why: str) -> HTTPError:
        return HTTPError(400, f"the multipart body could not be parsed: {why}")

    delimiter = b"\r\n--" + boundary
    if body.startswith(delimiter[2:]):               # no preamble
        pos = len(delimiter) - 2
    else:
        pos = body.find(delimiter)
        if pos < 0:
            raise bad("the boundary from the Content-Type does not occur in the body")
        pos += len(delimiter)
    files: list[bytes] = []
    while not body.startswith(b"--", pos):           # "--" after a delimiter closes the body
        eol = body.find(b"\r\n", pos)
        if eol < 0 or body[pos:eol].strip(b" \t"):
            raise bad("a boundary line does not end where it should")
        end = body.find(delimiter, eol)
        if end < 0:
            raise bad("the body ends before the closing boundary")
        head_end = body.find(b"\r\n\r\n", eol, end + 2)
        if head_end < 0:
            raise bad("a part has no blank line after its headers")
        disposition = b""
        for line in body[eol + 2:head_end].split(b"\r\n"):
            name, colon, value = line.partition(b":")
            if line and not colon:
                raise bad(f"malformed part header {line[:80]!r}")
            if name.strip().lower() == b"content-disposition":
                disposition = value.strip()
        disposition_params = header_parameters(disposition.decode("latin-1"))
        if "filename" in disposition_params or "filename*" in disposition_params:
            files.append(body[head_end + 4:end])
        pos = end + len(delimiter)
    if not files:
        raise HTTPError(400, "no file in the multipart body: send the image as a file part, e.g. "
                             "curl -F file=@photo.jpg URL/predict")
    return files


def _b64_image(value, i: int) -> bytes:
    if not isinstance(value, str):
        raise HTTPError(400, f"image {i + 1} must be a base64 string, not {type(value).__name__}")
    if value.startswith("data:") and "," in value:     # a data URL, as browsers make them
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPError(400, f"image {i + 1} is not valid base64") from None


def parse_json_images(body: bytes) -> tuple[list[bytes], bool]:
    """(images, single) from {"image": b64}, {"images": [b64, ...]}, a bare b64 string or a bare list."""
    payload = json_body(body)
    if isinstance(payload, dict):
        if "image" in payload:
            payload = payload["image"]
        elif "images" in payload:
            payload = payload["images"]
            if not isinstance(payload, list):
                raise HTTPError(400, "'images' must be a list of base64 strings")
        else:
            raise HTTPError(400, 'send {"image": "<base64>"} or {"images": ["<base64>", ...]}')
    if isinstance(payload, list):
        return [_b64_image(v, i) for i, v in enumerate(payload)], False
    return [_b64_image(payload, 0)], True


# -- the application ---------------------------------------------------------------------------------------------
def build_app(service: Service):
    """The ASGI application: Starlette's routes, with `POST /predict` dispatched ahead of them."""
    s = service
    limit = s.settings.max_body_bytes

    def endpoint(name: str, auth: bool = True):
        def wrap(fn):
            async def handler(request: Request):
                t0 = time.perf_counter()
                s.metrics.in_flight += 1
                try:
                    if auth and not s.authorized(request):
                        response = error(401, "missing or wrong bearer token: send the header "
                                              "'Authorization: Bearer <token>'", {"www-authenticate": "Bearer"})
                    else:
                        response = await fn(request, t0)
                except HTTPError as e:
                    response = error(e.status, e.message, e.headers)
                except Exception as e:   # a bug: say so, keep serving
                    log.exception("nbml server error on %s", request.url.path)
                    response = error(500, f"internal server error ({type(e).__name__}: {e}); the server is still "
                                          f"running")
                finally:
                    s.metrics.in_flight -= 1
                # counted once the response is written, like the predictions (Service.classify)
                asyncio.get_running_loop().call_soon(s.metrics.request, name, response.status_code,
                                                     time.perf_counter() - t0)
                return response
            return handler
        return wrap

    def check_model(request: Request) -> None:
        name = request.path_params["name"]
        if name != s.name:
            raise HTTPError(404, f"unknown model {name!r}: this server serves {s.name!r}")
        version = request.path_params.get("version")
        if version is not None and version != "1":
            raise HTTPError(404, f"unknown version {version!r} of model {s.name!r}: the only version is '1'")

    @endpoint("index")
    async def index(request, t0):
        return JSONResponse({"model": s.name, "kind": s.kind, "classes": s.classes, "input_size": s.size,
                             "runner": s.metrics.runner, "precision": s.runner.precision,
                             "endpoints": ["POST /predict", "GET /v2/health/live", "GET /v2/health/ready",
                                           f"GET /v2/models/{s.name}", f"POST /v2/models/{s.name}/infer",
                                           "GET /metrics"]})

    @endpoint("predict")
    async def predict(request, t0):
        body = await read_body(request, limit)
        values, single = s.inputs.parse_predict(body, request.headers.get("content-type", ""))
        probs, labels = await s.classify(values, t0)
        results = [s.as_dict(p, lab) for p, lab in zip(probs, labels)]
        return JSONResponse(results[0] if single else {"predictions": results})

    @endpoint("health", auth=False)
    async def live(request, t0):
        return JSONResponse({"live": True})

    @endpoint("health", auth=False)
    async def ready(request, t0):
        return JSONResponse({"ready": s.ready}, status_code=200 if s.ready else 503)

    @endpoint("v2_metadata")
    async def server_metadata(request, t0):
        from .. import __version__
        return JSONResponse({"name": "nbml", "version": __version__, "extensions": ["binary_tensor_data"]})

    @endpoint("v2_metadata")
    async def model_metadata(request, t0):
        check_model(request)
        meta = v2.model_metadata(s.name, len(s.classes), f"nbml_{s.runner.kind}", s.inputs.v2.name)
        meta["inputs"] = getattr(s.inputs, "v2_inputs", meta["inputs"])     # a table: one input per column
        return JSONResponse(meta)

    @endpoint("v2_metadata")
    async def model_ready(request, t0):
        check_model(request)
        return JSONResponse({"name": s.name, "ready": s.ready}, status_code=200 if s.ready else 503)

    @endpoint("v2_metadata")
    async def model_config(request, t0):
        check_model(request)
        return JSONResponse(s.config)

    @endpoint("v2_infer")
    async def infer(request, t0):
        check_model(request)
        body = await read_body(request, limit)
        try:
            parse = getattr(s.inputs, "parse_v2", None)      # a table's rows come as one input per column
            header = request.headers.get("inference-header-content-length")
            parsed = parse(body, header) if parse else v2.parse_infer_request(body, header, s.inputs.v2)
        except v2.ProtocolError as e:
            raise HTTPError(400, str(e)) from None
        probs, labels = await s.classify(parsed.images, t0)
        content, headers = v2.encode_infer_response(s.name, parsed, probs, labels)
        return Response(content, headers=headers)

    @endpoint("metrics")
    async def metrics(request, t0):
        return PlainTextResponse(s.metrics.render(), media_type="text/plain; version=0.0.4")

    @endpoint("admin", auth=False)
    async def stop(request, t0):
        if not s.admin(request) or s.on_stop is None:
            raise HTTPError(403, "stopping this server takes its admin secret (the Jupyter extension has it); "
                                 "from the notebook call server.stop()")
        asyncio.get_running_loop().call_soon(s.on_stop)      # after this answer is written
        return JSONResponse({"stopping": True})

    async def not_found(request, exc):
        return error(exc.status_code, f"{request.method} {request.url.path}: "
                                      f"{'no such endpoint' if exc.status_code == 404 else exc.detail}")

    @asynccontextmanager
    async def lifespan(app):
        await s.startup()
        try:
            yield
        finally:
            await s.shutdown()

    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    routes = [Route("/", index), Route("/predict", predict, methods=["POST"]),
              Route("/v2/health/live", live), Route("/v2/health/ready", ready), Route("/v2", server_metadata),
              Route("/metrics", metrics), Route("/_nbml/stop", stop, methods=["POST"])]
    for base in (model, versioned):
        routes += [Route(base, model_metadata), Route(base + "/ready", model_ready),
                   Route(base + "/config", model_config), Route(base + "/infer", infer, methods=["POST"])]
    starlette = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: not_found})
    # The busiest route goes straight to its handler: Starlette's middleware and router cost more than the route's
    # own Python work. The handler turns every exception into a response, which is what the middleware is for.
    direct = {("POST", "/predict"): predict}

    async def app(scope, receive, send):
        handler = direct.get((scope.get("method"), scope.get("path"))) if scope["type"] == "http" else None
        if handler is None:
            await starlette(scope, receive, send)
        else:
            response = await handler(Request(scope, receive))
            await response(scope, receive, send)
    return app
